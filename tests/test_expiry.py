"""Retention and expiry, exact to the second, and the cleanup that leaves nothing behind."""

from __future__ import annotations

import json

from chalicelib import aws, cleanup, clock, instances, invoker, models, protocol, sequences, sweeper
from chalicelib.repository import Repository
from chalicelib.runner.service import run_instance

from .helpers import EXAMPLES, LambdaContext, package_dir, py_package


def ended_instance(settings) -> tuple[str, models.Instance]:
    seq_id = sequences.create(settings, py_package(
        "def run(context, input):\n    print('hi')\n    return 'out'\n"))["id"]
    inst = instances.start(settings, seq_id, {})["id"]  # inline: runs to the end
    return inst, Repository(settings.table).get_instance(inst)


def test_readable_until_retention_then_404_everywhere(settings, api, monkeypatch):
    inst, item = ended_instance(settings)
    assert item.expires_at == int(item.ended + settings.retention_seconds)
    routes = [f"/api/v1/instance/{inst}", f"/api/v1/instance/{inst}/output", f"/api/v1/instance/{inst}/log"]
    monkeypatch.setattr(clock, "now", lambda: item.expires_at - 1)
    for route in routes:
        assert api.http.get(route, headers={"Accept": "*/*"}).status_code == 200, route
    assert [i["id"] for i in json.loads(api.http.get("/api/v1/instances").body)] == [inst]
    monkeypatch.setattr(clock, "now", lambda: item.expires_at + 1)
    for route in routes:
        resp = api.http.get(route, headers={"Accept": "*/*"})
        assert resp.status_code == 404 and json.loads(resp.body) == {"error": f"Instance {inst} not found"}
    assert json.loads(api.http.get("/api/v1/instances").body) == []


def removed(inst_id: str, sk: str = "#", event: str = "REMOVE", number: int = 1) -> dict:
    """A KEYS_ONLY stream record, as DynamoDB sends it."""
    return {"eventID": str(number), "eventName": event, "eventSource": "aws:dynamodb",
            "dynamodb": {"Keys": {"pk": {"S": f"inst#{inst_id}"}, "sk": {"S": sk}},
                         "SequenceNumber": f"{number:021d}", "StreamViewType": "KEYS_ONLY"}}


def everything_of(settings, inst: str) -> dict:
    logs, s3 = aws.client("logs"), aws.client("s3")
    items = aws.client("dynamodb").query(TableName=settings.table, KeyConditionExpression="pk = :p",
                                         ExpressionAttributeValues={":p": {"S": f"inst#{inst}"}})["Items"]
    return {"streams": {s["logStreamName"] for s in logs.describe_log_streams(logGroupName=settings.log_group)["logStreams"]},
            "objects": [o["Key"] for p in ("inputs", "channels")
                        for o in s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"{p}/{inst}/").get("Contents", [])],
            "records": sorted(i["sk"]["S"] for i in items)}


def test_cleanup_handler_deletes_everything_of_the_instance_on_remove(settings, hub_env, monkeypatch):
    started = []
    monkeypatch.setattr(invoker, "invoke", lambda _s, inst_id, _engine="lambda", _runtime="": started.append(inst_id))
    seq_id = sequences.create(settings, package_dir(EXAMPLES / "counter-py"))["id"]
    inst = instances.start(settings, seq_id, {"args": [1, 3], "appConfig": {"big": "x" * 10_000}})["id"]
    instances.append_input(settings, inst, "input", b"data", "text/plain", end=False)
    instances.append_input(settings, inst, "input", b"y" * (instances.INLINE_CHUNK_BYTES + 1), None, end=True)
    instances.send_event(settings, inst, [5001, {"eventName": "e", "message": 1}])
    run_instance(settings, inst, lambda: 600_000)
    before = everything_of(settings, inst)
    assert {f"{inst}/output", f"{inst}/log"} <= before["streams"]
    assert f"inputs/{inst}/input/0000000002" in before["objects"]
    assert any(k.startswith(f"channels/{inst}/output/") for k in before["objects"])
    assert before["records"] == ["#", "config", "evin#0000000001", "in#input#0000000001", "in#input#0000000002"]

    # Only the instance's own record going counts: not a MODIFY, nor one of its chunks going.
    ignored = {"Records": [removed(inst, event="MODIFY", number=1), removed(inst, "in#input#1", number=2)]}
    assert cleanup.handle_stream(settings, ignored, LambdaContext()) == {"batchItemFailures": []}
    assert everything_of(settings, inst) == before
    assert cleanup.handle_stream(settings, {"Records": [removed(inst, number=3)]}, LambdaContext()) == {"batchItemFailures": []}
    assert everything_of(settings, inst) == {"streams": set(), "objects": [], "records": []}


