"""Least-privilege IAM policies for each Lambda of a stage, written to .chalice/policy-<stage>*.json.

Resources are named by infra/template.yaml (deterministic per stage), so the policies can name them
exactly; region and account are left open so the same files deploy to any account.
"""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APP = "sequence-hub"


def names(stage: str) -> dict[str, str]:
    return {
        "table": f"arn:aws:dynamodb:*:*:table/{APP}-{stage}",
        "stream": f"arn:aws:dynamodb:*:*:table/{APP}-{stage}/stream/*",
        "bucket": f"arn:aws:s3:::{APP}-{stage}-*",
        "log_group": f"arn:aws:logs:*:*:log-group:/{APP}/{stage}/instances",
        "runner": f"arn:aws:lambda:*:*:function:{APP}-{stage}-runner",
        "own_logs": f"arn:aws:logs:*:*:log-group:/aws/lambda/{APP}-{stage}-*",
    }


def _doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def _stmt(sid: str, actions: list[str], resources: list[str]) -> dict:
    return {"Sid": sid, "Effect": "Allow", "Action": sorted(actions), "Resource": resources}


def _own_logs(n: dict) -> dict:
    # Every Lambda writes its own logs (Powertools JSON lines) to /aws/lambda/<function>.
    return _stmt("OwnLogs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                 [n["own_logs"], n["own_logs"] + ":log-stream:*"])


def policies(stage: str) -> dict[str, dict]:
    """{file name: policy document} for the API, the runner and the cleanup functions."""
    n = names(stage)
    api = _doc(
        _stmt("Records", ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                          "dynamodb:DeleteItem", "dynamodb:Query"], [n["table"], n["table"] + "/index/by_kind"]),
        _stmt("Packages", ["s3:PutObject", "s3:DeleteObject"], [n["bucket"] + "/packages/*"]),
        _stmt("Uploads", ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"], [n["bucket"] + "/uploads/*"]),
        _stmt("Inputs", ["s3:PutObject"], [n["bucket"] + "/inputs/*"]),
        _stmt("ReadChannels", ["logs:GetLogEvents"], [n["log_group"] + ":log-stream:*"]),
        _stmt("StartRunner", ["lambda:InvokeFunction"], [n["runner"]]),
        _own_logs(n),
    )
    runner = _doc(
        _stmt("Instance", ["dynamodb:GetItem", "dynamodb:UpdateItem"], [n["table"]]),
        _stmt("PackagesAndInputs", ["s3:GetObject"], [n["bucket"] + "/packages/*", n["bucket"] + "/inputs/*"]),
        _stmt("WriteChannels", ["logs:CreateLogStream", "logs:PutLogEvents"],
              [n["log_group"], n["log_group"] + ":log-stream:*"]),
        _own_logs(n),
    )
    cleanup = _doc(
        _stmt("ExpiryStream", ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                               "dynamodb:ListStreams"], [n["stream"]]),
        _stmt("DeleteChannels", ["logs:DeleteLogStream"], [n["log_group"] + ":log-stream:*"]),
        _stmt("ListInputs", ["s3:ListBucket"], [n["bucket"]]),
        _stmt("DeleteInputs", ["s3:DeleteObject"], [n["bucket"] + "/inputs/*"]),
        _own_logs(n),
    )
    return {f"policy-{stage}.json": api, f"policy-{stage}-runner.json": runner,
            f"policy-{stage}-cleanup.json": cleanup}


def write(stage: str) -> list[Path]:
    written = []
    for name, doc in policies(stage).items():
        path = ROOT / ".chalice" / name
        path.write_text(json.dumps(doc, indent=2) + "\n")
        written.append(path)
    return written
