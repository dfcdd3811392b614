"""A standby: a sandbox made, and its host loaded, before its instance exists.

Each sandboxed start would otherwise wait for bubblewrap, the sandbox's setup and its runtime's own
start (Python's imports of asyncio and scramjet, Node's of scramjet): ~80 ms of an instance's first
byte. The embedded hub's fork server (``__main__``) keeps one standby runner per runtime it has been
asked to run, made when the instance that took the previous one ends (or half a second after its
start, if it runs on: made at once, it would compete for the cores with that instance's start): a
forked runner with its sandbox (its own uid, cgroups, ``/etc``, work directory) and a host in it
that has loaded and waits. Nothing of any instance is in it until its runner, given one, fetches
the package into the archive already bound inside and tells the host to go; from then on it is that
instance's alone, as a sandbox made for it would be, and it is never used again.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import Settings
from . import child as child_mod
from . import hubproxy, sandbox
from .hubproxy import HubProxy

ARCHIVE = "package.tar.gz"  # in the work directory, as a runner without a standby fetches it


@dataclass
class Standby:
    runtime: str
    work: Path
    box: sandbox.Box
    child: child_mod.Child
    hub_proxy: HubProxy | None

    @classmethod
    def make(cls, settings: Settings, runtime: str) -> Standby:
        """A sandbox for an instance of ``runtime`` (the hub's sandbox limits), its host waiting."""
        work = Path(tempfile.mkdtemp(prefix="seqhub-"))
        box = sandbox.Box.create(f"standby-{os.getpid()}", settings.sandbox_limits)
        hub_proxy = None
        try:
            child_mod.harden()
            hub_proxy = hubproxy.for_instance(settings.api_url, runtime, work)
            child = child_mod.spawn(runtime, work / ARCHIVE, None, work, box, hub_proxy.path if hub_proxy else None)
        except BaseException:
            if hub_proxy is not None:
                hub_proxy.close()
            box.remove()
            shutil.rmtree(work, ignore_errors=True)
            raise
        return cls(runtime=runtime, work=work, box=box, child=child, hub_proxy=hub_proxy)

    def discard(self) -> None:
        """End it unused (another runtime's instance came, or the hub stops)."""
        child_mod.kill_group(self.child)
        try:
            self.child.proc.wait(timeout=5)
        except Exception:  # its PID namespace ends with bwrap, which --die-with-parent ends with us
            pass
        for fd in (*self.child.fds.values(), self.child.control_w, self.child.input_w, self.child.go_w):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        if self.hub_proxy is not None:
            self.hub_proxy.close()
        self.box.remove()
        shutil.rmtree(self.work, ignore_errors=True)
