"""moto_speed changes how fast moto answers a query, never what it answers."""

from __future__ import annotations

import boto3
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoResult

from chalicelib.embedded import moto_speed

QUERIES = [
    {"KeyConditionExpression": "pk = :p", "ExpressionAttributeValues": {":p": {"S": "p1"}}},
    {"KeyConditionExpression": "pk = :p AND begins_with(sk, :s)",
     "ExpressionAttributeValues": {":p": {"S": "p2"}, ":s": {"S": "c#00"}}},
    {"KeyConditionExpression": "pk = :p AND sk BETWEEN :a AND :b", "ScanIndexForward": False, "Limit": 7,
     "ExpressionAttributeValues": {":p": {"S": "p1"}, ":a": {"S": "c#003"}, ":b": {"S": "c#031"}}},
    {"KeyConditionExpression": "pk = :p AND sk > :s", "Limit": 5, "ConsistentRead": True,
     "ExclusiveStartKey": {"pk": {"S": "p2"}, "sk": {"S": "c#010"}},
     "ExpressionAttributeValues": {":p": {"S": "p2"}, ":s": {"S": "c#002"}}},
    {"KeyConditionExpression": "pk = :p", "FilterExpression": "n > :n", "Select": "COUNT",
     "ExpressionAttributeValues": {":p": {"S": "p3"}, ":n": {"N": "4"}}},
    {"KeyConditionExpression": "pk = :p", "ProjectionExpression": "sk",
     "ExpressionAttributeValues": {":p": {"S": "absent"}}},
    {"IndexName": "by_g", "KeyConditionExpression": "g = :g",
     "ExpressionAttributeValues": {":g": {"S": "even"}}},
    {"IndexName": "by_g_sk", "KeyConditionExpression": "g = :g AND sk < :s", "ScanIndexForward": False,
     "Limit": 9, "ExpressionAttributeValues": {":g": {"S": "odd"}, ":s": {"S": "c#020"}}},
]


def answers() -> list[dict]:
    client = boto3.client("dynamodb", region_name="us-east-1")
    out = []
    for query in QUERIES:
        answer = client.query(TableName="t", **query)
        answer.pop("ResponseMetadata")
        out.append(answer)
    return out


def test_moto_speed_answers_every_query_as_moto_does(monkeypatch):
    moto_speed.install()
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        client.create_table(
            TableName="t", BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk", "g")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[
                {"IndexName": "by_g", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}]},
                {"IndexName": "by_g_sk", "Projection": {"ProjectionType": "KEYS_ONLY"},
                 "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}]},
            ])
        for p in ("p1", "p2", "p3", "p4"):
            for n in range(40):
                client.put_item(TableName="t", Item={"pk": {"S": p}, "sk": {"S": f"c#{n:03d}"}, "n": {"N": str(n % 9)},
                                                     "g": {"S": "even" if n % 2 == 0 else "odd"}})
            client.put_item(TableName="t", Item={"pk": {"S": p}, "sk": {"S": "c#000x"}})  # in no index
        patched = answers()
        monkeypatch.setattr(Table, "query", Table.query.__wrapped__)  # moto's own
        assert answers() == patched
    assert [a["Count"] for a in patched] == [41, 11, 7, 5, 16, 0, 80, 9]


ITEM = {"pk": {"S": "p"}, "sk": {"S": "a"}, "n": {"N": "1.50"}, "b": {"B": b"\x00\xffbin"}, "t": {"BOOL": True},
        "none": {"NULL": True}, "l": {"L": [{"S": "x"}, {"N": "2"}, {"B": b"\x01"}, {"M": {"k": {"S": "v"}}}]},
        "m": {"M": {"deep": {"M": {"b": {"B": b"\x02"}, "ss": {"SS": ["a", "b"]}}}}},
        "ns": {"NS": ["1", "2"]}, "bs": {"BS": [b"\x03", b"\x04"]}, "empty": {"S": ""}}


