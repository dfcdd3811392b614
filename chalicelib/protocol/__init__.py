"""The protocol: what the hub, its runner, its runtime hosts and the ``si`` client agree on.

Standard library only, and it imports nothing else of the hub, so any part can import it cheaply.
The client ships this package as ``si.protocol`` (a link in the checkout, files in its wheel):
constants here, ``package.json`` rules in ``manifest``, strict JSON in ``strictjson``. The runtime
hosts run in the sequence's environment, not the runner's, so they restate the exit codes they use;
``tests/test_protocol.py`` fails when those drift from this file.
"""

from __future__ import annotations

import re
from enum import IntEnum
from typing import TypeGuard

SERVICE = "sequence-hub"
VERSION = "0.1.0"
API_BASE = "/api/v1"

# Instance statuses (Scramjet's): starting → running → (stopping | killing) → completed | errored.
STARTING = "starting"
RUNNING = "running"
STOPPING = "stopping"
KILLING = "killing"
COMPLETED = "completed"
ERRORED = "errored"
ACTIVE = (STARTING, RUNNING, STOPPING, KILLING)
FINAL = (COMPLETED, ERRORED)


class ExitCode(IntEnum):
    """An instance's exit code, with the meaning Scramjet's runner gives it (RunnerExitCode)."""

    SUCCESS = 0
    SEQUENCE_UNPACK_FAILED = 10
    # Scramjet: INVALID_ENV_VARS. Here: the environment the sequence needs, its runtime host
    # (Python or Node.js), could not be started.
    HOST_UNAVAILABLE = 20
    INVALID_SEQUENCE_PATH = 21
    SEQUENCE_FAILED_ON_START = 22
    SEQUENCE_FAILED_DURING_EXECUTION = 23
    UNCAUGHT_EXCEPTION = 101  # the runner itself failed
    KILLED = 137
    STOPPED = 138


# What runs an instance: a Lambda invocation (15 minutes at most) or an ECS Fargate task (hours).
ENGINES = ("lambda", "fargate")

# An instance's channels, read by clients; and the streams clients write to it.
CHANNELS = ("output", "stdout", "stderr", "log")
INPUT_STREAMS = ("input", "stdin")

# Data types of input and of topics (Scramjet's four), and what a package may be sent as.
CONTENT_TYPES = ("text/plain", "application/octet-stream", "application/x-ndjson", "text/x-ndjson")
PACKAGE_TYPES = ("application/octet-stream", "application/gzip", "application/x-gzip")

# Limits a client must know to choose how to send.
DIRECT_UPLOAD_BYTES = 4_500_000  # API Gateway + Lambda take ~6 MB of base64: about 4.5 MB raw
MAX_WRITE_BYTES = 1024 * 1024  # one input, stdin or topic request
MAX_PAGE_BYTES = 4 * 1024 * 1024  # one page of a channel or topic: fits a Lambda response after base64

# Scramjet's topic names (topicId.ts, its CLI's validateTopicName), at a length DynamoDB keys allow.
TOPIC_NAME = re.compile(r"[\\a-zA-Z0-9_+-]{1,200}")


def valid_topic(name: object) -> TypeGuard[str]:
    return isinstance(name, str) and TOPIC_NAME.fullmatch(name) is not None
