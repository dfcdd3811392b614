"""Wire a stage together: ``python -m infra.wire <step> --stage prod``.

  env           the template stack's outputs → the stage's environment in .chalice/config.json, and the
                stage's policy files (run before ``chalice deploy``)
  after-deploy  what ``chalice deploy`` cannot configure: the runner's async invocation (no retries,
                events expire with the start timeout), its /tmp size, the table stream → cleanup, and
                JSON error bodies for API Gateway's own answers (403 bad signature, 429, 504)
  node-layer    build and publish the Node.js layer; the runner's ``layers`` in .chalice/config.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from chalicelib import aws

from . import node_layer, policies

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".chalice" / "config.json"
APP = "sequence-hub"
START_TIMEOUT_SECONDS = 300  # chalicelib.instances.START_TIMEOUT_SECONDS: later, an instance is "never started"


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _save(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def stack_outputs(stack: str) -> dict[str, str]:
    found = aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def runner_name(stage: str) -> str:
    # `chalice deploy` names functions <app>-<stage>-<function>; after-deploy checks it did.
    return f"{APP}-{stage}-runner"


def wire_env(stage: str, stack: str, config_path: Path = CONFIG) -> dict[str, str]:
    outputs = stack_outputs(stack)
    env = {"SEQHUB_TABLE": outputs["TableName"], "SEQHUB_BUCKET": outputs["BucketName"],
           "SEQHUB_LOG_GROUP": outputs["LogGroupName"], "RUNNER_FUNCTION": runner_name(stage),
           "SEQHUB_STAGE": stage}
    config = _load(config_path)
    stage_cfg = config["stages"].setdefault(stage, {})
    stage_cfg.setdefault("environment_variables", {}).update(env)
    stage_cfg["iam_policy_file"] = f"policy-{stage}.json"
    functions = stage_cfg.setdefault("lambda_functions", {})
    functions.setdefault("runner", {"lambda_timeout": 900, "lambda_memory_size": 1024})
    functions["runner"]["iam_policy_file"] = f"policy-{stage}-runner.json"
    functions.setdefault("cleanup", {})["iam_policy_file"] = f"policy-{stage}-cleanup.json"
    _save(config_path, config)
    if config_path == CONFIG:
        policies.write(stage)
    return env


def deployed_functions(stage: str, deployed_dir: Path = ROOT / ".chalice" / "deployed") -> dict[str, str]:
    """{function name in app.py: deployed function name} from chalice deploy's record."""
    record = _load(deployed_dir / f"{stage}.json")
    return {r["name"]: r["lambda_arn"].split(":")[-1] for r in record["resources"]
            if r.get("resource_type") == "lambda_function"}


# API Gateway answers auth failures, throttling and timeouts itself; make those JSON {"error"} too.
GATEWAY_ERROR_TEMPLATE = '{"error": $context.error.messageString}'


def json_gateway_errors(rest_api_id: str, stage_name: str = "api") -> None:
    apigw = aws.client("apigateway")
    for response_type in ("DEFAULT_4XX", "DEFAULT_5XX"):
        apigw.put_gateway_response(restApiId=rest_api_id, responseType=response_type,
                                   responseTemplates={"application/json": GATEWAY_ERROR_TEMPLATE},
                                   responseParameters={"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"})
    apigw.create_deployment(restApiId=rest_api_id, stageName=stage_name)


def deployed_rest_api(stage: str, deployed_dir: Path) -> str:
    record = _load(deployed_dir / f"{stage}.json")
    return next(r["rest_api_id"] for r in record["resources"] if r.get("resource_type") == "rest_api")


def after_deploy(stage: str, stack: str, ephemeral_mb: int = 2048,
                 deployed_dir: Path = ROOT / ".chalice" / "deployed") -> dict:
    functions = deployed_functions(stage, deployed_dir)
    runner, cleanup = functions["runner"], functions["cleanup"]
    if runner != runner_name(stage):
        raise SystemExit(f"the runner was deployed as {runner}, but RUNNER_FUNCTION says {runner_name(stage)}")
    lam = aws.client("lambda")
    # A sequence must never silently run twice: no retries. An event that waits longer than the
    # start timeout is dropped; the API then reports the instance errored ("never started").
    lam.put_function_event_invoke_config(FunctionName=runner, MaximumRetryAttempts=0,
                                         MaximumEventAgeInSeconds=START_TIMEOUT_SECONDS)
    lam.update_function_configuration(FunctionName=runner, EphemeralStorage={"Size": ephemeral_mb})
    stream_arn = stack_outputs(stack)["TableStreamArn"]
    existing = lam.list_event_source_mappings(EventSourceArn=stream_arn, FunctionName=cleanup)["EventSourceMappings"]
    if not existing:
        lam.create_event_source_mapping(
            EventSourceArn=stream_arn, FunctionName=cleanup, StartingPosition="LATEST", BatchSize=100,
            FilterCriteria={"Filters": [{"Pattern": json.dumps({"eventName": ["REMOVE"]})}]})
    rest_api = deployed_rest_api(stage, deployed_dir)
    json_gateway_errors(rest_api)
    return {"runner": runner, "cleanup": cleanup, "stream": stream_arn, "rest_api": rest_api}


def publish_node_layer(stage: str, stack: str, arch: str = "x86_64", config_path: Path = CONFIG) -> str:
    layer = node_layer.build(ROOT / "build", arch)
    bucket = stack_outputs(stack)["BucketName"]
    key = f"layers/{layer.name}"
    aws.client("s3").upload_file(str(layer), bucket, key)  # layers over 50 MB go through S3
    arn = aws.client("lambda").publish_layer_version(
        LayerName=f"{APP}-{stage}-node", Content={"S3Bucket": bucket, "S3Key": key},
        CompatibleRuntimes=["python3.12"], CompatibleArchitectures=[arch if arch == "x86_64" else "arm64"],
        Description=f"Node.js from {node_layer.NODE_WHEEL}")["LayerVersionArn"]
    config = _load(config_path)
    runner = config["stages"].setdefault(stage, {}).setdefault("lambda_functions", {}).setdefault("runner", {})
    runner["layers"] = [arn]
    _save(config_path, config)
    return arn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["env", "after-deploy", "node-layer"])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--stack", help="the template's stack (default: sequence-hub-<stage>)")
    parser.add_argument("--ephemeral-mb", type=int, default=2048, help="runner /tmp size (512-10240)")
    parser.add_argument("--arch", default="x86_64", choices=sorted(node_layer.PLATFORMS))
    args = parser.parse_args()
    stack = args.stack or f"{APP}-{args.stage}"
    if args.step == "env":
        print(json.dumps(wire_env(args.stage, stack), indent=2))
    elif args.step == "after-deploy":
        print(json.dumps(after_deploy(args.stage, stack, args.ephemeral_mb), indent=2))
    else:
        print(publish_node_layer(args.stage, stack, args.arch))


if __name__ == "__main__":
    main()
