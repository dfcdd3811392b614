"""A deployed stage's wiring: what ``chalice deploy`` cannot declare, kept as it should be.

``make deploy`` applies it straight after Chalice (infra/wire.py), and the stage's own ``wiring``
function applies it every minute, so a stage deployed with a bare ``chalice deploy`` is whole within
a minute, and again after any later deploy that resets part of it (Chalice's API update replaces API
Gateway's error bodies). Each part is read first and written only when it differs: a stage as it
should be costs five reads a run, and the function never races a deploy over settings it keeps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from . import aws
from .config import Wiring
from .sweeper import START_TIMEOUT_SECONDS

STREAM_RETRIES = 3
# The cleanup acts on one thing only: an instance's own record removed by DynamoDB's TTL (the
# sweeper purges everything of the instances it removes itself: those must not be purged twice).
STREAM_FILTER = {"eventName": ["REMOVE"], "userIdentity": {"type": ["Service"], "principalId": ["dynamodb.amazonaws.com"]},
                 "dynamodb": {"Keys": {"pk": {"S": [{"prefix": "inst#"}]}, "sk": {"S": ["#"]}}}}
# API Gateway answers auth failures, throttling and timeouts itself; make those JSON {"error"} too.
GATEWAY_ERROR_TEMPLATE = '{"error": $context.error.messageString}'
# Bodies over API Gateway's 10 MB never reach the app: say where large packages go.
TOO_LARGE_TEMPLATE = ('{"error": "request body over API Gateway\'s 10 MB limit; large packages go through '
                      'POST /sequence/upload, which `si seq send` uses by itself"}')
GATEWAY_RESPONSES = {"DEFAULT_4XX": GATEWAY_ERROR_TEMPLATE, "DEFAULT_5XX": GATEWAY_ERROR_TEMPLATE,
                     "REQUEST_TOO_LARGE": TOO_LARGE_TEMPLATE}
GATEWAY_HEADERS = {"gatewayresponse.header.Access-Control-Allow-Origin": "'*'"}

Retry = Callable[[Callable[[], Any], str], Any]


def _once(call: Callable[[], Any], _what: str) -> Any:
    return call()


def converge(wiring: Wiring, rest_api: str | None = None, retry: Retry = _once) -> list[str]:
    """Make the stage's wiring what it should be; returns what was changed (empty: nothing was).
    ``rest_api``: the API's id when the caller knows it (else the API function's policy names it);
    ``retry`` wraps each write that a just-made role can fail while IAM propagates it."""
    lam: Any = aws.client("lambda")
    changed = [*_runner_invocation(lam, wiring, retry), *_runner_tmp(lam, wiring), *_stream_mapping(lam, wiring, retry)]
    api = rest_api or rest_api_of(lam, wiring.api)
    if api:
        changed += _gateway_errors(api, wiring.api_stage)
    else:
        changed.append("the API is not deployed yet: its error bodies wait for the next run")
    return changed


def _runner_invocation(lam: Any, wiring: Wiring, retry: Retry) -> list[str]:
    # A sequence must never silently run twice: no retries. An event that waits longer than the
    # start timeout is dropped; the sweeper then reports the instance errored ("never started").
    wanted = {"MaximumRetryAttempts": 0, "MaximumEventAgeInSeconds": START_TIMEOUT_SECONDS,
              "DestinationConfig": {"OnFailure": {"Destination": wiring.failure_queue}}}
    try:
        found = lam.get_function_event_invoke_config(FunctionName=wiring.runner)
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        found = {}
    if (found.get("MaximumRetryAttempts"), found.get("MaximumEventAgeInSeconds"), _failures(found)) == (
            0, START_TIMEOUT_SECONDS, wiring.failure_queue):
        return []
    retry(lambda: lam.put_function_event_invoke_config(FunctionName=wiring.runner, **wanted),
          "the runner's failure destination")
    return ["the runner's async invocation: no retries, failures to the queue"]


def _runner_tmp(lam: Any, wiring: Wiring) -> list[str]:
    found = lam.get_function_configuration(FunctionName=wiring.runner)
    if found.get("EphemeralStorage", {}).get("Size") == wiring.runner_tmp_mb:
        return []
    waits = ["the runner is being updated: its /tmp waits for the next run"]
    if found.get("LastUpdateStatus") == "InProgress":  # a deploy is updating it: the next run sets it
        return waits
    try:
        lam.update_function_configuration(FunctionName=wiring.runner, EphemeralStorage={"Size": wiring.runner_tmp_mb})
    except ClientError as exc:
        if not _conflict(exc):  # an update began since the read: Lambda takes one at a time
            raise
        return waits
    return [f"the runner's /tmp: {wiring.runner_tmp_mb} MB"]


def _code(exc: ClientError) -> str | None:
    return exc.response.get("Error", {}).get("Code")


def _conflict(exc: ClientError) -> bool:
    return _code(exc) == "ResourceConflictException"


def _stream_mapping(lam: Any, wiring: Wiring, retry: Retry) -> list[str]:
    # The cleanup answers the records it could not purge (Powertools' batch utility): only those retry.
    wanted = {"BatchSize": 100, "FilterCriteria": {"Filters": [{"Pattern": json.dumps(STREAM_FILTER)}]},
              "MaximumRetryAttempts": STREAM_RETRIES, "BisectBatchOnFunctionError": True,
              "FunctionResponseTypes": ["ReportBatchItemFailures"],
              "DestinationConfig": {"OnFailure": {"Destination": wiring.failure_queue}}}
    existing = lam.list_event_source_mappings(EventSourceArn=wiring.table_stream,
                                              FunctionName=wiring.cleanup)["EventSourceMappings"]
    if not existing:
        try:
            retry(lambda: lam.create_event_source_mapping(
                EventSourceArn=wiring.table_stream, FunctionName=wiring.cleanup, StartingPosition="LATEST", **wanted),
                "the table stream's mapping")
        except ClientError as exc:
            if not _conflict(exc):  # Lambda refuses a second mapping of the pair: another run made it
                raise
            return []
        return ["the table stream → cleanup mapping: made"]
    if _mapping_is(existing[0], wanted):
        return []
    retry(lambda: lam.update_event_source_mapping(UUID=existing[0]["UUID"], FunctionName=wiring.cleanup, **wanted),
          "the table stream's mapping")
    return ["the table stream → cleanup mapping: its settings"]


def _mapping_is(found: dict[str, Any], wanted: dict[str, Any]) -> bool:
    patterns = [json.loads(f.get("Pattern", "null")) for f in found.get("FilterCriteria", {}).get("Filters", [])]
    same = ("BatchSize", "MaximumRetryAttempts", "BisectBatchOnFunctionError", "FunctionResponseTypes")
    return patterns == [STREAM_FILTER] and all(found.get(k) == wanted[k] for k in same) and \
        _failures(found) == _failures(wanted)


def _failures(settings: dict[str, Any]) -> str | None:
    destination = settings.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
    return str(destination) if destination else None


def rest_api_of(lam: Any, api_function: str) -> str | None:
    """The REST API that invokes ``api_function``, from the permission Chalice gave it
    (``arn:aws:execute-api:<region>:<account>:<api id>/*``); None before the API is deployed."""
    try:
        policy = json.loads(lam.get_policy(FunctionName=api_function)["Policy"])
    except ClientError as exc:
        if _code(exc) != "ResourceNotFoundException":
            raise
        return None
    for statement in policy.get("Statement", []):
        source = statement.get("Condition", {}).get("ArnLike", {}).get("AWS:SourceArn", "")
        if source.startswith("arn:aws:execute-api:"):
            return str(source.split(":")[5].split("/")[0])
    return None


def _gateway_errors(rest_api: str, api_stage: str) -> list[str]:
    apigw: Any = aws.client("apigateway")
    found = {r["responseType"]: r for r in apigw.get_gateway_responses(restApiId=rest_api, limit=500)["items"]}
    stale = [kind for kind, template in GATEWAY_RESPONSES.items()
             if found.get(kind, {}).get("responseTemplates", {}).get("application/json") != template
             or found.get(kind, {}).get("responseParameters") != GATEWAY_HEADERS]
    if not stale:
        return []
    for kind in stale:
        apigw.put_gateway_response(restApiId=rest_api, responseType=kind,
                                   responseTemplates={"application/json": GATEWAY_RESPONSES[kind]},
                                   responseParameters=GATEWAY_HEADERS)
    apigw.create_deployment(restApiId=rest_api, stageName=api_stage)  # gateway responses take effect when deployed
    return [f"API Gateway's own errors as JSON ({', '.join(stale)})"]
