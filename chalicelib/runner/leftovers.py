"""What an instance leaves behind, removed before its runner serves anything else.

A runner that owns its process (each instance's process on the embedded hub, the runner Lambda's
execution environment on AWS) becomes a *child subreaper*: whatever the sequence starts, however it
detaches (double fork, ``setsid``, ``setpgid``), is re-parented to the runner instead of to init.
After the host exits, every process still parented to the runner is the instance's, and is killed
with everything below it. On Lambda, where the next invocation may be another user's instance,
the runner also empties ``/tmp``.

That is not enough alone: without a sandbox a sequence runs as the runner's own uid, so it can
kill its runner, whose clean-up then never runs, and leave a process (frozen with the environment,
thawed in the next invocation) or a file (``/tmp/node_modules``, which Node's ``require`` looks in)
for the next instance. So where the runner owns the environment it also cleans it *before* each
instance: ``clean_environment`` kills every process of its uid that is not one of its ancestors,
and empties ``/tmp``, before the package is fetched.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

_PR_SET_CHILD_SUBREAPER = 36
_adopting = False


def adopt_orphans() -> bool:
    """Make this process the subreaper of everything it starts; False where the OS cannot."""
    global _adopting
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _adopting = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _adopting = False
    return _adopting


def _parents() -> dict[int, int]:
    """pid → parent pid for every process this process can see."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # it ended while we looked
            continue
        found[int(entry)] = int(raw.rsplit(")", 1)[1].split()[1])
    return found


def _descendants(root: int, parents: dict[int, int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def kill_all(keep: frozenset[int] = frozenset()) -> int:
    """SIGKILL every process below this one except ``keep`` (and theirs); return how many.

    Only for a process that runs nothing but the instance (see ``adopt_orphans``). Repeats until
    none is left, so a process forking as fast as it can is caught too.
    """
    if not _adopting:
        return 0
    me = os.getpid()
    killed: set[int] = set()
    for _ in range(100):
        parents = _parents()
        spared = set(keep)
        for pid in keep:
            spared |= _descendants(pid, parents)
        targets = _descendants(me, parents) - spared
        if not targets:
            break
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed |= targets
        _reap(targets)
    return len(killed)


def kill_strays() -> int:
    """SIGKILL every process of this uid except this one and its ancestors; return how many. Only
    where this process's environment runs nothing but the runner (a Lambda execution environment).
    Repeats until none is left, so a process forking as fast as it can is caught too."""
    me, uid = os.getpid(), os.getuid()
    killed: set[int] = set()
    for _ in range(100):
        parents = _parents()
        keep = {me}
        pid = me
        while pid in parents and parents[pid] not in keep and parents[pid] > 0:
            pid = parents[pid]
            keep.add(pid)
        targets = {p for p in parents if p not in keep and _owner(p) == uid}
        if not targets:
            break
        for pid in targets:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        killed |= targets
        _reap(targets)
    return len(killed)


def _owner(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return None


def clean_environment(tmp: Path) -> None:
    """Before an instance: what earlier ones may have left in this execution environment goes."""
    kill_strays()
    empty_dir(tmp)


def _reap(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:  # not ours directly (its parent reaps it) or already reaped
            pass


def empty_dir(path: Path) -> None:
    """Remove everything inside ``path``, whatever modes the sequence left on it."""
    def make_writable(func: Callable[..., Any], target: str, _exc: BaseException) -> None:
        parent = os.path.dirname(target)
        for each in (parent, target):
            try:
                if not os.path.islink(each):
                    os.chmod(each, stat.S_IRWXU)
            except OSError:
                pass
        try:
            func(target)
        except OSError:
            pass

    for entry in list(path.iterdir()) if path.is_dir() else []:
        if entry.is_dir() and not entry.is_symlink():
            try:
                os.chmod(entry, stat.S_IRWXU)
            except OSError:
                pass
            shutil.rmtree(entry, onexc=make_writable)
        else:
            try:
                entry.unlink()
            except OSError:
                pass
