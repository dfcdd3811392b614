"""The fargate engine: which engine a start gets, and the whole AWS path on moto.

moto keeps ECS's task bookkeeping (RunTask, DescribeTasks, StopTask) but runs no containers.
``PlayedECS`` plays the rest as the local invoker plays Lambda: a task RunTask made is launched as a
process running the task definition's entry point with the start's command (the Lambda Python image
played by this checkout: ``SEQHUB_CODE_DIR``), and StopTask reaches that process as ECS's SIGTERM.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import http.server
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import zipfile
from pathlib import Path
from types import SimpleNamespace

import boto3
import pytest
from botocore.stub import Stubber

from chalicelib import aws, clock, config, instances, models, protocol, sequences, sweeper
from chalicelib.embedded import hub as localhub
from chalicelib.errors import BadRequest, InvalidPackage
from chalicelib.repository import Repository
from chalicelib.runner import bootstrap
from infra import policies, wire
from infra.rehearse import bridge_ecs_gaps

from .conftest import api_client
from .helpers import ROOT, js_package, make_package, py_package

STAGE = "fgt"
LAMBDA_LIMIT = 36  # the lambda engine's limit here: its graceful stop begins 35 s before, so at once
TICK = 0.2
TICKER = ("import asyncio, sys\n\n"
          "async def run(context, input):\n"
          "    context.set_stop_handler(lambda *_: print('stop handler ran', file=sys.stderr, flush=True))\n"
          "    n = 0\n"
          "    while True:\n"
          "        yield f'{n}\\n'\n"
          "        n += 1\n"
          f"        await asyncio.sleep({TICK})\n")


def manifest_package(hub_options: dict | None = None, requires: str | None = None) -> bytes:
    manifest: dict = {"name": "ticker", "version": "1.0.0", "main": "main.py", "engines": {"python3": "3.12"}}
    if hub_options is not None:
        manifest["sequenceHub"] = hub_options
    if requires:
        manifest["requires"] = requires
    return make_package({"package.json": manifest, "main.py": TICKER})


# -- which engine ---------------------------------------------------------------------------------
@pytest.fixture
def recorded_engines(hub_env, monkeypatch):
    """Starts on the embedded hub's settings (both engines played), recording the engine asked for."""
    from chalicelib import invoker

    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(invoker, "invoke", lambda _s, inst_id, engine="lambda", _runtime="": asked.append((inst_id, engine)))
    return asked


def started_engine(settings, package: bytes, body: dict | None = None) -> str:
    seq_id = sequences.create(settings, package)["id"]
    inst_id = instances.start(settings, seq_id, body or {})["id"]
    return instances.info(settings, inst_id)["engine"]


def test_an_instance_runs_on_lambda_unless_something_says_otherwise(settings, recorded_engines):
    assert started_engine(settings, manifest_package()) == "lambda"
    assert started_engine(settings, manifest_package(), {"engine": "fargate"}) == "fargate"
    assert started_engine(settings, manifest_package({"engine": "fargate"})) == "fargate"
    assert started_engine(settings, manifest_package({"engine": "fargate"}), {"engine": "lambda"}) == "lambda"
    # Obvious cases pick fargate by themselves: a topic consumer runs until stopped; a declared run
    # longer than the lambda engine's limit cannot fit it.
    assert started_engine(settings, manifest_package(requires="events")) == "fargate"
    assert started_engine(settings, manifest_package(), {"inputTopic": "events"}) == "fargate"
    assert started_engine(settings, manifest_package({"runSeconds": 3600})) == "fargate"
    assert started_engine(settings, manifest_package({"runSeconds": 60})) == "lambda"
    assert [engine for _, engine in recorded_engines] == ["lambda", "fargate", "fargate", "lambda", "fargate",
                                                          "fargate", "fargate", "lambda"]


def test_bad_engine_choices_are_refused_saying_what_to_fix(settings, recorded_engines):
    seq_id = sequences.create(settings, manifest_package())["id"]
    for bad in ("ec2", "", 7, ["fargate"], {"engine": "fargate"}, "f" * 100_000, True):
        with pytest.raises(BadRequest, match="engine must be one of lambda, fargate"):
            instances.start(settings, seq_id, {"engine": bad})
    for options, message in (({"engine": "spot"}, "sequenceHub.engine\" must be one of lambda, fargate"),
                             ({"runSeconds": "long"}, "runSeconds\" must be a whole number"),
                             ("fargate", "\"sequenceHub\" must be an object")):
        with pytest.raises(InvalidPackage, match=message):
            sequences.create(settings, manifest_package(options))  # type: ignore[arg-type]
    assert recorded_engines == []


