"""DynamoDB data access for sequences and instances (one table, ``pk`` key, ``by_kind`` index).

Values are plain Python; JSON-shaped user data (args, appConfig, package.json) is stored as JSON text
so its types survive exactly (DynamoDB would turn every number into a Decimal).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Iterator

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from . import aws

_ser = TypeSerializer()
_de = TypeDeserializer()

SEQUENCE = "sequence"
INSTANCE = "instance"


def _key(kind: str, ident: str) -> dict:
    return {"pk": {"S": f"{kind}#{ident}"}}


def _plain(value: Any) -> Any:
    """DynamoDB takes numbers as Decimal, never float."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _serialize(value: Any) -> dict:
    return _ser.serialize(_plain(value))


def _to_ddb(item: dict) -> dict:
    return {k: _serialize(v) for k, v in item.items() if v is not None}


def _from_ddb(raw: dict) -> dict:
    out = {}
    for k, v in raw.items():
        value = _de.deserialize(v)
        if isinstance(value, Decimal):
            value = int(value) if value == value.to_integral_value() else float(value)
        out[k] = value
    return out


def _is_conditional(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


class Store:
    """Data access bound to one table."""

    def __init__(self, table: str):
        self.table = table

    @property
    def _ddb(self):
        return aws.client("dynamodb")

    # -- generic -------------------------------------------------------------------------------
    def _put_new(self, kind: str, ident: str, item: dict) -> bool:
        body = {"pk": f"{kind}#{ident}", "kind": kind, **item}
        try:
            self._ddb.put_item(TableName=self.table, Item=_to_ddb(body),
                               ConditionExpression="attribute_not_exists(pk)")
        except ClientError as exc:
            if _is_conditional(exc):
                return False
            raise
        return True

    def _get(self, kind: str, ident: str) -> dict | None:
        raw = self._ddb.get_item(TableName=self.table, Key=_key(kind, ident), ConsistentRead=True)
        return _from_ddb(raw["Item"]) if "Item" in raw else None

    def _list(self, kind: str) -> Iterator[dict]:
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": "by_kind",
            "KeyConditionExpression": "#kind = :k",
            "ExpressionAttributeNames": {"#kind": "kind"},
            "ExpressionAttributeValues": {":k": {"S": kind}},
        }
        while True:
            page = self._ddb.query(**kwargs)
            for raw in page.get("Items", []):
                yield _from_ddb(raw)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _update(self, kind: str, ident: str, fields: dict, condition: str | None = None,
                cond_values: dict | None = None, remove: tuple[str, ...] = (),
                return_new: bool = False, cond_names: dict | None = None) -> dict | None:
        """SET ``fields`` (and REMOVE ``remove``); None when ``condition`` fails.

        ``condition`` refers to attributes as ``#name`` (``cond_names``) and values as ``:value``.
        """
        names, values, sets = dict(cond_names or {}), {}, []
        for i, (k, v) in enumerate(fields.items()):
            names[f"#f{i}"] = k
            values[f":v{i}"] = _serialize(v)
            sets.append(f"#f{i} = :v{i}")
        expr = ("SET " + ", ".join(sets)) if sets else ""
        if remove:
            for j, k in enumerate(remove):
                names[f"#r{j}"] = k
            expr += " REMOVE " + ", ".join(f"#r{j}" for j in range(len(remove)))
        for k, v in (cond_values or {}).items():
            values[k] = _serialize(v)
        kwargs: dict[str, Any] = {
            "TableName": self.table, "Key": _key(kind, ident), "UpdateExpression": expr.strip(),
            "ExpressionAttributeNames": names,
            "ConditionExpression": "attribute_exists(pk)" + (f" AND ({condition})" if condition else ""),
            "ReturnValues": "ALL_NEW" if return_new else "NONE",
        }
        if values:
            kwargs["ExpressionAttributeValues"] = values
        try:
            result = self._ddb.update_item(**kwargs)
        except ClientError as exc:
            if _is_conditional(exc):
                return None
            raise
        return _from_ddb(result["Attributes"]) if return_new else {}

    # -- sequences -----------------------------------------------------------------------------
    def put_sequence(self, seq: dict) -> bool:
        return self._put_new(SEQUENCE, seq["id"], seq)

    def get_sequence(self, seq_id: str) -> dict | None:
        return self._get(SEQUENCE, seq_id)

    def list_sequences(self) -> list[dict]:
        return list(self._list(SEQUENCE))

    def delete_sequence(self, seq_id: str) -> None:
        self._ddb.delete_item(TableName=self.table, Key=_key(SEQUENCE, seq_id))

    # -- instances -----------------------------------------------------------------------------
    def put_instance(self, inst: dict) -> bool:
        return self._put_new(INSTANCE, inst["id"], inst)

    def get_instance(self, inst_id: str) -> dict | None:
        return self._get(INSTANCE, inst_id)

    def list_instances(self) -> list[dict]:
        return list(self._list(INSTANCE))

    def update_instance(self, inst_id: str, fields: dict, *, condition: str | None = None,
                        values: dict | None = None, names: dict | None = None,
                        remove: tuple[str, ...] = (), return_new: bool = False) -> dict | None:
        return self._update(INSTANCE, inst_id, fields, condition, values, remove, return_new, names)

    def append_to_list(self, inst_id: str, attribute: str, entries: list) -> dict | None:
        """Atomically append to a list attribute (created when absent); returns the new item."""
        try:
            result = self._ddb.update_item(
                TableName=self.table, Key=_key(INSTANCE, inst_id),
                UpdateExpression="SET #a = list_append(if_not_exists(#a, :empty), :new)",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeNames={"#a": attribute},
                ExpressionAttributeValues={":empty": {"L": []}, ":new": _serialize(entries)},
                ReturnValues="ALL_NEW")
        except ClientError as exc:
            if _is_conditional(exc):
                return None
            raise
        return _from_ddb(result["Attributes"])

    def delete_instance(self, inst_id: str) -> None:
        self._ddb.delete_item(TableName=self.table, Key=_key(INSTANCE, inst_id))
