"""Scramjet-compatible behaviour, sample by sample (tests/sequences/), through the API with the real
runner and hosts. The runner runs in a thread here, as a Lambda would run beside the API."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest

from chalicelib import config, instances, invoker, protocol
from chalicelib.runner.service import run_instance

from .helpers import SEQUENCES, package_dir

JSON = {"Content-Type": "application/json"}
BINARY = {"Accept": "application/octet-stream"}


@pytest.fixture
def hub(api, monkeypatch):
    """The API, with each start running its runner in a background thread."""
    threads: dict[str, threading.Thread] = {}

    def invoke(settings, inst_id, _engine="lambda", _runtime=""):
        thread = threading.Thread(target=run_instance, args=(settings, inst_id, lambda: 600_000), daemon=True)
        threads[inst_id] = thread
        thread.start()

    monkeypatch.setattr(invoker, "invoke", invoke)
    yield api
    settings = config.load()
    for inst_id, thread in threads.items():
        if thread.is_alive():
            try:
                instances.request_kill(settings, inst_id, require_running=False)
            except Exception:
                pass
            thread.join(timeout=30)
        assert not thread.is_alive(), f"runner of {inst_id} did not end"


def start(api, name: str, args=None, **extra) -> str:
    resp = api.http.post("/api/v1/sequence", headers={"Content-Type": "application/octet-stream"},
                         body=package_dir(SEQUENCES / name))
    assert resp.status_code == 200, resp.body
    seq_id = json.loads(resp.body)["id"]
    resp = api.http.post(f"/api/v1/sequence/{seq_id}/start", headers=JSON,
                         body=json.dumps({"args": args or [], **extra}))
    assert resp.status_code == 200, resp.body
    return json.loads(resp.body)["id"]


def info(api, inst: str) -> dict:
    return json.loads(api.http.get(f"/api/v1/instance/{inst}").body)


def wait_status(api, inst: str, statuses, timeout: float = 30.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        found = info(api, inst)
        if found["status"] in statuses:
            return found
        assert time.monotonic() < end, f"status stayed {found['status']}"
        time.sleep(0.1)


def read(api, inst: str, channel: str = "output", until: bytes | None = None, timeout: float = 30.0) -> bytes:
    """Follow a channel with cursors until it ends (or holds ``until``)."""
    data, cursor, end = b"", "", time.monotonic() + timeout
    while time.monotonic() < end:
        resp = api.http.get(f"/api/v1/instance/{inst}/{channel}?cursor={cursor}&wait=2", headers=BINARY)
        assert resp.status_code == 200, resp.body
        data += resp.body
        cursor = resp.headers["X-Next-Cursor"]
        if resp.headers["X-Channel-Ended"] == "true" or (until is not None and until in data):
            return data
    raise AssertionError(f"{channel} did not end; got {data!r}")


def send_input(api, inst: str, data: bytes, content_type="text/plain", end=True, stream="input") -> int:
    resp = api.http.post(f"/api/v1/instance/{inst}/{stream}", body=data, headers={
        "Content-Type": content_type, "x-end-stream": "true" if end else "false"})
    assert resp.status_code in (200, 202), resp.body
    return resp.status_code


def control(api, inst: str, op: str, body) -> tuple[int, dict]:
    resp = api.http.post(f"/api/v1/instance/{inst}/{op}", headers=JSON, body=json.dumps(body))
    return resp.status_code, json.loads(resp.body)


def test_input_to_output_python(hub):
    inst = start(hub, "py-hello")
    # Sent before the runner has read anything: input is durable, nothing is lost.
    assert send_input(hub, inst, b"Alice\n", end=False) == 202
    assert send_input(hub, inst, b"Bob\n", end=True) == 200
    assert read(hub, inst) == b"Hello Alice!\nHello Bob!\n"  # text input arrives as lines
    assert wait_status(hub, inst, protocol.FINAL)["status"] == "completed"


def test_input_to_output_node(hub):
    inst = start(hub, "js-hello")
    send_input(hub, inst, b"Alice")
    assert read(hub, inst) == b"Hello Alice!"  # a raw stream: passed through, no newline added
    assert read(hub, inst, "stdout") == b"Hello Alice!\n"
    assert wait_status(hub, inst, protocol.FINAL)["status"] == "completed"


def test_python_text_input_arrives_as_lines(hub):
    inst = start(hub, "py-chunk-lengths")
    send_input(hub, inst, "foo\nbar baz\nżółw\n".encode())
    assert read(hub, inst) == b"4,8,5,"


def test_python_octet_stream_input_arrives_as_chunks(hub):
    inst = start(hub, "py-chunk-lengths")
    send_input(hub, inst, b"\x00" * 20, content_type="application/octet-stream")
    assert read(hub, inst) == b"20,"


def test_node_ndjson_input_is_parsed_and_generator_output_is_json_lines(hub):
    inst = start(hub, "js-ndjson")
    send_input(hub, inst, b'{"name": "Alice"}\n{"name": "Bob"}\n', content_type="application/x-ndjson")
    lines = [json.loads(line) for line in read(hub, inst).decode().splitlines()]
    assert lines == [{"name": "Alice", "upper": "ALICE"}, {"name": "Bob", "upper": "BOB"}]


def test_first_input_needs_a_content_type_and_fixes_it(hub):
    inst = start(hub, "js-checksum")
    resp = hub.http.post(f"/api/v1/instance/{inst}/input", body=b"x",
                         headers={"Content-Type": "application/json"})
    assert resp.status_code == 415 or "Content-Type" in json.loads(resp.body)["error"]
    send_input(hub, inst, b'{"a":1}', end=True)
    assert read(hub, inst) == hashlib.md5(b'{"a":1}').hexdigest().encode()
    log = [json.loads(line) for line in read(hub, inst, "log").decode().splitlines()]
    assert any(line["msg"] == "read 7 characters" for line in log)


@pytest.mark.parametrize("name, prefix", [("py-stdio", b"Got on stdin: "), ("js-stdio", b">>> ")])
def test_stdin_to_stdout(hub, name, prefix):
    inst = start(hub, name)
    send_input(hub, inst, b"python runner\n", stream="stdin", content_type="application/octet-stream")
    assert read(hub, inst, "stdout") == prefix + b"python runner\n"


def test_python_stdin_is_a_stream_that_never_blocks_the_event_loop(hub):
    """Scramjet's Python runner makes sys.stdin a scramjet Stream of decoded text: `await
    sys.stdin.read()` waits on the event loop, so events and health go on meanwhile."""
    inst = start(hub, "py-await-stdin")
    end = time.monotonic() + 30
    while True:  # the third tick is emitted while the sequence awaits its stdin
        resp = hub.http.get(f"/api/v1/instance/{inst}/event/tick?wait=2")
        if resp.status_code == 200 and json.loads(resp.body) == 3:
            break
        assert time.monotonic() < end, resp.body
    resp = hub.http.post(f"/api/v1/instance/{inst}/stdin", headers={"Content-Type": "application/octet-stream"},
                         body="żółw\n".encode())
    assert resp.status_code == 200
    assert read(hub, inst) == "got żółw\n".encode()
    assert wait_status(hub, inst, protocol.FINAL)["status"] == "completed"


def test_typed_args_reach_a_never_ending_passthrough(hub):
    inst = start(hub, "js-args-to-output", ["Hello", 123, {"abc": 456}, ["789"]])
    assert read(hub, inst, until=b"789\n") == b"Hello\n123\n456\n789\n"
    status, body = control(hub, inst, "_kill", {})
    assert status == 202 and body["status"] == "killing"
    assert wait_status(hub, inst, protocol.FINAL)["terminated"] == {"exitcode": 137, "reason": "Instance killed"}


@pytest.mark.parametrize("name", ["py-stop-handler", "js-stop-handler"])
def test_stop_runs_the_stop_handler_then_ends(hub, name):
    inst = start(hub, name)
    read(hub, inst, "log", until=b"stop handler ready")  # a stop before that is simply a stop
    status, body = control(hub, inst, "_stop", {"timeout": 4000, "canCallKeepalive": False})
    assert status == 202 and body["status"] == "stopping"
    final = wait_status(hub, inst, protocol.FINAL)
    assert final["terminated"] == {"exitcode": 138, "reason": "Instance stopped"}
    assert read(hub, inst, "stdout") == b"Cleaning up... Cleanup done.\n"


def test_keep_alive_prevents_the_stop_and_a_stop_may_be_sent_again(hub):
    """Scramjet's E2E-002: stop with keep-alive allowed, twice (the instance keeps itself running,
    "stopping"), then a stop that does not allow it ends the instance."""
    inst = start(hub, "py-keep-alive", ["SEND_KEEPALIVE"])
    read(hub, inst, "log", until=b"stop handler ready")
    for kept in (1, 2):
        status, body = control(hub, inst, "_stop", {"timeout": 1500, "canCallKeepalive": True})
        assert status == 202 and body["status"] == "stopping"
        end = time.monotonic() + 30
        while read(hub, inst, "log", until=b"kept itself running").count(b"kept itself running") < kept:
            assert time.monotonic() < end, "no keep-alive"
            time.sleep(0.1)
        time.sleep(2)  # past the stop's 1.5 s timeout: what is asserted is that it is still alive
        assert info(hub, inst)["status"] == "stopping"  # STH leaves it "stopping", alive
        assert json.loads(hub.http.get(f"/api/v1/instance/{inst}/health").body)["healthy"] is True
    status, body = control(hub, inst, "_stop", {"timeout": 0, "canCallKeepalive": False})
    assert status == 202
    assert wait_status(hub, inst, protocol.FINAL)["terminated"] == {"exitcode": 138, "reason": "Instance stopped"}


def test_kill_a_busy_loop(hub):
    inst = start(hub, "js-busy-loop")
    wait_status(hub, inst, ["running"])
    control(hub, inst, "_kill", {})
    assert wait_status(hub, inst, protocol.FINAL, timeout=15)["terminated"]["exitcode"] == 137


def test_kill_needs_a_running_instance(hub):
    inst = start(hub, "py-hello")
    send_input(hub, inst, b"x\n")
    wait_status(hub, inst, protocol.FINAL)
    status, body = control(hub, inst, "_kill", {})
    assert status == 400 and body == {"error": "Instance not running"}


@pytest.mark.parametrize("name", ["py-events", "js-events"])
def test_events_round_trip(hub, name):
    inst = start(hub, name)
    wait_status(hub, inst, ["running"])  # an event sent before the handler exists waits for it
    status, body = control(hub, inst, "_event", [5001, {"eventName": "test-event", "message": "foo"}])
    assert status == 200 and body == {"accepted": "OK"}
    resp = hub.http.get(f"/api/v1/instance/{inst}/event/test-response?wait=20")
    assert resp.status_code == 200 and json.loads(resp.body) == "reply to foo"
    # once/<name> ignores the last event and waits for the next one.
    later = threading.Timer(1.0, control, (hub, inst, "_event", [5001, {"eventName": "test-event", "message": "bar"}]))
    later.start()
    resp = hub.http.get(f"/api/v1/instance/{inst}/once/test-response?wait=20")
    later.join()
    assert resp.status_code == 200 and json.loads(resp.body) == "reply to bar"
    status, body = control(hub, inst, "_event", {"message": "no name"})
    assert status == 400 and body == {"error": "Invalid format, eventName missing."}


@pytest.mark.parametrize("name", ["py-unhealthy", "js-unhealthy"])
def test_unhealthy_health_check(hub, name):
    inst = start(hub, name)
    wait_status(hub, inst, ["running"])
    end = time.monotonic() + 15
    while time.monotonic() < end:
        health = json.loads(hub.http.get(f"/api/v1/instance/{inst}/health").body)
        if health.get("healthy") is False:
            break
        time.sleep(0.3)
    assert health["healthy"] is False


@pytest.mark.parametrize("name", ["py-binary", "js-binary"])
def test_binary_output_round_trips_byte_for_byte(hub, name):
    inst = start(hub, name)
    data = read(hub, inst)
    assert len(data) == 300_000
    digest = read(hub, inst, "stdout").decode().strip()
    assert hashlib.sha256(data).hexdigest() == digest


def start_source(api, source: str, args=None) -> str:
    """Start a JavaScript sequence given as its source."""
    from .helpers import js_package

    resp = api.http.post("/api/v1/sequence", headers={"Content-Type": "application/octet-stream"}, body=js_package(source))
    seq_id = json.loads(resp.body)["id"]
    resp = api.http.post(f"/api/v1/sequence/{seq_id}/start", headers=JSON, body=json.dumps({"args": args or []}))
    return json.loads(resp.body)["id"]


# What Scramjet's runner writes for what the last function returns (runner.ts, runSequence): JSON
# lines only for a stream that says it holds JSON lines, or for the runner's own DataStream (what it
# makes of a generator or an iterable, or what .map on its input gives); a sequence's own stream is
# written as it is, object mode or not; a primitive as `${value}`.
NODE_OUTPUTS = [
    ("own object-mode PassThrough of strings: as written",
     "const { PassThrough } = require('stream');\nmodule.exports = function () {\n"
     "  const out = new PassThrough({ objectMode: true });\n  out.write('Name is: Hulk\\n'); out.end('Name is: Ada\\n');\n"
     "  return out;\n};\n", b"Name is: Hulk\nName is: Ada\n", "completed"),
    ("async generator: JSON lines",
     "module.exports = async function* () { yield 'x'; yield 3000; yield { a: 1 }; };\n",
     b'"x"\n3000\n{"a":1}\n', "completed"),
    ("an array: JSON lines", "module.exports = () => ['a', 2];\n", b'"a"\n2\n', "completed"),
    ("object stream that says it is JSON lines",
     "const { PassThrough } = require('stream');\nmodule.exports = function () {\n"
     "  const out = new PassThrough({ objectMode: true });\n  out.contentType = 'application/x-ndjson';\n"
     "  out.end({ name: 'Hulk' });\n  return out;\n};\n", b'{"name":"Hulk"}\n', "completed"),
    ("the runner's DataStream (its input, mapped): JSON lines",
     "module.exports = function (input) { return input.map((s) => `Hello ${s}!`); };\n", b'"Hello input!"\n',
     "completed"),
    ("a number: as text, no newline", "module.exports = async () => 42;\n", b"42", "completed"),
    ("nothing: the text undefined", "module.exports = async () => {};\n", b"undefined", "completed"),
    ("a stream that set an encoding: its bytes",
     "const { PassThrough } = require('stream');\nmodule.exports = function () {\n"
     "  const out = new PassThrough(); out.setEncoding('hex');\n  out.end(Buffer.from([0, 255, 10]));\n  return out;\n};\n",
     b"\x00\xff\n", "completed"),
    ("objects in a stream that does not say it is JSON lines: fails, as piping them does",
     "const { PassThrough } = require('stream');\nmodule.exports = function () {\n"
     "  const out = new PassThrough({ objectMode: true });\n  out.end({ name: 'Hulk' });\n  return out;\n};\n",
     b"", "errored"),
]


@pytest.mark.parametrize("source, expected, status", [c[1:] for c in NODE_OUTPUTS], ids=[c[0] for c in NODE_OUTPUTS])
def test_node_output_is_written_as_scramjets_runner_writes_it(hub, source, expected, status):
    inst = start_source(hub, source)
    send_input(hub, inst, b"input", end=True)
    assert read(hub, inst) == expected
    final = wait_status(hub, inst, protocol.FINAL)
    assert final["status"] == status, final
    if status == "errored":
        assert b'The "chunk" argument must be of type string' in read(hub, inst, "stderr")


def test_an_exception_nobody_catches_ends_the_instance_errored(hub):
    inst = start_source(hub, "const { PassThrough } = require('stream');\nmodule.exports = function () {\n"
                             "  setTimeout(() => { throw new TypeError('thrown later'); }, 10);\n"
                             "  return new PassThrough();  // never ended\n};\n")
    final = wait_status(hub, inst, protocol.FINAL)
    assert final["terminated"] == {"exitcode": 23, "reason": "Sequence failed during execution"}
    assert b"TypeError: thrown later" in read(hub, inst, "stderr")
