"""AWS's real limits, each with a test that plays the real service's part where moto does not:
Chalice's deploy validation, Lambda's 6 MB response (after base64), API Gateway's binary rule, reads
that never depend on CloudWatch, S3's 403 for a missing key, bounded uploads, a runner whose host
cannot start, and one deadline for the runner's end."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from chalicelib import aws, channels, instances, invoker, protocol, sequences
from chalicelib.runner.service import run_instance

from .helpers import EXAMPLES, ROOT, LambdaContext, js_package, package_dir, py_package

LAMBDA_RESPONSE_LIMIT = 6 * 1024 * 1024  # bytes of the JSON document a function returns
JSON = {"Content-Type": "application/json"}


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_chalice_deploy_validation_passes(stage, monkeypatch):
    """What `chalice deploy` checks before any AWS call (`chalice package` checks less)."""
    from chalice.cli.factory import CLIFactory
    from chalice.deploy.validate import validate_configuration

    monkeypatch.chdir(ROOT)
    saved = dict(os.environ)  # Chalice loads the app with the stage's environment put into os.environ
    try:
        factory = CLIFactory(project_dir=str(ROOT))
        config = factory.create_config_obj(chalice_stage_name=stage)
        validate_configuration(config)  # raises on what deploy would refuse
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert config.lambda_python_version == "python3.12"
    assert config.chalice_app.api.binary_types == ["*/*"]


def _proxy_event(path: str, resource: str, params: dict, query: dict | None, accept: str | None) -> dict:
    headers = {"accept": accept} if accept is not None else {}
    return {"resource": resource, "path": path, "httpMethod": "GET", "headers": headers,
            "multiValueHeaders": {k: [v] for k, v in headers.items()}, "queryStringParameters": query,
            "multiValueQueryStringParameters": {k: [v] for k, v in (query or {}).items()} or None,
            "pathParameters": params, "stageVariables": None, "body": None, "isBase64Encoded": False,
            "requestContext": {"resourcePath": resource, "httpMethod": "GET", "requestId": "r", "path": path,
                               "stage": "api", "identity": {"sourceIp": "127.0.0.1"}}}


def lambda_response(path: str, resource: str, params: dict, query: dict | None = None,
                    accept: str | None = "*/*") -> dict:
    """The API function's response document, as Lambda hands it to API Gateway."""
    import app as hub_app

    context = LambdaContext(function_name="sequence-hub-test", memory_limit_in_mb=512, remaining_ms=30_000)
    return hub_app.app(_proxy_event(path, resource, params, query, accept), context)


def through_api_gateway(response: dict, accept: str | None, binary_media_types: list[str]) -> bytes:
    """What the client receives: API Gateway decodes a base64 body only when ``*/*`` is a binary media
    type or the request's *first* Accept value is one; otherwise the client gets the base64 text."""
    body = response["body"]
    if not response.get("isBase64Encoded"):
        return body.encode() if isinstance(body, str) else body
    first = (accept or "").split(",")[0].split(";")[0].strip()
    if "*/*" in binary_media_types or first in binary_media_types:
        return base64.b64decode(body)
    return body.encode()


@pytest.fixture
def ended_binary_instance(settings, monkeypatch) -> tuple[str, bytes]:
    """An instance whose output is 9 MiB of incompressible bytes: the worst case for base64."""
    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)
    source = ("import os\n\nasync def run(context, input):\n"
              "    for _ in range(9):\n        yield os.urandom(1024 * 1024)\n")
    inst = instances.start(settings, sequences.create(settings, py_package(source))["id"], {})["id"]
    assert run_instance(settings, inst, lambda: 600_000) == protocol.COMPLETED
    data = channels.read(settings.bucket, inst, "output", 0, 0, 100, max_bytes=1 << 30)[0]
    assert len(data) == 9 * 1024 * 1024
    return inst, data


