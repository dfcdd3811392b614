"""The API described (OpenAPI 3, served and validated) and fuzzed, and every hostile input found so far
answered with a clear 4xx that stores nothing."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import requests

from chalicelib import instances, invoker, protocol, sequences
from chalicelib.runner.service import DELETED_BEFORE_START, run_instance

from .helpers import SEQUENCES, make_package, package_dir, py_package, si
from .test_api import bucket_and_table_contents

JSON = {"Content-Type": "application/json"}
OCTET = {"Content-Type": "application/octet-stream"}


def test_the_openapi_document_is_served_valid_and_covers_every_route(api):
    from openapi_spec_validator import validate

    import app as hub_app

    resp = api.http.get("/api/v1/openapi.json")
    assert resp.status_code == 200
    document = json.loads(resp.body)
    validate(document)
    routes = {(path[len("/api/v1"):], method.lower()) for path, methods in hub_app.app.routes.items()
              if path.startswith("/api/v1/") for method in methods}
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert documented == routes
    start = document["paths"]["/sequence/{seq_id}/start"]["post"]
    assert {"200", "400", "404", "409", "413", "429"} <= set(start["responses"])
    assert any(p["name"] == "x-end-stream" for p in document["paths"]["/instance/{inst_id}/input"]["post"]["parameters"])


# A plain GET of a channel, the hub's log or an event stream streams until it ends, and one of an
# event waits for it (as on Scramjet's hub): the fuzzer always pages, with no wait. Cursors and waits
# have tests of their own (test_forged_cursors_are_400, test_waits_are_finite_numbers).
_PAGED = '"query.cursor" = ""\n"query.wait" = 0\n'


def _fuzz(hub, tmp_path: Path, config: str = "") -> subprocess.CompletedProcess:
    (tmp_path / "schemathesis.toml").write_text("[parameters]\n" + _PAGED + config)
    return subprocess.run(
        [str(Path(sys.executable).parent / "st"), "--config-file", str(tmp_path / "schemathesis.toml"), "run",
         f"{hub['url']}/openapi.json", "--checks", "not_a_server_error", "--max-examples", "15",
         "--request-timeout", "40", "--generation-deterministic"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)  # its cache stays out of the repository


def test_schemathesis_finds_no_server_error(hub, tmp_path, session):
    """Every operation fuzzed from the document, first with made-up ids, then with real ones: a
    sequence whose instance is running (starts, events, input, stop and kill hit real state)."""
    first = _fuzz(hub, tmp_path)
    assert first.returncode == 0, first.stdout[-4000:]
    seq_id = si(hub, "seq", "send", str(SEQUENCES / "py-events"), session=session).stdout.decode().split()[-1]
    inst_id = si(hub, "seq", "start", seq_id, session=session).stdout.decode().split()[-1]
    second = _fuzz(hub, tmp_path, f'"path.seq_id" = "{seq_id}"\n"path.inst_id" = "{inst_id}"\n'
                                  '"path.name" = "test-response"\n')
    assert second.returncode == 0, second.stdout[-4000:]
    assert " passed" in second.stdout


@pytest.mark.parametrize("body", ['{"args": [NaN, 1]}', '{"args": [Infinity]}', '{"appConfig": {"x": -Infinity}}',
                                  '{"args": ' + "[" * 100_000 + "]" * 100_000 + "}",
                                  '{"appConfig": ' + '{"a": ' * 200 + "1" + "}" * 200 + "}"])
def test_start_bodies_that_are_not_strict_json_are_400(api, hub_env, body):
    seq_id = json.loads(api.http.post("/api/v1/sequence", headers=OCTET, body=py_package("def run(c, i):\n    pass\n")).body)["id"]
    resp = api.http.post(f"/api/v1/sequence/{seq_id}/start", headers=JSON, body=body)
    assert resp.status_code == 400 and json.loads(resp.body)["error"].startswith("request body")
    assert json.loads(api.http.get("/api/v1/instances").body) == []


def _tar_gz(members: list[tuple[str, bytes]], trailing: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue() + trailing


def _manifest(raw: bytes) -> bytes:
    return _tar_gz([("package.json", raw), ("main.py", b"def run(c, i):\n    pass\n")])


@pytest.mark.parametrize("body,message", [
    (_manifest(b'{"main": "main.py", "description": NaN, "engines": {"python3": "3.12"}}'), "NaN is not JSON"),
    (_manifest(b'{"main": "main.py", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"), "nested deeper"),
    (_manifest(b'{"main": "main.py"' + b" " * (2 * 1024 * 1024) + b"}"), "over 65536 bytes"),
    (_tar_gz([("package.json", b'{"main": "a"}'), ("/".join(["d"] * 200) + "/a", b"x")]), "directories deep"),
    (_tar_gz([("package.json", b'{"main": "a"}'), ("a", b"x")], trailing=b"junk" * 1000),
     "after the end of the gzip stream"),
    (gzip.compress(b"\0" * 1024 + b"not tar padding"), "after the end of the archive"),
    (_tar_gz([("package.json", b'{"main": "a"}'), ("a", b"x")])[:-8] + gzip.compress(b"x")[-8:], "incorrect data check"),
])
def test_hostile_packages_are_422_and_store_nothing(api, hub_env, body, message):
    before = bucket_and_table_contents(hub_env)
    resp = api.http.post("/api/v1/sequence", headers=OCTET, body=body)
    assert resp.status_code == 422, resp.body
    assert message in json.loads(resp.body)["error"]
    assert bucket_and_table_contents(hub_env) == before


def test_junk_after_a_valid_package_is_refused_through_the_presigned_upload(api, hub_env):
    upload = json.loads(api.http.post("/api/v1/sequence/upload", headers=JSON, body="{}").body)
    body = _tar_gz([("package.json", b'{"main": "a.js"}'), ("a.js", b"module.exports = () => 1;")],
                   trailing=b"\0" * 50_000 + b"junk")
    assert requests.put(upload["url"], data=body).status_code == 200
    resp = api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers=JSON, body="{}")
    assert resp.status_code == 422 and "after the end" in json.loads(resp.body)["error"]
    assert json.loads(api.http.get("/api/v1/sequences").body) == []


@pytest.fixture
def ended_instance(settings) -> str:
    seq_id = sequences.create(settings, py_package("def run(c, i):\n    return ['out']\n"))["id"]
    return instances.start(settings, seq_id, {})["id"]  # the inline runner: ended on return


@pytest.mark.parametrize("cursor", ["Infinity", "1e400", "WzEuMGU0MDAsIDBd", "IjEi", "MQ", "e30", "x" * 10_000])
def test_forged_cursors_are_400(api, ended_instance, cursor):
    resp = api.http.get(f"/api/v1/instance/{ended_instance}/output?cursor={cursor}&wait=0")
    assert resp.status_code == 400 and "invalid cursor" in json.loads(resp.body)["error"]


@pytest.mark.parametrize("wait,status", [("Infinity", 400), ("1e400", 400), ("nan", 400), ("x", 400),
                                         ("-1", 200), ("1e9", 200)])
def test_waits_are_finite_numbers(api, ended_instance, wait, status):
    resp = api.http.get(f"/api/v1/instance/{ended_instance}/output?cursor=&wait={wait}")
    assert resp.status_code == status, resp.body
    if status == 200:
        assert resp.body == b"out"  # clamped to 0..25 s; an ended channel answers at once


@pytest.mark.parametrize("body", ['{"timeout": 1e400}', '{"timeout": 1e12}', '{"timeout": -1}', '{"timeout": 1.5}',
                                  '{"timeout": "7000"}', '{"canCallKeepalive": "yes"}'])
def test_stop_timeouts_are_bounded(api, settings, body, monkeypatch):
    from chalicelib import clock
    from chalicelib.repository import Repository

    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)
    inst = instances.start(settings, sequences.create(settings, py_package("def run(c, i):\n    pass\n"))["id"], {})["id"]
    Repository(settings.table).claim(inst, clock.now())
    resp = api.http.post(f"/api/v1/instance/{inst}/_stop", headers=JSON, body=body)
    assert resp.status_code == 400 and "Invalid" in json.loads(resp.body)["error"]
    assert instances.get(settings, inst).status == protocol.RUNNING  # nothing asked of the runner


@pytest.mark.parametrize("stream", ["input", "stdin"])
def test_an_empty_request_that_keeps_the_stream_open_is_accepted_and_a_bad_end_flag_is_400(api, settings, stream,
                                                                                             monkeypatch):
    """Found by schemathesis: ``x-end-stream: null,null`` with no body answered 500."""
    from chalicelib import clock
    from chalicelib.repository import Repository

    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)
    inst = instances.start(settings, sequences.create(settings, py_package("def run(c, i):\n    pass\n"))["id"], {})["id"]
    Repository(settings.table).claim(inst, clock.now())
    text = {"Content-Type": "text/plain"}
    resp = api.http.post(f"/api/v1/instance/{inst}/{stream}", headers={**text, "x-end-stream": "null,null"}, body=b"")
    assert resp.status_code == 400 and json.loads(resp.body) == {"error": "x-end-stream must be true or false"}
    for _ in range(2):  # the second leaves the chunk counter unchanged
        resp = api.http.post(f"/api/v1/instance/{inst}/{stream}", headers={**text, "x-end-stream": "false"}, body=b"")
        assert resp.status_code == 202
    assert instances.get(settings, inst).chunks_end == {}  # still open
    resp = api.http.post(f"/api/v1/instance/{inst}/{stream}", headers={**text, "x-end-stream": "true"}, body=b"")
    assert resp.status_code == 200 and stream in instances.get(settings, inst).chunks_end


def test_a_sequence_deleted_while_starting_ends_its_instance_with_a_clear_reason(settings, monkeypatch):
    """The delete lands between the runner's claim and its download of the package."""
    from chalicelib.runner import service

    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)
    seq_id = sequences.create(settings, package_dir(SEQUENCES / "py-events"))["id"]
    inst = instances.start(settings, seq_id, {})["id"]
    unpack = service._Run.unpack

    def delete_then_unpack(self, seq, dest):
        sequences.delete(settings, seq_id, force=True)
        unpack(self, seq, dest)

    monkeypatch.setattr(service._Run, "unpack", delete_then_unpack)
    assert run_instance(settings, inst, lambda: 600_000) == protocol.ERRORED
    assert instances.info(settings, inst)["terminated"] == {"exitcode": 10, "reason": DELETED_BEFORE_START}


