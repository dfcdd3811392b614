"""The local invoker's runner processes.

``python -m chalicelib.runner <instance-id>``  runs one instance in this process (the lambda engine's limit).
``python -m chalicelib.runner --task <instance-id>``  the same as a Fargate task (``bootstrap`` starts it):
    the fargate engine's limit, and ECS's SIGTERM (StopTask, a Spot interruption) stops the instance
    gracefully, as ``si inst stop`` would, in the time ECS gives before its SIGKILL.
``python -m chalicelib.runner --fork-server``   the embedded hub's fork server (``forkserver``): a
    runner forked per instance from one warm process.
"""

from __future__ import annotations

import os
import signal
import sys
import time

from .. import config, models
from . import forkserver, leftovers
from .service import GRACEFUL_STOP_MS, run_instance
from .standby import Standby

NO_LIMIT_SECONDS = 10 * 365 * 86400  # an engine without a time limit: far enough to never come


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


def main(argv: list[str]) -> int:
    if argv == ["--fork-server"]:
        forkserver.serve(lambda instance_id, engine, standby: run_one(instance_id, engine, standby=standby))
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
