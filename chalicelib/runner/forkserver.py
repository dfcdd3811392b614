"""The embedded hub's fork server (``python -m chalicelib.runner --fork-server``).

One warm process (its imports, clients and the sandbox's system-call filter made once) that forks
a runner per "<instance id> <engine> <runtime>" line on stdin: the local counterpart of a warm
Lambda, yet each instance still runs in an OS process of its own. Sandboxed, it keeps a standby
(``standby``) for the next instance of each runtime it has run. On SIGTERM, or stdin's end, it
stops its runners and leaves.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any, NoReturn

from .. import aws, config
from ..observability import logger
from . import leftovers, syscalls
from .child import harden
from .standby import Standby

# Runs one instance in this process: (instance id, engine, the standby to run it in, if any).
RunOne = Callable[[str, str, Standby | None], None]

STANDBY_RUNTIMES = ("python", "node")
STANDBY_DELAY_SECONDS = 0.5  # the longest a runtime goes without a standby while its instances run


def serve(run_one: RunOne) -> NoReturn:
    harden()  # it holds the hub's settings in its environment too: keep sequences out of it
    settings = config.load()
    _warm_clients(settings)
    if settings.sandbox == "bwrap":
        _warm_filter()
    ForkServer(settings, run_one).serve()


def _warm_clients(settings: config.Settings) -> None:
    """Make the runners' clients here, each warmed by one read: a client's first call resolves its
    endpoint, signer and credentials (~4 ms a client), which every forked runner would otherwise
    pay again on its start path (the claim, the package). Their connections are then closed, so
    each runner opens its own: no socket is shared across forks."""
    reads: dict[str, Callable[[Any], object]] = {
        "dynamodb": lambda c: c.get_item(TableName=settings.table, Key={"pk": {"S": "-"}, "sk": {"S": "-"}}),
        "s3": lambda c: c.head_object(Bucket=settings.bucket, Key="-"),
    }
    if settings.log_copy != "none":  # runners copy channels to CloudWatch (the embedded hub's do not)
        reads["logs"] = lambda c: c.describe_log_streams(logGroupName=settings.log_group, limit=1)
    for service, read in reads.items():
        made = aws.client(service)
        try:
            read(made)
        except Exception:  # only a warm-up: the runner's own calls report what is wrong
            pass
        made.close()


def _warm_filter() -> None:
    """Compile the sandbox's system-call filter here, once: each runner would otherwise load
    libseccomp and build it again (~10 ms on every sandboxed start)."""
    try:
        syscalls.program()
    except syscalls.Unavailable:  # the runner's own start of the sandbox says so
        pass


class ForkServer:
    def __init__(self, settings: config.Settings, run_one: RunOne):
        self.settings = settings
        self.run_one = run_one
        self.children: set[int] = set()
        # runtime -> its standby runner (pid, the write end of its job pipe): sandboxed hubs only
        self.standbys: dict[str, tuple[int, int]] = {}
        # runtime -> when to make its next standby: when the runner of the instance that took the
        # last one ends, or STANDBY_DELAY_SECONDS after that instance's start, whichever comes
        # first. Made at once, it would warm up beside the instance it follows, on the same cores,
        # while that one starts.
        self.wanted: dict[str, float] = {}
        self.runtime_of: dict[int, str] = {}  # a runner's pid -> its instance's runtime
        # A child's end wakes the loop (which reaps it) through this pipe: nothing is forked or
        # reaped in a signal handler.
        self.wake_r, self.wake_w = os.pipe()
        for fd in (self.wake_r, self.wake_w):
            os.set_blocking(fd, False)

    def serve(self) -> NoReturn:
        signal.signal(signal.SIGTERM, self.stop)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)
        stdin, pending = sys.stdin.fileno(), b""
        while True:
            timeout = max(0.0, min(self.wanted.values()) - time.monotonic()) if self.wanted else None
            ready, _, _ = select.select([stdin, self.wake_r], [], [], timeout)
            if self.wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self.wake_r, 512):
                        pass
            self.reap()
            for runtime in [r for r, at in self.wanted.items() if at <= time.monotonic()]:
                del self.wanted[runtime]
                self.make_standby(runtime)
            if stdin in ready:
                chunk = os.read(stdin, 64 * 1024)
                if not chunk:
                    break
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    self.start(line.decode())
        for _, jobs_w in self.standbys.values():
            os.close(jobs_w)  # each discards its standby
        self.standbys.clear()  # (so stop's reaping does not close them again)
        self.stop()

    def start(self, line: str) -> None:
        instance_id, engine, runtime = (line.split() + ["", "", ""])[:3]
        if not instance_id:
            return
        engine = engine or "lambda"
        pid = (self.hand_to_standby(runtime, f"{instance_id} {engine}\n".encode())
               or self.fork(self.run_one, instance_id, engine, None))
        self.runtime_of[pid] = runtime
        if self.settings.sandbox == "bwrap" and runtime in STANDBY_RUNTIMES and runtime not in self.standbys:
            self.wanted.setdefault(runtime, time.monotonic() + STANDBY_DELAY_SECONDS)

    def fork(self, work: Callable[..., None], *args: Any) -> int:
        pid = os.fork()
        if pid == 0:  # a runner's own process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            for fd in (self.wake_r, self.wake_w, *(jobs_w for _, jobs_w in self.standbys.values())):
                os.close(fd)  # the fork server's own (another standby's job pipe is its alone)
            try:
                work(*args)
            finally:
                os._exit(0)
        self.children.add(pid)
        return pid

    def make_standby(self, runtime: str) -> None:
        jobs_r, jobs_w = os.pipe()
        pid = self.fork(standby_runner, jobs_r, runtime, self.run_one)
        os.close(jobs_r)
        self.standbys[runtime] = (pid, jobs_w)

    def hand_to_standby(self, runtime: str, job: bytes) -> int | None:
        """The pid of the standby runner that took ``job``, if one did."""
        pid, jobs_w = self.standbys.pop(runtime, (0, -1))
        if not pid:
            return None
        try:
            os.write(jobs_w, job)  # one short line: written whole, or not at all (the runner died)
            return pid
        except OSError:
            return None
        finally:
            os.close(jobs_w)

    def reap(self) -> None:
        for pid in list(self.children):
            try:
                if not os.waitpid(pid, os.WNOHANG)[0]:
                    continue
            except ChildProcessError:
                pass
            self.children.discard(pid)
            runtime = self.runtime_of.pop(pid, None)
            if runtime in self.wanted:
                self.wanted[runtime] = 0.0
            for runtime, (standby_pid, jobs_w) in list(self.standbys.items()):
                if standby_pid == pid:  # it could not make its sandbox: the next start makes one itself
                    del self.standbys[runtime]
                    os.close(jobs_w)

    def stop(self, *_: object) -> NoReturn:
        for pid in list(self.children):
            try:
                os.kill(pid, signal.SIGTERM)  # each records its end, as at a deadline
            except ProcessLookupError:
                self.children.discard(pid)
        end = time.monotonic() + 10
        while self.children and time.monotonic() < end:
            self.reap()
            time.sleep(0.05)
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)


def standby_runner(jobs: int, runtime: str, run_one: RunOne) -> None:
    """A forked runner that makes a standby for ``runtime``, then runs the instance the fork server
    writes to ``jobs`` ("<instance id> <engine>") with it; at the pipe's end, or SIGTERM, it
    discards it unused."""
    settings = config.load()
    leftovers.adopt_orphans()
    standby: Standby | None = None
    making, told_to_leave = True, False

    def leave(*_: object) -> None:
        nonlocal told_to_leave
        if making:  # half made (its cgroups, say): leave once it is whole, to discard all of it
            told_to_leave = True
            return
        if standby is not None:
            standby.discard()
        os._exit(0)

    signal.signal(signal.SIGTERM, leave)
    try:
        standby = Standby.make(settings, runtime)
    except Exception:  # the instance's own start says what is wrong, as without a standby
        logger.exception("could not make a standby")
    making = False
    if told_to_leave:
        leave()
    line = b""
    while not line.endswith(b"\n") and (chunk := os.read(jobs, 256)):
        line += chunk
    os.close(jobs)
    instance_id, _, engine = line.decode().strip().partition(" ")
    if not instance_id:
        leave()
    run_one(instance_id, engine or "lambda", standby)  # (which sets its own SIGTERM handler)
