"""infra/wire.py against the template's stack in moto: env wiring and the after-deploy settings."""

from __future__ import annotations

import json
import shutil

import pytest

from chalicelib import aws, wiring
from chalicelib.sweeper import START_TIMEOUT_SECONDS
from infra import wire

from .helpers import ROOT, LambdaContext

STACK = "sequence-hub-local-test"  # what the hub_env fixture provisioned


def test_env_step_writes_the_stack_outputs_into_the_stage(hub_env, tmp_path):
    config = tmp_path / "config.json"
    shutil.copy(ROOT / ".chalice" / "config.json", config)
    env = wire.wire_env("test", STACK, config_path=config)
    stage = json.loads(config.read_text())["stages"]["test"]
    assert stage["environment_variables"] == env
    assert env == {"SEQHUB_TABLE": hub_env["SEQHUB_TABLE"], "SEQHUB_BUCKET": hub_env["SEQHUB_BUCKET"],
                   "SEQHUB_LOG_GROUP": hub_env["SEQHUB_LOG_GROUP"], "RUNNER_FUNCTION": "sequence-hub-test-runner",
                   "SEQHUB_STAGE": "test"}
    assert stage["lambda_functions"]["runner"]["iam_policy_file"] == "policy-test-runner.json"
    outputs = wire.stack_outputs(STACK)  # and what the wiring function keeps the stage to
    assert stage["lambda_functions"]["wiring"] == {
        "iam_policy_file": "policy-test-wiring.json",
        "environment_variables": {"SEQHUB_TABLE_STREAM": outputs["TableStreamArn"],
                                  "SEQHUB_FAILURE_QUEUE": outputs["FailureQueueArn"], "SEQHUB_RUNNER_TMP_MB": "2048",
                                  "SEQHUB_API_STAGE": "api"}}


@pytest.fixture
def bare_deploy(hub_env, tmp_path, monkeypatch):
    """What a literal `chalice deploy` leaves after `make setup`: the stage's config and the functions,
    the API with a method and the permission Chalice gives API Gateway, and nothing else. moto keeps
    no EphemeralStorage on UpdateFunctionConfiguration (Lambda does): here it keeps it."""
    from moto.awslambda.models import LambdaFunction

    from infra.rehearse import keeping_ephemeral_storage

    monkeypatch.setattr(LambdaFunction, "update_configuration",
                        keeping_ephemeral_storage(LambdaFunction.update_configuration))
    config = tmp_path / "config.json"
    shutil.copy(ROOT / ".chalice" / "config.json", config)
    wire.wire_env("test", STACK, config_path=config, ephemeral_mb=4096)
    lam = aws.client("lambda")
    role = aws.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    resources = []
    for fn in ("", "-runner", "-cleanup", "-wiring"):
        arn = lam.create_function(FunctionName=f"sequence-hub-test{fn}", Runtime="python3.12", Role=role,
                                  Handler="app.app", Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})["FunctionArn"]
        resources.append({"name": fn.strip("-") or "api_handler", "resource_type": "lambda_function", "lambda_arn": arn})
    apigw = aws.client("apigateway")
    rest_api = apigw.create_rest_api(name="sequence-hub")["id"]
    root = apigw.get_resources(restApiId=rest_api)["items"][0]["id"]  # a method, as chalice deploys
    apigw.put_method(restApiId=rest_api, resourceId=root, httpMethod="GET", authorizationType="AWS_IAM")
    apigw.put_integration(restApiId=rest_api, resourceId=root, httpMethod="GET", type="MOCK")
    lam.add_permission(FunctionName="sequence-hub-test", StatementId="chalice", Action="lambda:InvokeFunction",
                       Principal="apigateway.amazonaws.com",
                       SourceArn=f"arn:aws:execute-api:us-east-1:123456789012:{rest_api}/*")
    resources.append({"name": "rest_api", "resource_type": "rest_api", "rest_api_id": rest_api})
    (tmp_path / "test.json").write_text(json.dumps({"resources": resources}))
    return {"config": config, "deployed": tmp_path, "rest_api": rest_api}


