"""How the hub's long polls wait between looks: while nothing changes, each pause is twice the
last, up to a second, and never past the caller's deadline; so an idle follower costs about one
read a second, and news is seen soon after it lands."""

from __future__ import annotations

import time

POLL_FIRST, POLL_MIN, POLL_MAX = 0.025, 0.1, 1.0


class LongPoll:
    def __init__(self, wait_seconds: float) -> None:
        self.began = time.monotonic()
        self.deadline = self.began + wait_seconds
        self._pause = POLL_MIN

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    def sleep(self, eager: bool = False) -> None:
        """Wait before the next look. ``eager``: look every POLL_FIRST during the first second (a
        reader that may have just started what it reads)."""
        if eager and time.monotonic() - self.began < 1:
            time.sleep(POLL_FIRST)
            return
        time.sleep(min(self._pause, max(0.0, self.deadline - time.monotonic())))
        self._pause = min(self._pause * 2, POLL_MAX)