def test_a_sequence_deleted_after_the_runner_fetched_it_still_runs(settings, monkeypatch):
    from chalicelib.runner import service

    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)
    seq_id = sequences.create(settings, make_package({
        "package.json": {"main": "main.py", "engines": {"python3": "3.12"}},
        "main.py": "def run(context, input):\n    return ['ran with its package\\n']\n"}))["id"]
    inst = instances.start(settings, seq_id, {})["id"]
    unpack = service._Run.unpack

    def unpack_then_delete(self, seq, dest):
        unpack(self, seq, dest)
        sequences.delete(settings, seq_id, force=True)

    monkeypatch.setattr(service._Run, "unpack", unpack_then_delete)
    assert run_instance(settings, inst, lambda: 600_000) == protocol.COMPLETED
    assert instances.read_channel(settings, inst, "output", None, 0, until_end=True)["data"] == b"ran with its package\n"


def test_an_event_a_sequence_emits_with_nan_is_refused_in_its_log(settings, monkeypatch):
    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)
    source = ("def run(context, input):\n"
              "    context.emit('bad', float('nan'))\n"
              "    context.emit('good', 1.5)\n")
    inst = instances.start(settings, sequences.create(settings, py_package(source))["id"], {})["id"]
    assert run_instance(settings, inst, lambda: 600_000) == protocol.COMPLETED
    assert instances.last_event(settings, inst, "good", 0) == (True, 1.5)
    assert instances.last_event(settings, inst, "bad", 0) == (False, None)
    log = instances.read_channel(settings, inst, "log", None, 0, until_end=True)["data"].decode()
    assert "holds NaN or Infinity" in log


