"""Rehearse the ops path (``make deploy-check``): against a moto server this starts and stops itself,
run exactly what docs/deploy.md tells ops to type, check what was deployed, deploy again (nothing
changes, nothing fails), tear it all down and check that nothing is left. In order:

1. under a low Lambda concurrency quota, ``make deploy`` is refused before anything is created;
2. on a fresh clone's layout, the one-time ``make setup`` then a literal ``chalice deploy``: a stage
   whose functions, environment, policies and Node layer are all in place; then the stage's wiring
   function's scheduled run, played with the environment it was deployed with: the stage is whole,
   checked as ``make deploy``'s is;
3. ``make deploy`` (the one command), checked thing by thing, then ``make deploy`` and a literal
   ``chalice deploy`` again: nothing changes;
4. ``make destroy``: nothing left, the functions' own log groups and the fargate engine included;
5. the same on arm64 (``ARCH=aarch64``): the functions, the layer and the fargate task agree.

Every deploy has the fargate engine (the default VPC's subnets): its cluster, task definition, roles
and security group are checked, and its IAM grants compared with infra/policies.py's, exactly.

It runs in a copy of the repository, so the deploy's own records (.chalice/deployed, the stage's
environment and policies) never touch the work tree. Where moto falls short of AWS this harness
bridges it, and only here; product code has no moto-only branch.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3

from chalicelib.wiring import GATEWAY_RESPONSES

from . import policies

ROOT = Path(__file__).resolve().parent.parent
STAGE = "dev"
PREFIX = f"sequence-hub-{STAGE}"
# What docs/deploy.md tells ops to type, word for word (the test of the docs checks they match).
DEPLOY = ["make", "deploy", f"STAGE={STAGE}"]
SETUP = ["make", "setup", f"STAGE={STAGE}"]
CHALICE = ["chalice", "deploy", "--stage", STAGE]  # with the venv's bin on PATH, as docs/deploy.md says
DESTROY = ["make", "destroy", f"STAGE={STAGE}"]
FUNCTIONS = [PREFIX, f"{PREFIX}-runner", f"{PREFIX}-cleanup", f"{PREFIX}-sweeper", f"{PREFIX}-wiring"]
# What the wiring function runs on its schedule (app.py's wiring).
WIRING_RUN = "from chalicelib import config, wiring; print(wiring.converge(config.load_wiring()))"
QUOTA = {"limit": 1000}  # the Lambda concurrency quota the bridged GetAccountSettings reports


def bridge_moto_gaps() -> None:
    """moto 5.2.5's ImportRestApi/PutRestApi take OpenAPI 3 only, and read ``info.description``,
    which Chalice's Swagger 2.0 body lacks (a 500). API Gateway takes Swagger 2.0: present the same
    paths as OpenAPI 3 and keep the binary media types Chalice declared, as API Gateway would. And
    API Gateway's overwrite (Chalice's every update) drops the gateway responses the body does not
    declare, which moto keeps: drop them, so the rehearsal sees what a later deploy resets."""
    from moto.apigateway.models import APIGatewayBackend

    original_import, original_put = APIGatewayBackend.import_rest_api, APIGatewayBackend.put_rest_api

    def as_oas3(doc: dict) -> dict:
        doc = {k: v for k, v in doc.items() if k != "swagger"}
        doc["openapi"] = "3.0.1"
        doc["info"] = {"description": "", **doc.get("info", {})}
        return doc

    def keep_binary_types(api: Any, doc: dict) -> Any:
        api.binaryMediaTypes = list(doc.get("x-amazon-apigateway-binary-media-types", []))
        return api

    def import_rest_api(self: Any, api_doc: dict, fail_on_warnings: bool) -> Any:
        return keep_binary_types(original_import(self, as_oas3(api_doc), fail_on_warnings), api_doc)

    def put_rest_api(self: Any, function_id: str, api_doc: dict, fail_on_warnings: bool, mode: str = "merge") -> Any:
        api = keep_binary_types(original_put(self, function_id, as_oas3(api_doc), fail_on_warnings, mode), api_doc)
        if mode == "overwrite":
            api.gateway_responses = {}
        return api

    APIGatewayBackend.import_rest_api = import_rest_api  # type: ignore[method-assign]
    APIGatewayBackend.put_rest_api = put_rest_api  # type: ignore[method-assign]
    bridge_lambda_gaps()
    bridge_ecs_gaps()


def bridge_ecs_gaps() -> None:
    """moto 5.2.5's CloudFormation makes a task definition from its family, containers and memory
    only, a cluster without its capacity providers, and a security group that keeps the default
    allow-all egress beside the rules given. CloudFormation passes every property: do as it does, so
    the rehearsal and the tests check the roles, network mode, CPU architecture and egress the stack sets.
    And its RunTask wants each container's own memory, which Fargate does not (the task's is enough);
    and its stacks delete neither a cluster nor a task definition, nor deregister a replaced one."""
    from moto.core.utils import pascal_to_camelcase, remap_nested_keys
    from moto.ec2.models import ec2_backends
    from moto.ec2.models.security_groups import SecurityGroup
    from moto.ecs.models import Cluster, EC2ContainerServiceBackend, TaskDefinition, ecs_backends

    if getattr(TaskDefinition, "_seqhub_bridged", False):
        return
    TaskDefinition._seqhub_bridged = True  # type: ignore[attr-defined]

    def task_definition(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str,
                        **kwargs: Any) -> Any:
        p = cloudformation_json["Properties"]
        return ecs_backends[account_id][region_name].register_task_definition(
            family=p["Family"], container_definitions=remap_nested_keys(p["ContainerDefinitions"], pascal_to_camelcase),
            network_mode=p.get("NetworkMode"), requires_compatibilities=p.get("RequiresCompatibilities"),
            cpu=p.get("Cpu"), memory=p.get("Memory"), task_role_arn=p.get("TaskRoleArn"),
            execution_role_arn=p.get("ExecutionRoleArn"),
            runtime_platform=remap_nested_keys(p.get("RuntimePlatform"), pascal_to_camelcase),
            tags=[{"key": t["Key"], "value": t["Value"]} for t in p.get("Tags", [])])

    def replace_task_definition(cls: Any, original: Any, new_resource_name: str, cloudformation_json: Any,
                                account_id: str, region_name: str) -> Any:
        ecs_backends[account_id][region_name].deregister_task_definition(original.arn)
        return task_definition(cls, new_resource_name, cloudformation_json, account_id, region_name)

    def deregister(self: Any, account_id: str, region_name: str) -> None:
        ecs_backends[account_id][region_name].deregister_task_definition(self.arn)

    def delete_cluster(self: Any, account_id: str, region_name: str) -> None:
        ecs_backends[account_id][region_name].delete_cluster(self.name)

    def cluster(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str,
                **kwargs: Any) -> Any:
        p = cloudformation_json.get("Properties", {})
        return ecs_backends[account_id][region_name].create_cluster(
            cluster_name=p.get("ClusterName", resource_name), capacity_providers=p.get("CapacityProviders"))

    original_group = SecurityGroup.create_from_cloudformation_json.__func__  # type: ignore[attr-defined]

    def security_group(cls: Any, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str,
                       **kwargs: Any) -> Any:
        group = original_group(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
        rules = cloudformation_json["Properties"].get("SecurityGroupEgress")
        if rules:
            group.egress_rules = []
            backend = ec2_backends[account_id][region_name]
            for rule in rules:
                backend.authorize_security_group_egress(
                    group_name_or_id=group.id, ip_protocol=rule["IpProtocol"], from_port=rule["FromPort"],
                    to_port=rule["ToPort"], ip_ranges=[{"CidrIp": rule["CidrIp"]}], vpc_id=group.vpc_id)
        return group

    original_requirements = EC2ContainerServiceBackend._calculate_task_resource_requirements

    def requirements(task_definition: Any) -> dict[str, Any]:
        if "FARGATE" in (task_definition.requires_compatibilities or []):  # no container instance to fit
            return {"CPU": 0, "MEMORY": 0, "PORTS": [], "PORTS_UDP": []}
        found: dict[str, Any] = original_requirements(task_definition)
        return found

    EC2ContainerServiceBackend._calculate_task_resource_requirements = staticmethod(requirements)  # type: ignore[method-assign,assignment]
    TaskDefinition.create_from_cloudformation_json = classmethod(task_definition)  # type: ignore[method-assign,assignment]
    TaskDefinition.update_from_cloudformation_json = classmethod(replace_task_definition)  # type: ignore[method-assign,assignment]
    TaskDefinition.delete = deregister  # type: ignore[attr-defined]
    Cluster.delete = delete_cluster  # type: ignore[attr-defined]
    Cluster.create_from_cloudformation_json = classmethod(cluster)  # type: ignore[method-assign,assignment]
    SecurityGroup.create_from_cloudformation_json = classmethod(security_group)  # type: ignore[method-assign,assignment]


def bridge_lambda_gaps() -> None:
    """moto 5.2.5 has no GetAccountSettings (the deploy's quota check): answer it as Lambda does,
    from QUOTA and the reservations made; and it drops EphemeralStorage on UpdateFunctionConfiguration,
    which Lambda keeps: keep it, so the rehearsal checks the /tmp size the deploy sets."""
    from moto.awslambda import urls
    from moto.awslambda.models import LambdaFunction, lambda_backends
    from moto.awslambda.responses import LambdaResponse
    from moto.core.models import DEFAULT_ACCOUNT_ID

    def account_settings(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        backend = lambda_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        reserved = sum(int(f.reserved_concurrency or 0) for f in backend.list_functions())
        limit = QUOTA["limit"]
        return 200, {}, json.dumps({"AccountLimit": {"ConcurrentExecutions": limit,
                                                     "UnreservedConcurrentExecutions": limit - reserved,
                                                     "TotalCodeSize": 80530636800, "CodeSizeUnzipped": 262144000,
                                                     "CodeSizeZipped": 52428800},
                                    "AccountUsage": {"TotalCodeSize": 0, "FunctionCount": len(backend.list_functions())}})

    urls.url_paths[r"{0}/(?P<api_version>[^/]+)/account-settings/?$"] = (
        lambda request, full_url, headers: account_settings(LambdaResponse(), request, full_url, headers))
    LambdaFunction.update_configuration = keeping_ephemeral_storage(  # type: ignore[method-assign]
        LambdaFunction.update_configuration)


def keeping_ephemeral_storage(update: Callable[..., Any]) -> Callable[..., Any]:
    """moto's UpdateFunctionConfiguration, keeping the EphemeralStorage it is given as Lambda does."""
    def update_configuration(self: Any, config_updates: dict[str, Any]) -> Any:
        if "EphemeralStorage" in config_updates:
            self.ephemeral_storage = config_updates["EphemeralStorage"]["Size"]
        return update(self, config_updates)

    return update_configuration


def copy_repo(dest: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored), times kept so make sees no change."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_symlink():  # as git checks it out (si/protocol is a link to chalicelib/protocol)
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            (dest / name).symlink_to(os.readlink(src))
        elif src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    for cached in ("build", ".chalice/deployments"):  # downloads a deploy would repeat
        if (ROOT / cached).is_dir():
            shutil.copytree(ROOT / cached, dest / cached, dirs_exist_ok=True)
    return dest


def run(argv: list[str], cwd: Path, env: dict) -> None:
    print("$", " ".join(argv), flush=True)
    subprocess.run(argv, cwd=cwd, env=env, check=True)


class Deployed:
    """What is deployed, read back through the AWS APIs."""

    def __init__(self, session: boto3.session.Session):
        self.lam: Any = session.client("lambda")
        self.cfn: Any = session.client("cloudformation")
        self.apigw: Any = session.client("apigateway")
        self.session = session

    def outputs(self) -> dict[str, str]:
        stack = self.cfn.describe_stacks(StackName=PREFIX)["Stacks"][0]
        return {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}

    def functions(self) -> dict[str, dict]:
        return {f["FunctionName"]: f for f in self.lam.list_functions()["Functions"]
                if f["FunctionName"].startswith(PREFIX)}

    def snapshot(self) -> dict:
        """What a second deploy must leave as it was."""
        fns = self.functions()
        return {
            "functions": {n: {k: f.get(k) for k in ("FunctionArn", "Runtime", "MemorySize", "Timeout",
                                                    "Environment", "Layers", "Role")} for n, f in fns.items()},
            "mappings": [{k: m.get(k) for k in ("UUID", "EventSourceArn", "FunctionArn")}
                         for m in self.lam.list_event_source_mappings(FunctionName=f"{PREFIX}-cleanup")["EventSourceMappings"]],
            "apis": sorted(a["id"] for a in self.apigw.get_rest_apis()["items"]),
            "layers": self.lam.list_layer_versions(LayerName=f"{PREFIX}-node")["LayerVersions"],
        }


def _expecter(problems: list[str], prefix: str = "") -> Callable[[str, Any, Any], None]:
    """``expect(what, actual, wanted)``: a problem in ``problems`` when the two differ."""
    def expect(what: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(f"{prefix}{what}: {actual!r}, wanted {wanted!r}")
    return expect


def role_policy(iam: Any, role: str, name: str) -> dict:
    """A role's inline policy as a document. botocore decodes IAM's answer; moto hands back the text it
    keeps, which for a policy its CloudFormation made is the document's Python repr."""
    document = iam.get_role_policy(RoleName=role, PolicyName=name)["PolicyDocument"]
    if not isinstance(document, str):
        return dict(document)
    try:
        found: dict = json.loads(document)
    except json.JSONDecodeError:
        found = ast.literal_eval(document)
    return found


def check_fargate(found: Deployed, config: dict, arch: str = "x86_64") -> list[str]:
    """The fargate engine as docs/deploy.md describes it: its stack, the stage's settings naming it, a
    task definition running the bootstrap on Lambda's image for the functions' architecture, a security
    group that lets nothing in, and roles granting exactly what infra/policies.py says."""
    from infra import policies

    problems: list[str] = []
    expect = _expecter(problems, "fargate ")
    stack = found.cfn.describe_stacks(StackName=f"{PREFIX}-fargate")["Stacks"][0]
    engine = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    env = config["stages"][STAGE]["environment_variables"]
    expect("cluster setting", env.get("SEQHUB_FARGATE_CLUSTER"), engine["ClusterName"])
    expect("task definition setting", env.get("SEQHUB_FARGATE_TASK_DEFINITION"), engine["TaskDefinitionArn"])
    expect("subnets setting", env.get("SEQHUB_FARGATE_SUBNETS"), engine["TaskSubnets"])
    expect("security group setting", env.get("SEQHUB_FARGATE_SECURITY_GROUP"), engine["TaskSecurityGroupId"])
    ecs: Any = found.session.client("ecs")
    cluster = ecs.describe_clusters(clusters=[engine["ClusterName"]])["clusters"][0]
    expect("capacity providers", sorted(cluster.get("capacityProviders", [])), ["FARGATE", "FARGATE_SPOT"])
    task = ecs.describe_task_definition(taskDefinition=engine["TaskDefinitionArn"])["taskDefinition"]
    account = found.session.client("sts").get_caller_identity()["Account"]
    roles = [f"arn:aws:iam::{account}:role/{PREFIX}-task", f"arn:aws:iam::{account}:role/{PREFIX}-task-execution"]
    expect("task role", task.get("taskRoleArn"), roles[0])
    expect("execution role", task.get("executionRoleArn"), roles[1])
    expect("network mode", task.get("networkMode"), "awsvpc")
    expect("compatibilities", task.get("requiresCompatibilities"), ["FARGATE"])
    expect("architecture", task.get("runtimePlatform", {}).get("cpuArchitecture"),
           "X86_64" if arch == "x86_64" else "ARM64")
    container = task["containerDefinitions"][0]
    expect("image", container["image"], "public.ecr.aws/lambda/python:3.12")
    expect("entry point", container["entryPoint"],
           ["python3", "-c", (ROOT / "chalicelib" / "runner" / "bootstrap.py").read_text()])
    expect("stop timeout", container.get("stopTimeout"), 60)
    expect("runner function", {e["name"]: e["value"] for e in container["environment"]}.get("SEQHUB_RUNNER_FUNCTION"),
           f"{PREFIX}-runner")
    ec2: Any = found.session.client("ec2")
    group = ec2.describe_security_groups(GroupIds=[engine["TaskSecurityGroupId"]])["SecurityGroups"][0]
    expect("ingress", group["IpPermissions"], [])
    expect("egress", [(r["IpProtocol"], r.get("FromPort"), r.get("ToPort")) for r in group["IpPermissionsEgress"]],
           [("tcp", 443, 443)])
    iam: Any = found.session.client("iam")
    outputs = found.outputs()
    known = {"account": account, "region": "us-east-1", "bucket": outputs["BucketName"],
             "queue": outputs["FailureQueueArn"]}
    put = role_policy(iam, f"{PREFIX}-task", "runner")
    expect("task role policy", put, policies.task_policy(STAGE, **known))
    wanted = policies.policies(STAGE, True, **known)
    api = {st["Sid"]: st for st in wanted[f"policy-{STAGE}.json"]["Statement"]}
    expect("API may pass", api["PassTaskRoles"]["Resource"], roles)
    expect("API may run", api["RunTasks"]["Resource"], [f"arn:aws:ecs:us-east-1:{account}:task-definition/{PREFIX}-runner:*"])
    # The deployed functions' roles hold those documents, word for word: who may run, pass and stop.
    holders: set[str] = set()
    for role in (r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(PREFIX)):
        for name in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
            document = role_policy(iam, role["RoleName"], name)
            if any(st.get("Sid") in ("RunTasks", "StopTasks") for st in document["Statement"]):
                holders.add(role["RoleName"])
                if document not in wanted.values():
                    problems.append(f"fargate: role {role['RoleName']}'s policy is not infra/policies.py's")
    # Chalice names the API's role <app>-<stage>-api_handler, the others <app>-<stage>-<function>.
    expect("roles that run or stop tasks", sorted(holders), [f"{PREFIX}-api_handler", f"{PREFIX}-sweeper"])
    return problems


def check_deployed(found: Deployed, config: dict, arch: str = "x86_64") -> list[str]:
    """Each thing docs/deploy.md says a deploy sets up; returns what is wrong (empty: all good)."""
    problems: list[str] = check_fargate(found, config, arch)

    expect = _expecter(problems)
    outputs = found.outputs()
    stage = config["stages"][STAGE]
    fns = found.functions()
    expect("functions", sorted(fns), sorted(FUNCTIONS))
    for name, fn in fns.items():
        expect(f"{name} runtime", fn["Runtime"], "python3.12")
        env = fn.get("Environment", {}).get("Variables", {})
        expect(f"{name} table", env.get("SEQHUB_TABLE"), outputs["TableName"])
        expect(f"{name} bucket", env.get("SEQHUB_BUCKET"), outputs["BucketName"])
        expect(f"{name} log group", env.get("SEQHUB_LOG_GROUP"), outputs["LogGroupName"])
        expect(f"{name} runner", env.get("RUNNER_FUNCTION"), f"{PREFIX}-runner")
    runner = fns.get(f"{PREFIX}-runner", {})
    expect("runner /tmp", runner.get("EphemeralStorage", {}).get("Size"), 2048)
    expect("runner timeout", runner.get("Timeout"), stage["lambda_functions"]["runner"]["lambda_timeout"])
    expect("runner memory", runner.get("MemorySize"), stage["lambda_functions"]["runner"]["lambda_memory_size"])
    expect("runner layers", [la["Arn"] for la in runner.get("Layers", [])], stage["lambda_functions"]["runner"]["layers"])
    expect("API memory", fns.get(PREFIX, {}).get("MemorySize"), config["lambda_memory_size"])
    concurrency = found.lam.get_function_concurrency(FunctionName=f"{PREFIX}-runner")
    expect("runner reserved concurrency", concurrency.get("ReservedConcurrentExecutions"),
           stage["lambda_functions"]["runner"]["reserved_concurrency"])
    invoke = found.lam.get_function_event_invoke_config(FunctionName=f"{PREFIX}-runner")
    expect("runner retries", invoke["MaximumRetryAttempts"], 0)
    expect("runner event age", invoke["MaximumEventAgeInSeconds"], 300)
    expect("runner failures", invoke["DestinationConfig"]["OnFailure"]["Destination"], outputs["FailureQueueArn"])
    mappings = found.lam.list_event_source_mappings(FunctionName=f"{PREFIX}-cleanup")["EventSourceMappings"]
    expect("stream mappings", len(mappings), 1)
    if mappings:
        mapping = mappings[0]
        expect("stream source", mapping["EventSourceArn"], outputs["TableStreamArn"])
        pattern = json.loads(mapping["FilterCriteria"]["Filters"][0]["Pattern"])
        expect("stream filter", pattern["eventName"], ["REMOVE"])
        expect("stream retries", mapping.get("MaximumRetryAttempts"), 3)
        expect("stream bisect", mapping.get("BisectBatchOnFunctionError"), True)
        expect("stream partial failures", mapping.get("FunctionResponseTypes"), ["ReportBatchItemFailures"])
        expect("stream failures", mapping.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"),
               outputs["FailureQueueArn"])
    apis = found.apigw.get_rest_apis()["items"]
    expect("APIs", len(apis), 1)
    if apis:
        expect("binary media types", apis[0].get("binaryMediaTypes"), ["*/*"])
        responses = {r["responseType"]: r.get("responseTemplates", {}).get("application/json")
                     for r in found.apigw.get_gateway_responses(restApiId=apis[0]["id"])["items"]}
        expect("API Gateway's own errors", {k: responses.get(k) for k in GATEWAY_RESPONSES}, GATEWAY_RESPONSES)
    rules = found.session.client("events").list_rules()["Rules"]
    expect("sweeper schedule", [r["ScheduleExpression"] for r in rules if "sweeper" in r["Name"]], ["rate(1 minute)"])
    expect("wiring schedule", [r["ScheduleExpression"] for r in rules if "wiring" in r["Name"]], ["rate(1 minute)"])
    iam: Any = found.session.client("iam")
    account = found.session.client("sts").get_caller_identity()["Account"]
    for role in (r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(PREFIX)):
        for policy_name in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
            document = role_policy(iam, role["RoleName"], policy_name)
            arns = [r for st in document["Statement"] if not set(_listed(st["Action"])) <= set(policies.UNSCOPED)
                    for r in _listed(st["Resource"])]
            # S3 ARNs name no region or account: their bucket must be exact; IAM's name no region and
            # API Gateway's no account; every other ARN names both.
            loose = [a for a in arns if ("*" in a.split(":::")[1].split("/")[0] if a.startswith("arn:aws:s3:::")
                                         else a.split(":")[3:5] != _exact(a, account))]
            if loose:
                problems.append(f"role {role['RoleName']} grants resources not named exactly: {loose}")
    return problems


def _listed(value: str | list[str]) -> list[str]:
    # A statement's Action or Resource is a list or (as CloudFormation may write it) one string.
    return [value] if isinstance(value, str) else value


def _exact(arn: str, account: str) -> list[str]:
    """The region and account an ARN of this stage names."""
    if arn.startswith("arn:aws:iam:"):
        return ["", account]
    return ["us-east-1", "" if arn.startswith("arn:aws:apigateway:") else account]


def check_chalice_part(found: Deployed, config: dict, arch: str = "x86_64") -> list[str]:
    """What a literal `chalice deploy` after `make setup` must have made: the five functions, each with
    the stage's environment and the layer's architecture, the runner with its layer."""
    problems: list[str] = []
    stage = config["stages"][STAGE]
    outputs = found.outputs()
    fns = found.functions()
    wanted_arch = ["x86_64"] if arch == "x86_64" else ["arm64"]
    if sorted(fns) != sorted(FUNCTIONS):
        problems.append(f"functions after chalice deploy: {sorted(fns)}")
    for name, fn in fns.items():
        if fn.get("Environment", {}).get("Variables", {}).get("SEQHUB_BUCKET") != outputs["BucketName"]:
            problems.append(f"{name} has not the stage's bucket")
        if fn.get("Architectures") != wanted_arch:
            problems.append(f"{name} architectures {fn.get('Architectures')}, wanted {wanted_arch}")
    runner = fns.get(f"{PREFIX}-runner", {})
    layers = [la["Arn"] for la in runner.get("Layers", [])]
    if layers != stage["lambda_functions"]["runner"].get("layers"):
        problems.append(f"runner layers {layers}")
    for arn in layers:
        versions = found.lam.list_layer_versions(LayerName=arn.split(":")[6])["LayerVersions"]
        version = next((v for v in versions if v["LayerVersionArn"] == arn), {})
        if version.get("CompatibleArchitectures") != wanted_arch:
            problems.append(f"layer {arn} is for {version.get('CompatibleArchitectures')}, wanted {wanted_arch}")
    return problems


def first_runs(session: boto3.session.Session) -> None:
    """The log groups Lambda makes for each function on its first run (moto runs none)."""
    logs: Any = session.client("logs")
    for name in FUNCTIONS:
        logs.create_log_group(logGroupName=f"/aws/lambda/{name}")


def leftovers(found: Deployed) -> list[str]:
    """Anything of the stage still there after the tear-down."""
    left = [f"function {n}" for n in found.functions()]
    left += [f"API {a['name']}" for a in found.apigw.get_rest_apis()["items"]]
    stacks = found.cfn.list_stacks()["StackSummaries"]
    left += [f"stack {s['StackName']}" for s in stacks if s["StackStatus"] != "DELETE_COMPLETE"]
    left += [f"bucket {b['Name']}" for b in found.session.client("s3").list_buckets()["Buckets"]]
    left += [f"table {t}" for t in found.session.client("dynamodb").list_tables()["TableNames"]]
    left += [f"role {r['RoleName']}" for r in found.session.client("iam").list_roles()["Roles"]
             if r["RoleName"].startswith(PREFIX)]
    left += [f"layer {la['LayerName']}" for la in found.lam.list_layers()["Layers"]]
    left += [f"rule {r['Name']}" for r in found.session.client("events").list_rules()["Rules"]]
    left += [f"mapping {m['UUID']}" for m in found.lam.list_event_source_mappings()["EventSourceMappings"]]
    left += [f"log group {g['logGroupName']}" for g in found.session.client("logs").describe_log_groups()["logGroups"]]
    ecs: Any = found.session.client("ecs")
    left += [f"cluster {c['clusterName']}" for c in ecs.describe_clusters(clusters=ecs.list_clusters()["clusterArns"])
             .get("clusters", []) if c.get("status") == "ACTIVE"] if ecs.list_clusters()["clusterArns"] else []
    left += [f"task definition {arn}" for arn in ecs.list_task_definitions(status="ACTIVE")["taskDefinitionArns"]]
    left += [f"security group {g['GroupId']}" for g in found.session.client("ec2").describe_security_groups()["SecurityGroups"]
             if g["GroupName"] != "default"]
    return left


def wiring_run(found: Deployed, cwd: Path, env: dict) -> None:
    """The wiring function's scheduled run (moto runs no function): its code, with the environment it
    was deployed with."""
    deployed = found.lam.get_function_configuration(FunctionName=f"{PREFIX}-wiring")["Environment"]["Variables"]
    run([sys.executable, "-c", WIRING_RUN], cwd, {**env, **deployed})


def refused(argv: list[str], cwd: Path, env: dict) -> str:
    print("$", " ".join(argv), "(expected to be refused)", flush=True)
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    return "" if done.returncode == 0 else done.stderr


def rehearse() -> int:
    from chalicelib.embedded.hub import moto_server

    bridge_moto_gaps()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request is noise here
    server = moto_server()
    server.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "rehearsal",
                    "AWS_SECRET_ACCESS_KEY": "rehearsal", "AWS_DEFAULT_REGION": "us-east-1"})
        session = boto3.session.Session(aws_access_key_id="rehearsal", aws_secret_access_key="rehearsal",
                                        region_name="us-east-1")
        os.environ["AWS_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL"]
        found = Deployed(session)
        env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"  # the venv, activated
        problems: list[str] = []
        with tempfile.TemporaryDirectory(prefix="seqhub-rehearsal-") as tmp:
            copy = copy_repo(Path(tmp))
            # 1. a quota too low for the runner's reservation: refused before anything is made
            QUOTA["limit"] = 250
            why = refused(DEPLOY, copy, env)
            if "L-B99A9384" not in why or "Nothing was created" not in why:
                problems.append(f"a deploy under a 250 quota was not refused as it should be: {why[-600:]!r}")
            problems += [f"made under a low quota: {what}" for what in leftovers(found)]
            QUOTA["limit"] = 1000
            # 2. the one-time step, then Chalice alone
            run(SETUP, copy, env)
            run(CHALICE, copy, env)
            config = json.loads((copy / ".chalice" / "config.json").read_text())
            problems += check_chalice_part(found, config)
            wiring_run(found, copy, env)  # the stage's own wiring function completes it
            problems += [f"after chalice deploy and a wiring run: {p}" for p in check_deployed(found, config)]
            # 3. the one command, checked; again, and Chalice alone again: nothing changes
            run(DEPLOY, copy, env)
            config = json.loads((copy / ".chalice" / "config.json").read_text())
            problems += check_deployed(found, config)
            before = found.snapshot()
            run(DEPLOY, copy, env)
            run(CHALICE, copy, env)  # resets API Gateway's error bodies (as on AWS): the next wiring run restores them
            wiring_run(found, copy, env)
            after = found.snapshot()
            if before != after:
                problems.append(f"a second deploy changed what was deployed:\n{before}\n{after}")
            problems += check_deployed(found, json.loads((copy / ".chalice" / "config.json").read_text()))
            # 4. tear-down, after the functions have run (and so made their log groups)
            first_runs(session)
            run(DESTROY, copy, env)
            problems += [f"left after tear-down: {what}" for what in leftovers(found)]
            # 5. arm64: functions, layer and config agree
            run([*DEPLOY, "ARCH=aarch64"], copy, env)
            config = json.loads((copy / ".chalice" / "config.json").read_text())
            problems += [f"arm64: {p}" for p in check_chalice_part(found, config, "aarch64")]
            problems += [f"arm64: {p}" for p in check_deployed(found, config, "aarch64")]
            first_runs(session)
            run(DESTROY, copy, env)
            problems += [f"left after the arm64 tear-down: {what}" for what in leftovers(found)]
    finally:
        server.stop()
    for problem in problems:
        print("FAIL", problem, file=sys.stderr)
    print("deploy rehearsal: " + ("passed" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(rehearse())
