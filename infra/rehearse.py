"""Rehearse the ops path (``make deploy-check``): against a moto server this starts and stops itself,
run exactly what docs/deploy.md tells ops to type, check what was deployed, deploy again (nothing
changes, nothing fails), tear it all down and check that nothing is left.

It runs in a copy of the repository, so the deploy's own records (.chalice/deployed, the stage's
environment and policies) never touch the work tree. Where moto falls short of AWS this harness
bridges it, and only here; product code has no moto-only branch.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import boto3

ROOT = Path(__file__).resolve().parent.parent
STAGE = "dev"
PREFIX = f"sequence-hub-{STAGE}"
# What docs/deploy.md tells ops to type, word for word (the test of the docs checks they match).
DEPLOY = ["make", "deploy", f"STAGE={STAGE}"]
DESTROY = ["make", "destroy", f"STAGE={STAGE}"]


def bridge_moto_gaps() -> None:
    """moto 5.2.5's ImportRestApi/PutRestApi take OpenAPI 3 only, and read ``info.description``,
    which Chalice's Swagger 2.0 body lacks (a 500). API Gateway takes Swagger 2.0: present the same
    paths as OpenAPI 3 and keep the binary media types Chalice declared, as API Gateway would."""
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
        return keep_binary_types(original_put(self, function_id, as_oas3(api_doc), fail_on_warnings, mode), api_doc)

    APIGatewayBackend.import_rest_api = import_rest_api  # type: ignore[method-assign]
    APIGatewayBackend.put_rest_api = put_rest_api  # type: ignore[method-assign]


def copy_repo(dest: Path) -> Path:
    """The repository's files (tracked, and new ones not ignored), times kept so make sees no change."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
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


def check_deployed(found: Deployed, config: dict) -> list[str]:
    """Each thing docs/deploy.md says a deploy sets up; returns what is wrong (empty: all good)."""
    problems: list[str] = []

    def expect(what: str, actual: Any, wanted: Any) -> None:
        if actual != wanted:
            problems.append(f"{what}: {actual!r}, wanted {wanted!r}")

    outputs = found.outputs()
    stage = config["stages"][STAGE]
    fns = found.functions()
    expect("functions", sorted(fns), sorted([PREFIX, f"{PREFIX}-runner", f"{PREFIX}-cleanup", f"{PREFIX}-sweeper"]))
    for name, fn in fns.items():
        expect(f"{name} runtime", fn["Runtime"], "python3.12")
        env = fn.get("Environment", {}).get("Variables", {})
        expect(f"{name} table", env.get("SEQHUB_TABLE"), outputs["TableName"])
        expect(f"{name} bucket", env.get("SEQHUB_BUCKET"), outputs["BucketName"])
        expect(f"{name} log group", env.get("SEQHUB_LOG_GROUP"), outputs["LogGroupName"])
        expect(f"{name} runner", env.get("RUNNER_FUNCTION"), f"{PREFIX}-runner")
    runner = fns.get(f"{PREFIX}-runner", {})
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
    rules = found.session.client("events").list_rules()["Rules"]
    expect("sweeper schedule", [r["ScheduleExpression"] for r in rules if "sweeper" in r["Name"]], ["rate(1 minute)"])
    iam: Any = found.session.client("iam")
    account = found.session.client("sts").get_caller_identity()["Account"]
    for role in (r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith(PREFIX)):
        for policy_name in iam.list_role_policies(RoleName=role["RoleName"])["PolicyNames"]:
            document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName=policy_name)["PolicyDocument"]
            arns = [r for st in document["Statement"] for r in st["Resource"]]
            # S3 ARNs name no region or account: their bucket must be exact; every other ARN names both.
            loose = [a for a in arns if ("*" in a.split(":::")[1].split("/")[0] if a.startswith("arn:aws:s3:::")
                                         else a.split(":")[3:5] != ["us-east-1", account])]
            if loose:
                problems.append(f"role {role['RoleName']} grants resources not named exactly: {loose}")
    return problems


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
    return left


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
        with tempfile.TemporaryDirectory(prefix="seqhub-rehearsal-") as tmp:
            copy = copy_repo(Path(tmp))
            run(DEPLOY, copy, env)
            config = json.loads((copy / ".chalice" / "config.json").read_text())
            problems = check_deployed(found, config)
            before = found.snapshot()
            run(DEPLOY, copy, env)  # again: no change, no error
            after = found.snapshot()
            if before != after:
                problems.append(f"a second deploy changed what was deployed:\n{before}\n{after}")
            problems += check_deployed(found, json.loads((copy / ".chalice" / "config.json").read_text()))
            run(DESTROY, copy, env)
            problems += [f"left after tear-down: {what}" for what in leftovers(found)]
    finally:
        server.stop()
    for problem in problems:
        print("FAIL", problem, file=sys.stderr)
    print("deploy rehearsal: " + ("passed" if not problems else f"{len(problems)} problems"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(rehearse())
