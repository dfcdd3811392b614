"""Deploy a stage with one command, safe to re-run: ``python -m infra.wire deploy --stage prod``
(``make deploy STAGE=prod``); tear it down with ``destroy``.

``deploy`` runs these steps, each also callable on its own:

  preflight     refuse before anything is made when the account cannot run the stage (its Lambda
                concurrency quota leaves too little once the runner's reservation is taken), naming the fix
  stack         create or update infra/template.yaml's stack (bucket, table, log group, failure queue), and
                infra/fargate.yaml's (the fargate engine's cluster, task definition, roles and security
                group) in the default VPC's subnets, or ``--subnets``; none with ``--no-fargate``
  env           the stack's outputs → the stage's environment in .chalice/config.json, and the stage's
                least-privilege policies naming the exact account, region and resources (the fargate
                task role's too, put on the role itself)
  node-layer    publish the Node.js layer (reused while its content is unchanged); the runner's layers and
                every function's architecture (``lambda_architecture``) to match it
  chalice       ``chalice deploy --stage <stage>``
  after-deploy  what Chalice cannot declare, by the names it recorded in .chalice/deployed/<stage>.json:
                the runner's async invocation (no retries, events expire with the start timeout, failures
                to the queue), its /tmp size, the table stream → cleanup mapping (REMOVE of instance
                records only, bounded retries, batch bisecting, failures to the queue), and JSON error
                bodies for API Gateway's own answers; each retried while IAM propagates a new role
                (chalicelib/wiring.py: the stage's ``wiring`` function keeps the same every minute)

``setup`` is preflight, stack, env and node-layer: the one-time step after which a literal
``chalice deploy --stage <stage>`` works from a fresh clone, and the wiring function completes what
after-deploy does within a minute (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from chalicelib import aws, wiring
from chalicelib.config import load_wiring

from . import node_layer, policies

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / ".chalice" / "config.json"
TEMPLATE = ROOT / "infra" / "template.yaml"
FARGATE_TEMPLATE = ROOT / "infra" / "fargate.yaml"
APP = "sequence-hub"
FUNCTIONS = ("runner", "cleanup", "sweeper", "wiring")
RUNNER_RESERVED = 200  # the runner's reserved concurrency unless the stage's config says otherwise
UNRESERVED_MINIMUM = 100  # Lambda refuses a reservation that leaves the account fewer unreserved
BOOTSTRAP = ROOT / "chalicelib" / "runner" / "bootstrap.py"  # the fargate task's entry point (its text)
TASK_POLICY = "runner"  # the task role's inline policy (infra/policies.task_policy)
DEFAULT_LOG_CLASS = "INFREQUENT_ACCESS"  # the channel log group's class for new stages (template: LogClass)
IAM_PROPAGATION_SECONDS = 120  # a new role can take this long to be usable by Lambda's services


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _save(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def stack_name(stage: str) -> str:
    return f"{APP}-{stage}"


def stack_outputs(stack: str) -> dict[str, str]:
    found = aws.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
    return {o["OutputKey"]: o["OutputValue"] for o in found.get("Outputs", [])}


def runner_reservation(stage: str, config_path: Path = CONFIG) -> int:
    stage_cfg = _load(config_path).get("stages", {}).get(stage, {})
    return int(stage_cfg.get("lambda_functions", {}).get("runner", {}).get("reserved_concurrency", RUNNER_RESERVED))


def preflight(stage: str, config_path: Path = CONFIG) -> dict[str, int]:
    """Refuse, before anything is created, a stage this account cannot run: the runner's reserved
    concurrency must leave the account at least 100 unreserved executions (Lambda's own rule; new
    accounts often start with a quota of 10 or 100, not 1,000)."""
    wanted = runner_reservation(stage, config_path)
    lam: Any = aws.client("lambda")
    settings = lam.get_account_settings()
    limit = int(settings["AccountLimit"]["ConcurrentExecutions"])
    unreserved = int(settings["AccountLimit"].get("UnreservedConcurrentExecutions", limit))
    try:  # a re-deploy: the runner's current reservation is counted in "reserved" already
        unreserved += int(lam.get_function_concurrency(FunctionName=runner_name(stage))
                          .get("ReservedConcurrentExecutions") or 0)
    except ClientError:
        pass
    if unreserved - wanted < UNRESERVED_MINIMUM:
        needed = limit + UNRESERVED_MINIMUM + wanted - unreserved
        raise SystemExit(
            f"this account's Lambda concurrency quota is {limit} ({unreserved} unreserved); the runner reserves "
            f"{wanted} and Lambda keeps {UNRESERVED_MINIMUM} unreserved, so it needs at least {needed}. Nothing "
            f"was created. Ask for more in Service Quotas (AWS Lambda, 'Concurrent executions', L-B99A9384), or "
            f"lower stages.{stage}.lambda_functions.runner.reserved_concurrency in .chalice/config.json "
            f"(at most {max(0, unreserved - UNRESERVED_MINIMUM)} here; it caps instances running at once).")
    return {"limit": limit, "unreserved": unreserved, "reserved_for_runner": wanted}


def after_iam(call: Callable[[], Any], what: str, seconds: float = IAM_PROPAGATION_SECONDS) -> Any:
    """``call()``, again while Lambda says the role it was given cannot be used yet: IAM takes up to a
    couple of minutes to make a new role usable by other services."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return call()
        except ClientError as exc:
            message = str(exc.response.get("Error", {}).get("Message", "")).lower()
            propagating = exc.response.get("Error", {}).get("Code") == "InvalidParameterValueException" and (
                "role" in message or "permission" in message or "assume" in message)
            if not propagating or time.monotonic() > deadline:
                raise
            print(f"waiting for IAM to propagate before {what}: {exc.response['Error']['Message']}", flush=True)
            time.sleep(3)


