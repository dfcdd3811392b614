"""The invoker seam: how a started instance reaches a runner.

``lambda``: an async (Event) invocation of the runner function, as on AWS.
``local``:  a separate OS process per instance, as Lambda would run it (the embedded hub).
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


def invoke(settings: Settings, instance_id: str) -> None:
    if settings.invoke_mode == "lambda":
        aws.client("lambda").invoke(FunctionName=settings.runner_function, InvocationType="Event",
                                    Payload=json.dumps({"instance_id": instance_id}).encode())
    else:
        _spawn_local(instance_id)


def _reap(proc: subprocess.Popen[bytes]) -> None:
    proc.wait()
    with _children_lock:
        _children.discard(proc)


class _ForkServer:
    """One warm process that forks a runner per instance (see ``chalicelib.runner.__main__``)."""

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

    def run(self, instance_id: str) -> None:
        with self._lock:
            try:
                self._send(instance_id)
            except BrokenPipeError:  # it died between the check and the write: start another
                self._proc = None
                self._send(instance_id)

    def _send(self, instance_id: str) -> None:
        stdin = self._ensure().stdin
        assert stdin is not None  # started with stdin=PIPE
        stdin.write(f"{instance_id}\n".encode())
        stdin.flush()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


_fork_server = _ForkServer()


def _spawn_local(instance_id: str) -> None:
    _fork_server.run(instance_id)


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
