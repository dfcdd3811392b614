"""``python -m chalicelib.runner <instance-id>``: the local invoker's runner process."""

from __future__ import annotations

import signal
import sys
import time

from .. import aws, config
from .service import run_instance  # imported before waiting: that is what makes a runner warm


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m chalicelib.runner <instance-id> | --wait-for-id", file=sys.stderr)
        return 2
    instance_id = argv[0]
    if instance_id == "--wait-for-id":  # a warm runner: imports done, clients made, waiting
        for service in ("dynamodb", "s3", "logs"):
            aws.client(service)
        instance_id = sys.stdin.readline().strip()
        if not instance_id:
            return 0
    settings = config.load()
    deadline = [time.monotonic() + settings.runner_timeout_seconds]

    def cut_short(*_: object) -> None:
        # The embedded hub stops its runners with SIGTERM: end as at a Lambda deadline, recorded.
        deadline[0] = time.monotonic()

    signal.signal(signal.SIGTERM, cut_short)
    run_instance(settings, instance_id, lambda: int((deadline[0] - time.monotonic()) * 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
