"""The stage policies allow every AWS call the code makes, and nothing it does not make.

Every call is recorded (under moto) while the API, the runner and the cleanup do their work, and
attributed to the function that made it by where in the code it came from.
"""

from __future__ import annotations

import fnmatch
import json
import threading
import traceback
from types import SimpleNamespace

import pytest
import requests

from chalicelib import aws, cleanup, invoker, sweeper
from chalicelib.runner import topicio
from chalicelib.runner.service import run_instance
from infra import policies

from .conftest import REAL_INVOKE, api_client
from .helpers import EXAMPLES, ROOT, LambdaContext, make_package, package_dir, py_package

REGION, ACCOUNT = "us-east-1", "123456789012"
_SPECIAL = {("lambda", "Invoke"): "lambda:InvokeFunction", ("s3", "HeadObject"): "s3:GetObject",
            ("s3", "ListObjectsV2"): "s3:ListBucket", ("s3", "DeleteObjects"): "s3:DeleteObject"}
# Granted for AWS to act on the function's behalf, not called by our code.
_SERVICE_USED = {"cleanup": {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                             "dynamodb:ListStreams"},
                 "api": {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"},
                 "runner": {"logs:CreateLogGroup"}, }
_SERVICE_USED["runner"].add("sqs:SendMessage")  # Lambda sends failed async invocations to the queue
_SERVICE_USED["cleanup"].add("sqs:SendMessage")  # …and stream batches that kept failing
for _fn in ("cleanup", "sweeper"):
    _SERVICE_USED.setdefault(_fn, set()).update({"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"})


def _component() -> str:
    files = [frame.filename for frame in traceback.extract_stack()]
    if any("/chalicelib/runner/" in f for f in files):
        return "runner"
    if any(f.endswith("/chalicelib/sweeper.py") for f in files):
        return "sweeper"
    if any(f.endswith("/chalicelib/cleanup.py") for f in files):
        return "cleanup"
    return "api"


def _grants(service: str, op: str, params: dict) -> list[tuple[str, str]]:
    """(IAM action, resource ARN) pairs one call needs."""
    if (service, op) == ("s3", "CopyObject"):
        src = params["CopySource"]
        return [("s3:PutObject", f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"),
                ("s3:GetObject", f"arn:aws:s3:::{src['Bucket']}/{src['Key']}")]
    if (service, op) == ("dynamodb", "TransactWriteItems"):  # IAM checks each action it holds
        return [(f"dynamodb:{kind}Item" if kind != "ConditionCheck" else "dynamodb:ConditionCheckItem",
                 f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{body['TableName']}")
                for item in params["TransactItems"] for kind, body in item.items()]
    action = _SPECIAL.get((service, op), f"{service}:{op}")
    return [(action, r) for r in _resources(service, op, params)]


def _resources(service: str, op: str, params: dict) -> list[str]:
    if service == "dynamodb":
        tables = list(params["RequestItems"]) if "RequestItems" in params else [params["TableName"]]
        return [f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{t}" + (f"/index/{params['IndexName']}" if "IndexName" in params else "")
                for t in tables]
    if service == "s3":
        if op in ("ListObjectsV2", "ListObjects"):
            return [f"arn:aws:s3:::{params['Bucket']}"]
        if op == "DeleteObjects":
            return [f"arn:aws:s3:::{params['Bucket']}/{o['Key']}" for o in params["Delete"]["Objects"]]
        return [f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"]
    if service == "logs":
        group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{params['logGroupName']}"
        return [group if op == "CreateLogStream" else f"{group}:log-stream:{params['logStreamName']}"]
    if service == "lambda":
        return [f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{params['FunctionName']}"]
    raise AssertionError(f"unexpected service {service}")


@pytest.fixture
def recorded(settings):
    """Calls made once ``recording.set()``: (component, IAM action, resource ARN)."""
    calls: list[tuple[str, str, str]] = []
    lock = threading.Lock()
    recording = threading.Event()

    def record(model, params, **_):
        if not recording.is_set():
            return
        service = model.service_model.service_name if hasattr(model, "service_model") else None
        service = model.metadata["endpointPrefix"] if service is None else service
        with lock:
            for action, resource in _grants(service, model.name, params):
                calls.append((_component(), action, resource))

    for service in ("dynamodb", "s3", "logs", "lambda"):
        aws.client(service).meta.events.register("before-parameter-build.*.*",
                                                 lambda params, model, **kw: record(model, params))
    return SimpleNamespace(calls=calls, start=recording.set)


def allowed(doc: dict, action: str, resource: str) -> bool:
    return any(action in st["Action"] and any(fnmatch.fnmatchcase(resource, r) for r in st["Resource"])
               for st in doc["Statement"] if st["Effect"] == "Allow")


def exercise_everything(settings, hub_env, recorder, monkeypatch) -> None:
    """Every route and every runner and cleanup path that talks to AWS."""
    monkeypatch.setattr(invoker, "invoke", REAL_INVOKE)  # starts invoke the runner Lambda, as deployed
    role = aws.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    aws.client("lambda").create_function(FunctionName="sequence-hub-test-runner", Runtime="python3.12",
                                         Role=role, Handler="app.runner", Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})
    api = api_client({**hub_env, "RUNNER_INVOKE_MODE": "lambda", "RUNNER_FUNCTION": "sequence-hub-test-runner"})
    recorder.start()
    octet, js = {"Content-Type": "application/octet-stream"}, {"Content-Type": "application/json"}
    seq = json.loads(api.http.post("/api/v1/sequence", headers=octet, body=package_dir(EXAMPLES / "counter-py")).body)["id"]
    api.http.get("/api/v1/sequences")
    for body in (package_dir(EXAMPLES / "counter-js"), b"not a package"):  # a large-package upload, and a refused one
        upload = json.loads(api.http.post("/api/v1/sequence/upload", headers=js, body="{}").body)
        assert requests.put(upload["url"], data=body).status_code == 200
        api.http.post(f"/api/v1/sequence/{upload['id']}/commit", headers=js, body="{}")
    api.http.get(f"/api/v1/sequence/{seq}")
    emitting = py_package("def run(context, input):\n    context.emit('done', 1)\n")
    emitter = json.loads(api.http.post("/api/v1/sequence", headers=octet, body=emitting).body)["id"]
    body = json.dumps({"args": [1, 2], "appConfig": {"pad": "x" * 5000}})  # start data of its own
    inst = json.loads(api.http.post(f"/api/v1/sequence/{seq}/start", headers=js, body=body).body)["id"]
    events = json.loads(api.http.post(f"/api/v1/sequence/{emitter}/start", headers=js, body="{}").body)["id"]
    run_instance(settings, events, lambda: 600_000)
    api.http.post(f"/api/v1/instance/{inst}/input", headers={"Content-Type": "text/plain", "x-end-stream": "false"},
                  body=b"x")
    api.http.post(f"/api/v1/instance/{inst}/input", headers={"Content-Type": "text/plain"},
                  body=b"y" * (300 * 1024))  # a chunk large enough for S3
    api.http.post(f"/api/v1/instance/{inst}/_event", headers=js, body='[5001, {"eventName": "e"}]')
    run_instance(settings, inst, lambda: 600_000)
    for channel in ("output", "stdout", "stderr", "log"):
        api.http.get(f"/api/v1/instance/{inst}/{channel}", headers={"Accept": "*/*"})
    api.http.get(f"/api/v1/instance/{inst}/event/e?wait=0")
    api.http.get("/api/v1/instances")
    second = json.loads(api.http.post(f"/api/v1/sequence/{seq}/start", headers=js, body="{}").body)["id"]
    api.http.post(f"/api/v1/instance/{second}/_kill", headers=js, body="{}")
    third = json.loads(api.http.post(f"/api/v1/sequence/{emitter}/start", headers=js,  # never runs: settled
                                     body=json.dumps({"args": ["x" * 5000]})).body)["id"]
    api.http.get("/api/v1/instances")
    exercise_topics(settings, api)
    api.http.delete(f"/api/v1/sequence/{seq}", headers={"x-seq-kill-inst": "true"})
    cleanup.handle_stream(settings, {"Records": [{"eventName": "REMOVE", "dynamodb": {"Keys": {
        "pk": {"S": f"inst#{inst}"}, "sk": {"S": "#"}}, "SequenceNumber": "1"}}]}, LambdaContext())
    sweeper.sweep(settings)
    sweeper.settle(settings)
    from chalicelib import clock

    real_now = clock.now
    try:  # everything past its time: settle and expire for real
        clock.now = lambda: real_now() + 10**6
        sweeper.sweep(settings)
        sweeper.sweep_stale_uploads(settings, max_age=0)
    finally:
        clock.now = real_now
    assert third


def exercise_topics(settings, api) -> None:
    """Topics through the API (a large chunk, a refused one) and through runners: a producer with a
    large output, one whose declared type the topic refuses, and a consumer."""
    octet, js = {"Content-Type": "application/octet-stream"}, {"Content-Type": "application/json"}
    text = {"Content-Type": "text/plain"}
    api.http.post("/api/v1/topic/names", headers=text, body=b"Ada\n")
    api.http.post("/api/v1/topic/names", headers=text, body=b"x" * (300 * 1024) + b"\n")  # to S3
    api.http.post("/api/v1/topic/names", headers=octet, body=b"y" * (300 * 1024))  # 415: its S3 copy goes
    api.http.get("/api/v1/topic/names?cursor=&wait=0", headers={"Accept": "*/*"})
    api.http.get("/api/v1/topics")
    api.http.post("/api/v1/topics", headers=js, body=json.dumps({"id": "empty", "content-type": "text/plain"}))
    api.http.delete("/api/v1/topics/empty")
    producer = py_package("def run(context, input):\n    return 'z' * 300000\n")
    typed = make_package({"package.json": {"name": "typed", "main": "main.py", "engines": {"python3": "3.12"},
                                           "provides": {"topic": "names", "contentType": "application/octet-stream"}},
                          "main.py": "def run(context, input):\n    return 'z' * 300000\n"})
    consumer = py_package("async def run(context, input):\n    async for line in input:\n        return line\n")
    started = []
    for package, options in ((producer, {"outputTopic": "names"}), (typed, {}), (consumer, {"inputTopic": "names"})):
        seq_id = json.loads(api.http.post("/api/v1/sequence", headers=octet, body=package).body)["id"]
        started.append(json.loads(api.http.post(f"/api/v1/sequence/{seq_id}/start", headers=js,
                                                body=json.dumps(options)).body)["id"])
    for inst_id in started:
        run_instance(settings, inst_id, lambda: 600_000)
    # A runner's large write the topic refuses (its flushes above may all have been small).
    refused: list[str] = []
    topicio.TopicOutput(settings, "names", "application/octet-stream", lambda *line: refused.append(line[1])).write(
        b"z" * (300 * 1024))
    assert "Acceptable Content-Type for names is text/plain" in refused[0]


def test_every_call_is_allowed_and_every_grant_is_used(settings, hub_env, recorded, monkeypatch):
    exercise_everything(settings, hub_env, recorded, monkeypatch)
    docs = policies.policies("test")
    by_component = {"api": docs["policy-test.json"], "runner": docs["policy-test-runner.json"],
                    "cleanup": docs["policy-test-cleanup.json"], "sweeper": docs["policy-test-sweeper.json"]}
    denied = [c for c in recorded.calls if not allowed(by_component[c[0]], c[1], c[2])]
    assert denied == [], sorted(set(denied))
    for component, doc in by_component.items():
        granted = {a for st in doc["Statement"] for a in st["Action"]}
        used = {action for comp, action, _ in recorded.calls if comp == component} | _SERVICE_USED.get(component, set())
        assert granted - used == set(), f"{component} is granted actions it never uses"


def test_no_wildcard_actions_or_resources():
    for stage in ("dev", "prod"):
        docs = {**policies.policies(stage, fargate=True), "task role": policies.task_policy(stage)}
        for name, doc in docs.items():
            for st in doc["Statement"]:
                assert all("*" not in a for a in st["Action"]), name
                if st["Resource"] == ["*"]:
                    assert len(st["Action"]) == 1 and st["Action"][0] in policies.UNSCOPED, (name, st)
                    key = policies.UNSCOPED[st["Action"][0]]
                    assert key is None or key in st["Condition"]["StringEquals"], (name, st)
                    continue
                assert all(r != "*" and not r.startswith("arn:aws:*") for r in st["Resource"]), name


def test_deployed_policies_name_exact_resources_and_the_config_uses_them():
    known = {"account": "123456789012", "region": "eu-west-1", "bucket": "sequence-hub-prod-123456789012-eu-west-1",
             "queue": "arn:aws:sqs:eu-west-1:123456789012:sequence-hub-prod-failures"}
    for name, doc in policies.policies("prod", **known).items():
        for st in doc["Statement"]:
            for arn in st["Resource"]:
                if arn.startswith("arn:aws:s3:::"):
                    assert arn.split(":::")[1].split("/")[0] == known["bucket"], (name, arn)
                elif arn.startswith("arn:aws:apigateway:"):  # API Gateway's ARNs name no account
                    assert arn.split(":")[3:5] == ["eu-west-1", ""], (name, arn)
                elif arn == "*":
                    assert st["Action"][0] in policies.UNSCOPED, (name, st)
                else:
                    assert arn.split(":")[3:5] == ["eu-west-1", "123456789012"], (name, arn)
    api_logs = policies.policies("prod", **known)["policy-prod.json"]["Statement"][-1]["Resource"]
    assert "arn:aws:logs:eu-west-1:123456789012:log-group:/aws/lambda/sequence-hub-prod" in api_logs
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())
    assert config["autogen_policy"] is False
    for stage in ("dev", "prod"):
        functions = config["stages"][stage]["lambda_functions"]
        assert config["stages"][stage]["iam_policy_file"] == f"policy-{stage}.json"
        for fn in ("runner", "cleanup", "sweeper", "wiring"):
            assert functions[fn]["iam_policy_file"] == f"policy-{stage}-{fn}.json"