def test_the_hub_says_which_engines_it_has_and_their_limits(api):
    engines = json.loads(api.http.get("/api/v1/config").body)["engines"]
    assert engines == {"lambda": {"timeLimitSeconds": 900}, "fargate": {"timeLimitSeconds": 0}}


def test_a_hub_without_the_fargate_engine_refuses_it_by_name_and_runs_the_obvious_cases_on_lambda(settings):
    lambda_only = dataclasses.replace(settings, invoke_mode="lambda", runner_function="runner")
    assert lambda_only.engines() == ("lambda",)
    with pytest.raises(BadRequest, match="the start's engine is fargate, which this hub does not have"):
        instances.choose_engine(lambda_only, "fargate", {}, consumer=False)
    with pytest.raises(BadRequest, match="sequenceHub.engine\" is fargate, which this hub does not have"):
        instances.choose_engine(lambda_only, None, {"sequenceHub": {"engine": "fargate"}}, consumer=False)
    assert instances.choose_engine(lambda_only, None, {"sequenceHub": {"runSeconds": 7200}}, consumer=True) == "lambda"


# -- the AWS path, the container played -------------------------------------------------------------
class PlayedECS:
    """What ECS would do with the hub's RunTask and StopTask calls (see the module's docstring)."""

    def __init__(self, env: dict[str, str], work: Path):
        self.env, self.work = env, work
        self.runs: list[dict] = []
        self.stops: list[dict] = []
        self.procs: dict[str, subprocess.Popen] = {}
        ecs = aws.client("ecs")
        ecs.meta.events.register("provide-client-params.ecs.RunTask", lambda params, **_: self.runs.append(dict(params)))
        ecs.meta.events.register("provide-client-params.ecs.StopTask", self.stop)

    def stop(self, params: dict, **_: object) -> None:
        self.stops.append(dict(params))
        proc = self.procs.get(params["task"])
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # ECS: SIGTERM, then SIGKILL after the stopTimeout

    def launch(self, task_arn: str, cluster: str) -> subprocess.Popen:
        """The task's container: its definition's entry point, its overrides' command, its environment."""
        ecs = aws.client("ecs")
        task = ecs.describe_tasks(cluster=cluster, tasks=[task_arn])["tasks"][0]
        definition = ecs.describe_task_definition(taskDefinition=task["taskDefinitionArn"])["taskDefinition"]
        container = definition["containerDefinitions"][0]
        command = next(o["command"] for o in task["overrides"]["containerOverrides"] if o["name"] == container["name"])
        argv = [*container["entryPoint"], *command]
        assert argv[0] == "python3"  # the image's; played by this interpreter
        env = {**{e["name"]: e["value"] for e in container["environment"]}, **self.env, "SEQHUB_CODE_DIR": str(ROOT)}
        if not readable_by_others(Path(sys.executable).resolve()):
            # The image's python3 is anyone's; this interpreter may sit where only root can reach
            # it (pyenv under /root): the host then runs as the runner (test_a_tasks_host_... covers the uid).
            env["SEQHUB_HOST_UID"] = "0"
        with self.log(task_arn).open("wb") as log:
            proc = subprocess.Popen([sys.executable, *argv[1:]], env=env, cwd=self.work, stdout=log, stderr=log)
        self.procs[task_arn] = proc
        return proc

    def log(self, task_arn: str) -> Path:
        """Where the task's container writes (its awslogs stream, played)."""
        return self.work / f"{task_arn.rsplit('/', 1)[1]}.log"

    def end(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()


@pytest.fixture
def aws_stage(tmp_path, monkeypatch):
    """A stage as `make setup` + `chalice deploy` leave it, on a moto server: the stateful stack, the
    fargate stack in the default VPC, the runner function with the stage's environment."""
    bridge_ecs_gaps()
    server = localhub.moto_server()
    server.start()
    creds = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
             "AWS_REGION": "us-east-1", "AWS_ENDPOINT_URL": server.url}
    for key, value in creds.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws.reset()
    try:
        outputs = localhub.provision(STAGE)
        engine = wire.ensure_fargate(STAGE, f"sequence-hub-{STAGE}", subnets=[])
        env = {**localhub.hub_environment(outputs, retention=600, stage=STAGE), "RUNNER_INVOKE_MODE": "lambda",
               "RUNNER_FUNCTION": f"sequence-hub-{STAGE}-runner", "SEQHUB_RUNNER_TIMEOUT_SECONDS": str(LAMBDA_LIMIT),
               "SEQHUB_FARGATE_CLUSTER": engine["ClusterName"], "SEQHUB_FARGATE_TASK_DEFINITION": engine["TaskDefinitionArn"],
               "SEQHUB_FARGATE_SUBNETS": engine["TaskSubnets"], "SEQHUB_FARGATE_SECURITY_GROUP": engine["TaskSecurityGroupId"]}
        role = aws.client("iam").create_role(RoleName="runner", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as zf:
            zf.writestr("app.py", "")
        aws.client("lambda").create_function(FunctionName=env["RUNNER_FUNCTION"], Runtime="python3.12", Role=role,
                                             Handler="app.runner", Code={"ZipFile": code.getvalue()},
                                             Environment={"Variables": env})
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        played = PlayedECS(creds, tmp_path)
        yield SimpleNamespace(settings=config.load(), env=env, engine=engine, played=played, api=api_client(env))
        played.end()
    finally:
        aws.reset()
        urllib.request.urlopen(urllib.request.Request(f"{server.url}/moto-api/reset", method="POST"), timeout=30)
        server.stop()


def readable_by_others(path: Path) -> bool:
    """Whether a uid of its own may reach ``path``: every directory above it searchable by others."""
    return all(p.stat().st_mode & 0o001 for p in path.parents) and bool(path.stat().st_mode & 0o004)


def wait_for(what: str, check, seconds: float = 120):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"waited {seconds} s for {what}")


