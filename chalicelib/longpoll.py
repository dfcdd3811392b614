"""How the hub's long polls wait between looks: while nothing changes, each pause is twice the
last, up to a second, and never past the caller's deadline; so an idle follower costs about one
read a second, and news is seen soon after it lands. A follower of a channel being written to
looks every POLL_BUSY: backing off there only delayed the next page (the runner records new
segments every PROGRESS_INTERVAL, 0.5 s, and a pause doubled to 0.4 s then missed it by as much,
so a page could come ~0.4 s late); looking every 0.2 s costs about the same reads a minute."""

from __future__ import annotations

import time

POLL_FIRST, POLL_MIN, POLL_MAX = 0.025, 0.1, 1.0
POLL_BUSY = 0.2  # a busy channel's follower: about as many looks a minute as backing off took


class LongPoll:
    def __init__(self, wait_seconds: float) -> None:
        self.began = time.monotonic()
        self.deadline = self.began + wait_seconds
        self._pause = POLL_MIN

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    def sleep(self, eager: bool = False, busy: bool = False) -> None:
        """Wait before the next look. ``eager``: look every POLL_FIRST during the first second (a
        reader that may have just started what it reads). ``busy``: what is read was written to
        a moment ago, so more is coming: look every POLL_BUSY, without backing off."""
        if eager and time.monotonic() - self.began < 1:
            time.sleep(POLL_FIRST)
            return
        if busy:
            time.sleep(min(POLL_BUSY, max(0.0, self.deadline - time.monotonic())))
            return
        time.sleep(min(self._pause, max(0.0, self.deadline - time.monotonic())))
        self._pause = min(self._pause * 2, POLL_MAX)
