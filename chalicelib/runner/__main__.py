"""The local invoker's runner processes.

``python -m chalicelib.runner <instance-id>``  runs one instance in this process.
``python -m chalicelib.runner --fork-server``   imports everything once, then forks one process per
    instance id read from stdin: the local counterpart of a warm Lambda (no interpreter start-up
    or imports per instance, yet each instance still runs in an OS process of its own).
"""

from __future__ import annotations

import os
import signal
import sys
import time

from .. import aws, config
from . import leftovers
from .child import harden
from .service import run_instance


def run_one(instance_id: str) -> None:
    settings = config.load()
    deadline = [time.monotonic() + settings.runner_timeout_seconds]

    def cut_short(*_: object) -> None:
        # The embedded hub stops its runners with SIGTERM: end as at a Lambda deadline, recorded.
        deadline[0] = time.monotonic()

    signal.signal(signal.SIGTERM, cut_short)
    leftovers.adopt_orphans()  # this process runs this one instance: what it starts is its to end
    run_instance(settings, instance_id, lambda: int((deadline[0] - time.monotonic()) * 1000))


def fork_server() -> None:
    """Fork a runner per instance id on stdin; on SIGTERM (or stdin's end) stop them and leave."""
    harden()  # it holds the hub's settings in its environment too: keep sequences out of it
    # Clients made here have opened no connection yet, so each forked runner gets its own empty
    # connection pools with them: no per-instance client set-up, and no socket shared across forks.
    for service in ("dynamodb", "s3", "logs"):
        aws.client(service)
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

    def reap() -> None:
        for pid in list(children):
            try:
                if os.waitpid(pid, os.WNOHANG)[0]:
                    children.discard(pid)
            except ChildProcessError:
                children.discard(pid)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGCHLD, lambda *_: reap())  # no zombies between instances
    for line in sys.stdin:
        instance_id = line.strip()
        reap()
        if not instance_id:
            continue
        pid = os.fork()
        if pid == 0:  # the instance's own process
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                run_one(instance_id)
            finally:
                os._exit(0)
        children.add(pid)
    stop()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m chalicelib.runner <instance-id> | --fork-server", file=sys.stderr)
        return 2
    if argv[0] == "--fork-server":
        fork_server()
    else:
        run_one(argv[0])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
