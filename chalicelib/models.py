"""Instance statuses and end states (STH's, plus the two only a serverless hub has)."""

from __future__ import annotations

import re

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def valid_id(ident: str) -> bool:
    """Sequence and instance ids: checked before any AWS call, so a bad one never reaches a query."""
    return bool(_ID.match(ident or ""))

STARTING = "starting"
RUNNING = "running"
STOPPING = "stopping"
KILLING = "killing"
COMPLETED = "completed"
ERRORED = "errored"

ACTIVE = (STARTING, RUNNING, STOPPING, KILLING)
FINAL = (COMPLETED, ERRORED)

REASON_COMPLETED = "Instance completed"
REASON_KILLED = "Instance killed"
REASON_STOPPED = "Instance stopped"
REASON_LOST = "lost"
REASON_TIMED_OUT = "timed out"
REASON_NEVER_STARTED = "never started"

_EXIT_REASONS = {
    10: "Sequence unpack failed",
    21: None,  # filled with the sequence's own main: see packages.invalid_main_message
    22: "Sequence failed on start",
    23: "Sequence failed during execution",
}


def end_state(exit_code: int, *, killed: bool = False, stopped: bool = False,
              invalid_main_message: str = "") -> tuple[str, int, str]:
    """(status, exit code, reason) for a host that exited with ``exit_code``."""
    if killed:
        return COMPLETED, 137, REASON_KILLED
    if stopped:
        return COMPLETED, 138, REASON_STOPPED
    if exit_code == 0:
        return COMPLETED, 0, REASON_COMPLETED
    if exit_code == 137:
        return COMPLETED, 137, REASON_KILLED
    if exit_code == 138:
        return COMPLETED, 138, REASON_STOPPED
    if exit_code == 21:
        return ERRORED, 21, invalid_main_message
    if exit_code < 0:
        return ERRORED, 128 - exit_code, f"Runner failed (signal {-exit_code})"
    return ERRORED, exit_code, _EXIT_REASONS.get(exit_code) or "Runner failed"