def test_junk_a_sequence_writes_to_the_runners_event_pipe_is_ignored(settings, monkeypatch):
    """The pipe's descriptor can be found from inside the host: lines that are JSON but not objects
    (and announcements with a bad topic) are ignored or logged, and the run goes on."""
    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)
    source = ("import __main__, os\n"
              "def run(context, input):\n"
              "    fd = __main__._FDS['events']\n"
              "    os.write(fd, b'[1, 2]\\n\"x\"\\n7\\nnull\\n')\n"
              "    os.write(fd, b'{\"type\": \"output\", \"topic\": {\"no\": 1}}\\n')\n"
              "    context.emit('after', 'still here')\n"
              "    return 'done'\n")
    inst = instances.start(settings, sequences.create(settings, py_package(source))["id"], {})["id"]
    assert run_instance(settings, inst, lambda: 600_000) == protocol.COMPLETED
    assert instances.last_event(settings, inst, "after", 0) == (True, "still here")
    assert instances.read_channel(settings, inst, "output", None, 0, until_end=True)["data"] == b"done"


@pytest.mark.parametrize("cursor", ["%C2%B2", "%D9%A1", "1" * 21, "-1"])
def test_the_hub_log_cursor_is_an_ascii_line_number(hub, cursor):
    """"²" and "١" are digits to str.isdigit, but not to int(): refused (400), never a 500."""
    resp = requests.get(f"{hub['url']}/log?cursor={cursor}&wait=0", timeout=30)
    assert resp.status_code == 400 and resp.json() == {"error": "cursor must be a line number"}