def _wired_as_documented(rest_api: str) -> None:
    lam, apigw = aws.client("lambda"), aws.client("apigateway")
    invoke_config = lam.get_function_event_invoke_config(FunctionName="sequence-hub-test-runner")
    assert invoke_config["MaximumRetryAttempts"] == 0
    assert invoke_config["MaximumEventAgeInSeconds"] == START_TIMEOUT_SECONDS
    assert lam.get_function_configuration(FunctionName="sequence-hub-test-runner")["EphemeralStorage"]["Size"] == 4096
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX"):
        response = apigw.get_gateway_response(restApiId=rest_api, responseType=kind)
        assert response["responseTemplates"] == {"application/json": wiring.GATEWAY_ERROR_TEMPLATE}
    too_large = apigw.get_gateway_response(restApiId=rest_api, responseType="REQUEST_TOO_LARGE")
    assert "si seq send" in json.loads(too_large["responseTemplates"]["application/json"])["error"]
    mappings = lam.list_event_source_mappings(FunctionName="sequence-hub-test-cleanup")["EventSourceMappings"]
    assert len(mappings) == 1 and "/stream/" in mappings[0]["EventSourceArn"]
    assert mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # the cleanup reports failures per record
    assert json.loads(mappings[0]["FilterCriteria"]["Filters"][0]["Pattern"]) == wiring.STREAM_FILTER


def _scheduled_run(app) -> dict:
    """The wiring function as EventBridge's schedule invokes it."""
    event = {"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
             "account": "123456789012", "time": "2026-12-02T10:00:00Z", "region": "us-east-1",
             "resources": ["arn:aws:events:us-east-1:123456789012:rule/sequence-hub-test-wiring-event"], "detail": {}}
    result: dict = app.wiring(event, LambdaContext())
    return result


def _wiring_settings(deploy: dict):
    """The wiring function's settings, from the environment Chalice gives it on the stage."""
    from chalicelib import config

    return config.load_wiring(wire.stage_env("test", "wiring", deploy["config"]))


def _as_the_wiring_function(monkeypatch, deploy: dict) -> None:
    """This process's environment: the one Chalice gives the wiring function on the stage."""
    for name, value in wire.stage_env("test", "wiring", deploy["config"]).items():
        monkeypatch.setenv(name, value)


def test_after_deploy_sets_no_retries_tmp_size_the_expiry_stream_and_json_errors(bare_deploy):
    first = wire.after_deploy("test", bare_deploy["config"], bare_deploy["deployed"])["changed"]
    assert len(first) == 4, first
    _wired_as_documented(bare_deploy["rest_api"])
    assert wire.after_deploy("test", bare_deploy["config"], bare_deploy["deployed"])["changed"] == []  # idempotent


def test_the_wiring_function_completes_a_bare_chalice_deploy_and_then_only_reads(bare_deploy, monkeypatch, calls):
    """The stage's scheduled `wiring` function, run with the environment Chalice gives it, makes a
    bare deploy whole and says so in its log; once it is, a run makes five reads and no write."""
    import app

    _as_the_wiring_function(monkeypatch, bare_deploy)
    warned: list[str] = []
    monkeypatch.setattr(app.logger, "warning", lambda message, *_, **__: warned.append(message))
    changed = _scheduled_run(app)["changed"]
    assert len(changed) == 4, changed  # invocation, /tmp, the stream mapping, the error bodies
    assert len(warned) == 1 and all(what in warned[0] for what in changed)
    _wired_as_documented(bare_deploy["rest_api"])
    again: list[dict] = []
    made, _ = calls.of(lambda: again.append(_scheduled_run(app)))
    assert again == [{"changed": []}]
    assert len(warned) == 1  # nothing to say
    assert made == {("lambda", "GetFunctionConfiguration"): 1, ("lambda", "GetFunctionEventInvokeConfig"): 1,
                    ("apigateway", "GetGatewayResponses"): 1, ("lambda", "GetPolicy"): 1,
                    ("lambda", "ListEventSourceMappings"): 1}


def test_the_wiring_function_restores_what_a_later_deploy_reset(bare_deploy, monkeypatch):
    """Chalice's API update replaces the API's definition, and with it API Gateway's error bodies: the
    next run puts them back (and deploys them), touching nothing else."""
    import app

    _as_the_wiring_function(monkeypatch, bare_deploy)
    _scheduled_run(app)
    apigw = aws.client("apigateway")
    apigw.delete_gateway_response(restApiId=bare_deploy["rest_api"], responseType="DEFAULT_4XX")
    deployments = len(apigw.get_deployments(restApiId=bare_deploy["rest_api"])["items"])
    assert _scheduled_run(app) == {"changed": ["API Gateway's own errors as JSON (DEFAULT_4XX)"]}
    assert len(apigw.get_deployments(restApiId=bare_deploy["rest_api"])["items"]) == deployments + 1
    _wired_as_documented(bare_deploy["rest_api"])


