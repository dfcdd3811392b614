"""CloudWatch Logs, where every channel's bytes land: ``<group>/<instance>/<channel>`` streams.

Readers read the S3 segments (``channels``); this is the write side and its limits. Channel bytes
are written as chunk events, not one event per item. Text chunks are stored as they are (readable in
the console); a chunk that is not valid UTF-8 is stored base64-encoded behind a marker, so binary
output round-trips byte for byte.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from botocore.exceptions import ClientError

from . import aws
from .protocol import CHANNELS

# PutLogEvents limits (CloudWatch Logs API reference); events are kept well under the 1 MB per-event ceiling.
MAX_BATCH_BYTES = 1_048_576
MAX_BATCH_EVENTS = 10_000
EVENT_OVERHEAD = 26
# An event is at most 256 KiB with its 26 bytes of overhead: four such fill one batch exactly.
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD
BATCH_DATA_BYTES = MAX_BATCH_BYTES // (MAX_EVENT_BYTES + EVENT_OVERHEAD) * MAX_EVENT_BYTES  # one PutLogEvents' bytes
_BINARY_MARK = "\ue000b64:"  # a private-use character: never the start of real text output


def stream_name(instance_id: str, channel: str) -> str:
    return f"{instance_id}/{channel}"


def encode(chunk: bytes) -> str:
    try:
        text = chunk.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is None or text.startswith(_BINARY_MARK[0]):
        return _BINARY_MARK + base64.b64encode(chunk).decode("ascii")
    return text


def decode(message: str) -> bytes:
    if message.startswith(_BINARY_MARK):
        return base64.b64decode(message[len(_BINARY_MARK):])
    return message.encode("utf-8")


def _utf8_cut(data: bytes, limit: int) -> int:
    """The largest cut <= limit that does not split a UTF-8 sequence (if data is UTF-8 at all)."""
    if limit >= len(data):
        return len(data)
    cut = limit
    while cut > limit - 4 and cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut if cut > limit - 4 and cut > 0 else limit


def split_chunk(data: bytes, final: bool) -> tuple[list[bytes], bytes]:
    """Split buffered bytes into event-sized chunks, keeping an incomplete UTF-8 tail for later.

    Returns (chunks, remainder). With ``final`` nothing is held back.
    """
    keep = b""
    if not final:
        # Hold back a trailing partial UTF-8 character so text is never stored split in two.
        for back in range(1, min(4, len(data)) + 1):
            byte = data[-back]
            if byte & 0xC0 == 0x80:
                continue
            if byte & 0x80:  # a lead byte: how long should its sequence be?
                need = 2 if byte & 0xE0 == 0xC0 else 3 if byte & 0xF0 == 0xE0 else 4
                if need > back:
                    keep, data = data[-back:], data[:-back]
            break
    chunks = []
    while data:
        cut = _utf8_cut(data, MAX_EVENT_BYTES)
        chunks.append(data[:cut])
        data = data[cut:]
    return chunks, keep


def batches(messages: Iterable[str]) -> Iterable[list[str]]:
    """Group messages into PutLogEvents batches within the size and count limits."""
    batch: list[str] = []
    size = 0
    for message in messages:
        cost = len(message.encode("utf-8")) + EVENT_OVERHEAD
        if batch and (size + cost > MAX_BATCH_BYTES or len(batch) >= MAX_BATCH_EVENTS):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += cost
    if batch:
        yield batch


def create_stream(group: str, name: str) -> None:
    try:
        aws.client("logs").create_log_stream(logGroupName=group, logStreamName=name)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceAlreadyExistsException":
            raise


def put(group: str, name: str, messages: list[str], timestamp_ms: int) -> None:
    """Write one batch (already within limits) with a single, shared, monotonic timestamp."""
    aws.client("logs").put_log_events(
        logGroupName=group, logStreamName=name,
        logEvents=[{"timestamp": timestamp_ms, "message": m} for m in messages])


def delete_streams(group: str, instance_id: str) -> None:
    logs = aws.client("logs")
    for channel in CHANNELS:
        try:
            logs.delete_log_stream(logGroupName=group, logStreamName=stream_name(instance_id, channel))
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ResourceNotFoundException":
                raise
