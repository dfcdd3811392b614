"""API flows through Chalice's test client on moto, with the runner inline (real child processes)."""

from __future__ import annotations

import json

import pytest
import requests

from chalicelib import aws

from .corpus import corpus
from .helpers import EXAMPLES, js_package, package_dir, py_package

OCTET = {"Content-Type": "application/octet-stream"}
JSON = {"Content-Type": "application/json"}
BINARY = {"Accept": "application/octet-stream"}


def send(api, body: bytes) -> str:
    resp = api.http.post("/api/v1/sequence", headers=OCTET, body=body)
    assert resp.status_code == 200, resp.body
    return json.loads(resp.body)["id"]


def start(api, seq_id: str, args=None, **extra) -> dict:
    body = {"args": args or [], **extra}
    resp = api.http.post(f"/api/v1/sequence/{seq_id}/start", headers=JSON, body=json.dumps(body))
    assert resp.status_code == 200, resp.body
    return json.loads(resp.body)


def read_all(api, inst_id: str, channel: str = "output") -> bytes:
    resp = api.http.get(f"/api/v1/instance/{inst_id}/{channel}", headers={"Accept": "*/*"})
    assert resp.status_code == 200, resp.body
    assert resp.headers["X-Channel-Ended"] == "true"
    return resp.body


def info(api, inst_id: str) -> dict:
    resp = api.http.get(f"/api/v1/instance/{inst_id}")
    assert resp.status_code == 200, resp.body
    return json.loads(resp.body)


def error_of(resp) -> str:
    body = json.loads(resp.body)
    assert set(body) == {"error"}, body
    return body["error"]


def bucket_and_table_contents(hub_env) -> tuple[list, list]:
    s3 = aws.client("s3").list_objects_v2(Bucket=hub_env["SEQHUB_BUCKET"]).get("Contents", [])
    items = aws.client("dynamodb").scan(TableName=hub_env["SEQHUB_TABLE"])["Items"]
    return [o["Key"] for o in s3], items


@pytest.mark.parametrize("example", ["counter-js", "counter-py"])
def test_seed_counter_through_the_api(api, example):
    seq_id = send(api, package_dir(EXAMPLES / example))
    started = start(api, seq_id, [3000, 10])
    assert started["message"] == f"Sequence {started['id']} starting"
    assert read_all(api, started["id"]) == "".join(f"{n}\n" for n in range(3000, 3010)).encode()
    found = info(api, started["id"])
    assert found["status"] == "completed"
    assert found["terminated"] == {"exitcode": 0, "reason": "Instance completed"}
    assert found["args"] == [3000, 10]
    assert found["sequence"]["id"] == seq_id


def test_version(api):
    resp = api.http.get("/api/v1/version")
    assert json.loads(resp.body)["service"] == "sequence-hub"


def test_sequence_list_info_and_instances(api):
    seq_id = send(api, package_dir(EXAMPLES / "counter-py"))
    inst = start(api, seq_id, [1, 2])["id"]
    listed = json.loads(api.http.get("/api/v1/sequences").body)
    assert [s["id"] for s in listed] == [seq_id]
    seq = json.loads(api.http.get(f"/api/v1/sequence/{seq_id}").body)
    assert seq["config"]["name"] == "counter-py" and seq["config"]["language"] == "py"
    assert seq["instances"] == [inst]
    assert len(seq["sha256"]) == 64 and seq["size"] > 0
    assert json.loads(api.http.get(f"/api/v1/sequence/{seq_id}/instances").body) == [inst]
    assert [i["id"] for i in json.loads(api.http.get("/api/v1/instances").body)] == [inst]


def test_typed_args_and_app_config_reach_the_sequence(api):
    source = ("module.exports = async function* (_in, ...args) {\n"
              "  yield {args, config: this.config};\n};\n")
    seq_id = send(api, js_package(source))
    args = ["Hello", 123, {"abc": 456}, ["789"], None, True]
    inst = start(api, seq_id, args, appConfig={"k": [1, 2]})["id"]
    assert json.loads(read_all(api, inst)) == {"args": args, "config": {"k": [1, 2]}}
    assert info(api, inst)["appConfig"] == {"k": [1, 2]}


