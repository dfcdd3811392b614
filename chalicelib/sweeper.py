"""The hub's housekeeping, on a path of its own (a schedule on AWS, a thread in the embedded hub):
record the ends runners could not (a lost heartbeat, a runner that never started), expire ended
instances and old topic data, and drop uploads never committed. Reads elsewhere never write; this does, and a record
it cannot update is logged and skipped, never a reason for anything else to fail.
"""

from __future__ import annotations

import time
from typing import Any

from . import aws, cleanup, clock, models, protocol, topics
from .config import Settings
from .observability import logger
from .repository import Repository

START_TIMEOUT_SECONDS = 300  # an instance still "starting" after this never reached a runner
BUDGET_SECONDS = 20.0  # per run (the function has 30 s): what is left waits for the next minute
UPLOAD_MAX_AGE_SECONDS = 86400  # the bucket's lifecycle rule for uploads/ on AWS


def settle(settings: Settings) -> list[str]:
    """Mark lost and never-started instances errored; returns their ids."""
    repo = Repository(settings.table)
    now = clock.now()
    settled = []
    for inst in repo.active_instances():
        reason = None
        if inst.status == protocol.STARTING:
            if now - inst.created > START_TIMEOUT_SECONDS:
                reason = models.REASON_NEVER_STARTED
        elif now - (inst.heartbeat or inst.created) > settings.lost_after_seconds:
            reason = models.REASON_LOST
        if reason is None:
            continue
        try:
            if repo.settle(inst, reason, now, settings.retention_seconds):
                settled.append(inst.id)
        except Exception:
            logger.exception("could not settle an instance", extra={"instance_id": inst.id})
    return settled


def expire(settings: Settings) -> list[str]:
    """Remove instances past their retention, as DynamoDB's TTL would (only sooner)."""
    now = clock.now()
    expired = []
    stop_at = time.monotonic() + BUDGET_SECONDS
    for inst in Repository(settings.table).listed_instances():
        if inst.alive(now):
            continue
        if time.monotonic() > stop_at:
            break
        try:
            cleanup.purge_instance(settings, inst.id)
            expired.append(inst.id)
        except Exception:
            logger.exception("could not expire an instance", extra={"instance_id": inst.id})
    return expired


def sweep_stale_uploads(settings: Settings, max_age: float = UPLOAD_MAX_AGE_SECONDS) -> list[str]:
    """What the bucket's lifecycle rule does on AWS: drop uploads never committed."""
    s3: Any = aws.client("s3")
    cutoff = clock.now() - max_age
    stale = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix="uploads/"):
        stale += [o["Key"] for o in page.get("Contents", []) if o["LastModified"].timestamp() < cutoff]
    for key in stale:
        s3.delete_object(Bucket=settings.bucket, Key=key)
    return stale


def sweep(settings: Settings) -> dict[str, list[str]]:
    return {"settled": settle(settings), "expired": expire(settings),
            "topics": topics.expire(settings, BUDGET_SECONDS / 4)}
