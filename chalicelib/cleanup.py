"""Expiry cleanup: when an instance's record goes, everything else of it goes too.

On AWS, DynamoDB TTL (or the sweeper) removes the record and the table's stream delivers a REMOVE
record to the cleanup Lambda; the embedded hub's sweeper calls ``purge_instance`` itself.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord, DynamoDBRecordEventName
from aws_lambda_powertools.utilities.typing import LambdaContext

from . import aws, channels, logstore
from .config import Settings
from .models import Instance
from .repository import Repository, instance_id_of


def removed_instance(record: DynamoDBRecord) -> str | None:
    """The instance whose own record a stream record removes, if it does (keys are enough)."""
    if record.event_name != DynamoDBRecordEventName.REMOVE:
        return None
    return instance_id_of(record.raw_event.get("dynamodb", {}).get("Keys") or {})


def purge_instance(settings: Settings, inst_id: str, record: Instance | None = None) -> None:
    """Delete everything of an instance: its records, channel segments, inputs and log streams.
    ``record``: the instance as the sweeper read it (none: DynamoDB's TTL removed it)."""
    Repository(settings.table).delete_instance(inst_id, record)
    channels.delete_all(settings.bucket, inst_id)
    s3: Any = aws.client("s3")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=settings.bucket, Prefix=f"inputs/{inst_id}/"):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=settings.bucket, Delete={"Objects": keys, "Quiet": True})
    logstore.delete_streams(settings.log_group, inst_id)


def handle_stream(settings: Settings, event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    """Purge the instance of each REMOVE record, with Powertools' batch utility: a record that fails
    is reported (``batchItemFailures``) and only it is retried, not the batch."""

    def purge(record: DynamoDBRecord) -> str | None:
        inst_id = removed_instance(record)
        if inst_id is not None:
            purge_instance(settings, inst_id)
        return inst_id

    processor = BatchProcessor(event_type=EventType.DynamoDBStreams)
    return process_partial_response(event=event, record_handler=purge, processor=processor, context=context)
