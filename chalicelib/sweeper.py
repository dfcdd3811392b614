"""The hub's housekeeping, on a path of its own (a schedule on AWS, a thread in the embedded hub):
record the ends runners could not (a lost heartbeat, a runner that never started), expire ended
instances and old topic data, and drop uploads never committed. Reads elsewhere never write; this does, and a record
it cannot update is logged and skipped, never a reason for anything else to fail.
"""

from __future__ import annotations

import time
from typing import Any

from . import aws, cleanup, clock, instances, models, protocol, topics
from .config import Settings
from .observability import logger
from .repository import Repository

START_TIMEOUT_SECONDS = 300  # an instance still "starting" after this never reached a runner
BUDGET_SECONDS = 20.0  # per run (the function has 30 s): what is left waits for the next minute
UPLOAD_MAX_AGE_SECONDS = 86400  # the bucket's lifecycle rule for uploads/ on AWS
DUE_PAGE = 100  # instances read and purged at a time


def settle(settings: Settings) -> list[str]:
    """Mark lost and never-started instances errored; returns their ids."""
    repo = Repository(settings.table)
    now = clock.now()
    settled = []
    for inst in repo.live_instances():  # those holding a running slot: at most the cap
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
                # A task that never started (it must not start later), or whose runner went silent.
                instances.stop_task(settings, inst, f"settled by the hub's sweeper: {reason}")
        except Exception:
            logger.exception("could not settle an instance", extra={"instance_id": inst.id})
    return settled


def expire(settings: Settings) -> list[str]:
    """Purge instances past their retention, as DynamoDB's TTL would (only sooner). Reads only what
    is due, a page at a time, until nothing is or the run's budget is spent (the rest is due next
    run): what a run costs is what expired since the last, never what is retained."""
    repo = Repository(settings.table)
    now = clock.now()
    expired: list[str] = []
    stop_at = time.monotonic() + BUDGET_SECONDS
    while time.monotonic() < stop_at:
        due = repo.due(now, DUE_PAGE)
        if not due:
            break
        records = repo.records([inst_id for _, inst_id in due])
        done = []
        for sk, inst_id in due:
            record = records.get(inst_id)
            try:
                if record is not None and record.expires_at is not None and record.expires_at <= now:
                    cleanup.purge_instance(settings, inst_id, record)
                    expired.append(inst_id)
                # Gone already, or its expiry moved (removeImmediately): this due item is spent.
                done.append(sk)
            except Exception:
                logger.exception("could not expire an instance", extra={"instance_id": inst_id})
        repo.forget_due(done)
        if len(done) < len(due) or len(due) < DUE_PAGE:  # all done; what failed is tried next run
            break
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