def test_the_wiring_function_waits_for_the_api_and_refuses_a_stage_without_setup(bare_deploy, monkeypatch):
    from chalicelib import config

    lam = aws.client("lambda")
    lam.remove_permission(FunctionName="sequence-hub-test", StatementId="chalice")  # the API is not made yet
    settings = _wiring_settings(bare_deploy)
    changed = wiring.converge(settings)
    assert changed[-1] == "the API is not deployed yet: its error bodies wait for the next run"
    with pytest.raises(config.ConfigError, match="SEQHUB_TABLE_STREAM, SEQHUB_FAILURE_QUEUE"):
        config.load_wiring({"SEQHUB_STAGE": "test", "RUNNER_FUNCTION": "sequence-hub-test-runner"})


def test_the_deploy_guide_is_what_the_rehearsal_runs():
    from infra import rehearse

    guide = (ROOT / "docs" / "deploy.md").read_text()
    for command in (rehearse.DEPLOY, rehearse.SETUP, rehearse.CHALICE, rehearse.DESTROY):
        assert " ".join(command).replace("STAGE=dev", "STAGE=prod").replace("--stage dev", "--stage prod") in guide
    makefile = (ROOT / "Makefile").read_text()
    assert "$(BIN)/python -m infra.wire deploy --stage $(STAGE) --arch $(ARCH)" in makefile
    assert "$(BIN)/python -m infra.wire setup --stage $(STAGE) --arch $(ARCH)" in makefile
    assert "$(MAKE) deploy-check" in makefile.split("\ntest:")[1].split("\n\n")[0]  # make test rehearses


@pytest.fixture
def lambda_answers(hub_env):
    """Lambda answering as AWS does where moto has nothing (GetAccountSettings): a Stubber on the
    hub's own client, removed after the test."""
    from botocore.stub import Stubber

    stub = Stubber(aws.client("lambda"))

    def answer(limit: int, unreserved: int, runner_reserved: int | None) -> None:
        stub.add_response("get_account_settings", {"AccountLimit": {"ConcurrentExecutions": limit,
                                                                    "UnreservedConcurrentExecutions": unreserved}})
        if runner_reserved is None:
            stub.add_client_error("get_function_concurrency", "ResourceNotFoundException")
        else:
            stub.add_response("get_function_concurrency", {"ReservedConcurrentExecutions": runner_reserved})
        stub.activate()

    yield answer
    stub.deactivate()


@pytest.mark.parametrize("limit,unreserved,runner_reserved,fits", [
    (1000, 1000, None, True),    # the default quota, a first deploy
    (250, 250, None, False),     # a new account: 200 reserved would leave 50
    (300, 300, None, True),      # exactly enough
    (300, 100, 200, True),       # a re-deploy: the runner's own reservation is given back first
    (100, 100, None, False),
])
def test_a_deploy_the_account_cannot_run_is_refused_first(lambda_answers, tmp_path, limit, unreserved,
                                                           runner_reserved, fits):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"stages": {}}))
    lambda_answers(limit, unreserved, runner_reserved)
    if fits:
        assert wire.preflight("dev", config)["reserved_for_runner"] == 200
    else:
        with pytest.raises(SystemExit) as refused:
            wire.preflight("dev", config)
        message = str(refused.value)
        assert "L-B99A9384" in message and "Nothing was created" in message and "needs at least 300" in message


def test_lambda_calls_wait_for_a_new_role_to_propagate(monkeypatch):
    from botocore.exceptions import ClientError

    monkeypatch.setattr(wire.time, "sleep", lambda _s: None)
    attempts = []

    def create() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ClientError({"Error": {"Code": "InvalidParameterValueException",
                                         "Message": "Cannot access stream: please ensure the role can perform "
                                                    "the GetRecords action on your event source"}}, "Create")
        return "made"

    assert wire.after_iam(create, "a mapping") == "made" and len(attempts) == 3
    with pytest.raises(ClientError):  # anything else is not waited for
        wire.after_iam(lambda: (_ for _ in ()).throw(ClientError(
            {"Error": {"Code": "ResourceConflictException", "Message": "exists"}}, "Create")), "a mapping")


def test_new_stages_log_at_half_price_and_old_ones_keep_their_class(hub_env):
    """A log group's class is fixed at its creation: a new stage's channel logs are Infrequent Access
    (half the ingestion price; nothing reads them back), a stage made before keeps STANDARD."""
    cfn = aws.client("cloudformation")
    template = wire.TEMPLATE.read_text()
    before = template.split("  LogClass:\n")[0] + "\nResources:" + template.split("\nResources:", 1)[1]
    before = before.replace("      LogGroupClass: !Ref LogClass\n", "")
    cfn.create_stack(StackName="sequence-hub-older", TemplateBody=before,
                     Parameters=[{"ParameterKey": "Stage", "ParameterValue": "older"}])

    def log_class(stack: str) -> str:
        params = cfn.describe_stacks(StackName=stack)["Stacks"][0]["Parameters"]
        return {p["ParameterKey"]: p.get("ParameterValue") for p in params}.get("LogClass", "")

    wire.ensure_stack("older", "sequence-hub-older")
    assert log_class("sequence-hub-older") == "STANDARD"
    wire.ensure_stack("newer", "sequence-hub-newer")
    assert "LogGroupClass: !Ref LogClass" in template
    assert template.split("  LogClass:")[1].split("Default: ")[1].split()[0] == wire.DEFAULT_LOG_CLASS
    assert log_class("sequence-hub-newer") == "INFREQUENT_ACCESS"


