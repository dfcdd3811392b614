"""Starting a runtime host as a child process: pipes, a scrubbed environment, its own process group."""

from __future__ import annotations

import ctypes
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .hosts import NODE_HOST, PYTHON_HOST

# Only what a program needs to run; never AWS credentials or the hub's configuration.
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_CAP_LAST = 63


class HostUnavailable(RuntimeError):
    """The runtime a sequence needs is not installed where the runner runs."""


def harden() -> None:
    """Keep the sequence out of the runner's secrets before it is started.

    Non-dumpable: same-user processes cannot read our /proc/<pid>/environ or memory. And no
    capabilities at all for children started from this thread (the bounding set is per thread and
    inherited), which matters where the runner runs as root (a laptop, CI): a privileged root child
    would read a non-dumpable process anyway. Sequences need no capabilities; on Lambda they have none.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # not Linux: nothing to do
        return
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    for cap in range(_CAP_LAST + 1):
        libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EPERM/EINVAL when not root or past the last cap


def node_binary() -> str:
    found = os.environ.get("SEQHUB_NODE") or shutil.which("node") or (
        "/opt/bin/node" if os.path.exists("/opt/bin/node") else None)
    if not found:
        raise HostUnavailable("Node.js is not available to the runner (install node or the Node layer)")
    return found


@dataclass
class Child:
    proc: subprocess.Popen
    control_w: int
    input_w: int
    fds: dict[str, int] = field(default_factory=dict)  # our ends: channels we read, "stdin" we write
    _outbox: queue.Queue = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        # Control messages go through a thread: a host that never reads them (a busy loop) blocks
        # that thread, never the runner; kill falls back to SIGKILL anyway.
        threading.Thread(target=self._deliver, name="control", daemon=True).start()

    def send(self, message: dict) -> None:
        self._outbox.put((json.dumps(message) + "\n").encode())

    def _deliver(self) -> None:
        try:
            while True:
                data = memoryview(self._outbox.get())
                while data:
                    data = data[os.write(self.control_w, data):]
        except OSError:  # the host has gone
            pass

    def signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def spawn(runtime: str, seq_dir: Path, start: dict, work_dir: Path) -> Child:
    """Start the host for ``runtime`` in ``seq_dir``; ``start`` is {"main","args","config","instanceId"}."""
    start_file = work_dir / "start.json"
    start_file.write_text(json.dumps(start))
    if runtime == "python":
        # The host needs the runner's own libraries (scramjet-framework-py), not its environment.
        paths = [p for p in sys.path if p and Path(p).is_dir()]
        argv = [sys.executable, "-u", str(PYTHON_HOST)]
        extra = {"PYTHONPATH": os.pathsep.join([str(seq_dir / "__pypackages__"), *paths]),
                 "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    else:
        argv = [node_binary(), str(NODE_HOST)]
        extra = {"NODE_PATH": str(seq_dir / "node_modules")}

    pipes = {name: os.pipe() for name in ("output", "log", "events", "control", "input")}
    child_ends = {name: (r if name in ("control", "input") else w) for name, (r, w) in pipes.items()}
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env.update(extra)
    env.update({"HOME": str(work_dir), "TMPDIR": str(work_dir / "tmp"), "SEQHUB_START": str(start_file),
                # SDKs in the sequence must not go looking for the host's instance role.
                "AWS_EC2_METADATA_DISABLED": "true"})
    env.update({f"SEQHUB_FD_{name.upper()}": str(fd) for name, fd in child_ends.items()})
    (work_dir / "tmp").mkdir(exist_ok=True)

    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    stdin_r, stdin_w = os.pipe()
    try:
        proc = subprocess.Popen(
            argv, cwd=seq_dir, env=env, stdin=stdin_r, stdout=stdout_w, stderr=stderr_w,
            pass_fds=tuple(child_ends.values()), start_new_session=True, close_fds=True)
    finally:
        for fd in (*child_ends.values(), stdout_w, stderr_w, stdin_r):
            os.close(fd)
    fds = {"output": pipes["output"][0], "log": pipes["log"][0], "events": pipes["events"][0],
           "stdout": stdout_r, "stderr": stderr_r, "stdin": stdin_w}
    return Child(proc=proc, control_w=pipes["control"][1], input_w=pipes["input"][1], fds=fds)


def kill_group(child: Child) -> None:
    child.signal_group(signal.SIGKILL)
