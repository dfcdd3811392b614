"""Least-privilege IAM policies for each Lambda of a stage, written to .chalice/policy-<stage>*.json.

``python -m infra.wire env`` writes them with the exact account, region, bucket and queue of the
deployed stack (no ``*`` for those); with nothing known yet they stay open, for tests.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = "sequence-hub"


# Actions IAM scopes by no resource (the Service Authorization Reference lists none for them): their
# statements name "*"; making a mapping is scoped by its function instead, in this condition key.
UNSCOPED = {"lambda:ListEventSourceMappings": None, "lambda:CreateEventSourceMapping": "lambda:FunctionArn"}


def names(stage: str, account: str = "*", region: str = "*", bucket: str | None = None,
          queue: str | None = None) -> dict[str, str]:
    where = f"{region}:{account}"
    return {
        "table": f"arn:aws:dynamodb:{where}:table/{APP}-{stage}",
        "stream": f"arn:aws:dynamodb:{where}:table/{APP}-{stage}/stream/*",
        "bucket": f"arn:aws:s3:::{bucket or APP + '-' + stage + '-*'}",
        "log_group": f"arn:aws:logs:{where}:log-group:/{APP}/{stage}/instances",
        "runner": f"arn:aws:lambda:{where}:function:{APP}-{stage}-runner",
        "cleanup": f"arn:aws:lambda:{where}:function:{APP}-{stage}-cleanup",
        "api": f"arn:aws:lambda:{where}:function:{APP}-{stage}",
        "mappings": f"arn:aws:lambda:{where}:event-source-mapping:*",
        # API Gateway's ARNs name a region and no account; the API's id is made by `chalice deploy`.
        "gateway_responses": [f"arn:aws:apigateway:{region}::/restapis/*/gatewayresponses",
                              f"arn:aws:apigateway:{region}::/restapis/*/gatewayresponses/*"],
        "deployments": f"arn:aws:apigateway:{region}::/restapis/*/deployments",
        "node_layer": f"arn:aws:lambda:{where}:layer:{APP}-{stage}-node:*",
        # The fargate engine's (infra/fargate.yaml names them so).
        "cluster": f"arn:aws:ecs:{where}:cluster/{APP}-{stage}",
        "task_definition": f"arn:aws:ecs:{where}:task-definition/{APP}-{stage}-runner:*",
        "tasks": f"arn:aws:ecs:{where}:task/{APP}-{stage}/*",
        "task_roles": [f"arn:aws:iam::{account}:role/{APP}-{stage}-task",
                       f"arn:aws:iam::{account}:role/{APP}-{stage}-task-execution"],
        "queue": queue or f"arn:aws:sqs:{where}:{APP}-{stage}-failures",
        # The API function is <app>-<stage>; the others <app>-<stage>-<name>.
        "own_logs": [f"arn:aws:logs:{where}:log-group:/aws/lambda/{APP}-{stage}",
                     f"arn:aws:logs:{where}:log-group:/aws/lambda/{APP}-{stage}-*"],
    }


def _doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _stmt(sid: str, actions: list[str], resources: list[str], condition: dict | None = None) -> dict:
    statement = {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}
    if condition:
        statement["Condition"] = condition
    return statement


def _slots_only(table: str) -> dict:
    # Deleting items of the cap slots (a running slot given back) and of nothing else.
    return _stmt("GiveBackSlots", ["dynamodb:DeleteItem"], [table],
                 {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["slots#*"]}})


def _own_logs(n: dict) -> dict:
    # Every Lambda writes its own logs (Powertools JSON lines) to /aws/lambda/<function>.
    return _stmt("OwnLogs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                 [arn for group in n["own_logs"] for arn in (group, group + ":log-stream:*")])


def _topic_chunks(n: dict) -> dict:
    # Large topic chunks; the records themselves are written in transactions of PutItems.
    return _stmt("TopicChunks", ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], [n["bucket"] + "/topics/*"])


def _stop_tasks(n: dict) -> list[dict]:
    # A killed or settled fargate instance's task (its ARN is on its record), in this stage's cluster.
    return [_stmt("StopTasks", ["ecs:StopTask"], [n["tasks"]], {"ArnEquals": {"ecs:cluster": n["cluster"]}})]


def _run_tasks(n: dict) -> list[dict]:
    # The fargate engine: this stage's task definition, in its cluster, with exactly its two roles.
    return [_stmt("RunTasks", ["ecs:RunTask"], [n["task_definition"]], {"ArnEquals": {"ecs:cluster": n["cluster"]}}),
            _stmt("PassTaskRoles", ["iam:PassRole"], n["task_roles"],
                  {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
            *_stop_tasks(n)]


def task_policy(stage: str, **known: str) -> dict:
    """The fargate task's role: the runner function's own policy, and what the bootstrap needs to
    fetch that function's code and its Node layer (chalicelib/runner/bootstrap.py)."""
    n = names(stage, **known)
    runner = policies(stage, **known)[f"policy-{stage}-runner.json"]
    own_logs = {"OwnLogs", "Failures"}  # the task logs through its execution role; it is not invoked
    return _doc(*(s for s in runner["Statement"] if s["Sid"] not in own_logs),
                _stmt("FetchRunnerCode", ["lambda:GetFunction"], [n["runner"]]),
                _stmt("FetchNodeLayer", ["lambda:GetLayerVersion"], [n["node_layer"]]))


