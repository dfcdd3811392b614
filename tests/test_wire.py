"""infra/wire.py against the template's stack in moto: env wiring and the after-deploy settings."""

from __future__ import annotations

import json
import shutil

import pytest

from chalicelib import aws
from infra import wire

from .helpers import ROOT

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


def test_after_deploy_sets_no_retries_tmp_size_and_the_expiry_stream(hub_env, tmp_path):
    lam = aws.client("lambda")
    role = aws.client("iam").create_role(RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    resources = []
    for fn in ("runner", "cleanup"):
        arn = lam.create_function(FunctionName=f"sequence-hub-test-{fn}", Runtime="python3.12", Role=role,
                                  Handler=f"app.{fn}", Code={"ZipFile": b"PK\x05\x06" + b"\0" * 18})["FunctionArn"]
        resources.append({"name": fn, "resource_type": "lambda_function", "lambda_arn": arn})
    apigw = aws.client("apigateway")
    rest_api = apigw.create_rest_api(name="sequence-hub")["id"]
    root = apigw.get_resources(restApiId=rest_api)["items"][0]["id"]  # a method, as chalice deploys
    apigw.put_method(restApiId=rest_api, resourceId=root, httpMethod="GET", authorizationType="AWS_IAM")
    apigw.put_integration(restApiId=rest_api, resourceId=root, httpMethod="GET", type="MOCK")
    resources.append({"name": "rest_api", "resource_type": "rest_api", "rest_api_id": rest_api})
    (tmp_path / "test.json").write_text(json.dumps({"resources": resources}))
    updates = []  # moto accepts EphemeralStorage but does not store it: check what was asked
    lam.meta.events.register("provide-client-params.lambda.UpdateFunctionConfiguration",
                             lambda params, **_: updates.append(params))
    for _ in range(2):  # idempotent: a second run changes nothing
        wire.after_deploy("test", STACK, ephemeral_mb=4096, deployed_dir=tmp_path)
    invoke_config = lam.get_function_event_invoke_config(FunctionName="sequence-hub-test-runner")
    assert invoke_config["MaximumRetryAttempts"] == 0
    assert invoke_config["MaximumEventAgeInSeconds"] == wire.START_TIMEOUT_SECONDS
    assert updates[0] == {"FunctionName": "sequence-hub-test-runner", "EphemeralStorage": {"Size": 4096}}
    for kind in ("DEFAULT_4XX", "DEFAULT_5XX"):
        response = aws.client("apigateway").get_gateway_response(restApiId=rest_api, responseType=kind)
        assert response["responseTemplates"] == {"application/json": wire.GATEWAY_ERROR_TEMPLATE}
    too_large = aws.client("apigateway").get_gateway_response(restApiId=rest_api, responseType="REQUEST_TOO_LARGE")
    assert "si seq send" in json.loads(too_large["responseTemplates"]["application/json"])["error"]
    mappings = lam.list_event_source_mappings(FunctionName="sequence-hub-test-cleanup")["EventSourceMappings"]
    assert len(mappings) == 1 and "/stream/" in mappings[0]["EventSourceArn"]
    assert mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]  # the cleanup reports failures per record


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
