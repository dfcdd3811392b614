"""The invoker seam: how a started instance reaches a runner, on its engine.

``lambda`` mode (AWS): the lambda engine is an async (Event) invocation of the runner function; the
    fargate engine an ECS Fargate task (RunTask, ``startedBy`` the instance id) whose command runs
    the same runner module (``chalicelib.runner.bootstrap``).
``local`` mode (the embedded hub): a separate OS process per instance, for either engine; only its
    time limit differs (``Settings.time_limit``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

from . import aws
from .config import Settings

_children: set[subprocess.Popen[bytes]] = set()
_children_lock = threading.Lock()


TASK_CONTAINER = "runner"  # the task definition's one container (infra/fargate.yaml)
MAX_STOP_REASON_CHARS = 255  # StopTask's limit


def invoke(settings: Settings, instance_id: str, engine: str = "lambda", runtime: str = "") -> str | None:
    """Start the instance's runner; returns the ARN of its Fargate task, when it has one. ``runtime``
    (its sequence's): the local fork server keeps a sandbox ready for the next of the same."""
    if settings.invoke_mode == "local":
        _spawn_local(instance_id, engine, runtime)
    elif engine == "fargate":
        return run_task(settings, instance_id)
    else:
        aws.client("lambda").invoke(FunctionName=settings.runner_function, InvocationType="Event",
                                    Payload=json.dumps({"instance_id": instance_id}).encode())
    return None


def task_command(instance_id: str) -> list[str]:
    """The container's command: arguments to the task definition's entry point (the bootstrap)."""
    return ["--task", instance_id]


def run_task(settings: Settings, instance_id: str) -> str:
    """Start the instance's Fargate task; returns its ARN. One task per instance, never reused."""
    fargate = settings.fargate
    answer = aws.client("ecs").run_task(
        cluster=fargate.cluster, taskDefinition=fargate.task_definition, count=1, startedBy=instance_id,
        capacityProviderStrategy=[{"capacityProvider": fargate.capacity, "weight": 1}],
        networkConfiguration={"awsvpcConfiguration": {
            "subnets": list(fargate.subnets), "securityGroups": [fargate.security_group],
            "assignPublicIp": "ENABLED" if fargate.public_ip else "DISABLED"}},
        overrides={"containerOverrides": [{"name": TASK_CONTAINER, "command": task_command(instance_id)}]})
    tasks = answer.get("tasks") or []
    if not tasks:  # RunTask answers capacity and placement problems as failures, not errors
        reasons = "; ".join(f"{f.get('reason')}: {f.get('detail', '')}".rstrip(": ") for f in answer.get("failures", []))
        raise RuntimeError(f"ECS did not start a task ({reasons or 'no reason given'})")
    arn: str = tasks[0]["taskArn"]
    return arn


def stop_task(settings: Settings, task_arn: str, reason: str) -> None:
    """Stop a Fargate task (a killed instance's, or one the sweeper settled): ECS sends the
    container SIGTERM, then SIGKILL after the task definition's stopTimeout."""
    aws.client("ecs").stop_task(cluster=settings.fargate.cluster, task=task_arn,
                                reason=reason[:MAX_STOP_REASON_CHARS])


def _reap(proc: subprocess.Popen[bytes]) -> None:
    proc.wait()
    with _children_lock:
        _children.discard(proc)


class _ForkServer:
    """One warm process that forks a runner per instance (see ``chalicelib.runner.forkserver``)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            # Runners need the storage settings, never the token clients use to reach the hub.
            env = {k: v for k, v in os.environ.items() if k != "SEQHUB_LOCAL_TOKEN"}
            self._proc = subprocess.Popen([sys.executable, "-m", "chalicelib.runner", "--fork-server"],
                                          env=env, stdin=subprocess.PIPE, start_new_session=True)
            with _children_lock:
                _children.add(self._proc)
            threading.Thread(target=_reap, args=(self._proc,), daemon=True).start()
        return self._proc

    def start(self) -> None:
        with self._lock:
            self._ensure()

    def run(self, instance_id: str, engine: str, runtime: str) -> None:
        with self._lock:
            try:
                self._send(instance_id, engine, runtime)
            except BrokenPipeError:  # it died between the check and the write: start another
                self._proc = None
                self._send(instance_id, engine, runtime)

    def _send(self, instance_id: str, engine: str, runtime: str) -> None:
        stdin = self._ensure().stdin
        assert stdin is not None  # started with stdin=PIPE
        stdin.write(f"{instance_id} {engine} {runtime}\n".encode())
        stdin.flush()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


_fork_server = _ForkServer()


def _spawn_local(instance_id: str, engine: str, runtime: str) -> None:
    _fork_server.run(instance_id, engine, runtime)


def warm_up() -> None:
    """Start the local fork server now (the embedded hub, once its environment is set)."""
    _fork_server.start()


def fork_server_pid() -> int | None:
    """The local fork server's process id, once it runs (its children are the runners)."""
    return _fork_server.pid


def stop_local_runners(timeout: float = 5.0) -> None:
    """Terminate every runner process this process started (the embedded hub's shutdown)."""
    with _children_lock:
        procs = list(_children)
    for proc in procs:
        proc.terminate()
    end = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
