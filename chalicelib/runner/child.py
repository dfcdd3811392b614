"""Starting a runtime host as a child process: pipes, a scrubbed environment, its own process group."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
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
from typing import Any

from . import sandbox
from .hosts import NODE_HOST, PYTHON_HOST
from .sandbox import HOSTS_INSIDE, HUB_SOCKET_INSIDE, PACKAGE_DIR, START_INSIDE, Box

# Only what a program needs to run; never AWS credentials or the hub's configuration.
_PASS_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
# The output pipe holds a segment (1 MiB) rather than Linux's 64 KiB: a host writing fast runs that
# far ahead of the runner's reads instead of waiting on each 64 KiB (a million Node items: ~25 ms).
OUTPUT_PIPE_BYTES = 1024 * 1024
START_FILE = "start.json"  # in the work directory: what the host is to run ({"main", "args", ...})
_PR_SET_DUMPABLE = 4
_PR_CAPBSET_DROP = 24
_CAP_LAST = 63


class HostUnavailable(RuntimeError):
    """The runtime a sequence needs is not installed where the runner runs."""


def harden() -> None:
    """Non-dumpable: same-user processes (a sequence without a sandbox) cannot read this process's
    /proc/<pid>/environ or memory, which hold the hub's settings and credentials."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:  # not Linux: nothing to do
        return
    libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def _popen_without_capabilities(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
    """Popen from a short-lived thread that first empties its capability bounding set.

    Where the runner runs as root with no sandbox (a laptop, CI), a child with root's capabilities
    would read a non-dumpable process anyway. The bounding set is per thread and inherited by the
    child; a thread of its own keeps the caller's (a sandbox needs root's to set itself up).
    Sequences need no capabilities; on Lambda they have none.
    """
    result: dict[str, Any] = {}

    def spawn() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            for cap in range(_CAP_LAST + 1):
                libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0)  # EPERM/EINVAL when not root or past the last
        except OSError:  # not Linux
            pass
        try:
            result["proc"] = subprocess.Popen(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    thread = threading.Thread(target=spawn, name="spawn-host")
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    proc: subprocess.Popen[bytes] = result["proc"]
    return proc


def node_binary() -> str:
    found = os.environ.get("SEQHUB_NODE") or shutil.which("node") or (
        "/opt/bin/node" if os.path.exists("/opt/bin/node") else None)
    if not found:
        raise HostUnavailable("Node.js is not available to the runner (install node or the Node layer)")
    return found


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    control_w: int
    input_w: int
    fds: dict[str, int] = field(default_factory=dict)  # our ends: channels we read, "stdin" we write
    go_w: int | None = None  # a standby's: closed after "go" once its instance is known (``begin``)
    _outbox: queue.Queue[bytes] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        # Control messages go through a thread: a host that never reads them (a busy loop) blocks
        # that thread, never the runner; kill falls back to SIGKILL anyway.
        threading.Thread(target=self._deliver, name="control", daemon=True).start()

    def send(self, message: dict[str, Any]) -> None:
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


def base_environment() -> dict[str, str]:
    """What a host is given of the runner's environment; the rest of its environment is its own."""
    return {k: os.environ[k] for k in _PASS_ENV if k in os.environ}


def give_to(uid: int, package: Path, work_dir: Path) -> None:
    """What a host running as ``uid`` needs of the runner's files: the package (its own, as on
    Lambda), its home, a way through the work directory; nothing else of the runner's."""
    os.chmod(work_dir, 0o711)
    (work_dir / "tmp").mkdir(exist_ok=True)
    for top in (package, work_dir / "tmp"):
        os.chown(top, uid, uid)
        for root, dirs, files in os.walk(top):
            for name in (*dirs, *files):
                os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def spawn(runtime: str, package: Path, start: dict[str, Any] | None, work_dir: Path, box: Box | None = None,
          hub_socket: Path | None = None, user: int | None = None) -> Child:
    """Start the host for ``runtime``: in ``package``, the unpacked directory; or inside ``box``,
    which unpacks ``package``, the archive, itself. ``start`` is {"main","args","config","instanceId"};
    ``hub_socket`` is where the runner serves the hub's API to the instance (``hubproxy``); ``user``:
    a uid of its own to run as (a Fargate task's runner is root, in a container it shares with the
    host: as root the sequence could rewrite the runner's code). With ``start`` None (in a box
    only: a standby's), the host loads and waits for ``begin`` to say its instance."""
    if start is None and box is None:
        raise ValueError("only a sandboxed host can start before its instance is known")
    start_file = work_dir / START_FILE
    fd = os.open(start_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        if start is not None:
            fh.write(json.dumps(start))
    if start is None:
        package.touch()  # bound inside now, its bytes written by the fetch later (same file)
    owner = box.uid if box is not None else user
    if owner is not None:
        os.chown(start_file, owner, owner)  # the instance's own uid reads it, nobody else
    if user is not None and box is None:
        give_to(user, package, work_dir)
    # Paths as the host sees them: the sandbox's fixed places, or the runner's own.
    package_dir = PACKAGE_DIR if box else str(package)
    hosts = Path(HOSTS_INSIDE) if box else PYTHON_HOST.parent
    if runtime == "python":
        # The host needs the runner's own libraries (scramjet-framework-py), not its environment.
        paths = [p for p in sys.path if p and Path(p).is_dir()]
        argv = [sys.executable, "-u", str(hosts / PYTHON_HOST.name)]
        extra = {"PYTHONPATH": os.pathsep.join([f"{package_dir}/__pypackages__", *paths]),
                 "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    else:
        argv = [node_binary(), str(hosts / NODE_HOST.name)]
        extra = {"NODE_PATH": f"{package_dir}/node_modules"}

    names = ["output", "log", "events", "control", "input", *(["go"] if start is None else [])]
    pipes = {name: os.pipe() for name in names}
    with contextlib.suppress(OSError):  # past the user's pipe quota (an unprivileged runner): the default
        fcntl.fcntl(pipes["output"][1], fcntl.F_SETPIPE_SZ, OUTPUT_PIPE_BYTES)
    child_ends = {name: (r if name in ("control", "input", "go") else w) for name, (r, w) in pipes.items()}
    env = base_environment()
    env.update(extra)
    home = "/tmp" if box else str(work_dir / "tmp")
    env.update({"HOME": home, "TMPDIR": home, "SEQHUB_START": START_INSIDE if box else str(start_file),
                # SDKs in the sequence must not go looking for the host's instance role.
                "AWS_EC2_METADATA_DISABLED": "true"})
    env.update({f"SEQHUB_FD_{name.upper()}": str(fd) for name, fd in child_ends.items()})
    if hub_socket is not None:
        env["SEQHUB_HUB_SOCKET"] = HUB_SOCKET_INSIDE if box else str(hub_socket)
    (work_dir / "tmp").mkdir(exist_ok=True)
    cwd: Path | str = package
    extra_fds: tuple[int, ...] = ()
    with contextlib.ExitStack() as opened:
        if box is not None:
            program = opened.enter_context(sandbox.program_file())
            extra_fds = (program.fileno(),)
            argv = box.command(argv, env, package, start_file, work_dir, program.fileno(), hub_socket)
            cwd = work_dir
        stdout_r, stdout_w = os.pipe()
        stderr_r, stderr_w = os.pipe()
        stdin_r, stdin_w = os.pipe()
        try:
            popen = subprocess.Popen if box is not None else _popen_without_capabilities
            as_user: dict[str, Any] = {"user": user, "group": user, "extra_groups": []} if user is not None and box is None else {}
            proc = popen(
                argv, cwd=cwd, env=env, stdin=stdin_r, stdout=stdout_w, stderr=stderr_w,
                pass_fds=(*child_ends.values(), *extra_fds), start_new_session=True, close_fds=True, **as_user)
        finally:
            for fd in (*child_ends.values(), stdout_w, stderr_w, stdin_r):
                os.close(fd)
    fds = {"output": pipes["output"][0], "log": pipes["log"][0], "events": pipes["events"][0],
           "stdout": stdout_r, "stderr": stderr_r, "stdin": stdin_w}
    return Child(proc=proc, control_w=pipes["control"][1], input_w=pipes["input"][1], fds=fds,
                 go_w=pipes["go"][1] if start is None else None)


def begin(child: Child, work_dir: Path, start: dict[str, Any]) -> None:
    """Give a standby's host (spawned with no ``start``) its instance: the package is in place."""
    with open(work_dir / START_FILE, "w", encoding="utf-8") as fh:  # the file bound inside: rewritten
        fh.write(json.dumps(start))
    assert child.go_w is not None, "begin() is for a host spawned without its start"
    os.write(child.go_w, b"go")
    os.close(child.go_w)
    child.go_w = None


def kill_group(child: Child) -> None:
    child.signal_group(signal.SIGKILL)