def channel(settings, inst_id: str, name: str = "output") -> bytes:
    return instances.read_channel(settings, inst_id, name, None, 0, until_end=True)["data"]


def test_a_fargate_instance_runs_past_the_lambda_limit_and_ends_whole_when_stopped_or_killed(aws_stage):
    settings, played, fargate = aws_stage.settings, aws_stage.played, aws_stage.settings.fargate
    seq_id = sequences.create(settings, py_package(TICKER))["id"]
    started = []
    for _ in range(2):
        answer = aws_stage.api.http.post(f"/api/v1/sequence/{seq_id}/start", headers={"Content-Type": "application/json"},
                                         body=json.dumps({"engine": "fargate"}))
        assert answer.status_code == 200, answer.body
        started.append(json.loads(answer.body)["id"])
    spotted, killed = started
    assert played.runs == [{
        "cluster": fargate.cluster, "taskDefinition": fargate.task_definition, "count": 1, "startedBy": inst_id,
        "capacityProviderStrategy": [{"capacityProvider": "FARGATE", "weight": 1}],
        "networkConfiguration": {"awsvpcConfiguration": {"subnets": list(fargate.subnets),
                                                         "securityGroups": [fargate.security_group],
                                                         "assignPublicIp": "ENABLED"}},
        "overrides": {"containerOverrides": [{"name": "runner", "command": ["--task", inst_id]}]}}
        for inst_id in started]
    repo = Repository(settings.table)
    tasks = {inst_id: repo.get_instance(inst_id).task for inst_id in started}
    described = aws.client("ecs").describe_tasks(cluster=fargate.cluster, tasks=list(tasks.values()))["tasks"]
    assert sorted(t["startedBy"] for t in described) == sorted(started)
    # Until ECS has the task running (30-60 s on AWS), the instance is "starting".
    assert {instances.info(settings, i)["status"] for i in started} == {protocol.STARTING}
    assert {instances.info(settings, i)["engine"] for i in started} == {"fargate"}
    launched = {inst_id: played.launch(tasks[inst_id], fargate.cluster) for inst_id in started}
    began = time.monotonic()
    wait_for("both running", lambda: all(instances.info(settings, i)["status"] == protocol.RUNNING for i in started))
    time.sleep(max(0.0, LAMBDA_LIMIT + 2 - (time.monotonic() - began)))  # past where Lambda would have ended it
    assert all(instances.info(settings, i)["status"] == protocol.RUNNING for i in started)

    instances.request_kill(settings, killed)  # the kill stops its task too
    assert [s["task"] for s in played.stops] == [tasks[killed]]
    played.stop({"task": tasks[spotted]})  # a Spot interruption: ECS's SIGTERM, nobody asked the hub
    for inst_id in started:
        assert launched[inst_id].wait(90) == 0, played.log(tasks[inst_id]).read_text()
    spot_end = instances.info(settings, spotted)["terminated"]
    assert spot_end == {"exitcode": protocol.ExitCode.STOPPED, "reason": models.REASON_TASK_STOPPED}
    assert b"stop handler ran" in channel(settings, spotted, "stderr")
    assert instances.info(settings, killed)["terminated"] == {"exitcode": 137, "reason": models.REASON_KILLED}
    for inst_id in started:  # every tick, in order, from before Lambda's limit to the end
        ticks = [int(n) for n in channel(settings, inst_id).split()]
        assert ticks == list(range(len(ticks))) and len(ticks) * TICK > LAMBDA_LIMIT, (inst_id, len(ticks))

    # What the API called is what its policy grants, exactly: this task definition, in this cluster.
    docs = policies.policies(STAGE, fargate=True, account="123456789012", region="us-east-1")
    api = {st["Sid"]: st for st in docs[f"policy-{STAGE}.json"]["Statement"]}
    cluster_arn = f"arn:aws:ecs:us-east-1:123456789012:cluster/{fargate.cluster}"
    assert api["RunTasks"]["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    assert all(fnmatch.fnmatchcase(run["taskDefinition"], api["RunTasks"]["Resource"][0]) for run in played.runs)
    assert all(fnmatch.fnmatchcase(stop["task"], api["StopTasks"]["Resource"][0]) for stop in played.stops)
    definition = aws.client("ecs").describe_task_definition(taskDefinition=fargate.task_definition)["taskDefinition"]
    assert sorted(api["PassTaskRoles"]["Resource"]) == sorted([definition["taskRoleArn"], definition["executionRoleArn"]])


def test_the_sweeper_settles_a_task_that_never_started_and_stops_it(aws_stage, monkeypatch):
    settings, played = aws_stage.settings, aws_stage.played
    seq_id = sequences.create(settings, py_package(TICKER))["id"]
    inst_id = instances.start(settings, seq_id, {"engine": "fargate"})["id"]
    task = Repository(settings.table).get_instance(inst_id).task
    later = clock.now() + sweeper.START_TIMEOUT_SECONDS + 1
    monkeypatch.setattr(clock, "now", lambda: later)
    assert sweeper.settle(settings) == [inst_id]
    assert instances.info(settings, inst_id)["terminated"]["reason"] == models.REASON_NEVER_STARTED
    assert played.stops == [{"cluster": settings.fargate.cluster, "task": task,
                             "reason": "settled by the hub's sweeper: never started"}]


def test_a_task_ecs_cannot_place_ends_its_instance_with_ecss_reason(aws_stage, monkeypatch):
    settings = aws_stage.settings
    seq_id = sequences.create(settings, py_package(TICKER))["id"]
    ecs = aws.client("ecs")
    stub = Stubber(ecs)
    stub.add_response("run_task", {"tasks": [], "failures": [{"reason": "RESOURCE:ENI", "detail": "ENI limit"}]})
    with stub, pytest.raises(RuntimeError, match="ECS did not start a task"):
        instances.start(settings, seq_id, {"engine": "fargate", "instanceId": "unplaced"})
    terminated = instances.info(settings, "unplaced")["terminated"]
    assert terminated["reason"].startswith("could not start the runner: ECS did not start a task (RESOURCE:ENI: ENI limit)")


def test_a_tasks_host_runs_as_a_uid_of_its_own_that_cannot_touch_the_runners_files(settings, tmp_path, monkeypatch):
    """On Fargate the runner is root beside the host; as root the sequence could rewrite the runner's
    code (in /var/task) and act with its role. The task's host runs as SEQHUB_HOST_UID instead."""
    from chalicelib import invoker
    from chalicelib.runner import child as child_mod
    from chalicelib.runner.service import run_instance

    node = shutil.which("node")
    if os.geteuid() != 0 or node is None:
        pytest.skip("needs root (as a task's runner is) and Node.js")
    for path in (Path(node).resolve(), child_mod.NODE_HOST):
        if not readable_by_others(path):
            pytest.skip(f"{path} is out of reach of another uid here")
    runners_file = tmp_path / "runner-code.py"
    runners_file.write_text("the runner's code\n")
    source = ("const fs = require('fs');\n"
              "module.exports = async function* () {\n"
              "  yield `uid ${process.getuid()}\\n`;\n"
              f"  try {{ fs.writeFileSync({json.dumps(str(runners_file))}, 'rewritten'); yield 'wrote\\n'; }}\n"
              "  catch (e) { yield `${e.code}\\n`; }\n"
              "};\n")
    monkeypatch.setattr(invoker, "invoke", lambda *_args: None)  # run below, as a task's runner would
    seq_id = sequences.create(settings, js_package(source))["id"]
    inst_id = instances.start(settings, seq_id, {"engine": "fargate"})["id"]
    assert run_instance(settings, inst_id, lambda: 600_000, host_user=10001) == protocol.COMPLETED
    # A generator's items are JSON lines (Scramjet's rule for the Node host).
    assert [json.loads(line) for line in channel(settings, inst_id).splitlines()] == ["uid 10001\n", "EACCES\n"]
    assert runners_file.read_text() == "the runner's code\n"


# -- the bootstrap's fetch: Lambda's answers played where moto has none -------------------------------
def test_the_bootstrap_lays_out_the_functions_code_and_layers_as_lambda_does(tmp_path, monkeypatch):
    """moto's GetFunction gives no code location; Lambda's is a presigned URL. Its answers are played
    (botocore's Stubber) and the URLs served from this process, with the zips a deploy would make."""
    code, layer = io.BytesIO(), io.BytesIO()
    with zipfile.ZipFile(code, "w") as zf:
        zf.writestr("chalicelib/__init__.py", "")
    with zipfile.ZipFile(layer, "w") as zf:
        info = zipfile.ZipInfo("bin/node")
        info.external_attr = 0o755 << 16
        zf.writestr(info, "#!/bin/sh\n")
    served = {"/code.zip": code.getvalue(), "/layer.zip": layer.getvalue()}

    class Serve(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = served[self.path]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Serve)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    lam = boto3.client("lambda", region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    layer_arn = "arn:aws:lambda:us-east-1:123456789012:layer:sequence-hub-fgt-node:3"
    stub = Stubber(lam)
    stub.add_response("get_function", {"Code": {"Location": url + "/code.zip"}, "Configuration": {
        "Layers": [{"Arn": layer_arn}], "Environment": {"Variables": {"SEQHUB_TABLE": "sequence-hub-fgt"}}}},
        {"FunctionName": "sequence-hub-fgt-runner"})
    stub.add_response("get_layer_version_by_arn", {"Content": {"Location": url + "/layer.zip"}}, {"Arn": layer_arn})
    monkeypatch.delenv("SEQHUB_TABLE", raising=False)
    try:
        with stub:
            bootstrap.fetch("sequence-hub-fgt-runner", str(tmp_path / "task"), str(tmp_path / "opt"), lam)
    finally:
        server.shutdown()
    assert (tmp_path / "task" / "chalicelib" / "__init__.py").is_file()
    assert os.access(tmp_path / "opt" / "bin" / "node", os.X_OK)
    assert os.environ["SEQHUB_TABLE"] == "sequence-hub-fgt"


def test_the_bootstrap_fits_a_cloudformation_parameter_and_needs_only_the_images_libraries():
    source = (ROOT / "chalicelib" / "runner" / "bootstrap.py").read_text()
    assert len(source.encode()) < 4096  # CloudFormation's most for one parameter's value
    imports = {line.split()[1].split(".")[0] for line in source.splitlines()
               if line.strip().startswith(("import ", "from ")) and "chalicelib" not in line}
    assert imports <= {"__future__", "io", "os", "sys", "urllib", "zipfile", "typing", "boto3"}
