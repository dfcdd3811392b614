"""The lambda invoker: one async (Event) invocation per instance, carrying only its id."""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile

from chalicelib import aws

from .conftest import REAL_INVOKE


def test_lambda_mode_invokes_the_runner_asynchronously(settings):
    iam = aws.client("iam")
    role = iam.create_role(RoleName="runner", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                               "Principal": {"Service": "lambda.amazonaws.com"}}]}))
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as zf:
        zf.writestr("app.py", "def runner(event, context):\n    return event\n")
    aws.client("lambda").create_function(FunctionName="hub-runner", Runtime="python3.12",
                                         Role=role["Role"]["Arn"], Handler="app.runner",
                                         Code={"ZipFile": code.getvalue()})
    seen = []
    aws.client("lambda").meta.events.register(
        "provide-client-params.lambda.Invoke", lambda params, **_: seen.append(dict(params)))
    lam = dataclasses.replace(settings, invoke_mode="lambda", runner_function="hub-runner")
    REAL_INVOKE(lam, "inst-1")  # the tests' hub runs instances in process; this is the deployed path
    assert seen == [{"FunctionName": "hub-runner", "InvocationType": "Event",
                     "Payload": b'{"instance_id": "inst-1"}'}]
