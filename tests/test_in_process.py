"""The embedded hub's own AWS calls go to its moto app in-process (chalicelib/embedded/in_process.py):
the same answers as over HTTP, errors and binary bodies included, without a TCP connection."""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from chalicelib.embedded import in_process
from chalicelib.embedded.hub import moto_server

CREDENTIALS = {"aws_access_key_id": "k", "aws_secret_access_key": "s", "region_name": "us-east-1"}


def exchange(dynamodb, s3) -> list:
    """The kinds of call the hub makes: table and bucket set-up, conditional writes, binary objects."""
    seen: list = []
    dynamodb.create_table(TableName="t", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                     {"AttributeName": "sk", "KeyType": "RANGE"}])
    key = {"pk": {"S": "p"}, "sk": {"S": "s"}}
    dynamodb.put_item(TableName="t", Item={**key, "b": {"B": b"\x00\xff"}}, ConditionExpression="attribute_not_exists(pk)")
    try:
        dynamodb.put_item(TableName="t", Item=key, ConditionExpression="attribute_not_exists(pk)")
    except ClientError as exc:
        seen.append(exc.response["Error"]["Code"])
    seen.append(dynamodb.update_item(TableName="t", Key=key, UpdateExpression="ADD n :one", ReturnValues="ALL_NEW",
                                     ExpressionAttributeValues={":one": {"N": "1"}})["Attributes"])
    s3.create_bucket(Bucket="in-process-bucket")
    payload = bytes(range(256)) * 4096  # 1 MiB of every byte value
    s3.put_object(Bucket="in-process-bucket", Key="dir/a b", Body=payload)
    seen.append(s3.get_object(Bucket="in-process-bucket", Key="dir/a b")["Body"].read() == payload)
    seen.append(s3.get_object(Bucket="in-process-bucket", Key="dir/a b", Range="bytes=10-19")["Body"].read())
    seen.append([o["Key"] for o in s3.list_objects_v2(Bucket="in-process-bucket", Prefix="dir/")["Contents"]])
    try:
        s3.get_object(Bucket="in-process-bucket", Key="absent")
    except ClientError as exc:
        seen.append(exc.response["Error"]["Code"])
    return seen


@pytest.fixture
def server():
    srv = moto_server()
    srv.start()
    yield srv
    in_process.uninstall()
    srv.stop()


def clients(url: str):
    session = boto3.session.Session(**CREDENTIALS)
    return session.client("dynamodb", endpoint_url=url), session.client("s3", endpoint_url=url)


def test_in_process_calls_answer_as_the_server_does_without_reaching_it(server):
    over_http = exchange(*clients(server.url))
    from moto.core.models import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends
    from moto.s3.models import s3_backends

    dynamodb_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].delete_table("t")
    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].delete_object("in-process-bucket", "dir/a b")
    s3_backends[DEFAULT_ACCOUNT_ID]["aws"].delete_bucket("in-process-bucket")
    served: list[str] = []
    handled: list[bytes] = []

    def counting(environ, start_response):
        served.append(environ.get("HTTP_X_AMZ_TARGET", "s3"))
        return server.direct_app(environ, start_response)

    def dynamodb(request):
        answer = server.direct(request)
        if answer is not None:
            handled.append(request.headers["X-Amz-Target"])
            assert "Authorization" not in request.headers  # never leaves the process: not signed
        return answer

    in_process.install(server.url, counting, dynamodb)
    url = server.url
    server.stop()  # nothing listens any more: what answers is the app, in this process
    assert exchange(*clients(url)) == over_http
    # DynamoDB's requests go to moto's handler itself (unsigned), S3's through the app
    assert len(served) >= 6 and set(served) == {"s3"}
    assert len(handled) == 4 and all(target.startswith(b"DynamoDB_") for target in handled)
    assert over_http[0] == "ConditionalCheckFailedException" and over_http[-1] == "NoSuchKey"
    assert over_http[3] == bytes(range(10, 20))
