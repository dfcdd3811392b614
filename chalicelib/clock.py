"""Wall-clock time for what the hub decides by it (expiry, retention, lost heartbeats), read here so
tests can move it. Timestamps that only order log events (CloudWatch's) read the system clock."""

from __future__ import annotations

import time
from datetime import UTC, datetime


def now() -> float:
    return time.time()


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
