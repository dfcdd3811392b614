"""The instance model and its statuses (STH's, plus the end reasons only a serverless hub has)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from .protocol import ACTIVE, CHANNELS, COMPLETED, ERRORED, FINAL, INPUT_STREAMS, ExitCode

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def valid_id(ident: str) -> bool:
    """Sequence and instance ids: checked before any AWS call, so a bad one never reaches a query."""
    return isinstance(ident, str) and _ID.fullmatch(ident) is not None


REASON_COMPLETED = "Instance completed"
REASON_KILLED = "Instance killed"
REASON_STOPPED = "Instance stopped"
REASON_LOST = "lost"
REASON_TIMED_OUT = "timed out"
REASON_NEVER_STARTED = "never started"
REASON_TASK_STOPPED = ("Stopped because its Fargate task was stopped (a Spot interruption, or StopTask from outside "
                       "the hub); its stop handlers ran, its output is whole")


def reached_limit(seconds: int, engine: str = "lambda") -> str:
    """Why an instance the runner stopped at its engine's time limit ended."""
    if engine == "fargate":
        return (f"Stopped at the fargate engine's time limit of {seconds} s (SEQHUB_FARGATE_TIMEOUT_SECONDS); "
                "its stop handlers ran, its output is whole")
    return (f"Stopped at the lambda engine's time limit of {seconds} s (Lambda's lambda_timeout, 15 minutes at "
            "most; the embedded hub plays it: SEQHUB_RUNNER_TIMEOUT_SECONDS); its stop handlers ran, its output is "
            "whole. The fargate engine, where a hub has it, has no limit: si seq start --engine fargate")


MAX_REASON_CHARS = 1000  # reasons may quote an exception: keep the record's size fixed

_EXIT_REASONS: dict[int, str] = {  # ExitCode members are their numbers
    ExitCode.SEQUENCE_UNPACK_FAILED: "Sequence unpack failed",
    ExitCode.HOST_UNAVAILABLE: "Runtime host could not start",
    ExitCode.SEQUENCE_FAILED_ON_START: "Sequence failed on start",
    ExitCode.SEQUENCE_FAILED_DURING_EXECUTION: "Sequence failed during execution",
}


def end_state(exit_code: int, *, killed: bool = False, stopped: bool = False,
              invalid_main_message: str = "") -> tuple[str, int, str]:
    """(status, exit code, reason) for a host that exited with ``exit_code``."""
    if killed:
        return COMPLETED, int(ExitCode.KILLED), REASON_KILLED
    if stopped:
        return COMPLETED, int(ExitCode.STOPPED), REASON_STOPPED
    if exit_code == ExitCode.SUCCESS:
        return COMPLETED, int(ExitCode.SUCCESS), REASON_COMPLETED
    if exit_code == ExitCode.KILLED:
        return COMPLETED, int(ExitCode.KILLED), REASON_KILLED
    if exit_code == ExitCode.STOPPED:
        return COMPLETED, int(ExitCode.STOPPED), REASON_STOPPED
    if exit_code == ExitCode.INVALID_SEQUENCE_PATH:
        return ERRORED, int(ExitCode.INVALID_SEQUENCE_PATH), invalid_main_message
    if exit_code < 0:
        return ERRORED, 128 - exit_code, f"Runner failed (signal {-exit_code})"
    return ERRORED, exit_code, _EXIT_REASONS.get(exit_code) or "Runner failed"


@dataclass
class Instance:
    """One instance's record: fixed-size state only. What users can make grow (input, events, large
    args or appConfig) lives in records of its own; see ``repository``."""

    id: str
    sequence_id: str
    status: str
    created: float
    runtime: str = "node"
    engine: str = "lambda"  # what runs it: a Lambda invocation or a Fargate task (protocol.ENGINES)
    task: str | None = None  # its Fargate task's ARN, once RunTask answered
    sequence_name: str | None = None
    started: float | None = None
    ended: float | None = None
    heartbeat: float | None = None
    progress: float | None = None  # when the runner last recorded new segments: readers poll promptly after
    exitcode: int | None = None
    reason: str | None = None
    expires_at: int | None = None
    # Start data: inline when small, else in records of their own (``*_stored`` says so).
    args: Any = None
    app_config: Any = None
    args_stored: bool = False
    config_stored: bool = False
    stored_bytes: int = 0  # the JSON size of what is stored apart
    # Channels: segments written so far, and which channels have ended.
    segments: dict[str, int] = field(default_factory=lambda: {c: 0 for c in CHANNELS})
    ended_channels: set[str] = field(default_factory=set)
    # Input and stdin: chunks accepted so far, and the count at which the stream ended.
    input_type: str | None = None
    chunks: dict[str, int] = field(default_factory=lambda: {s: 0 for s in INPUT_STREAMS})
    chunks_end: dict[str, int] = field(default_factory=dict)
    events_in: int = 0  # events sent to the instance so far
    input_bytes: int = 0  # input and stdin bytes taken so far
    event_bytes: int = 0  # JSON bytes of the events sent to it so far
    input_limit: int | None = None  # taken bytes may not pass this (what it has read + its unread quota)
    kill_requested: float | None = None
    remove_on_end: bool = False  # killed with Scramjet's removeImmediately: no retention after the end
    stop_requested: dict[str, Any] | None = None
    health: dict[str, Any] | None = None
    # Topics: where output also goes (Scramjet's provides / outputTopic) and where input comes from
    # (requires / inputTopic), with the type the start or the package gave (else the sequence's own).
    provides: str | None = None
    provides_type: str | None = None
    requires: str | None = None
    requires_type: str | None = None
    # The running slots it holds while active (the caps; see ``Repository.take_slot``).
    hub_slot: int | None = None
    seq_slot: int | None = None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def final(self) -> bool:
        return self.status in FINAL

    def alive(self, now: float) -> bool:
        """Not yet past its retention (DynamoDB's TTL deletes the record only days later)."""
        return not (self.expires_at is not None and self.expires_at <= now)

    def channel_ended(self, channel: str) -> bool:
        return channel in self.ended_channels or self.final