def test_the_wiring_policy_allows_every_call_it_makes_and_grants_nothing_more(bare_deploy):
    """Each call of a first run, of a run that mends a changed mapping and of a run with nothing to
    do, against the wiring function's policy (conditions included); every action granted is used."""
    import fnmatch

    from infra import policies

    region, account = "us-east-1", "123456789012"
    doc = policies.policies("test", account=account, region=region)["policy-test-wiring.json"]
    made: list[tuple[str, str, dict]] = []

    def needs(service: str, op: str, params: dict) -> tuple[str, str]:
        if service == "apigateway":
            api = f"arn:aws:apigateway:{region}::/restapis/{params['restApiId']}"
            return {"GetGatewayResponses": ("apigateway:GET", f"{api}/gatewayresponses"),
                    "PutGatewayResponse": ("apigateway:PUT", f"{api}/gatewayresponses/{params.get('responseType')}"),
                    "CreateDeployment": ("apigateway:POST", f"{api}/deployments")}[op]
        if op in ("ListEventSourceMappings", "CreateEventSourceMapping"):
            return f"lambda:{op}", "*"
        if op == "UpdateEventSourceMapping":
            return f"lambda:{op}", f"arn:aws:lambda:{region}:{account}:event-source-mapping:{params['UUID']}"
        return f"lambda:{op}", f"arn:aws:lambda:{region}:{account}:function:{params['FunctionName']}"

    recording = []  # non-empty while the wiring runs: the test's own changes are not its calls

    def record(service: str, model, params: dict) -> None:
        if recording:
            made.append((*needs(service, model.name, params), params))

    for service in ("lambda", "apigateway"):
        aws.client(service).meta.events.register(
            "before-parameter-build.*.*", lambda params, model, service=service, **_: record(service, model, params))

    def run() -> list[str]:
        recording.append(True)
        try:
            return wiring.converge(settings)
        finally:
            recording.clear()

    settings = _wiring_settings(bare_deploy)
    assert len(run()) == 4  # everything made
    lam = aws.client("lambda")
    mapping = lam.list_event_source_mappings(FunctionName=settings.cleanup)["EventSourceMappings"][0]
    lam.update_event_source_mapping(UUID=mapping["UUID"], BatchSize=10)  # someone changed it by hand
    assert run() == ["the table stream → cleanup mapping: its settings"]
    assert run() == []

    def allows(statement: dict, action: str, resource: str, params: dict) -> bool:
        function = statement.get("Condition", {}).get("StringEquals", {}).get("lambda:FunctionArn")
        return action in statement["Action"] and any(fnmatch.fnmatchcase(resource, r) for r in statement["Resource"]) \
            and (function is None or function.endswith(f":function:{params.get('FunctionName')}"))

    denied = [(a, r) for a, r, p in made if not any(allows(st, a, r, p) for st in doc["Statement"])]
    assert denied == []
    granted = {a for st in doc["Statement"] for a in st["Action"]}
    own_logs = {"logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"}  # Lambda writes them
    assert granted - own_logs == {a for a, _, _ in made}


def test_two_runs_at_once_make_one_mapping_and_a_busy_runner_waits(bare_deploy):
    """A deploy's after-deploy and a scheduled run can meet: Lambda refuses a second mapping of the
    same stream and function, and a configuration update while another is in progress."""
    from botocore.stub import Stubber

    settings = _wiring_settings(bare_deploy)
    lam = aws.client("lambda")
    with Stubber(lam) as stub:
        stub.add_response("list_event_source_mappings", {"EventSourceMappings": []})
        stub.add_client_error("create_event_source_mapping", "ResourceConflictException", http_status_code=409)
        assert wiring._stream_mapping(lam, settings, wiring._once) == []
        stub.add_response("get_function_configuration", {"EphemeralStorage": {"Size": 512},
                                                          "LastUpdateStatus": "Successful"})
        stub.add_client_error("update_function_configuration", "ResourceConflictException", http_status_code=409)
        assert wiring._runner_tmp(lam, settings) == ["the runner is being updated: its /tmp waits for the next run"]
