"""``python -m chalicelib.runner <instance-id>``: the local invoker's runner process."""

from __future__ import annotations

import signal
import sys
import time

from .. import config
from .service import run_instance


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m chalicelib.runner <instance-id>", file=sys.stderr)
        return 2
    settings = config.load()
    deadline = [time.monotonic() + settings.runner_timeout_seconds]

    def cut_short(*_: object) -> None:
        # The embedded hub stops its runners with SIGTERM: end as at a Lambda deadline, recorded.
        deadline[0] = time.monotonic()

    signal.signal(signal.SIGTERM, cut_short)
    run_instance(settings, argv[0], lambda: int((deadline[0] - time.monotonic()) * 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