def test_channel_pages_fit_a_lambda_response_after_base64(settings, hub_env, ended_binary_instance, monkeypatch):
    inst, data = ended_binary_instance
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    got, cursor, pages = b"", "", 0
    resource = "/api/v1/instance/{inst_id}/output"
    while True:
        response = lambda_response(f"/api/v1/instance/{inst}/output", resource, {"inst_id": inst},
                                   {"cursor": cursor, "wait": "0"})
        assert response["statusCode"] == 200, response["body"]
        assert len(json.dumps(response)) <= LAMBDA_RESPONSE_LIMIT  # what Lambda would refuse with a 502
        got += through_api_gateway(response, "*/*", ["*/*"])
        cursor, pages = response["headers"]["X-Next-Cursor"], pages + 1
        if response["headers"]["X-Channel-Ended"] == "true":
            break
    assert got == data and pages == 3  # 4 MiB, 4 MiB, 1 MiB: the cursor moves past every page


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "text/plain", "application/octet-stream",
                                    "text/html,application/xhtml+xml,*/*;q=0.8"])
def test_every_accept_receives_the_exact_bytes_through_api_gateway(settings, api, accept):
    import app as hub_app

    binary = bytes([255, 0, 1, 128]) + "żółw\n".encode()
    inst = instances.start(settings, sequences.create(settings, py_package(
        f"def run(context, input):\n    return [{binary!r}]\n"))["id"], {})["id"]
    types = hub_app.app.api.binary_types
    output = lambda_response(f"/api/v1/instance/{inst}/output", "/api/v1/instance/{inst_id}/output",
                             {"inst_id": inst}, None, accept)
    assert output["statusCode"] == 200 and through_api_gateway(output, accept, types) == binary
    info = lambda_response(f"/api/v1/instance/{inst}", "/api/v1/instance/{inst_id}", {"inst_id": inst}, None, accept)
    assert json.loads(through_api_gateway(info, accept, types))["status"] == "completed"
    missing = lambda_response("/api/v1/instance/nope", "/api/v1/instance/{inst_id}", {"inst_id": "nope"}, None, accept)
    assert missing["statusCode"] == 404
    assert json.loads(through_api_gateway(missing, accept, types)) == {"error": "Instance nope not found"}


def test_reads_never_call_getlogevents_and_hold_one_page(settings, ended_binary_instance):
    """CloudWatch Logs may show events later than it accepted them, pages hold 1 MB at most, and
    GetLogEvents allows ~25 calls a second per account: readers read S3 segments, by range, a page
    at a time, and need CloudWatch not at all."""
    inst, data = ended_binary_instance
    logs = aws.client("logs")
    for stream in logs.describe_log_streams(logGroupName=settings.log_group)["logStreams"]:
        logs.delete_log_stream(logGroupName=settings.log_group, logStreamName=stream["logStreamName"])  # not caught up
    asked: list[dict] = []
    aws.client("s3").meta.events.register("provide-client-params.s3.GetObject", lambda params, **_: asked.append(params))
    logs.meta.events.register("provide-client-params.logs.*", lambda **_: pytest.fail("a reader called CloudWatch"))
    page = instances.read_channel(settings, inst, "output", None, 0, until_end=True)
    assert page["data"] == data[:channels.MAX_PAGE_BYTES] and not page["ended"]
    assert all(int(p["Range"].split("-")[1]) - int(p["Range"].split("=")[1].split("-")[0]) < channels.MAX_PAGE_BYTES
               for p in asked)


def test_a_missing_upload_is_404_even_when_s3_answers_403(settings, api, monkeypatch):
    """Without s3:ListBucket (the API's policy has none) S3 answers 403 for a key that does not exist."""
    upload = json.loads(api.http.post("/api/v1/sequence/upload", headers=JSON, body="{}").body)
    s3 = aws.client("s3")
    real = s3.head_object

    def as_aws_would(**kwargs: Any) -> Any:
        try:
            return real(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("404", "NoSuchKey"):
                raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject") from None
            raise

    monkeypatch.setattr(s3, "head_object", as_aws_would)
    resp = api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers=JSON, body="{}")
    assert resp.status_code == 404 and "not found" in json.loads(resp.body)["error"]