def policies(stage: str, fargate: bool = False, **known: str) -> dict[str, dict]:
    """{file name: policy document} for the API, runner, cleanup, sweeper and wiring functions; ``fargate``:
    the stage has the fargate engine (the API runs and stops tasks, the sweeper stops them)."""
    n = names(stage, **known)
    table, indexes = n["table"], [n["table"] + "/index/listing"]
    api = _doc(
        _stmt("Records", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                          "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"], [table, *indexes]),
        _stmt("Packages", ["s3:PutObject", "s3:DeleteObject"], [n["bucket"] + "/packages/*"]),
        _stmt("Uploads", ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], [n["bucket"] + "/uploads/*"]),
        _stmt("Inputs", ["s3:PutObject"], [n["bucket"] + "/inputs/*"]),
        _stmt("ReadChannels", ["s3:GetObject"], [n["bucket"] + "/channels/*"]),
        _topic_chunks(n),
        _stmt("StartRunner", ["lambda:InvokeFunction"], [n["runner"]]),
        *(_run_tasks(n) if fargate else []),
        _own_logs(n),
    )
    runner = _doc(
        _stmt("Instance", ["dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:PutItem", "dynamodb:Query",
                           "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem"], [table]),
        _slots_only(table),
        _stmt("PackagesAndInputs", ["s3:GetObject"], [n["bucket"] + "/packages/*", n["bucket"] + "/inputs/*"]),
        # Read back too: output written before the sequence named its topic goes to the topic first.
        _stmt("WriteSegments", ["s3:PutObject", "s3:GetObject"], [n["bucket"] + "/channels/*"]),
        _topic_chunks(n),  # an instance's output topic and input topic
        _stmt("WriteChannels", ["logs:CreateLogStream", "logs:PutLogEvents"],
              [n["log_group"], n["log_group"] + ":log-stream:*"]),
        _stmt("Failures", ["sqs:SendMessage"], [n["queue"]]),  # async invocations that failed
        _own_logs(n),
    )
    purge = [
        _stmt("DeleteRecords", ["dynamodb:Query", "dynamodb:BatchWriteItem"], [table]),
        _stmt("DeleteChannels", ["logs:DeleteLogStream"], [n["log_group"] + ":log-stream:*"]),
        _stmt("ListObjects", ["s3:ListBucket"], [n["bucket"]]),
    ]
    cleanup = _doc(
        # What it purges is no longer counted as retained; it updates that count and nothing else.
        _stmt("RetainedCount", ["dynamodb:UpdateItem"], [table],
              {"ForAllValues:StringEquals": {"dynamodb:LeadingKeys": ["counts"]}}),
        _stmt("ExpiryStream", ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                               "dynamodb:ListStreams"], [n["stream"]]),
        *purge,
        _stmt("DeleteObjects", ["s3:DeleteObject"], [n["bucket"] + "/inputs/*", n["bucket"] + "/channels/*"]),
        _stmt("Failures", ["sqs:SendMessage"], [n["queue"]]),  # stream batches that kept failing
        _own_logs(n),
    )
    sweeper = _doc(
        _stmt("Settle", ["dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:UpdateItem"], [table, *indexes]),
        _stmt("ExpireTopics", ["dynamodb:DeleteItem"], [table]),
        *purge,
        _stmt("DeleteObjects", ["s3:DeleteObject"],
              [n["bucket"] + "/inputs/*", n["bucket"] + "/channels/*", n["bucket"] + "/uploads/*",
               n["bucket"] + "/topics/*"]),
        *(_stop_tasks(n) if fargate else []),
        _own_logs(n),
    )
    cleanup_function = {"StringEquals": {"lambda:FunctionArn": n["cleanup"]}}
    wiring = _doc(  # chalicelib/wiring.py: it reads each setting and writes only what differs
        _stmt("RunnerSettings", ["lambda:GetFunctionConfiguration", "lambda:UpdateFunctionConfiguration",
                                 "lambda:GetFunctionEventInvokeConfig", "lambda:PutFunctionEventInvokeConfig"],
              [n["runner"]]),
        # IAM scopes neither listing mappings nor making one by resource; making one, by its function.
        _stmt("FindStreamMapping", ["lambda:ListEventSourceMappings"], ["*"]),
        _stmt("MakeStreamMapping", ["lambda:CreateEventSourceMapping"], ["*"], cleanup_function),
        _stmt("StreamMapping", ["lambda:UpdateEventSourceMapping"], [n["mappings"]], cleanup_function),
        _stmt("FindRestApi", ["lambda:GetPolicy"], [n["api"]]),
        _stmt("GatewayErrors", ["apigateway:GET", "apigateway:PUT"], n["gateway_responses"]),
        _stmt("DeployGatewayErrors", ["apigateway:POST"], [n["deployments"]]),
        _own_logs(n),
    )
    return {f"policy-{stage}.json": api, f"policy-{stage}-runner.json": runner,
            f"policy-{stage}-cleanup.json": cleanup, f"policy-{stage}-sweeper.json": sweeper,
            f"policy-{stage}-wiring.json": wiring}


def write(stage: str, directory: Path = ROOT / ".chalice", fargate: bool = False, **known: str) -> list[Path]:
    written = []
    for name, doc in policies(stage, fargate, **known).items():
        path = directory / name
        path.write_text(json.dumps(doc, indent=2) + "\n")
        written.append(path)
    return written
