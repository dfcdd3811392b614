"""How the hub's long polls wait between looks: while nothing changes, each pause is twice the
last, up to a second, and never past the caller's deadline; so an idle follower costs about one
read a second, and news is seen soon after it lands. A follower of a channel being written to
looks every POLL_BUSY: backing off there only delayed the next page (the runner records new
segments every PROGRESS_INTERVAL, 0.5 s, and a pause doubled to 0.4 s then missed it by as much,
so a page could come ~0.4 s late); looking every 0.2 s costs about the same reads a minute.

Where the store itself can say that a record changed (the embedded hub, whose every write is made
in its own process), a poll waits for a change of the record it names instead: it looks
when the record changed, at once, and otherwise once per POLL_MAX, so news is seen as it lands
with fewer looks than the timer's."""

from __future__ import annotations

import time
from collections.abc import Hashable
from types import TracebackType
from typing import Protocol

POLL_FIRST, POLL_MIN, POLL_MAX = 0.025, 0.1, 1.0
POLL_BUSY = 0.2  # a busy channel's follower: about as many looks a minute as backing off took


class ChangeSource(Protocol):
    """Says when a record changed (``chalicelib.embedded.record_changes``)."""

    def watch(self, key: Hashable) -> int:
        """Start counting changes of ``key``; returns its count now."""

    def unwatch(self, key: Hashable) -> None:
        """Stop (one ``watch`` each)."""

    def wait(self, key: Hashable, seen: int, timeout: float) -> int:
        """Wait until ``key``'s count is not ``seen``, or ``timeout`` seconds; returns its count."""


_changes: ChangeSource | None = None


def use_changes(source: ChangeSource | None) -> None:
    """Long polls from now on wait for ``source``'s news of the records they name (None: on a timer)."""
    global _changes
    _changes = source


class LongPoll:
    """One long poll; ``watch``: the record each look reads (in the change source's terms). Use it
    in a ``with`` block, so the source stops counting that record's changes after."""

    def __init__(self, wait_seconds: float, watch: Hashable) -> None:
        self.began = time.monotonic()
        self.deadline = self.began + wait_seconds
        self._pause = POLL_MIN
        self._source = _changes
        self._watch = watch
        # Counted from before the first look: a change landing between a look and the next wait is
        # not missed (the wait then returns at once).
        self._seen = self._source.watch(watch) if self._source is not None else 0

    def __enter__(self) -> LongPoll:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._source is not None:
            self._source.unwatch(self._watch)
            self._source = None

    def over(self) -> bool:
        return time.monotonic() >= self.deadline

    def sleep(self, eager: bool = False, busy: bool = False) -> None:
        """Wait before the next look. ``eager``: look every POLL_FIRST during the first second (a
        reader that may have just started what it reads). ``busy``: what is read was written to
        a moment ago, so more is coming: look every POLL_BUSY, without backing off. With a change
        source, neither matters: the next look is when the record changes (or after POLL_MAX)."""
        left = max(0.0, self.deadline - time.monotonic())
        if self._source is not None:
            self._seen = self._source.wait(self._watch, self._seen, min(POLL_MAX, left))
            return
        if eager and time.monotonic() - self.began < 1:
            time.sleep(POLL_FIRST)
            return
        if busy:
            time.sleep(min(POLL_BUSY, left))
            return
        time.sleep(min(self._pause, left))
        self._pause = min(self._pause * 2, POLL_MAX)