def test_cursor_pages_and_long_poll_on_an_ended_channel(api):
    seq_id = send(api, package_dir(EXAMPLES / "counter-js"))
    inst = start(api, seq_id, [0, 5])["id"]
    first = api.http.get(f"/api/v1/instance/{inst}/output?cursor=&wait=0", headers=BINARY)
    assert first.body == b"0\n1\n2\n3\n4\n"
    assert first.headers["X-Channel-Ended"] == "true"
    again = api.http.get(f"/api/v1/instance/{inst}/output?cursor={first.headers['X-Next-Cursor']}&wait=5",
                         headers=BINARY)
    assert again.body == b"" and again.headers["X-Channel-Ended"] == "true"


def test_client_without_accept_gets_the_exact_bytes(api):
    text = start(api, send(api, package_dir(EXAMPLES / "counter-py")), [7, 2])["id"]
    resp = api.http.get(f"/api/v1/instance/{text}/output")
    assert resp.status_code == 200 and resp.body == b"7\n8\n"
    assert resp.headers["Content-Type"] == "application/octet-stream"
    binary = start(api, send(api, py_package("def run(context, input):\n    return [bytes([255, 0, 1])]\n")))["id"]
    resp = api.http.get(f"/api/v1/instance/{binary}/output")
    assert resp.status_code == 200 and resp.body == bytes([255, 0, 1])


def test_failing_sequence_is_errored_with_traceback_on_stderr(api):
    source = ("class TestException(Exception):\n    pass\n\n"
              "def run(context, input):\n"
              "    raise TestException('This exception should appear on stderr')\n")
    seq_id = send(api, py_package(source))
    inst = start(api, seq_id)["id"]
    found = info(api, inst)
    assert found["status"] == "errored"
    assert found["terminated"]["exitcode"] == 23
    assert found["terminated"]["reason"] == "Sequence failed during execution"
    stderr = read_all(api, inst, "stderr").decode()
    assert "Traceback" in stderr and "TestException: This exception should appear on stderr" in stderr


def test_logger_and_print_reach_log_and_stdout(api):
    source = ("def run(context, input):\n"
              "    context.logger.info('Debug log message')\n"
              "    print('to stdout')\n")
    inst = start(api, send(api, py_package(source)))["id"]
    log_lines = [json.loads(line) for line in read_all(api, inst, "log").decode().splitlines()]
    assert {"level": "INFO", "from": "Sequence", "msg": "Debug log message"}.items() <= log_lines[0].items()
    assert log_lines[-1]["from"] == "Runner"
    assert read_all(api, inst, "stdout") == b"to stdout\n"


def test_unknown_ids_are_json_404(api):
    for path in ("/api/v1/sequence/nope", "/api/v1/instance/nope", "/api/v1/instance/nope/output",
                 "/api/v1/sequence/nope/instances"):
        resp = api.http.get(path)
        assert resp.status_code == 404, path
        assert "not found" in error_of(resp)
    resp = api.http.post("/api/v1/sequence/nope/start", headers=JSON, body="{}")
    assert resp.status_code == 404 and error_of(resp) == "Sequence nope not found"


def test_bad_start_bodies_are_400(api):
    seq_id = send(api, package_dir(EXAMPLES / "counter-py"))
    for body, message in (("[1]", "start body must be a JSON object"),
                          ('{"args": "x"}', "Arguments must be in array"),
                          ('{"appConfig": 3}', "appConfig must be a JSON object"),
                          ("{nope", "request body: not valid JSON: Expecting property name enclosed in double "
                                    "quotes: line 1 column 2 (char 1)"),
                          ('{"instanceId": "../x"}', "instanceId must be 1-64 letters, digits, '-' or '_'"),
                          # Matched whole: a regex's $ also matches before a final newline.
                          ('{"instanceId": "x\\n"}', "instanceId must be 1-64 letters, digits, '-' or '_'"),
                          ('{"outputTopic": "names\\n"}', "outputTopic must be a topic name: 1-200 letters, digits, "
                                                          "'_', '+', '-'")):
        resp = api.http.post(f"/api/v1/sequence/{seq_id}/start", headers=JSON, body=body)
        assert resp.status_code == 400, body
        assert error_of(resp) == message
    assert json.loads(api.http.get("/api/v1/instances").body) == []


