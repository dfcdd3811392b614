"""What a hub says about itself, in the shapes Scramjet's hub uses: load, public configuration,
status, and its own log (kept in memory by the embedded hub, which is one process)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import deque
from typing import Any

from . import clock, protocol
from .config import Settings

LOG_LINES = 100_000  # as Scramjet's re-readable hub log buffer


def load_check() -> dict[str, Any]:
    """This machine's load, memory and scratch disk (on AWS: the API function's environment)."""
    avg1, _, _ = os.getloadavg()
    cpus = os.cpu_count() or 1
    meminfo = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                key, value = line.split(":", 1)
                meminfo[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    total, free = meminfo.get("MemTotal", 0), meminfo.get("MemAvailable", meminfo.get("MemFree", 0))
    scratch = tempfile.gettempdir()
    disk = shutil.disk_usage(scratch)
    return {"avgLoad": avg1, "currentLoad": min(100.0, 100.0 * avg1 / cpus), "memFree": free,
            "memUsed": max(0, total - free),
            "fsSize": [{"fs": scratch, "size": disk.total, "used": disk.used, "available": disk.free,
                        "use": round(100.0 * disk.used / disk.total, 2) if disk.total else 0}]}


def public_config(settings: Settings) -> dict[str, Any]:
    """The settings a client may know: limits and retention (never resource names or the token)."""
    return {"service": protocol.SERVICE, "stage": settings.stage,
            "instanceRetentionSeconds": settings.retention_seconds,
            "runnerTimeoutSeconds": settings.runner_timeout_seconds,
            # What a start may ask for, and each one's time limit (0: none).
            "engines": {engine: {"timeLimitSeconds": settings.time_limit(engine)} for engine in settings.engines()},
            "sandbox": settings.sandbox,
            "limits": {"packageBytes": settings.max_package_bytes, "uploadBytes": settings.max_upload_bytes,
                       "requestBytes": settings.max_request_bytes, "inputChunkBytes": settings.max_input_chunk_bytes,
                       "startDataBytes": settings.max_start_data_bytes, "eventBytes": settings.max_event_bytes,
                       "runningInstances": settings.max_running,
                       "runningInstancesPerSequence": settings.max_running_per_sequence,
                       "topics": settings.max_topics}}


class HubLog(logging.Handler):
    """The embedded hub's own log lines, as Scramjet's ``/log`` serves them: JSON lines, the last
    ``LOG_LINES`` kept, each numbered so a reader can ask for what came after the ones it has."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self._lines: deque[tuple[int, bytes]] = deque(maxlen=LOG_LINES)
        self._next = 0
        self._changed = threading.Condition()

    def emit(self, record: logging.LogRecord) -> None:
        line = {"level": record.levelname, "msg": record.getMessage(), "ts": int(clock.now() * 1000),
                "from": record.name}
        with self._changed:
            self._lines.append((self._next, (json.dumps(line) + "\n").encode()))
            self._next += 1
            self._changed.notify_all()

    def after(self, cursor: int, wait_seconds: float) -> tuple[bytes, int]:
        """Lines numbered ``cursor`` and later (waiting up to ``wait_seconds`` for one), and the next cursor."""
        deadline = time.monotonic() + wait_seconds
        with self._changed:
            while self._next <= cursor and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            data = b"".join(line for number, line in self._lines if number >= cursor)
            return data, self._next


_hub_log: HubLog | None = None


def hub_log() -> HubLog | None:
    """The embedded hub's log, once ``keep_hub_log`` has started it (None on AWS: see CloudWatch)."""
    return _hub_log


def keep_hub_log(logger_names: tuple[str, ...]) -> HubLog:
    """Start keeping what ``logger_names`` log at INFO and above (the embedded hub, at start)."""
    global _hub_log
    if _hub_log is None:
        _hub_log = HubLog()
        for name in logger_names:
            logging.getLogger(name).addHandler(_hub_log)
    return _hub_log
