"""moto_memory: the embedded hub's moto lets go of what it no longer stores."""

from __future__ import annotations

import gc
import os

import boto3
from moto import mock_aws

from chalicelib.embedded import moto_memory


def _table(client, name: str, **extra) -> None:
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
                        **extra)


def _alive(kind: type) -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, kind))


def test_item_versions_are_let_go_once_replaced():
    from moto.dynamodb.models.dynamo_type import Item

    moto_memory.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _table(client, "m")
        key = {"pk": {"S": "inst"}, "sk": {"S": "record"}}
        client.put_item(TableName="m", Item={**key, **{f"a{i}": {"N": str(i)} for i in range(30)}})
        before = _alive(Item)
        for _ in range(300):  # as the hub numbers input chunks on an instance's record
            client.update_item(TableName="m", Key=key, UpdateExpression="ADD a1 :one",
                               ExpressionAttributeValues={":one": {"N": "1"}})
        assert _alive(Item) - before < 10  # moto kept two copies per update: 600
        assert client.get_item(TableName="m", Key=key)["Item"]["a1"] == {"N": "301"}
        assert Item.instances_tracked == []


def test_a_stream_turned_off_records_nothing():
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    moto_memory.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        _table(client, "s", StreamSpecification={"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"})
        table = dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].get_table("s")
        client.put_item(TableName="s", Item={"pk": {"S": "p"}, "sk": {"S": "1"}})
        assert len(table.stream_shard.items) == 1
        client.update_table(TableName="s", StreamSpecification={"StreamEnabled": False})
        client.put_item(TableName="s", Item={"pk": {"S": "p"}, "sk": {"S": "2"}})
        assert table.stream_shard is None
        assert not client.describe_table(TableName="s")["Table"].get("StreamSpecification", {}).get("StreamEnabled")


def _deleted_files_open() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += "(deleted)" in os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            pass
    return count


def test_s3_objects_still_close_their_files_when_deleted_or_replaced(monkeypatch):
    monkeypatch.setenv("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(64 * 1024))  # as the hub: large objects on disk
    moto_memory.install()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="memory-bucket")
        before = _deleted_files_open()
        for i in range(20):
            s3.put_object(Bucket="memory-bucket", Key=f"segment/{i}", Body=b"x" * (1 << 20))
        assert _deleted_files_open() - before == 20  # each object's bytes in a file of its own
        for i in range(20):
            s3.delete_object(Bucket="memory-bucket", Key=f"segment/{i}")
        for _ in range(20):
            s3.put_object(Bucket="memory-bucket", Key="replaced", Body=b"y" * (1 << 20))
        gc.collect()
        assert _deleted_files_open() - before == 1
        assert s3.get_object(Bucket="memory-bucket", Key="replaced")["Body"].read() == b"y" * (1 << 20)