def keyed_table(name: str):
    """A client, and a table ``name`` keyed as the hub's (pk + sk)."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "sk")],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}])
    return client


def item_operations() -> list[dict]:
    """Every item operation the hub uses, with every attribute type, each answer as boto3 parses it."""
    client = keyed_table("t")
    key = {"pk": {"S": "p"}, "sk": {"S": "a"}}
    answers = [
        client.put_item(TableName="t", Item=ITEM),
        client.put_item(TableName="t", Item={**ITEM, "n": {"N": "3"}}, ReturnValues="ALL_OLD",
                        ReturnConsumedCapacity="TOTAL"),
        client.get_item(TableName="t", Key=key, ConsistentRead=True),
        client.get_item(TableName="t", Key={"pk": {"S": "p"}, "sk": {"S": "absent"}}),
        client.get_item(TableName="t", Key=key, ProjectionExpression="b, m.deep"),
        client.update_item(TableName="t", Key=key, UpdateExpression="SET n = n + :one, c = :c",
                           ExpressionAttributeValues={":one": {"N": "1"}, ":c": {"B": b"\x05"}}, ReturnValues="ALL_NEW"),
        client.update_item(TableName="t", Key=key, UpdateExpression="ADD k :one",
                           ExpressionAttributeValues={":one": {"N": "1"}}, ReturnValues="UPDATED_NEW"),
        client.update_item(TableName="t", Key=key, UpdateExpression="REMOVE c"),
        client.batch_write_item(RequestItems={"t": [{"PutRequest": {"Item": {**ITEM, "sk": {"S": f"b{n}"}}}}
                                                    for n in range(5)]}),
        client.batch_get_item(RequestItems={"t": {"Keys": [key, {"pk": {"S": "p"}, "sk": {"S": "b1"}},
                                                           {"pk": {"S": "p"}, "sk": {"S": "gone"}}],
                                                  "ConsistentRead": True}}),
        client.query(TableName="t", KeyConditionExpression="pk = :p", Limit=2,
                     ExpressionAttributeValues={":p": {"S": "p"}}),
        client.query(TableName="t", KeyConditionExpression="pk = :p", Select="COUNT",
                     ExpressionAttributeValues={":p": {"S": "p"}}),
        client.query(TableName="t", KeyConditionExpression="pk = :p AND sk > :s", ProjectionExpression="sk",
                     ExpressionAttributeValues={":p": {"S": "p"}, ":s": {"S": "b2"}}, ScanIndexForward=False),
        client.scan(TableName="t", Limit=3),
        client.delete_item(TableName="t", Key=key, ReturnValues="ALL_OLD"),
        client.delete_item(TableName="t", Key=key),
    ]
    for answer in answers:
        answer.pop("ResponseMetadata")
    return answers


def test_item_operations_answer_exactly_as_moto_serializes_them(monkeypatch):
    moto_speed.install()
    with mock_aws():
        fast = item_operations()
    monkeypatch.setattr(DynamoResult, "execute_result", DynamoResult.execute_result.__wrapped__)
    with mock_aws():
        assert item_operations() == fast
    assert fast[2]["Item"]["b"] == {"B": b"\x00\xffbin"} and len(fast[9]["Responses"]["t"]) == 2


def updates() -> list[dict]:
    """One UpdateExpression applied again and again, to new and existing items, with other values."""
    client = keyed_table("u")
    expression = "SET #n = if_not_exists(#n, :zero) + :inc, m.#k = :v, l = list_append(if_not_exists(l, :e), :l)"
    out = []
    for i in range(6):
        key = {"pk": {"S": f"p{i % 2}"}, "sk": {"S": "s"}}
        if i < 2:
            client.put_item(TableName="u", Item={**key, "m": {"M": {}}})
        out.append(client.update_item(
            TableName="u", Key=key, UpdateExpression=expression, ReturnValues="ALL_NEW",
            ExpressionAttributeNames={"#n": "n", "#k": f"k{i}"},
            ExpressionAttributeValues={":zero": {"N": "0"}, ":inc": {"N": str(i + 1)}, ":v": {"S": "v" * i},
                                       ":e": {"L": []}, ":l": {"L": [{"N": str(i)}]}})["Attributes"])
    return out


def test_one_parse_of_an_update_expression_serves_every_update_as_moto_does(monkeypatch):
    from moto.dynamodb.parsing.expressions import UpdateExpressionParser

    moto_speed.install()
    with mock_aws():
        cached = updates()
    monkeypatch.setattr(UpdateExpressionParser, "make", UpdateExpressionParser.make.__wrapped__)  # moto's own
    with mock_aws():
        assert updates() == cached
    assert cached[-1]["n"] == {"N": str(2 + 4 + 6)} and len(cached[-1]["l"]["L"]) == 3


def conditional_writes() -> list:
    """Conditions like the hub's, again and again with other names and values: passing, failing
    and malformed ones."""
    client = keyed_table("c")
    condition = ("attribute_exists(pk) AND attribute_not_exists(#end) AND #st IN (:a, :b)"
                 " AND (attribute_not_exists(#n) OR (#n < :most AND ((attribute_not_exists(#lim) AND #n < :unread)"
                 " OR #lim > #n)))")
    out: list = []
    for i in range(8):
        key = {"pk": {"S": f"p{i % 2}" if i < 6 else f"absent{i}"}, "sk": {"S": "s"}}
        if i < 2:
            client.put_item(TableName="c", Item={**key, "status": {"S": "running"}})
        try:
            out.append(client.update_item(
                TableName="c", Key=key, UpdateExpression="SET #n = if_not_exists(#n, :zero) + :inc",
                ConditionExpression=condition, ReturnValues="ALL_NEW",
                ExpressionAttributeNames={"#end": "ended", "#st": "status", "#n": f"n{i % 3}", "#lim": "limit"},
                ExpressionAttributeValues={":a": {"S": "running"}, ":b": {"S": "starting"}, ":zero": {"N": "0"},
                                           ":inc": {"N": str(i + 1)}, ":most": {"N": str(2 + i % 4)},
                                           ":unread": {"N": "10"}})["Attributes"])
        except ClientError as exc:
            out.append(exc.response["Error"]["Code"])
        for malformed, names in (("attribute_exists(pk) AND", None), ("pk = :missing", None), ("#unnamed = :a", None),
                                 ("#st = :a", {"#st": "status", "#unused": "x"})):
            try:
                client.put_item(TableName="c", Item=key, ConditionExpression=malformed,
                                ExpressionAttributeValues={":a": {"S": "x"}}, **({"ExpressionAttributeNames": names} if names else {}))
            except ClientError as exc:
                out.append(exc.response["Error"]["Message"])
            except (KeyError, ValueError) as exc:  # moto's parser raises these (DynamoDB answers 400)
                out.append(f"{type(exc).__name__}: {exc}")
    return out


def test_one_lexing_of_a_condition_serves_every_write_as_moto_does(monkeypatch):
    from moto.dynamodb.comparisons import ConditionExpressionParser

    moto_speed.install()
    with mock_aws():
        cached = conditional_writes()
    original = ConditionExpressionParser._lex_condition_expression.__wrapped__  # moto's own
    monkeypatch.setattr(ConditionExpressionParser, "_lex_condition_expression", original)
    with mock_aws():
        assert conditional_writes() == cached
    assert "ConditionalCheckFailedException" in cached and any(isinstance(a, dict) for a in cached)
    assert len({a for a in cached if isinstance(a, str) and a != "ConditionalCheckFailedException"}) == 4


def test_what_a_writes_condition_uses_is_learnt_once_and_as_moto_learns_it(monkeypatch):
    from moto.dynamodb import comparisons
    from moto.dynamodb import responses as dynamo_responses

    moto_speed.install()
    with mock_aws():
        learnt = conditional_writes()
    monkeypatch.setattr(dynamo_responses, "create_condition_expression_parser",
                        comparisons.create_condition_expression_parser)  # moto's own
    with mock_aws():
        assert conditional_writes() == learnt
    assert any("unused" in a for a in learnt if isinstance(a, str))  # an unused name is still refused



def test_a_handler_class_is_listed_once_and_as_moto_lists_it():
    from moto.core import responses as core_responses
    from moto.core.utils import method_names_from_class
    from moto.dynamodb.responses import DynamoHandler
    from moto.s3.responses import S3Response

    moto_speed.install()
    for handler in (DynamoHandler, S3Response):
        assert core_responses.method_names_from_class(handler) == method_names_from_class(handler)
    assert "update_item" in core_responses.method_names_from_class(DynamoHandler)
    assert core_responses.method_names_from_class.cache_info().hits >= 1