def default_subnets() -> tuple[str, list[str]]:
    """The default VPC and its default subnets (one per zone); ("", []) in an account without one."""
    ec2: Any = aws.client("ec2")
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        return "", []
    vpc = vpcs[0]["VpcId"]
    subnets = ec2.describe_subnets(Filters=[{"Name": "vpc-id", "Values": [vpc]},
                                            {"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
    return vpc, sorted(s["SubnetId"] for s in subnets)


def fargate_network(subnets: list[str] | None) -> tuple[str, list[str]]:
    """(VPC, subnets) for the fargate engine: the given subnets' VPC, else the default VPC's; None: none."""
    if subnets is None:
        return "", []
    if not subnets:
        vpc, found = default_subnets()
        if not found:
            print("no default VPC here: this stage gets no fargate engine (name subnets with --subnets)", flush=True)
        return vpc, found
    described = aws.client("ec2").describe_subnets(SubnetIds=subnets)["Subnets"]
    vpcs = {s["VpcId"] for s in described}
    if len(vpcs) != 1:
        raise SystemExit(f"--subnets must all be in one VPC; they are in {', '.join(sorted(vpcs))}")
    return vpcs.pop(), subnets


def ensure_stack(stage: str, stack: str) -> dict[str, str]:
    """Create the stack, or update it when the template changed; returns its outputs."""
    cfn: Any = aws.client("cloudformation")
    args: dict[str, Any] = {"StackName": stack, "TemplateBody": TEMPLATE.read_text(),
                            "Parameters": [{"ParameterKey": "Stage", "ParameterValue": stage}]}
    try:
        found = cfn.describe_stacks(StackName=stack)["Stacks"][0]
        exists = True
    except ClientError:
        exists = False
    # A log group's class is fixed when it is made, so an update keeps the stack's: its previous value,
    # or STANDARD for a stage made before LogClass (changing it would replace a named log group,
    # which CloudFormation cannot do). A new stack names its class (the template's default).
    if not exists:
        args["Parameters"].append({"ParameterKey": "LogClass", "ParameterValue": DEFAULT_LOG_CLASS})
    elif "LogClass" in {p["ParameterKey"] for p in found.get("Parameters", [])}:
        args["Parameters"].append({"ParameterKey": "LogClass", "UsePreviousValue": True})
    else:
        args["Parameters"].append({"ParameterKey": "LogClass", "ParameterValue": "STANDARD"})
    return _create_or_update(args, exists)


def _create_or_update(args: dict[str, Any], exists: bool) -> dict[str, str]:
    cfn: Any = aws.client("cloudformation")
    stack = args["StackName"]
    if not exists:
        cfn.create_stack(**args)
        cfn.get_waiter("stack_create_complete").wait(StackName=stack, WaiterConfig={"Delay": 2, "MaxAttempts": 300})
    else:
        try:
            cfn.update_stack(**args)
            cfn.get_waiter("stack_update_complete").wait(StackName=stack, WaiterConfig={"Delay": 2, "MaxAttempts": 300})
        except ClientError as exc:
            if "No updates are to be performed" not in str(exc):
                raise
    return stack_outputs(stack)


def fargate_stack(stack: str) -> str:
    return f"{stack}-fargate"


def _exists(stack: str) -> bool:
    try:
        aws.client("cloudformation").describe_stacks(StackName=stack)
        return True
    except ClientError:
        return False


def ensure_fargate(stage: str, stack: str, arch: str = "x86_64", subnets: list[str] | None = None) -> dict[str, str]:
    """The fargate engine's stack (infra/fargate.yaml) in ``subnets`` ([]: the default VPC's), made or
    updated; None: the stage has no fargate engine, and a stack it had is deleted. Returns its outputs."""
    vpc, chosen = fargate_network(subnets)
    name = fargate_stack(stack)
    if not chosen:
        delete_fargate(stack)
        return {}
    values = {"Stage": stage, "Subnets": ",".join(chosen), "VpcId": vpc, "RunnerBootstrap": BOOTSTRAP.read_text(),
              "Architecture": "ARM64" if lambda_architecture(arch) == "arm64" else "X86_64"}
    # Its roles have names of their own (the policies name them exactly).
    return _create_or_update({"StackName": name, "TemplateBody": FARGATE_TEMPLATE.read_text(),
                              "Capabilities": ["CAPABILITY_NAMED_IAM"],
                              "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]},
                             _exists(name))


def engine_outputs(stack: str) -> dict[str, str]:
    """The fargate stack's outputs ({} when the stage has none)."""
    try:
        return stack_outputs(fargate_stack(stack))
    except ClientError:  # no such stack
        return {}


def runner_name(stage: str) -> str:
    # `chalice deploy` names functions <app>-<stage>-<function>; after-deploy checks it did.
    return f"{APP}-{stage}-runner"


FARGATE_ENV = ("SEQHUB_FARGATE_CLUSTER", "SEQHUB_FARGATE_TASK_DEFINITION", "SEQHUB_FARGATE_SUBNETS",
               "SEQHUB_FARGATE_SECURITY_GROUP", "SEQHUB_FARGATE_CAPACITY")


def wire_env(stage: str, stack: str, config_path: Path = CONFIG, spot: bool = False,
             ephemeral_mb: int = 2048) -> dict[str, str]:
    outputs = stack_outputs(stack)
    env = {"SEQHUB_TABLE": outputs["TableName"], "SEQHUB_BUCKET": outputs["BucketName"],
           "SEQHUB_LOG_GROUP": outputs["LogGroupName"], "RUNNER_FUNCTION": runner_name(stage),
           "SEQHUB_STAGE": stage}
    engine = engine_outputs(stack)
    fargate = bool(engine)
    if fargate:
        env.update(zip(FARGATE_ENV, (engine["ClusterName"], engine["TaskDefinitionArn"], engine["TaskSubnets"],
                                     engine["TaskSecurityGroupId"], "FARGATE_SPOT" if spot else "FARGATE"), strict=True))
    config = _load(config_path)
    stage_cfg = config["stages"].setdefault(stage, {})
    variables = stage_cfg.setdefault("environment_variables", {})
    for name in FARGATE_ENV:  # a stage that no longer has the engine does not keep its old names
        variables.pop(name, None)
    variables.update(env)
    stage_cfg["iam_policy_file"] = f"policy-{stage}.json"
    functions = stage_cfg.setdefault("lambda_functions", {})
    functions.setdefault("runner", {"lambda_timeout": 900, "lambda_memory_size": 1024, "reserved_concurrency": 200})
    for fn in FUNCTIONS:
        functions.setdefault(fn, {})["iam_policy_file"] = f"policy-{stage}-{fn}.json"
    # The wiring function's own settings (chalicelib.config.load_wiring): what it keeps the stage's wiring to.
    functions["wiring"]["environment_variables"] = {
        "SEQHUB_TABLE_STREAM": outputs["TableStreamArn"], "SEQHUB_FAILURE_QUEUE": outputs["FailureQueueArn"],
        "SEQHUB_RUNNER_TMP_MB": str(ephemeral_mb),
        "SEQHUB_API_STAGE": stage_cfg.get("api_gateway_stage", config.get("api_gateway_stage", "api"))}
    _save(config_path, config)
    session = aws.client("sts")
    account = session.get_caller_identity()["Account"]
    region = aws.client("cloudformation").meta.region_name
    known = {"account": account, "region": region, "bucket": outputs["BucketName"], "queue": outputs["FailureQueueArn"]}
    policies.write(stage, config_path.parent, fargate, **known)
    if fargate:
        aws.client("iam").put_role_policy(RoleName=engine["TaskRoleName"], PolicyName=TASK_POLICY,
                                          PolicyDocument=json.dumps(policies.task_policy(stage, **known)))
    return env


def deployed_record(stage: str, deployed_dir: Path) -> list[dict]:
    return _load(deployed_dir / f"{stage}.json")["resources"]


def deployed_functions(stage: str, deployed_dir: Path = ROOT / ".chalice" / "deployed") -> dict[str, str]:
    """{function name in app.py: deployed function name} from chalice deploy's record."""
    return {r["name"]: r["lambda_arn"].split(":")[-1] for r in deployed_record(stage, deployed_dir)
            if r.get("resource_type") == "lambda_function"}


def deployed_rest_api(stage: str, deployed_dir: Path) -> str:
    return next(r["rest_api_id"] for r in deployed_record(stage, deployed_dir) if r.get("resource_type") == "rest_api")


def stage_env(stage: str, function: str, config_path: Path = CONFIG) -> dict[str, str]:
    """The environment Chalice gives ``function`` of ``stage``: the app's, the stage's, the function's."""
    config = _load(config_path)
    stage_cfg = config["stages"][stage]
    return {**config.get("environment_variables", {}), **stage_cfg.get("environment_variables", {}),
            **stage_cfg.get("lambda_functions", {}).get(function, {}).get("environment_variables", {})}


def after_deploy(stage: str, config_path: Path = CONFIG, deployed_dir: Path = ROOT / ".chalice" / "deployed") -> dict:
    """What Chalice cannot declare, at once (chalicelib/wiring.py; the stage's wiring function keeps it
    so every minute), with the names Chalice recorded and the wiring function's own settings."""
    functions = deployed_functions(stage, deployed_dir)
    settings = load_wiring(stage_env(stage, "wiring", config_path))
    if functions.get("runner") != settings.runner or functions.get("cleanup") != settings.cleanup:
        raise SystemExit(f"chalice deployed {functions}, but the stage's wiring names {settings.runner} and "
                         f"{settings.cleanup}")
    lam: Any = aws.client("lambda")
    lam.get_waiter("function_updated").wait(FunctionName=settings.runner)  # Chalice's last update has landed
    changed = wiring.converge(settings, deployed_rest_api(stage, deployed_dir), retry=after_iam)
    return {"runner": settings.runner, "cleanup": settings.cleanup, "changed": changed}


def publish_node_layer(stage: str, stack: str, arch: str = "x86_64", config_path: Path = CONFIG) -> str:
    """Publish the Node.js layer, or reuse the version already published with the same content."""
    layer = node_layer.build(ROOT / "build", arch)
    digest = node_layer.sha256(layer)
    name = f"{APP}-{stage}-node"
    lam: Any = aws.client("lambda")
    try:
        versions = lam.list_layer_versions(LayerName=name)["LayerVersions"]
    except ClientError:
        versions = []
    arn = next((v["LayerVersionArn"] for v in versions if digest in (v.get("Description") or "")), None)
    if arn is None:
        bucket = stack_outputs(stack)["BucketName"]
        key = f"layers/{layer.name}"
        aws.client("s3").upload_file(str(layer), bucket, key)  # layers over 50 MB go through S3
        arn = lam.publish_layer_version(
            LayerName=name, Content={"S3Bucket": bucket, "S3Key": key},
            CompatibleRuntimes=["python3.12"], CompatibleArchitectures=[lambda_architecture(arch)],
            Description=f"Node.js from {node_layer.NODE_WHEEL} sha256={digest}")["LayerVersionArn"]
    config = _load(config_path)
    stage_cfg = config["stages"].setdefault(stage, {})
    stage_cfg.setdefault("lambda_functions", {}).setdefault("runner", {})["layers"] = [arn]
    # Every function of the stage runs on the layer's architecture (an arm64 Node on x86_64 cannot exec).
    stage_cfg["lambda_architecture"] = lambda_architecture(arch)
    _save(config_path, config)
    return arn


def lambda_architecture(arch: str) -> str:
    return "x86_64" if arch == "x86_64" else "arm64"


def chalice_deploy(stage: str) -> None:
    chalice = Path(sys.executable).parent / "chalice"
    subprocess.run([str(chalice), "deploy", "--stage", stage], cwd=ROOT, check=True)


def setup(stage: str, stack: str, arch: str = "x86_64", subnets: list[str] | None = None, spot: bool = False,
          ephemeral_mb: int = 2048) -> dict:
    """The one-time step (safe to re-run): after it, `chalice deploy --stage <stage>` works."""
    quota = preflight(stage)
    outputs = ensure_stack(stage, stack)
    engine = ensure_fargate(stage, stack, arch, subnets)
    wire_env(stage, stack, spot=spot, ephemeral_mb=ephemeral_mb)
    layer = publish_node_layer(stage, stack, arch)
    return {"quota": quota, "stack": outputs, "fargate": engine, "layer": layer}


def deploy(stage: str, stack: str, arch: str = "x86_64", ephemeral_mb: int = 2048,
           subnets: list[str] | None = None, spot: bool = False) -> dict:
    ready = setup(stage, stack, arch, subnets, spot, ephemeral_mb)
    chalice_deploy(stage)
    result = after_deploy(stage)
    return {**ready, **result}


def function_log_groups(stage: str) -> list[str]:
    """The log groups Lambda makes for the stage's functions on their first run (never expiring)."""
    return [f"/aws/lambda/{APP}-{stage}", *(f"/aws/lambda/{APP}-{stage}-{fn}" for fn in FUNCTIONS)]


def delete_fargate(stack: str) -> None:
    """Delete the fargate stack, if there is one: stop its cluster's tasks first (a cluster with tasks
    cannot be deleted) and take the task role's policy off (``wire_env`` put it, so CloudFormation
    could not delete the role)."""
    outputs = engine_outputs(stack)
    if not outputs:
        return
    ecs: Any = aws.client("ecs")
    for page in ecs.get_paginator("list_tasks").paginate(cluster=outputs["ClusterName"]):
        for arn in page["taskArns"]:
            ecs.stop_task(cluster=outputs["ClusterName"], task=arn, reason="the stage's fargate engine is being removed")
    iam: Any = aws.client("iam")
    try:
        iam.delete_role_policy(RoleName=outputs["TaskRoleName"], PolicyName=TASK_POLICY)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchEntity":
            raise
    cfn: Any = aws.client("cloudformation")
    cfn.delete_stack(StackName=fargate_stack(stack))
    cfn.get_waiter("stack_delete_complete").wait(StackName=fargate_stack(stack),
                                                 WaiterConfig={"Delay": 2, "MaxAttempts": 300})


def destroy(stage: str, stack: str) -> None:
    """Delete what after-deploy added, the app (``chalice delete``), the functions' own log groups,
    the layer versions, the bucket's objects, then the stack."""
    lam: Any = aws.client("lambda")
    delete_fargate(stack)
    if (ROOT / ".chalice" / "deployed" / f"{stage}.json").exists():
        subprocess.run([str(Path(sys.executable).parent / "chalice"), "delete", "--stage", stage], cwd=ROOT, check=True)
    # After the wiring function is gone (it would make the mapping again); Lambda keeps a deleted
    # function's mappings, so they are found by the table's stream.
    try:
        stream = stack_outputs(stack)["TableStreamArn"]
    except ClientError:
        stream = ""
    for mapping in lam.list_event_source_mappings(EventSourceArn=stream)["EventSourceMappings"] if stream else []:
        if mapping["FunctionArn"].endswith(f":function:{APP}-{stage}-cleanup"):
            lam.delete_event_source_mapping(UUID=mapping["UUID"])
    logs: Any = aws.client("logs")
    for group in function_log_groups(stage):
        try:
            logs.delete_log_group(logGroupName=group)
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
    try:
        for version in lam.list_layer_versions(LayerName=f"{APP}-{stage}-node")["LayerVersions"]:
            lam.delete_layer_version(LayerName=f"{APP}-{stage}-node", VersionNumber=version["Version"])
    except ClientError:
        pass
    cfn: Any = aws.client("cloudformation")
    try:
        bucket = stack_outputs(stack)["BucketName"]
    except ClientError:
        return
    s3: Any = aws.client("s3")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
        objects = [{"Key": o["Key"], "VersionId": o["VersionId"]}
                   for o in page.get("Versions", []) + page.get("DeleteMarkers", [])]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    cfn.delete_stack(StackName=stack)
    cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig={"Delay": 2, "MaxAttempts": 300})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("step", choices=["deploy", "setup", "destroy", "preflight", "stack", "env", "node-layer",
                                         "chalice", "after-deploy"])
    parser.add_argument("--stage", required=True)
    parser.add_argument("--stack", help="the template's stack (default: sequence-hub-<stage>)")
    parser.add_argument("--ephemeral-mb", type=int, default=2048, help="runner /tmp size (512-10240)")
    parser.add_argument("--arch", default="x86_64", choices=sorted(node_layer.PLATFORMS))
    parser.add_argument("--subnets", default="", help="the fargate engine's subnets, comma-separated, in one VPC "
                                                     "(default: the default VPC's)")
    parser.add_argument("--no-fargate", action="store_true", help="a stage without the fargate engine")
    parser.add_argument("--spot", action="store_true", help="run fargate tasks on Fargate Spot (about 70%% cheaper; "
                                                            "a task may be stopped with two minutes' notice)")
    args = parser.parse_args()
    subnets = None if args.no_fargate else [s for s in args.subnets.split(",") if s]
    stack = args.stack or stack_name(args.stage)
    os.chdir(ROOT)
    steps = {
        "deploy": lambda: deploy(args.stage, stack, args.arch, args.ephemeral_mb, subnets, args.spot),
        "setup": lambda: setup(args.stage, stack, args.arch, subnets, args.spot, args.ephemeral_mb),
        "preflight": lambda: preflight(args.stage),
        "destroy": lambda: destroy(args.stage, stack),
        "stack": lambda: {**ensure_stack(args.stage, stack), **ensure_fargate(args.stage, stack, args.arch, subnets)},
        "env": lambda: wire_env(args.stage, stack, spot=args.spot, ephemeral_mb=args.ephemeral_mb),
        "node-layer": lambda: publish_node_layer(args.stage, stack, args.arch),
        "chalice": lambda: chalice_deploy(args.stage),
        "after-deploy": lambda: after_deploy(args.stage),
    }
    result = steps[args.step]()
    if result is not None:
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
