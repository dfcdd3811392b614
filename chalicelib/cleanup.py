"""Expiry cleanup: when an instance's record goes, everything else of it goes too.

On AWS, DynamoDB TTL removes the record and its stream delivers a REMOVE record to the cleanup
Lambda. moto has no TTL, so the embedded hub sweeps expired records itself and feeds the same
handler the same kind of record.
"""

from __future__ import annotations

from typing import Iterable

from boto3.dynamodb.types import TypeDeserializer

from . import aws, clock, logstore
from .config import Settings
from .store import INSTANCE, Store

_de = TypeDeserializer()


def removed_instances(records: Iterable[dict]) -> list[str]:
    """Instance ids in DynamoDB stream REMOVE records (OLD_IMAGE view)."""
    ids = []
    for record in records:
        if record.get("eventName") != "REMOVE":
            continue
        old = record.get("dynamodb", {}).get("OldImage") or {}
        if "kind" in old and _de.deserialize(old["kind"]) == INSTANCE:
            ids.append(_de.deserialize(old["id"]))
    return ids


def purge_instance(settings: Settings, inst_id: str) -> None:
    """Delete the instance's channel streams and input objects."""
    logstore.delete_streams(settings.log_group, inst_id)
    s3 = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=f"inputs/{inst_id}/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=settings.bucket, Delete={"Objects": keys, "Quiet": True})


def handle_stream(settings: Settings, records: Iterable[dict]) -> list[str]:
    ids = removed_instances(records)
    for inst_id in ids:
        purge_instance(settings, inst_id)
    return ids


def sweep_expired(settings: Settings) -> list[str]:
    """What DynamoDB TTL does, for a store without it: delete expired records, then clean up."""
    store = Store(settings.table)
    now = clock.now()
    records = []
    for item in store.list_instances():
        if item.get("expires_at") and item["expires_at"] <= now:
            store.delete_instance(item["id"])
            records.append({"eventName": "REMOVE", "dynamodb": {"OldImage": {
                "kind": {"S": INSTANCE}, "id": {"S": item["id"]}}}})
    return handle_stream(settings, records)


UPLOAD_MAX_AGE_SECONDS = 86400  # the bucket's lifecycle rule for uploads/ on AWS


def sweep_stale_uploads(settings: Settings, max_age: float = UPLOAD_MAX_AGE_SECONDS) -> list[str]:
    """What the bucket's lifecycle rule does on AWS: drop uploads never committed."""
    s3 = aws.client("s3")
    cutoff = clock.now() - max_age
    stale = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix="uploads/"):
        stale += [o["Key"] for o in page.get("Contents", []) if o["LastModified"].timestamp() < cutoff]
    for key in stale:
        s3.delete_object(Bucket=settings.bucket, Key=key)
    return stale
