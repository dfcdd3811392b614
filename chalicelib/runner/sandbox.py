"""The embedded hub's per-instance sandbox, built on bubblewrap (``bwrap``) and cgroups.

Each instance's host runs in namespaces of its own (PID, mount, IPC, network, UTS): it sees no other
process, has no network (so neither the hub's API nor its storage), and sees a read-only system with a
private, size-limited ``/tmp`` and working directory ``/package``, into which its package is unpacked
inside the sandbox (so the unpacked bytes count against its own limits, never the host's disk). Of
``/etc`` it sees only what a runtime needs. Where the runner is root, the host runs as a uid of its
own with no capabilities, under per-instance limits on processes and memory (cgroups where the
runner may create them; RLIMIT_NPROC otherwise), and a system-call filter (``syscalls``) keeps it
from new user namespaces, the keyring, io_uring, bpf and the like. When the host's PID namespace
ends, every process the instance started ends with it.

On AWS there is no sandbox tool: Lambda gives each concurrent instance its own execution environment,
and ``leftovers`` cleans that environment up after each instance.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from ..config import Limits
from . import syscalls
from .hosts import HOSTS_DIR

PACKAGE_DIR = "/package"            # where the sequence runs, as in Scramjet's Docker runner
HOSTS_INSIDE = "/opt/seqhub/hosts"
START_INSIDE = "/run/seqhub/start.json"
HUB_SOCKET_INSIDE = "/run/seqhub/hub.sock"
_ARCHIVE_INSIDE = "/run/seqhub/package.tar.gz"
_UID_BASE = 2_000_000                # far above any uid a system hands out
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64")
# Of /etc, what the runtimes and their C library read (linker cache, time zone, certificates, name
# service rules); the rest (the machine's users, hosts, services' configuration) stays hidden.
_ETC_SHARED = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "timezone", "ssl", "ca-certificates",
               "mime.types", "os-release", "alternatives", "gai.conf", "host.conf", "protocols", "services")
# Runs as the sandbox's root (when the runner is root): give the empty working directory to the
# instance's uid, then become that uid with no capabilities left; as that uid, the host unpacks the
# package (checked at upload, its sha256 checked since) into it, SEQHUB_ARCHIVE naming the archive.
_SETUP = f'set -e; if [ -n "$1" ]; then chown "$1:$1" {PACKAGE_DIR}; fi; shift; exec "$@"'
# Runs outside, before bwrap: join the instance's cgroups, so everything it starts is counted.
_JOIN_CGROUPS = 'while [ "$1" != -- ]; do echo $$ > "$1" || exit 125; shift; done; shift; exec "$@"'


def unavailable_reason() -> str | None:
    """Why this machine cannot sandbox instances, or None when it can (bwrap runs here)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed"
    if shutil.which("tar") is None:
        return "tar is not installed (the sandbox unpacks packages with it)"
    try:
        program = syscalls.program()
    except syscalls.Unavailable as exc:
        return str(exc)
    probe = [bwrap, "--unshare-pid", "--unshare-net", "--unshare-ipc", *_user_ns(), "--die-with-parent",
             "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev"]
    try:
        with program_file(program) as fh:
            done = subprocess.run([*probe, "--seccomp", str(fh.fileno()), "true"], capture_output=True, text=True,
                                  timeout=20, pass_fds=(fh.fileno(),))
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

    def command(self, argv: list[str], env: dict[str, str], archive: Path, start_file: Path, work_dir: Path,
                seccomp_fd: int, hub_socket: Path | None = None) -> list[str]:
        """The command line that runs ``argv`` (paths as seen inside) in this sandbox, under the
        system-call filter read from ``seccomp_fd`` (which the caller passes on to it), with its
        package ``archive`` (which the host unpacks into ``/package`` before anything else: a
        standby's once told to go) and ``hub_socket`` (the hub's API, served by the runner) inside."""
        env = {**env, "SEQHUB_ARCHIVE": _ARCHIVE_INSIDE}
        disk = self.limits.disk_mb * 1024 * 1024
        bwrap = [shutil.which("bwrap") or "bwrap", "--die-with-parent", "--new-session",
                 "--unshare-pid", "--unshare-ipc", "--unshare-net", "--unshare-uts", "--unshare-cgroup-try",
                 *_user_ns(), "--hostname", "sequence"]
        for path in _SYSTEM_DIRS:
            if os.path.islink(path):
                bwrap += ["--symlink", os.readlink(path), path]
            elif os.path.isdir(path):
                bwrap += ["--ro-bind", path, path]
        bwrap += self._etc(work_dir / "etc")
        # The private filesystems first: a bind below /tmp (a checkout there) must land on top of them.
        # /package holds the unpacked package and whatever the instance writes there: its disk limit.
        bwrap += ["--proc", "/proc", "--dev", "/dev",
                  "--perms", "1777", "--size", str(disk), "--tmpfs", "/tmp",
                  "--perms", "1777", "--size", str(disk), "--tmpfs", "/dev/shm",
                  "--perms", "0755", "--size", str(disk), "--tmpfs", PACKAGE_DIR]
        binds = [(path, path) for path in _runtime_dirs()]
        binds += [(str(HOSTS_DIR), HOSTS_INSIDE), (str(archive), _ARCHIVE_INSIDE), (str(start_file), START_INSIDE)]
        if hub_socket is not None:
            binds.append((str(hub_socket), HUB_SOCKET_INSIDE))
        made: set[str] = set()
        for source, dest in binds:
            # bwrap would make the parents root-only; the instance's uid must pass through them.
            for parent in reversed(Path(dest).parents[:-1]):
                if str(parent) not in made and str(parent) not in ("/tmp", "/dev", "/etc"):
                    made.add(str(parent))
                    bwrap += ["--perms", "0755", "--dir", str(parent)]
            bwrap += ["--ro-bind", source, dest]
        bwrap += ["--chdir", PACKAGE_DIR, "--clearenv", "--seccomp", str(seccomp_fd)]
        for key, value in env.items():
            bwrap += ["--setenv", key, value]
        drop: list[str] = []
        if self.uid is not None:
            drop = ["prlimit", f"--nproc={self.limits.max_procs}",
                    "setpriv", f"--reuid={self.uid}", f"--regid={self.uid}", "--clear-groups",
                    "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]
        inside = ["/bin/sh", "-c", _SETUP, "seqhub-setup", "" if self.uid is None else str(self.uid),
                  *drop, *argv]
        command = [*bwrap, "--", *inside]
        if self.cgroups:
            command = ["/bin/sh", "-c", _JOIN_CGROUPS, "seqhub-cgroups",
                       *[str(cg / "cgroup.procs") for cg in self.cgroups], "--", *command]
        return command

    def _etc(self, etc: Path) -> list[str]:
        """``/etc`` as the sandbox sees it: a passwd and a group naming only its own users, its
        hosts, and the host's entries a runtime reads (``_ETC_SHARED``), bound over placeholders."""
        etc.mkdir()
        uid = self.uid if self.uid is not None else os.geteuid()
        (etc / "passwd").write_text(f"root:x:0:0:root:/root:/bin/sh\nsequence:x:{uid}:{uid}:sequence:/tmp:/bin/sh\n"
                                    "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
        (etc / "group").write_text(f"root:x:0:\nsequence:x:{uid}:\nnogroup:x:65534:\n")
        (etc / "hosts").write_text("127.0.0.1 localhost sequence\n::1 localhost\n")
        (etc / "hostname").write_text("sequence\n")
        (etc / "nsswitch.conf").write_text("passwd: files\ngroup: files\nhosts: files\n")
        binds = ["--ro-bind", str(etc), "/etc"]
        for name in _ETC_SHARED:
            source = Path("/etc") / name
            if source.is_symlink():
                (etc / name).symlink_to(os.readlink(source))
            elif source.is_dir():
                (etc / name).mkdir()
                binds += ["--ro-bind", str(source), f"/etc/{name}"]
            elif source.is_file():
                (etc / name).touch()
                binds += ["--ro-bind", str(source), f"/etc/{name}"]
        return binds

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


@contextlib.contextmanager
def program_file(program: bytes | None = None) -> Iterator[IO[bytes]]:
    """The system-call filter in a file to hand bwrap by descriptor (it reads it to the end)."""
    with tempfile.TemporaryFile() as fh:
        fh.write(syscalls.program() if program is None else program)
        fh.seek(0)
        yield fh


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
