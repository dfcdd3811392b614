"""Retention and expiry, exact to the second, and the cleanup that leaves nothing behind."""

from __future__ import annotations

import json

from chalicelib import aws, clock, cleanup, instances, invoker, models, sequences
from chalicelib.runner.service import run_instance
from chalicelib.store import Store

from .helpers import EXAMPLES, package_dir, py_package


def ended_instance(settings) -> tuple[str, dict]:
    seq_id = sequences.create(settings, py_package(
        "def run(context, input):\n    print('hi')\n    return 'out'\n"))["id"]
    inst = instances.start(settings, seq_id, {})["id"]  # inline: runs to the end
    return inst, Store(settings.table).get_instance(inst)


def test_readable_until_retention_then_404_everywhere(settings, api, monkeypatch):
    inst, item = ended_instance(settings)
    assert item["expires_at"] == int(item["ended"] + settings.retention_seconds)
    routes = [f"/api/v1/instance/{inst}", f"/api/v1/instance/{inst}/output", f"/api/v1/instance/{inst}/log"]
    monkeypatch.setattr(clock, "now", lambda: item["expires_at"] - 1)
    for route in routes:
        assert api.http.get(route, headers={"Accept": "*/*"}).status_code == 200, route
    assert [i["id"] for i in json.loads(api.http.get("/api/v1/instances").body)] == [inst]
    monkeypatch.setattr(clock, "now", lambda: item["expires_at"] + 1)
    for route in routes:
        resp = api.http.get(route, headers={"Accept": "*/*"})
        assert resp.status_code == 404 and json.loads(resp.body) == {"error": f"Instance {inst} not found"}
    assert json.loads(api.http.get("/api/v1/instances").body) == []


def test_cleanup_handler_deletes_streams_and_inputs_on_remove(settings, hub_env, monkeypatch):
    started = []
    monkeypatch.setattr(invoker, "invoke", lambda _s, inst_id: started.append(inst_id))
    seq_id = sequences.create(settings, package_dir(EXAMPLES / "counter-py"))["id"]
    inst = instances.start(settings, seq_id, {"args": [1, 3]})["id"]
    instances.append_input(settings, inst, "input", b"data", "text/plain", end=True)
    run_instance(settings, inst, lambda: 600_000)
    logs, s3 = aws.client("logs"), aws.client("s3")
    streams = logs.describe_log_streams(logGroupName=settings.log_group)["logStreams"]
    assert {s["logStreamName"] for s in streams} >= {f"{inst}/output", f"{inst}/log"}
    assert s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"inputs/{inst}/")["KeyCount"] == 1

    record = {"eventName": "REMOVE", "dynamodb": {"OldImage": {
        "pk": {"S": f"instance#{inst}"}, "kind": {"S": "instance"}, "id": {"S": inst}}}}
    modify = {"eventName": "MODIFY", "dynamodb": {"OldImage": record["dynamodb"]["OldImage"]}}
    assert cleanup.handle_stream(settings, [modify, record]) == [inst]
    assert logs.describe_log_streams(logGroupName=settings.log_group)["logStreams"] == []
    assert s3.list_objects_v2(Bucket=settings.bucket, Prefix=f"inputs/{inst}/")["KeyCount"] == 0


def test_cleanup_lambda_entry_point(settings, api):
    import app as hub_app

    inst, _ = ended_instance(settings)
    event = {"Records": [{"eventName": "REMOVE", "dynamodb": {"OldImage": {
        "kind": {"S": "instance"}, "id": {"S": inst}}}}]}
    assert hub_app.cleanup(event, None) == {"purged": [inst]}


def test_sweeper_expires_like_ttl_on_the_embedded_hub(settings, monkeypatch):
    inst, item = ended_instance(settings)
    assert cleanup.sweep_expired(settings) == []
    monkeypatch.setattr(clock, "now", lambda: item["expires_at"] + 1)
    assert cleanup.sweep_expired(settings) == [inst]
    assert Store(settings.table).get_instance(inst) is None
    assert aws.client("logs").describe_log_streams(logGroupName=settings.log_group)["logStreams"] == []


def test_delete_sequence_with_running_instances(settings, api, monkeypatch):
    monkeypatch.setattr(invoker, "invoke", lambda _s, inst_id: None)  # stays "starting"
    seq_id = sequences.create(settings, package_dir(EXAMPLES / "counter-py"))["id"]
    inst = instances.start(settings, seq_id, {})["id"]
    resp = api.http.delete(f"/api/v1/sequence/{seq_id}", headers={"Content-Type": "application/json"})
    assert resp.status_code == 409 and "still running" in json.loads(resp.body)["error"]
    resp = api.http.delete(f"/api/v1/sequence/{seq_id}", headers={"x-seq-kill-inst": "true"})
    assert resp.status_code == 200
    assert instances.get_item(settings, inst)["status"] == models.COMPLETED
    assert aws.client("s3").list_objects_v2(Bucket=settings.bucket, Prefix="packages/")["KeyCount"] == 0


def test_uncommitted_uploads_expire_on_their_own(settings, api, monkeypatch):
    import requests

    upload = json.loads(api.http.post("/api/v1/sequence/upload", headers={"Content-Type": "application/json"},
                                      body="{}").body)
    requests.put(upload["url"], data=b"half a package")
    assert cleanup.sweep_stale_uploads(settings) == []
    later = clock.now() + cleanup.UPLOAD_MAX_AGE_SECONDS + 1
    monkeypatch.setattr(clock, "now", lambda: later)
    assert cleanup.sweep_stale_uploads(settings) == [f"uploads/{upload['id']}.tar.gz"]
    resp = api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers={"Content-Type": "application/json"},
                         body="{}")
    assert resp.status_code == 404
