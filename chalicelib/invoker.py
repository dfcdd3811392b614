"""The invoker seam: how a started instance reaches a runner.

``lambda``: an async (Event) invocation of the runner function, as on AWS.
``local``:  a separate OS process per instance, as Lambda would run it (the embedded hub).
``inline``: the runner runs before ``start`` returns (unit tests).
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

_children: set[subprocess.Popen] = set()
_children_lock = threading.Lock()


def invoke(settings: Settings, instance_id: str) -> None:
    if settings.invoke_mode == "lambda":
        aws.client("lambda").invoke(FunctionName=settings.runner_function, InvocationType="Event",
                                    Payload=json.dumps({"instance_id": instance_id}).encode())
    elif settings.invoke_mode == "local":
        _spawn_local(instance_id)
    else:
        from .runner.service import run_instance

        deadline = time.monotonic() + settings.runner_timeout_seconds
        run_instance(settings, instance_id, lambda: int((deadline - time.monotonic()) * 1000))


class _WarmRunners:
    """Runner processes started ahead, imports done, each waiting on stdin for one instance id.

    The local counterpart of a warm Lambda: a start skips the interpreter's start-up (~1 s). Each
    process still runs exactly one instance, in its own OS process, and the pool is topped up.
    """

    def __init__(self) -> None:
        self._ready: list[subprocess.Popen] = []
        self._lock = threading.Lock()
        self._topping = threading.Lock()  # one top-up at a time, so the pool never overfills
        self.last_started: subprocess.Popen | None = None  # the process given the latest instance

    def size(self) -> int:
        return int(os.environ.get("SEQHUB_LOCAL_WARM_RUNNERS", "2"))

    def _spawn(self) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "chalicelib.runner", "--wait-for-id"],
                                env=dict(os.environ), stdin=subprocess.PIPE, start_new_session=True)
        with _children_lock:
            _children.add(proc)
        threading.Thread(target=_reap, args=(proc,), daemon=True).start()
        return proc

    def _top_up(self) -> None:
        with self._topping:
            with self._lock:
                self._ready = [p for p in self._ready if p.poll() is None]
                missing = self.size() - len(self._ready)
            for _ in range(missing):
                proc = self._spawn()
                with self._lock:
                    self._ready.append(proc)

    def run(self, instance_id: str) -> None:
        with self._lock:
            alive = [p for p in self._ready if p.poll() is None]
            proc = alive.pop(0) if alive else None
            self._ready = alive
        if proc is None:
            proc = self._spawn()
        proc.stdin.write(f"{instance_id}\n".encode())
        proc.stdin.close()
        self.last_started = proc
        threading.Thread(target=self._top_up, daemon=True).start()


_warm = _WarmRunners()


def _spawn_local(instance_id: str) -> None:
    _warm.run(instance_id)


def warm_up() -> None:
    """Start the local warm runners now (the embedded hub, once its environment is set)."""
    _warm._top_up()


def _reap(proc: subprocess.Popen) -> None:
    proc.wait()
    with _children_lock:
        _children.discard(proc)


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
