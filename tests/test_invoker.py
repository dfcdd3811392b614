"""The lambda invoker: one async (Event) invocation per instance, carrying only its id."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import zipfile

import pytest

from chalicelib import aws, config

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


def _connections_to(port: int) -> list[str]:
    """This process's established TCP connections to ``port`` (from /proc: no tool needed)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except FileNotFoundError:  # the listing's own descriptor, closed since
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    rows = [line.split() for line in open("/proc/net/tcp").read().splitlines()[1:]]
    return [r[9] for r in rows if int(r[2].split(":")[1], 16) == port and r[3] == "01" and r[9] in inodes]


def test_the_fork_server_warms_its_clients_and_leaves_no_connection_for_its_runners_to_share(monkeypatch):
    """Each runner forked on the embedded hub must open its own connections (two runners writing on
    one socket would mix their requests and answers; moto's server closes each today, a keep-alive
    one would not); the clients it inherits have made their first call already."""
    from chalicelib.embedded.hub import moto_server
    from chalicelib.runner.forkserver import _warm_clients

    server = moto_server()
    server.start()
    port = int(server.url.rsplit(":", 1)[1])
    for name, value in {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    aws.reset()
    try:
        made = []
        for service in ("dynamodb", "s3", "logs"):
            aws.client(service).meta.events.register("after-call", lambda **kw: made.append(kw["model"].name))
        base = {"SEQHUB_TABLE": "t", "SEQHUB_BUCKET": "hub-bucket", "SEQHUB_LOG_GROUP": "g", "RUNNER_FUNCTION": "r"}
        _warm_clients(config.load(base))
        assert made == ["GetItem", "HeadObject", "DescribeLogStreams"]  # each answered (here: no such table...)
        made.clear()
        _warm_clients(config.load({**base, "SEQHUB_LOG_COPY": "none"}))  # as the embedded hub runs them
        assert made == ["GetItem", "HeadObject"]  # no client warmed that its runners never call
        assert _connections_to(port) == []
        aws.client("s3").create_bucket(Bucket="hub-bucket")  # and still usable, on a connection of its own
    finally:
        aws.reset()
        server.stop()


def test_the_fork_server_compiles_the_sandbox_filter_once_for_all_its_runners(monkeypatch):
    """A forked runner inherits the compiled system-call filter rather than building it again; a
    machine without libseccomp still starts its fork server (each sandboxed start then says why)."""
    from chalicelib.runner import syscalls
    from chalicelib.runner.forkserver import _warm_filter

    syscalls.program.cache_clear()
    try:
        syscalls.program()
    except syscalls.Unavailable as exc:
        pytest.skip(str(exc))
    syscalls.program.cache_clear()
    _warm_filter()
    built = syscalls.program.cache_info()
    assert (built.misses, built.currsize) == (1, 1)
    pid = os.fork()
    if pid == 0:  # as a runner: the filter it hands bwrap is the inherited one, not built again
        os._exit(0 if syscalls.program() and syscalls.program.cache_info().misses == 1 else 1)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0

    def missing() -> None:
        raise syscalls.Unavailable("libseccomp is not available")

    syscalls.program.cache_clear()
    monkeypatch.setattr(syscalls, "_seccomp", missing)
    _warm_filter()  # quietly: the runner's start of a sandbox reports it
    with pytest.raises(syscalls.Unavailable):
        syscalls.program()
    syscalls.program.cache_clear()
