"""Channel segments in S3: what readers read.

The runner writes each flush of a channel as one S3 object, ``channels/<instance>/<channel>/<n>``
(at most ``SEGMENT_BYTES``), and the same bytes to CloudWatch Logs. Readers never call
GetLogEvents (about 25 requests a second per account): S3 serves any number of followers, is
strongly consistent after a write, and pages are sized in bytes, so a page always fits a Lambda
response. A cursor is (segment, offset within it).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from botocore.exceptions import ClientError

from . import aws, protocol

SEGMENT_BYTES = 1024 * 1024
# Lambda's response limit is 6 MB *after* base64 (API Gateway's binary bodies are base64 in the
# response): 4 MiB of bytes is 5.6 MB of base64, which leaves room for headers.
MAX_PAGE_BYTES = protocol.MAX_PAGE_BYTES
_MAX_CURSOR_CHARS = 64
_MAX_SEGMENTS = 10**9


def prefix(instance_id: str) -> str:
    return f"channels/{instance_id}/"


def segment_key(instance_id: str, channel: str, number: int) -> str:
    return f"{prefix(instance_id)}{channel}/{number:010d}"


def split(data: bytes) -> list[bytes]:
    return [data[i:i + SEGMENT_BYTES] for i in range(0, len(data), SEGMENT_BYTES)]


def write_segment(bucket: str, instance_id: str, channel: str, number: int, data: bytes) -> None:
    aws.client("s3").put_object(Bucket=bucket, Key=segment_key(instance_id, channel, number), Body=data)


def read(bucket: str, instance_id: str, channel: str, segment: int, offset: int, written: int,
         max_bytes: int = MAX_PAGE_BYTES) -> tuple[bytes, int, int]:
    """Bytes from (segment, offset) up to ``max_bytes``, of the ``written`` segments that exist.

    Returns (data, next segment, next offset). Holds at most one page in memory.
    """
    s3: Any = aws.client("s3")
    parts: list[bytes] = []
    size = 0
    if offset >= SEGMENT_BYTES:  # a page that ended with a full segment: the next one starts at 0
        segment, offset = segment + 1, 0
    while segment < written and size < max_bytes:
        want = max_bytes - size
        try:
            body = s3.get_object(Bucket=bucket, Key=segment_key(instance_id, channel, segment),
                                 Range=f"bytes={offset}-{offset + want - 1}")["Body"].read()
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "InvalidRange":  # the offset is at the segment's end: nothing left in it
                body = b""
            elif code in ("NoSuchKey", "404"):  # expired and cleaned up meanwhile
                break
            else:
                raise
        parts.append(body)
        size += len(body)
        if len(body) < want:  # the rest of this segment fitted: the next one starts at 0
            segment, offset = segment + 1, 0
        else:
            offset += len(body)
    return b"".join(parts), segment, offset  # one copy of the page at most (none for one segment's)


def encode_cursor(segment: int, offset: int) -> str:
    raw = json.dumps([segment, offset], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> tuple[int, int]:
    """(segment, offset). An empty cursor is the start of the channel; anything else malformed is
    refused (ValueError) before it reaches S3."""
    if not cursor:
        return 0, 0
    try:
        if len(cursor) > _MAX_CURSOR_CHARS:
            raise ValueError
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        segment, offset = value
        if not all(type(v) is int and 0 <= v < _MAX_SEGMENTS for v in (segment, offset)) \
                or offset > SEGMENT_BYTES:
            raise ValueError
    except (ValueError, TypeError):
        raise ValueError("invalid cursor: pass back the X-Next-Cursor of the previous page") from None
    return segment, offset


def delete_all(bucket: str, instance_id: str) -> None:
    s3: Any = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix(instance_id)):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
