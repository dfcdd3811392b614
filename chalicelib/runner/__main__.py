"""The local invoker's runner processes.

``python -m chalicelib.runner <instance-id>``  runs one instance in this process (the lambda engine's limit).
``python -m chalicelib.runner --task <instance-id>``  the same as a Fargate task (``bootstrap`` starts it):
    the fargate engine's limit, and ECS's SIGTERM (StopTask, a Spot interruption) stops the instance
    gracefully, as ``si inst stop`` would, in the time ECS gives before its SIGKILL.
``python -m chalicelib.runner --fork-server``   imports everything once, then forks one process per
    "<instance id> <engine> <runtime>" line read from stdin: the local counterpart of a warm Lambda (no
    interpreter start-up or imports per instance, yet each instance still runs in an OS process of its own).
    Sandboxed, it keeps a standby (``standby``) for the next instance of each runtime it has run.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from .. import aws, config, models
from ..observability import logger
from . import leftovers, syscalls
from .child import harden
from .service import GRACEFUL_STOP_MS, run_instance
from .standby import Standby

NO_LIMIT_SECONDS = 10 * 365 * 86400  # an engine without a time limit: far enough to never come
STANDBY_RUNTIMES = ("python", "node")
STANDBY_DELAY_SECONDS = 0.5  # the longest a runtime goes without a standby while its instances run


def run_one(instance_id: str, engine: str = "lambda", task: bool = False, standby: Standby | None = None) -> None:
    settings = config.load()
    limit = settings.time_limit(engine) or NO_LIMIT_SECONDS
    deadline = [time.monotonic() + limit]
    cut_reason: list[str | None] = [None]

    def cut_short(*_: object) -> None:
        # ECS stops the task: stop the instance while there is time, and say why. The graceful stop
        # and last records fit well inside the task definition's stopTimeout (infra/fargate.yaml),
        # after which ECS sends SIGKILL.
        if task:
            deadline[0] = min(deadline[0], time.monotonic() + GRACEFUL_STOP_MS / 1000)
            cut_reason[0] = models.REASON_TASK_STOPPED
        else:  # the embedded hub stops its runners with SIGTERM: end as at a Lambda deadline, recorded
            deadline[0] = time.monotonic()

    signal.signal(signal.SIGTERM, cut_short)
    leftovers.adopt_orphans()  # this process runs this one instance: what it starts is its to end
    # A task's runner is root in the container it shares with the host: the host runs as a uid of
    # its own (the task definition's SEQHUB_HOST_UID), as a Lambda's would run read-only beside it.
    host_user = settings.host_uid if task and os.geteuid() == 0 and settings.host_uid else None
    run_instance(settings, instance_id, lambda: int((deadline[0] - time.monotonic()) * 1000),
                 cut_reason=lambda: cut_reason[0], host_user=host_user, standby=standby)


def standby_runner(jobs: int, runtime: str) -> None:
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
    run_one(instance_id, engine or "lambda", standby=standby)  # (which sets its own SIGTERM handler)


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


def fork_server() -> None:
    """Fork a runner per instance id on stdin; on SIGTERM (or stdin's end) stop them and leave."""
    harden()  # it holds the hub's settings in its environment too: keep sequences out of it
    settings = config.load()
    _warm_clients(settings)
    if settings.sandbox == "bwrap":
        _warm_filter()
    children: set[int] = set()

    def stop(*_: object) -> None:
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)  # each records its end, as at a deadline
            except ProcessLookupError:
                children.discard(pid)
        end = time.monotonic() + 10
        while children and time.monotonic() < end:
            reap()
            time.sleep(0.05)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        os._exit(0)

    # runtime -> its standby runner (pid, the write end of its job pipe): sandboxed hubs only
    standbys: dict[str, tuple[int, int]] = {}
    # runtime -> when to make its next standby: when the runner of the instance that took the last
    # one ends, or STANDBY_DELAY after that instance's start, whichever comes first. Made at once,
    # it would warm up beside the instance it follows, on the same cores, while that one starts.
    wanted: dict[str, float] = {}
    runtime_of: dict[int, str] = {}  # a runner's pid -> its instance's runtime

    def reap() -> None:
        for pid in list(children):
            try:
                if not os.waitpid(pid, os.WNOHANG)[0]:
                    continue
            except ChildProcessError:
                pass
            children.discard(pid)
            runtime = runtime_of.pop(pid, None)
            if runtime in wanted:
                wanted[runtime] = 0.0
            for runtime, (standby_pid, jobs_w) in list(standbys.items()):
                if standby_pid == pid:  # it could not make its sandbox: the next start makes one itself
                    del standbys[runtime]
                    os.close(jobs_w)

    def fork(work: Callable[..., None], *args: Any) -> int:
        pid = os.fork()
        if pid == 0:  # a runner's own process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.set_wakeup_fd(-1)
            for fd in (wake_r, wake_w, *(jobs_w for _, jobs_w in standbys.values())):
                os.close(fd)  # the fork server's own (another standby's job pipe is its alone)
            try:
                work(*args)
            finally:
                os._exit(0)
        children.add(pid)
        return pid

    def make_standby(runtime: str) -> None:
        jobs_r, jobs_w = os.pipe()
        pid = fork(standby_runner, jobs_r, runtime)
        os.close(jobs_r)
        standbys[runtime] = (pid, jobs_w)

    def hand_to_standby(runtime: str, job: bytes) -> int | None:
        """The pid of the standby runner that took ``job``, if one did."""
        pid, jobs_w = standbys.pop(runtime, (0, -1))
        if not pid:
            return None
        try:
            os.write(jobs_w, job)  # one short line: written whole, or not at all (the runner died)
            return pid
        except OSError:
            return None
        finally:
            os.close(jobs_w)

    def start(line: str) -> None:
        instance_id, engine, runtime = (line.split() + ["", "", ""])[:3]
        if not instance_id:
            return
        engine = engine or "lambda"
        pid = hand_to_standby(runtime, f"{instance_id} {engine}\n".encode()) or fork(run_one, instance_id, engine)
        runtime_of[pid] = runtime
        if settings.sandbox == "bwrap" and runtime in STANDBY_RUNTIMES and runtime not in standbys:
            wanted.setdefault(runtime, time.monotonic() + STANDBY_DELAY_SECONDS)

    signal.signal(signal.SIGTERM, stop)
    # A child's end wakes the loop below (which reaps it), through the wake-up pipe.
    wake_r, wake_w = os.pipe()
    for fd in (wake_r, wake_w):
        os.set_blocking(fd, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    stdin, pending = sys.stdin.fileno(), b""
    while True:
        timeout = max(0.0, min(wanted.values()) - time.monotonic()) if wanted else None
        ready, _, _ = select.select([stdin, wake_r], [], [], timeout)
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_r, 512):
                    pass
        reap()
        for runtime in [r for r, at in wanted.items() if at <= time.monotonic()]:
            del wanted[runtime]
            make_standby(runtime)
        if stdin in ready:
            chunk = os.read(stdin, 64 * 1024)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                start(line.decode())
    for _, jobs_w in standbys.values():
        os.close(jobs_w)  # each discards its standby
    stop()


def main(argv: list[str]) -> int:
    if argv == ["--fork-server"]:
        fork_server()
    elif len(argv) == 2 and argv[0] == "--task":
        run_one(argv[1], "fargate", task=True)
    elif len(argv) == 1 and not argv[0].startswith("-"):
        run_one(argv[0])
    else:
        print("usage: python -m chalicelib.runner <instance-id> | --task <instance-id> | --fork-server",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
