"""Powertools as its docs show it (#18): every function's logs carry its Lambda context, and the
hub sends CloudWatch metrics (EMF) for instance starts, ends by status, durations and package sizes;
the embedded hub, which has no CloudWatch, sends none."""

from __future__ import annotations

import io
import json

import pytest

from chalicelib import observability
from chalicelib.observability import logger

from .conftest import api_client
from .helpers import LambdaContext, py_package

JS = {"Content-Type": "application/json"}
PACKAGE = {"Content-Type": "application/octet-stream"}


def emf(stdout: str) -> list[dict]:
    """The EMF documents printed: one JSON object per line with an ``_aws`` key."""
    return [doc for line in stdout.splitlines() if line.startswith("{") and "_aws" in (doc := json.loads(line))]


def metric(docs: list[dict], name: str) -> list[dict]:
    """The documents that carry ``name``, each as {values, unit, dimensions: {name: value}}."""
    found = []
    for doc in docs:
        for directive in doc["_aws"]["CloudWatchMetrics"]:
            assert directive["Namespace"] == "SequenceHub"
            for m in directive["Metrics"]:
                if m["Name"] == name:
                    values = doc[name] if isinstance(doc[name], list) else [doc[name]]
                    found.append({"values": values, "unit": m["Unit"],
                                  "dimensions": {d: doc[d] for d in directive["Dimensions"][0]}})
    return found


@pytest.fixture
def measured(hub_env, monkeypatch):
    """The API as deployed: metrics on (the tests' hub environment, like the embedded hub's, has them off)."""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    return api_client({k: v for k, v in hub_env.items() if k != "POWERTOOLS_METRICS_DISABLED"})


def test_starts_ends_durations_and_package_sizes_are_sent_as_emf(measured, capsys):
    body = py_package("def run(context, input, fail):\n    if fail:\n        raise ValueError('no')\n    return 'ok'\n")
    seq = json.loads(measured.http.post("/api/v1/sequence", headers=PACKAGE, body=body).body)["id"]
    for fail in (False, True):  # the test hub runs each instance to its end inside the start request
        assert measured.http.post(f"/api/v1/sequence/{seq}/start", headers=JS, body=json.dumps({"args": [fail]})).status_code == 200
    docs = emf(capsys.readouterr().out)
    dims = {"service": "sequence-hub", "stage": "test"}
    assert metric(docs, "PackageBytes") == [{"values": [float(len(body))], "unit": "Bytes", "dimensions": dims}]
    assert [m["values"] for m in metric(docs, "InstanceStarted")] == [[1.0], [1.0]]
    assert {m["dimensions"]["status"] for m in metric(docs, "InstanceEnded")} == {"completed", "errored"}
    durations = metric(docs, "InstanceDuration")
    assert [d["unit"] for d in durations] == ["Milliseconds"] * 2 and all(d["values"][0] > 0 for d in durations)
    assert {d["dimensions"]["status"] for d in durations} == {"completed", "errored"}


def test_a_request_that_fails_inside_the_hub_is_counted(measured, capsys, monkeypatch):
    from chalicelib import sequences

    def broken(*_args, **_kwargs):
        raise RuntimeError("the table is gone")

    monkeypatch.setattr(sequences, "list_page", broken)
    resp = measured.http.get("/api/v1/sequences")
    assert resp.status_code == 500 and json.loads(resp.body) == {"error": "internal error; see the hub's logs"}
    assert [m["values"] for m in metric(emf(capsys.readouterr().out), "RequestFailed")] == [[1.0]]


def test_the_embedded_hub_sends_no_metrics(api, capsys, settings):
    seq = json.loads(api.http.post("/api/v1/sequence", headers=PACKAGE, body=py_package("def run(c, i):\n    return 1\n")).body)["id"]
    api.http.post(f"/api/v1/sequence/{seq}/start", headers=JS, body="{}")
    assert emf(capsys.readouterr().out) == []
    assert not observability.metrics_enabled() and observability.metrics.metric_set == {}


def test_function_logs_carry_the_lambda_context(settings, api, monkeypatch):
    """The cleanup's log lines name its request id and whether it was a cold start."""
    import app as hub_app
    from chalicelib import cleanup

    lines = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", lines)
    monkeypatch.setattr(cleanup, "purge_instance", lambda _settings, inst_id, _engine="lambda": logger.info(f"purging {inst_id}"))
    context = LambdaContext()
    record = {"eventName": "REMOVE", "dynamodb": {"Keys": {"pk": {"S": "inst#abc"}, "sk": {"S": "#"}}, "SequenceNumber": "1"}}
    level = logger.log_level
    logger.setLevel("INFO")
    try:
        assert hub_app.cleanup({"Records": [record]}, context) == {"batchItemFailures": []}
    finally:
        logger.setLevel(level)
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    purged = [line for line in logged if line["message"] == "purging abc"]
    assert len(purged) == 1
    assert purged[0]["function_request_id"] == context.aws_request_id
    assert purged[0]["function_name"] == context.function_name and "cold_start" in purged[0]