def test_an_oversized_upload_is_refused_before_any_download(settings, api, monkeypatch):
    monkeypatch.setenv("SEQHUB_MAX_UPLOAD_BYTES", "1000")
    upload = json.loads(api.http.post("/api/v1/sequence/upload", headers=JSON, body="{}").body)
    assert requests.put(upload["url"], data=os.urandom(5000)).status_code == 200
    downloads = []
    aws.client("s3").meta.events.register("provide-client-params.s3.GetObject", lambda params, **_: downloads.append(params))
    resp = api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers=JSON, body="{}")
    assert resp.status_code == 413 and "SEQHUB_MAX_UPLOAD_BYTES" in json.loads(resp.body)["error"]
    assert downloads == []
    assert aws.client("s3").list_objects_v2(Bucket=settings.bucket).get("KeyCount") == 0  # nothing kept


def test_a_commit_is_idempotent(settings, api):
    upload = json.loads(api.http.post("/api/v1/sequence/upload", headers=JSON, body="{}").body)
    assert requests.put(upload["url"], data=package_dir(EXAMPLES / "counter-py")).status_code == 200
    first = api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers=JSON, body="{}")
    again = api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers=JSON, body="{}")
    assert first.status_code == again.status_code == 200
    assert json.loads(first.body) == json.loads(again.body) == {"id": upload["id"]}


def test_a_host_that_cannot_start_ends_errored_with_a_reason(settings, monkeypatch, tmp_path):
    """A Node layer built for another architecture: the kernel refuses to execute it."""
    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)
    foreign = tmp_path / "node"
    foreign.write_bytes(b"\x7fELF\x02\x01\x01" + os.urandom(200))
    foreign.chmod(foreign.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("SEQHUB_NODE", str(foreign))
    inst = instances.start(settings, sequences.create(settings, js_package("module.exports = () => 1;"))["id"], {})["id"]
    assert run_instance(settings, inst, lambda: 600_000) == protocol.ERRORED
    terminated = instances.info(settings, inst)["terminated"]
    assert terminated["exitcode"] == 20 and "could not start" in terminated["reason"]


def test_a_process_holding_a_pipe_cannot_push_the_end_past_the_deadline(settings, monkeypatch):
    """The host exits, a detached grandchild keeps its stdout open: the runner still records the
    end before the Lambda deadline, with the output flushed."""
    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)
    source = ("import os, subprocess, sys\n\n"
              "def run(context, input):\n"
              "    subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'], start_new_session=True)\n"
              "    return ['done\\n']\n")
    inst = instances.start(settings, sequences.create(settings, py_package(source))["id"], {})["id"]
    deadline = time.monotonic() + 12  # the runner stops the instance 5 s before it
    remaining = []

    def remaining_ms() -> int:
        remaining.append(int((deadline - time.monotonic()) * 1000))
        return remaining[-1]

    assert run_instance(settings, inst, remaining_ms) == protocol.COMPLETED
    assert remaining_ms() > 0  # recorded before the deadline
    assert instances.read_channel(settings, inst, "output", None, 0, until_end=True)["data"] == b"done\n"


def test_presigned_uploads_are_signed_with_sigv4_at_the_buckets_regional_endpoint(monkeypatch):
    """botocore presigns S3 URLs with SigV2 at the global endpoint unless told otherwise; S3 refuses
    SigV2 for buckets made since 2020 and in regions opened since 2019."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key, value in {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
                       "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(key, value)
    aws.reset()
    try:
        url = aws.client("s3").generate_presigned_url("put_object", Params={"Bucket": "sequence-hub-dev-1", "Key": "k"})
    finally:
        aws.reset()
    assert url.startswith("https://sequence-hub-dev-1.s3.eu-west-1.amazonaws.com/k?")
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in url and "eu-west-1%2Fs3%2Faws4_request" in url