def test_ids_and_names_with_a_trailing_newline_are_refused(api):
    for path in ("/api/v1/instance/x%0A", "/api/v1/sequence/x%0A", "/api/v1/topic/names%0A?cursor=&wait=0"):
        resp = api.http.get(path)
        assert resp.status_code in (400, 404) and "error" in json.loads(resp.body), path
    resp = api.http.post("/api/v1/topics", headers=JSON, body='{"id": "names\\n", "content-type": "text/plain"}')
    assert resp.status_code == 400 and "Topic id incorrect format" in error_of(resp)
    resp = api.http.post("/api/v1/sequence/00000000-0000-4000-8000-00000000000a%0A/commit", headers=JSON, body="{}")
    assert resp.status_code == 404


def test_duplicate_instance_id_is_409(api):
    seq_id = send(api, package_dir(EXAMPLES / "counter-py"))
    start(api, seq_id, instanceId="my-run")
    resp = api.http.post(f"/api/v1/sequence/{seq_id}/start", headers=JSON, body='{"instanceId": "my-run"}')
    assert resp.status_code == 409 and error_of(resp) == "Instance with a given ID already exists"


@pytest.mark.parametrize("name, body, message, status", corpus(), ids=[c[0] for c in corpus()])
def test_rejected_upload_stores_nothing(api, hub_env, name, body, message, status):
    send(api, package_dir(EXAMPLES / "counter-py"))  # something to keep
    before = bucket_and_table_contents(hub_env)
    resp = api.http.post("/api/v1/sequence", headers=OCTET, body=body)
    assert resp.status_code == status and message in error_of(resp)
    assert bucket_and_table_contents(hub_env) == before
    # The same package through the large-upload path: same answer, and the upload is gone too.
    upload = json.loads(api.http.post("/api/v1/sequence/upload", headers=JSON, body="{}").body)
    assert requests.put(upload["url"], data=body).status_code == 200
    resp = api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers=JSON, body="{}")
    assert resp.status_code == status and message in error_of(resp)
    assert bucket_and_table_contents(hub_env) == before


def test_large_upload_round_trip(api):
    upload = json.loads(api.http.post("/api/v1/sequence/upload", headers=JSON, body="{}").body)
    assert upload["method"] == "PUT"
    assert requests.put(upload["url"], data=package_dir(EXAMPLES / "counter-js")).status_code == 200
    resp = api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers=JSON, body="{}")
    assert resp.status_code == 200 and json.loads(resp.body) == {"id": upload["id"]}
    assert read_all(api, start(api, upload["id"], [1, 2])["id"]) == b"1\n2\n"
    again = api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers=JSON, body="{}")  # idempotent
    assert again.status_code == 200 and json.loads(again.body) == {"id": upload["id"]}
    bad = api.http.post("/api/v1/sequence/../commit", headers=JSON, body="{}")
    assert bad.status_code in (403, 404)


def test_direct_upload_over_the_limit_is_413(api, hub_env, monkeypatch):
    body = package_dir(EXAMPLES / "counter-js")
    env = {**hub_env, "SEQHUB_MAX_PACKAGE_BYTES": str(len(body) - 1)}
    from .conftest import api_client

    resp = api_client(env).http.post("/api/v1/sequence", headers=OCTET, body=body)
    assert resp.status_code == 413 and "direct upload limit" in error_of(resp)


def test_delete_sequence_removes_package(api, hub_env):
    seq_id = send(api, package_dir(EXAMPLES / "counter-py"))
    resp = api.http.delete(f"/api/v1/sequence/{seq_id}", headers=JSON)
    assert resp.status_code == 200 and json.loads(resp.body) == {"id": seq_id}
    keys, items = bucket_and_table_contents(hub_env)
    assert keys == [] and items == []
    assert api.http.get(f"/api/v1/sequence/{seq_id}").status_code == 404


def test_wrong_content_types_get_json_415(api):
    seq_id = send(api, package_dir(EXAMPLES / "counter-py"))
    for path, body in ((f"/api/v1/sequence/{seq_id}/start", "{}"), ("/api/v1/sequence", "x")):
        resp = api.http.post(path, headers={"Content-Type": "text/plain"}, body=body)
        assert resp.status_code == 415 and error_of(resp) == "Unsupported media type: text/plain"
