"""Expiry cleanup: when an instance's record goes, everything else of it goes too.

On AWS, DynamoDB TTL (or the sweeper) removes the record and the table's stream delivers a REMOVE
record to the cleanup Lambda; the embedded hub's sweeper calls ``purge_instance`` itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from . import aws, channels, logstore
from .config import Settings
from .repository import Repository, instance_id_of


def removed_instances(records: Iterable[dict]) -> list[str]:
    """Instance ids of the instance records removed in DynamoDB stream records (keys are enough)."""
    ids = []
    for record in records:
        if record.get("eventName") != "REMOVE":
            continue
        inst_id = instance_id_of(record.get("dynamodb", {}).get("Keys") or {})
        if inst_id is not None:
            ids.append(inst_id)
    return ids


def purge_instance(settings: Settings, inst_id: str) -> None:
    """Delete everything of an instance: its records, channel segments, inputs and log streams."""
    Repository(settings.table).delete_instance(inst_id)
    channels.delete_all(settings.bucket, inst_id)
    s3: Any = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=f"inputs/{inst_id}/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=settings.bucket, Delete={"Objects": keys, "Quiet": True})
    logstore.delete_streams(settings.log_group, inst_id)


def handle_stream(settings: Settings, records: Iterable[dict]) -> list[str]:
    ids = removed_instances(records)
    for inst_id in ids:
        purge_instance(settings, inst_id)
    return ids
