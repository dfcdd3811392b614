"""The embedded hub's per-instance sandbox, built on bubblewrap (``bwrap``) and cgroups.

Each instance's host runs in namespaces of its own (PID, mount, IPC, network, UTS): it sees no other
process, has no network (so neither the hub's API nor its storage), and sees a read-only system with a
private, size-limited ``/tmp`` and working directory ``/package`` (a copy of its package). Where the
runner is root, the host runs as a uid of its own with no capabilities, under per-instance limits on
processes and memory (cgroups where the runner may create them; RLIMIT_NPROC otherwise). When the
host's PID namespace ends, every process the instance started ends with it.

On AWS there is no sandbox tool: Lambda gives each concurrent instance its own execution environment,
and ``leftovers`` cleans that environment up after each instance.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Limits
from .hosts import HOSTS_DIR

PACKAGE_DIR = "/package"            # where the sequence runs, as in Scramjet's Docker runner
HOSTS_INSIDE = "/opt/seqhub/hosts"
START_INSIDE = "/run/seqhub/start.json"
_PACKAGE_SOURCE = "/run/seqhub/package"
_UID_BASE = 2_000_000                # far above any uid a system hands out
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")
# Runs as the sandbox's root (when the runner is root): copy the package into the private working
# directory, hand it to the instance's uid, then become that uid with no capabilities left.
_SETUP = (f'set -e; cp -RP --preserve=mode,timestamps "$0"/. {PACKAGE_DIR}/; '
          f'if [ -n "$1" ]; then chown -R "$1:$1" {PACKAGE_DIR}; fi; shift; exec "$@"')
# Runs outside, before bwrap: join the instance's cgroups, so everything it starts is counted.
_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def unavailable_reason() -> str | None:
    """Why this machine cannot sandbox instances, or None when it can (bwrap runs here)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    probe = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", *_user_ns(), "--die-with-parent",
             "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot run here: {exc}"
    if done.returncode != 0:
        line = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        return f"bubblewrap cannot create namespaces here: {line}"
    return None


def _user_ns() -> list[str]:
    # Root sets up the sandbox with its own privileges and then drops to the instance's uid; anyone
    # else needs a user namespace to create the others.
    return [] if os.geteuid() == 0 else ["--unshare-user"]