def test_cleanup_reports_only_the_records_it_could_not_purge(settings, api, monkeypatch):
    """Powertools' batch utility: one failing record is answered in batchItemFailures, so the stream
    retries it alone; the others are purged and not retried."""
    ended = [ended_instance(settings)[0] for _ in range(3)]
    purge = cleanup.purge_instance

    def flaky(settings, inst_id):
        if inst_id == ended[1]:
            raise ConnectionError("S3 is unreachable")
        purge(settings, inst_id)

    monkeypatch.setattr(cleanup, "purge_instance", flaky)
    event = {"Records": [removed(inst, number=n) for n, inst in enumerate(ended, start=10)]}
    assert cleanup.handle_stream(settings, event, LambdaContext()) == {"batchItemFailures": [{"itemIdentifier": f"{11:021d}"}]}
    assert [everything_of(settings, inst)["records"] == [] for inst in ended] == [True, False, True]


def test_cleanup_lambda_entry_point(settings, api):
    import app as hub_app

    inst, _ = ended_instance(settings)
    assert hub_app.cleanup({"Records": [removed(inst)]}, LambdaContext()) == {"batchItemFailures": []}
    assert everything_of(settings, inst) == {"streams": set(), "objects": [], "records": []}


def test_sweeper_expires_like_ttl_on_the_embedded_hub(settings, monkeypatch):
    inst, item = ended_instance(settings)
    assert sweeper.expire(settings) == []
    monkeypatch.setattr(clock, "now", lambda: item.expires_at + 1)
    assert sweeper.expire(settings) == [inst]
    assert everything_of(settings, inst) == {"streams": set(), "objects": [], "records": []}


def test_delete_sequence_with_running_instances(settings, api, monkeypatch):
    monkeypatch.setattr(invoker, "invoke", lambda _s, inst_id, _engine="lambda", _runtime="": None)  # stays "starting"
    seq_id = sequences.create(settings, package_dir(EXAMPLES / "counter-py"))["id"]
    inst = instances.start(settings, seq_id, {})["id"]
    resp = api.http.delete(f"/api/v1/sequence/{seq_id}", headers={"Content-Type": "application/json"})
    assert resp.status_code == 409 and "still running" in json.loads(resp.body)["error"]
    resp = api.http.delete(f"/api/v1/sequence/{seq_id}", headers={"x-seq-kill-inst": "true"})
    assert resp.status_code == 200
    assert instances.get(settings, inst).status == protocol.COMPLETED
    assert aws.client("s3").list_objects_v2(Bucket=settings.bucket, Prefix="packages/")["KeyCount"] == 0


def test_uncommitted_uploads_expire_on_their_own(settings, api, monkeypatch):
    import requests

    upload = json.loads(api.http.post("/api/v1/sequence/upload", headers={"Content-Type": "application/json"},
                                      body="{}").body)
    requests.put(upload["url"], data=b"half a package")
    assert sweeper.sweep_stale_uploads(settings) == []
    later = clock.now() + sweeper.UPLOAD_MAX_AGE_SECONDS + 1
    monkeypatch.setattr(clock, "now", lambda: later)
    assert sweeper.sweep_stale_uploads(settings) == [f"uploads/{upload['id']}.tar.gz"]
    resp = api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers={"Content-Type": "application/json"},
                         body="{}")
    assert resp.status_code == 404