@dataclass
class Box:
    """One instance's sandbox: its uid, its cgroups, and the command line that enters it."""

    name: str
    limits: Limits
    uid: int | None = None
    cgroups: list[Path] = field(default_factory=list)

    @classmethod
    def create(cls, name: str, limits: Limits) -> Box:
        box = cls(name=name, limits=limits)
        if os.geteuid() == 0:
            box.uid = _UID_BASE + os.getpid()  # unique among live runners on this machine
        box.cgroups = _make_cgroups(name, limits)
        return box

    def command(self, argv: list[str], env: dict[str, str], seq_dir: Path, start_file: Path,
                package_bytes: int) -> list[str]:
        """The command line that runs ``argv`` (paths as seen inside) in this sandbox."""
        disk = self.limits.disk_mb * 1024 * 1024
        bwrap = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session",
                 "--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                 *_user_ns(), "--hostname", "sequence"]
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                bwrap += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                bwrap += ["--ro-bind", path, path]
        # The private filesystems first: a bind below /tmp (a checkout there) must land on top of them.
        bwrap += ["--proc", "/proc", "--dev", "/dev",
                  "--perms", "1777", "--size", str(disk), "--tmpfs", "/tmp",
                  "--perms", "1777", "--size", str(disk), "--tmpfs", "/dev/shm",
                  "--perms", "0755", "--size", str(disk + package_bytes), "--tmpfs", PACKAGE_DIR]
        binds = [(path, path) for path in _runtime_dirs()]
        binds += [(str(HOSTS_DIR), HOSTS_INSIDE), (str(seq_dir), _PACKAGE_SOURCE), (str(start_file), START_INSIDE)]
        made: set[str] = set()
        for source, dest in binds:
            # bwrap would make the parents root-only; the instance's uid must pass through them.
            for parent in reversed(Path(dest).parents[:-1]):
                if str(parent) not in made and str(parent) not in ("/tmp", "/dev"):
                    made.add(str(parent))
                    bwrap += ["--perms", "0755", "--dir", str(parent)]
            bwrap += ["--ro-bind", source, dest]
        bwrap += ["--chdir", PACKAGE_DIR, "--clearenv"]
        for key, value in env.items():
            bwrap += ["--setenv", key, value]
        drop: list[str] = []
        if self.uid is not None:
            drop = ["prlimit", f"--nproc={self.limits.max_procs}",
                    "setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        inside = ["/bin/sh", "-c", _SETUP, _PACKAGE_SOURCE, "" if self.uid is None else str(self.uid),
                  *drop, *argv]
        command = [*bwrap, "--", *inside]
        if self.cgroups:
            command = ["/bin/sh", "-c", _JOIN_CGROUPS, "seqhub-cgroups",
                       *[str(cg / "cgroup.procs") for cg in self.cgroups], "--", *command]
        return command

    def out_of_memory(self) -> bool:
        """Whether the kernel killed a process of this instance for exceeding its memory limit."""
        for cg in self.cgroups:
            for name in ("memory.events", "memory.oom_control"):  # cgroup v2, v1
                try:
                    lines = (cg / name).read_text().splitlines()
                except OSError:
                    continue
                counts = dict(line.split(None, 1) for line in lines if " " in line)
                if int(counts.get("oom_kill", "0")) > 0:
                    return True
        return False

    def remove(self) -> None:
        for cg in self.cgroups:
            for _ in range(40):  # busy for a moment after its last process went
                try:
                    cg.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.05)


def _runtime_dirs() -> list[str]:
    """What the hosts need read-only: this Python (its venv and installation) and Node.js if it is
    installed outside the system directories."""
    dirs = {sys.prefix, sys.base_prefix, str(Path(os.path.realpath(sys.executable)).parent.parent)}
    node = shutil.which("node") or os.environ.get("SEQHUB_NODE")
    if node:
        dirs.add(str(Path(os.path.realpath(node)).parent.parent))
    system = tuple(d.rstrip("/") + "/" for d in _SYSTEM_DIRS)
    return sorted(d for d in dirs if os.path.isdir(d) and not (d.rstrip("/") + "/").startswith(system))


def _make_cgroups(name: str, limits: Limits) -> list[Path]:
    """A pids and a memory cgroup for the instance, where this process may create them (else none)."""
    settings = {"pids": [("pids.max", str(limits.max_procs))],
                "memory": [("memory.limit_in_bytes", str(limits.memory_mb * 1024 * 1024)),  # v1
                           ("memory.max", str(limits.memory_mb * 1024 * 1024))]}              # v2
    made = []
    for controller, files in settings.items():
        parent = _cgroup_dir(controller)
        if parent is None:
            continue
        path = parent / f"seqhub-{name}"
        try:
            path.mkdir()
        except FileExistsError:
            pass
        except OSError:
            continue
        written = False
        for filename, value in files:
            try:
                (path / filename).write_text(value)
                written = True
            except OSError:
                continue
        if written:
            if path not in made:  # cgroup v2: one directory holds both controllers
                made.append(path)
        else:
            try:
                path.rmdir()
            except OSError:
                pass
    return made


def _cgroup_dir(controller: str) -> Path | None:
    """This process's cgroup directory for ``controller`` (cgroup v1), or its v2 directory."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            candidate = Path("/sys/fs/cgroup") / controller / path.lstrip("/")
            return candidate if candidate.is_dir() else None
    for line in lines:
        if line.startswith("0::") and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            candidate = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
            try:
                enabled = (candidate / "cgroup.subtree_control").read_text().split()
            except OSError:
                return None
            return candidate if controller in enabled else None
    return None
