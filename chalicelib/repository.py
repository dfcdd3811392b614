"""DynamoDB data access: the one module that knows key layouts and condition expressions.

One table, key ``pk`` + ``sk``:

    pk              sk                  what
    seq#<id>        #                   a sequence                     (listing index: lpk "seqs")
    inst#<id>       #                   an instance: fixed-size state
    inst#<id>       args | config       start data too large to keep on the instance record
    inst#<id>       in#<stream>#<n>     the n-th input or stdin chunk (bytes, or an S3 key when large)
    inst#<id>       evin#<n>            the n-th event sent to the instance
    inst#<id>       evout#<name>        the last message the instance emitted as event <name>
    ilist           <ms>#<id>           every retained instance, newest last: the instance listing
    iseq#<seq id>   <ms>#<id>           the same, for one sequence
    due             <expires>#<id>      an ended instance, by the time it expires: what the sweeper purges
    counts          instances           how many instances are retained (kept, never counted by a scan)
    topic#<name>    #                   a topic: type, chunk count, version  (listing index: lpk "topics")
    topic#<name>    d#<n>               the n-th chunk written to the topic (bytes, or an S3 key when large)
    slots#<group>   <n>                 slot n of a cap, held by one owner: running instances on the hub
                                        ("hub") and of a sequence ("seq#<id>"), topics ("topics")

Listings read a page of an ``ilist``/``iseq`` partition (keys only, newest first) and then those
records: what a page costs never depends on how many instances are retained. The sweeper reads only
``due`` items whose time has come. Sequences and topics are listed from the sparse, keys-only
``listing`` index. The listing and due items of an ended instance carry its ``expires_at`` too, so
DynamoDB's TTL removes them with it should the sweeper ever not. No user action grows an item: a
new input chunk or event is a new item, and what one request costs never depends on how many came
before it.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from . import aws, models, protocol
from .errors import Busy
from .models import Instance
from .protocol import CHANNELS, INPUT_STREAMS

META = "#"
HUB_SLOTS = "hub"  # running instances on the hub
TOPIC_SLOTS = "topics"
LISTING_INDEX = "listing"
ALL_INSTANCES = "ilist"
DUE = "due"
MAX_PAGE = 200  # instances or sequences in one listing page (see instances.list_page for why)
INLINE_START_DATA_BYTES = 4096  # args/appConfig JSON up to this stays on the instance record
INLINE_CHUNK_BYTES = 256 * 1024  # larger input and topic chunks go to S3 (a DynamoDB item holds 400 KB)

_ser = TypeSerializer()
_de = TypeDeserializer()


def _plain(value: Any) -> Any:
    """DynamoDB takes numbers as Decimal, never float."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _av(value: Any) -> dict[str, Any]:
    return dict(_ser.serialize(_plain(value)))


def _to_ddb(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _av(v) for k, v in item.items() if v is not None}


def _python(value: Any) -> Any:
    """Back from DynamoDB's types, at any depth: Decimal to int or float, Binary to bytes."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return bytes(value)  # type: ignore[call-overload]  # boto3-stubs say Binary.__bytes__ gives str
    if isinstance(value, dict):
        return {k: _python(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_python(v) for v in value]
    return value


def _from_ddb(raw: dict[str, Any]) -> dict[str, Any]:
    return {k: _python(_de.deserialize(v)) for k, v in raw.items()}


# "The instance is starting or running", as a condition on the record.
_IS_ACTIVE = "#st IN (:a, :b, :c, :d)"
_ACTIVE_VALUES = {f":{k}": v for k, v in zip("abcd", protocol.ACTIVE, strict=True)}


def _conditional(exc: ClientError) -> bool:
    return exc.response["Error"]["Code"] == "ConditionalCheckFailedException"


def sequence_slots(seq_id: str) -> str:
    """The slot group of a sequence's running instances."""
    return f"seq#{seq_id}"


def _ms(ts: float) -> str:
    return f"{int(ts * 1000):015d}"


def _listing_items(inst_id: str, seq_id: str, created: float, expires_at: int | None = None) -> list[dict[str, Any]]:
    """The instance's entries in the listings (all instances, its sequence's), newest sorting last."""
    sk = f"{_ms(created)}#{inst_id}"
    extra = {"expires_at": expires_at} if expires_at is not None else {}
    return [{"pk": ALL_INSTANCES, "sk": sk, **extra}, {"pk": f"iseq#{seq_id}", "sk": sk, **extra}]


def _due_item(inst_id: str, expires_at: int) -> dict[str, Any]:
    return {"pk": DUE, "sk": f"{int(expires_at):011d}#{inst_id}", "expires_at": int(expires_at)}


LISTING_CURSOR = re.compile(r"[0-9]{15}#[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _seq_key(seq_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"seq#{seq_id}"}, "sk": {"S": META}}


def _inst_key(inst_id: str, sk: str = META) -> dict[str, Any]:
    return {"pk": {"S": f"inst#{inst_id}"}, "sk": {"S": sk}}


def _watch_key(table: str, key: dict[str, Any]) -> tuple[str, str, str]:
    """A record as a change source names it (``longpoll``): (table, pk, sk)."""
    return table, key["pk"]["S"], key["sk"]["S"]


def instance_record(table: str, inst_id: str) -> tuple[str, str, str]:
    """The instance's record, where its new segments, ended channels and end are written."""
    return _watch_key(table, _inst_key(inst_id))


def event_record(table: str, inst_id: str, name: str) -> tuple[str, str, str]:
    """The last event ``name`` the instance emitted."""
    return _watch_key(table, _inst_key(inst_id, f"evout#{name}"))


def topic_record(table: str, name: str) -> tuple[str, str, str]:
    """The topic's record, whose count a new chunk advances."""
    return _watch_key(table, _topic_key(name))


def _numbered_sk(prefix: str, number: int, digits: int = 10) -> str:
    """The sort key of item ``number`` of a numbered series (input chunks, events, topic chunks):
    zero-padded, so the keys sort as the numbers do."""
    return f"{prefix}{number:0{digits}d}"


TOPIC_CHUNK_DIGITS = 12  # topic chunks: more digits than an instance's series (a topic lives longer)


def _topic_key(name: str, sk: str = META) -> dict[str, Any]:
    return {"pk": {"S": f"topic#{name}"}, "sk": {"S": sk}}


def instance_id_of(keys: dict[str, Any]) -> str | None:
    """The instance a stream record's keys are the record of (None for any other item)."""
    pk, sk = keys.get("pk", {}).get("S", ""), keys.get("sk", {}).get("S", "")
    return pk[len("inst#"):] if pk.startswith("inst#") and sk == META else None


SLOT_GRACE_SECONDS = 60  # a slot this young is never taken back: its owner may still be being written
SLOT_PROBES = 2  # blind tries at a random slot before the held ones are read
SLOT_ATTEMPTS = 10  # then a slot lost to a concurrent taker is looked for again, up to this


def _slot_key(group: str, number: int) -> dict[str, Any]:
    return {"pk": {"S": f"slots#{group}"}, "sk": {"S": f"{number:06d}"}}


# -- the instance record <-> the model ---------------------------------------------------------------
def _instance_item(inst: Instance) -> dict[str, Any]:
    item: dict[str, Any] = {
        "pk": f"inst#{inst.id}", "sk": META, "kind": "instance", "id": inst.id,
        "sequence_id": inst.sequence_id, "sequence_name": inst.sequence_name, "status": inst.status,
        "created": inst.created, "runtime": inst.runtime, "engine": inst.engine,
        "args_stored": inst.args_stored, "config_stored": inst.config_stored, "stored_bytes": inst.stored_bytes,
        "hub_slot": inst.hub_slot, "seq_slot": inst.seq_slot,
    }
    for name in ("provides", "provides_type", "requires", "requires_type"):
        if getattr(inst, name) is not None:
            item[name] = getattr(inst, name)
    if not inst.args_stored:
        item["args"] = json.dumps(inst.args)
    if not inst.config_stored:
        item["app_config"] = json.dumps(inst.app_config)
    for c in CHANNELS:
        item[f"n_{c}"] = 0
    return item


def _instance(item: dict[str, Any]) -> Instance:
    return Instance(
        id=item["id"], sequence_id=item["sequence_id"], status=item["status"], created=item["created"],
        runtime=item.get("runtime", "node"), engine=item.get("engine", "lambda"), sequence_name=item.get("sequence_name"),
        started=item.get("started"), ended=item.get("ended"), heartbeat=item.get("heartbeat"),
        progress=item.get("progress"),
        exitcode=item.get("exitcode"), reason=item.get("reason"), expires_at=item.get("expires_at"),
        args=json.loads(item["args"]) if "args" in item else None,
        app_config=json.loads(item["app_config"]) if "app_config" in item else None,
        args_stored=bool(item.get("args_stored")), config_stored=bool(item.get("config_stored")),
        stored_bytes=int(item.get("stored_bytes", 0)),
        segments={c: int(item.get(f"n_{c}", 0)) for c in CHANNELS},
        ended_channels={c for c in CHANNELS if item.get(f"end_{c}")},
        input_type=item.get("input_type"),
        chunks={s: int(item.get(f"{s}_seq", 0)) for s in INPUT_STREAMS},
        chunks_end={s: int(item[f"{s}_end"]) for s in INPUT_STREAMS if f"{s}_end" in item},
        events_in=int(item.get("evin_seq", 0)), kill_requested=item.get("kill_requested"),
        input_bytes=int(item.get("in_bytes", 0)), event_bytes=int(item.get("evin_bytes", 0)),
        input_limit=int(item["in_limit"]) if "in_limit" in item else None,
        remove_on_end=bool(item.get("remove_on_end")),
        stop_requested=item.get("stop_requested"), health=item.get("health"),
        provides=item.get("provides"), provides_type=item.get("provides_type"),
        requires=item.get("requires"), requires_type=item.get("requires_type"),
        hub_slot=item.get("hub_slot"), seq_slot=item.get("seq_slot"), task=item.get("task"))


class Repository:
    """Data access bound to one table."""

    def __init__(self, table: str):
        self.table = table

    @property
    def _ddb(self) -> Any:
        return aws.client("dynamodb")

    # -- generic ---------------------------------------------------------------------------------
    def _put(self, item: dict[str, Any], condition: str | None = "attribute_not_exists(pk)") -> bool:
        kwargs: dict[str, Any] = {"TableName": self.table, "Item": _to_ddb(item)}
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            self._ddb.put_item(**kwargs)
        except ClientError as exc:
            if _conditional(exc):
                return False
            raise
        return True

    def _get(self, key: dict[str, Any], consistent: bool = True) -> dict[str, Any] | None:
        raw = self._ddb.get_item(TableName=self.table, Key=key, ConsistentRead=consistent)
        return _from_ddb(raw["Item"]) if "Item" in raw else None

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        kwargs["TableName"] = self.table
        while True:
            page = self._ddb.query(**kwargs)
            for raw in page.get("Items", []):
                yield _from_ddb(raw)
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _batch_get(self, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Items for ``keys`` (any number), in no particular order; missing ones are left out."""
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {self.table: {"Keys": keys[start:start + 100], "ConsistentRead": True}}
            while pending:
                page = self._ddb.batch_get_item(RequestItems=pending)
                found += [_from_ddb(raw) for raw in page["Responses"].get(self.table, [])]
                pending = page.get("UnprocessedKeys") or {}
        return found

    def _update(self, key: dict[str, Any], sets: dict[str, Any], *, condition: str | None = None,
                names: dict[str, Any] | None = None, values: dict[str, Any] | None = None, remove: tuple[str, ...] = (),
                adds: dict[str, int] | None = None, returns: str = "NONE", extra_set: str = "") -> dict[str, Any] | None:
        """SET ``sets`` (and ``extra_set``), ADD ``adds``, REMOVE ``remove`` on an existing item; None when ``condition``
        fails. ``condition`` names attributes as ``#name`` (``names``) and values as ``:value``."""
        attr_names, attr_values, clauses = dict(names or {}), {}, []
        parts = []
        for i, (k, v) in enumerate(sets.items()):
            attr_names[f"#s{i}"] = k
            attr_values[f":s{i}"] = _av(v)
            parts.append(f"#s{i} = :s{i}")
        if extra_set:  # SET clauses that compute from the item's own attributes
            parts.append(extra_set)
        if parts:
            clauses.append("SET " + ", ".join(parts))
        if adds:
            add_parts = []
            for i, (k, v) in enumerate(adds.items()):
                attr_names[f"#a{i}"] = k
                attr_values[f":a{i}"] = _av(v)
                add_parts.append(f"#a{i} :a{i}")
            clauses.append("ADD " + ", ".join(add_parts))
        if remove:
            for j, k in enumerate(remove):
                attr_names[f"#r{j}"] = k
            clauses.append("REMOVE " + ", ".join(f"#r{j}" for j in range(len(remove))))
        for k, v in (values or {}).items():
            attr_values[k] = _av(v)
        kwargs: dict[str, Any] = {
            "TableName": self.table, "Key": key, "UpdateExpression": " ".join(clauses),
            "ExpressionAttributeNames": attr_names, "ReturnValues": returns,
            "ConditionExpression": "attribute_exists(pk)" + (f" AND ({condition})" if condition else ""),
        }
        if attr_values:
            kwargs["ExpressionAttributeValues"] = attr_values
        try:
            result = self._ddb.update_item(**kwargs)
        except ClientError as exc:
            if _conditional(exc):
                return None
            raise
        return _from_ddb(result.get("Attributes", {}))

    # -- slots: caps that hold under any burst of requests --------------------------------------
    def slot_owners(self, group: str) -> dict[int, dict[str, Any]]:
        """The held slots of ``group``: {number: {"owner", "at"}} (at most its cap: never history)."""
        return {int(i["sk"]): i for i in self._query(
            KeyConditionExpression="pk = :p", ConsistentRead=True, ProjectionExpression="sk, #o, #t, seq",
            ExpressionAttributeNames={"#o": "owner", "#t": "at"},
            ExpressionAttributeValues={":p": {"S": f"slots#{group}"}})}

    def take_slot(self, group: str, cap: int, owner: str, now: float,
                  holding: Callable[[list[str]], set[str]], about: dict[str, str] | None = None) -> int | None:
        """One of ``cap`` slots of ``group`` for ``owner`` (its number); None when all are held.

        A slot is a conditional put of its own item, so however many take at once, no two hold one
        slot and no more than ``cap`` are held. Slots whose owners no longer hold them (``holding``
        answers which still do: a runner that died before releasing, say) are taken back when
        every slot looks held. Raises Busy when other takers keep winning the free ones."""
        for attempt in range(SLOT_ATTEMPTS):
            if attempt < SLOT_PROBES:  # far from the cap a blind try is one write and no read
                number = random.randrange(cap)
            else:
                held = self.slot_owners(group)
                free = [n for n in range(cap) if n not in held]
                if not free:
                    stale = self._stale_slots(held, now, holding)
                    if not stale:
                        return None
                    for number in stale:
                        self.release_slot(group, number, held[number]["owner"])
                    continue
                number = random.choice(free)  # takers at once rarely pick the same one
            if self._put({"pk": f"slots#{group}", "sk": f"{number:06d}", "owner": owner, "at": now, **(about or {})}):
                return number
        raise Busy(f"too many starts at once for {group}; try again")

    @staticmethod
    def _stale_slots(held: dict[int, dict[str, Any]], now: float, holding: Callable[[list[str]], set[str]]) -> list[int]:
        old = {n: i["owner"] for n, i in held.items() if now - float(i["at"]) > SLOT_GRACE_SECONDS}
        still = holding(list(old.values())) if old else set()
        return [n for n, owner in old.items() if owner not in still]

    def release_slot(self, group: str, number: int, owner: str) -> None:
        """Give slot ``number`` back, if ``owner`` still holds it."""
        try:
            self._ddb.delete_item(TableName=self.table, Key=_slot_key(group, number), ConditionExpression="#o = :o",
                                  ExpressionAttributeNames={"#o": "owner"}, ExpressionAttributeValues={":o": _av(owner)})
        except ClientError as exc:
            if not _conditional(exc):
                raise

    def _release_instance_slots(self, item: dict[str, Any] | None) -> None:
        """An instance that just ended gives back the running slots it held."""
        if item is None:
            return
        if item.get("hub_slot") is not None:
            self.release_slot(HUB_SLOTS, int(item["hub_slot"]), item["id"])
        if item.get("seq_slot") is not None:
            self.release_slot(sequence_slots(item["sequence_id"]), int(item["seq_slot"]), item["id"])

    def still_running(self, inst_ids: list[str]) -> set[str]:
        """Which of ``inst_ids`` are starting or running (for taking back their slots)."""
        return {i["id"] for i in self._batch_get([_inst_key(i) for i in inst_ids]) if i["status"] in protocol.ACTIVE}

    # -- sequences -------------------------------------------------------------------------------
    def put_sequence(self, seq: dict[str, Any]) -> bool:
        return self._put({"pk": f"seq#{seq['id']}", "sk": META, "kind": "sequence", "lpk": "seqs",
                          "lsk": f"{_ms(seq['created'])}#{seq['id']}", **seq})

    def get_sequence(self, seq_id: str) -> dict[str, Any] | None:
        return self._get(_seq_key(seq_id))

    def list_sequences(self, before: str | None = None, limit: int = 100) -> tuple[list[dict[str, Any]], str | None]:
        """A page of sequences, newest first, sent before the one ``before`` names; and the next
        page's cursor (None: the last page)."""
        kwargs: dict[str, Any] = {
            "TableName": self.table, "IndexName": LISTING_INDEX, "KeyConditionExpression": "lpk = :p",
            "ExpressionAttributeValues": {":p": {"S": "seqs"}}, "ScanIndexForward": False,
            "Limit": max(1, min(limit, MAX_PAGE))}
        if before:
            seq_id = before.split("#", 1)[1]
            kwargs["ExclusiveStartKey"] = {"lpk": {"S": "seqs"}, "lsk": {"S": before}, **_seq_key(seq_id)}
        page = self._ddb.query(**kwargs)
        lsks = [raw["lsk"]["S"] for raw in page.get("Items", [])]
        found = {s["lsk"]: s for s in self._batch_get([_seq_key(k.split("#", 1)[1]) for k in lsks])}
        return [found[k] for k in lsks if k in found], (lsks[-1] if lsks and "LastEvaluatedKey" in page else None)

    def delete_sequence(self, seq_id: str) -> None:
        self._ddb.delete_item(TableName=self.table, Key=_seq_key(seq_id))

    # -- instances: create, read, list -----------------------------------------------------------
    def create_instance(self, inst: Instance) -> bool:
        """Record a new instance, then its large start data; False if the id is taken. (The record
        first: of two starts with one instanceId only the winner writes start data; the runner is
        invoked only after both writes.)"""
        if not self._put(_instance_item(inst)):
            return False
        siblings = [{"pk": f"inst#{inst.id}", "sk": sk, "value": json.dumps(value)}
                    for stored, sk, value in ((inst.args_stored, "args", inst.args),
                                              (inst.config_stored, "config", inst.app_config)) if stored]
        self._put_items([*siblings, *_listing_items(inst.id, inst.sequence_id, inst.created)])
        self._count("instances", 1)
        return True

    def get_instance(self, inst_id: str) -> Instance | None:
        item = self._get(_inst_key(inst_id))
        return _instance(item) if item else None

    def start_data(self, inst: Instance) -> tuple[Any, Any]:
        """(args, appConfig), from the record or from their own records when large."""
        stored = self.start_data_many([inst])  # no request when both are on the record
        return stored.get((inst.id, "args"), inst.args), stored.get((inst.id, "config"), inst.app_config)

    def start_data_many(self, instances: list[Instance]) -> dict[tuple[str, str], Any]:
        """{(instance id, "args"|"config"): value} for every stored start datum of ``instances``."""
        keys = [_inst_key(i.id, sk) for i in instances
                for sk, on in (("args", i.args_stored), ("config", i.config_stored)) if on]
        return {(i["pk"][len("inst#"):], i["sk"]): json.loads(i["value"]) for i in self._batch_get(keys)}

    def list_instances(self, sequence_id: str | None = None, before: str | None = None,
                       limit: int = 100) -> tuple[list[Instance], str | None]:
        """A page of retained instances (of ``sequence_id``, when given), newest first: at most
        ``limit``, started before the one ``before`` names (a previous page's cursor). Returns the
        page and the next page's cursor (None: this was the last). Reads ``limit`` listing keys and
        those records, whatever the history; records gone (expired meanwhile) are left out."""
        kwargs: dict[str, Any] = {
            "TableName": self.table, "KeyConditionExpression": "pk = :p", "ScanIndexForward": False,
            "Limit": max(1, min(limit, MAX_PAGE)), "ConsistentRead": True, "ProjectionExpression": "sk",
            "ExpressionAttributeValues": {":p": {"S": f"iseq#{sequence_id}" if sequence_id else ALL_INSTANCES}}}
        if before:
            kwargs["KeyConditionExpression"] += " AND sk < :before"
            kwargs["ExpressionAttributeValues"][":before"] = {"S": before}
        page = self._ddb.query(**kwargs)
        keys = [raw["sk"]["S"] for raw in page.get("Items", [])]
        ids = [k.split("#", 1)[1] for k in keys]
        found = self.records(ids)
        return [found[i] for i in ids if i in found], (keys[-1] if keys and "LastEvaluatedKey" in page else None)

    def live_instances(self, sequence_id: str | None = None) -> list[Instance]:
        """The instances starting or running (on the hub, or of ``sequence_id``): those holding a
        running slot, read consistently; at most the cap, never history."""
        owners = [slot["owner"] for slot in self.slot_owners(sequence_slots(sequence_id) if sequence_id
                                                             else HUB_SLOTS).values()]
        return list(self.records(owners).values())

    def live_by_sequence(self) -> dict[str, list[str]]:
        """{sequence id: [its live instances' ids]}, from the hub's running slots alone (one read)."""
        found: dict[str, list[str]] = {}
        for slot in self.slot_owners(HUB_SLOTS).values():
            found.setdefault(slot.get("seq", ""), []).append(slot["owner"])
        return found

    def retained_count(self) -> int:
        item = self._get({"pk": {"S": "counts"}, "sk": {"S": "instances"}}, consistent=False)
        return max(0, int(item.get("n", 0))) if item else 0

    def _count(self, what: str, by: int) -> None:
        self._ddb.update_item(TableName=self.table, Key={"pk": {"S": "counts"}, "sk": {"S": what}},
                              UpdateExpression="ADD n :by", ExpressionAttributeValues={":by": {"N": str(by)}})

    # -- instances: the runner's transitions ------------------------------------------------------
    def claim(self, inst_id: str, now: float) -> Instance | None:
        """starting → running, once: a second delivery of the same invocation gets None."""
        item = self._update(_inst_key(inst_id), {"status": protocol.RUNNING, "started": now, "heartbeat": now},
                            condition="#st = :starting", names={"#st": "status"},
                            values={":starting": protocol.STARTING}, returns="ALL_NEW")
        return _instance(item) if item is not None else None

    def heartbeat(self, inst_id: str, now: float, segments: dict[str, int], ended: set[str],
                  health: dict[str, Any] | None, input_limit: int | None = None,
                  progressed: bool = False) -> Instance | None:
        """The runner's regular write: liveness, channel progress (``progressed``: new segments since
        the last write), health, and how far the API may take input (``input_limit``: what the
        instance has read, plus what it may leave unread)."""
        sets: dict[str, Any] = {"heartbeat": now}
        if progressed:
            sets["progress"] = now
        if input_limit is not None:
            sets["in_limit"] = input_limit
        # Ends first, counts second: an ended channel's count is then final when it is written.
        sets.update({f"end_{c}": True for c in ended})
        sets.update({f"n_{c}": n for c, n in segments.items()})
        if health is not None:
            sets["health"] = health
        item = self._update(_inst_key(inst_id), sets, returns="ALL_NEW")
        return _instance(item) if item is not None else None

    def record_topics(self, inst_id: str, sets: dict[str, str]) -> None:
        """The topics the sequence declared itself (Scramjet's PANG), once the runner knows them."""
        self._update(_inst_key(inst_id), sets)

    def _end_sets(self, status: str, exitcode: int, reason: str, now: float, retention: int) -> dict[str, Any]:
        sets: dict[str, Any] = {"status": status, "exitcode": exitcode, "reason": reason[:models.MAX_REASON_CHARS],
                                "ended": now, "expires_at": int(now + retention)}
        sets.update({f"end_{c}": True for c in CHANNELS})
        return sets

    def end(self, inst_id: str, status: str, exitcode: int, reason: str, now: float, retention: int,
            segments: dict[str, int] | None = None) -> None:
        """Record the end: state, expiry, every channel ended; it is due to be purged then. One killed
        with ``remove`` (Scramjet's removeImmediately) is removed from view at once, whenever the
        kill came."""
        sets = self._end_sets(status, exitcode, reason, now, retention)
        sets["heartbeat"] = now
        sets.update({f"n_{c}": n for c, n in (segments or {}).items()})
        item = self._update(_inst_key(inst_id), sets, returns="ALL_NEW")
        self._ended(item)
        if item is not None and item.get("remove_on_end") and retention > 0:
            self.expire_now(inst_id, now)

    def settle(self, inst: Instance, reason: str, now: float, retention: int) -> bool:
        """Record an end the runner could not (lost heartbeat, never started), only if nothing moved
        meanwhile: a late claim or a new heartbeat wins."""
        sets = self._end_sets(protocol.ERRORED, -1, reason, now, retention)
        if inst.heartbeat is not None:
            condition, values = "#st = :was AND #hb = :hb", {":was": inst.status, ":hb": inst.heartbeat}
        else:
            condition, values = "#st = :was AND attribute_not_exists(#hb)", {":was": inst.status}
        item = self._update(_inst_key(inst.id), sets, condition=condition, values=values,
                            names={"#st": "status", "#hb": "heartbeat"}, returns="ALL_NEW")
        self._ended(item)
        return item is not None

    # -- instances: control from the API ---------------------------------------------------------
    def set_task(self, inst_id: str, task_arn: str) -> None:
        """Record the instance's Fargate task (while it lives: one already gone is left gone)."""
        self._update(_inst_key(inst_id), {"task": task_arn}, condition="attribute_exists(pk)")

    def kill_unclaimed(self, inst_id: str, now: float, retention: int) -> Instance | None:
        """End an instance no runner has claimed yet (and none will, once it is not "starting")."""
        sets = self._end_sets(protocol.COMPLETED, 137, models.REASON_KILLED, now, retention)
        item = self._update(_inst_key(inst_id), sets, condition="#st = :s", names={"#st": "status"},
                            values={":s": protocol.STARTING}, returns="ALL_NEW")
        self._ended(item)
        return _instance(item) if item is not None else None

    def kill(self, inst_id: str, now: float, retention: int, status: str | None = None,
             remove: bool = False) -> Instance | None:
        """Kill an active instance: one no runner has claimed ends at once (none will claim it once it
        is not "starting"); a claimed one is marked, and its runner kills it on its next heartbeat.
        ``status``, when known, spares the first write for one that is not starting; ``remove``
        leaves no retention after the end. None when the instance is not active."""
        if status in (None, protocol.STARTING):
            ended = self.kill_unclaimed(inst_id, now, 0 if remove else retention)
            if ended is not None:
                return ended
        return self.request_kill(inst_id, now, remove)

    def request_kill(self, inst_id: str, now: float, remove: bool = False) -> Instance | None:
        sets: dict[str, Any] = {"kill_requested": now, "status": protocol.KILLING}
        if remove:
            sets["remove_on_end"] = True
        item = self._update(_inst_key(inst_id), sets,
                            condition=_IS_ACTIVE, names={"#st": "status"}, values=_ACTIVE_VALUES, returns="ALL_NEW")
        return _instance(item) if item is not None else None

    def expire_now(self, inst_id: str, now: float) -> Instance | None:
        """Remove an ended instance from view now (the sweeper purges it next)."""
        item = self._update(_inst_key(inst_id), {"expires_at": int(now)},
                            condition=f"NOT ({_IS_ACTIVE})",
                            names={"#st": "status"}, values=_ACTIVE_VALUES, returns="ALL_NEW")
        if item is not None:
            self._mark_due(item)
        return _instance(item) if item is not None else None

    def _ended(self, item: dict[str, Any] | None) -> None:
        """What an end just recorded by ``item`` (the record as it now is) sets off: the running
        slots go back, and the instance is due to be purged when it expires."""
        if item is not None:
            self._release_instance_slots(item)
            self._mark_due(item)

    def _mark_due(self, item: dict[str, Any]) -> None:
        """A due item for the sweeper, and the listing items marked with the same expiry (TTL)."""
        expires = int(item["expires_at"])
        self._put_items([_due_item(item["id"], expires),
                         *_listing_items(item["id"], item["sequence_id"], float(item["created"]), expires)])

    def due(self, now: float, limit: int = 100) -> list[tuple[str, str]]:
        """(due item's sort key, instance id) of instances whose time has come, oldest first: what
        has expired, never what is retained."""
        page = self._ddb.query(TableName=self.table, KeyConditionExpression="pk = :p AND sk <= :now",
                               ExpressionAttributeValues={":p": {"S": DUE}, ":now": {"S": f"{int(now):011d}~"}},
                               Limit=limit, ConsistentRead=True, ProjectionExpression="sk")
        return [(raw["sk"]["S"], raw["sk"]["S"].split("#", 1)[1]) for raw in page.get("Items", [])]

    def records(self, inst_ids: list[str]) -> dict[str, Instance]:
        """{id: record} of those of ``inst_ids`` that exist, in one batched read."""
        return {i["id"]: _instance(i) for i in self._batch_get([_inst_key(i) for i in inst_ids])}

    def forget_due(self, due_sks: list[str]) -> None:
        self._delete_keys([{"pk": {"S": DUE}, "sk": {"S": sk}} for sk in due_sks])

    def request_stop(self, inst_id: str, request: dict[str, Any]) -> Instance | None:
        """Ask a running (or already stopping) instance to stop; the latest request is the one acted on."""
        item = self._update(_inst_key(inst_id), {"stop_requested": request, "status": protocol.STOPPING},
                            condition="#st IN (:r, :s)", names={"#st": "status"},
                            values={":r": protocol.RUNNING, ":s": protocol.STOPPING}, returns="ALL_NEW")
        return _instance(item) if item is not None else None

    # -- input and stdin -------------------------------------------------------------------------
    def reserve_chunk(self, inst_id: str, stream: str, content_type: str | None, size: int,
                      end: bool, quota: int, unread: int) -> int | None:
        """Number the next chunk of ``stream`` (``size`` bytes; and end it, when ``end``); None when
        the instance has ended, the stream has ended, (first input request) no content type is
        known, or it would take the instance past its input quota: ``quota`` bytes in all, or
        ``unread`` bytes more than it has read (the runner keeps ``in_limit`` at that mark)."""
        inc = 1 if size else 0
        names = {"#seq": f"{stream}_seq", "#end": f"{stream}_end", "#st": "status"}
        values: dict[str, Any] = {":inc": inc, **_ACTIVE_VALUES}
        counters = [("#seq", ":inc")]
        condition = f"attribute_exists(pk) AND attribute_not_exists(#end) AND {_IS_ACTIVE}"
        if size:  # an empty request (one that only ends the stream) is never over a quota
            counters.append(("#inb", ":size"))
            names.update({"#inb": "in_bytes", "#lim": "in_limit"})
            values.update({":size": size, ":quota": quota, ":unread": unread})
            condition += (" AND (attribute_not_exists(#inb) OR (#inb < :quota AND"
                          " ((attribute_not_exists(#lim) AND #inb < :unread) OR #lim > #inb)))")
        # The counters are ADDed (a missing one counts from zero): the same write as SET x =
        # if_not_exists(x, :zero) + n, which the embedded hub's moto takes ~15% longer to evaluate.
        # A request that ends the stream also records the count it ends at, from the item as it
        # was: its counters are SET then, so no attribute is read in one clause and ADDed in another.
        if end:
            values[":zero"] = 0
            sets_expr = [f"{name} = if_not_exists({name}, :zero) + {value}" for name, value in counters]
            sets_expr.append("#end = if_not_exists(#seq, :zero) + :inc")
            adds: list[str] = []
        else:
            sets_expr = []
            adds = [f"{name} {value}" for name, value in counters]
        if stream == "input":
            condition += " AND attribute_not_exists(requires)"  # its input comes from a topic
            names["#ct"] = "input_type"
            if content_type:
                sets_expr.append("#ct = if_not_exists(#ct, :ct)")
                values[":ct"] = content_type
            else:
                condition += " AND attribute_exists(#ct)"
        try:
            result = self._ddb.update_item(
                TableName=self.table, Key=_inst_key(inst_id),
                UpdateExpression=" ".join(f"{clause} {', '.join(actions)}"
                                          for clause, actions in (("SET", sets_expr), ("ADD", adds)) if actions),
                ConditionExpression=condition, ExpressionAttributeNames=names,
                # UPDATED_NEW may leave out a counter whose value did not change (an empty request
                # that only ends the stream): that one asks for the whole record.
                ExpressionAttributeValues={k: _av(v) for k, v in values.items()},
                ReturnValues="UPDATED_NEW" if inc else "ALL_NEW")
        except ClientError as exc:
            if _conditional(exc):
                return None
            raise
        return int(_from_ddb(result["Attributes"])[f"{stream}_seq"])

    def _numbered(self, pk: str, prefix: str, first: int, last: int, digits: int = 10,
                  page: int | None = None) -> Iterator[dict[str, Any]]:
        """Items ``first``..``last`` (inclusive) of a numbered series under ``pk``, in order, read page
        by page (of ``page`` items, or 1 MB) as the caller goes; each with its number as ``n``."""
        limit = {"Limit": page} if page else {}
        for item in self._query(KeyConditionExpression="pk = :p AND sk BETWEEN :a AND :b", ConsistentRead=True,
                                **limit,
                                ExpressionAttributeValues={":p": {"S": pk},
                                                           ":a": {"S": _numbered_sk(prefix, first, digits)},
                                                           ":b": {"S": _numbered_sk(prefix, last, digits)}}):
            item["n"] = int(item["sk"][len(prefix):])
            yield item

    def put_chunk(self, inst_id: str, stream: str, number: int, data: bytes | None, s3_key: str | None) -> None:
        item: dict[str, Any] = {"pk": f"inst#{inst_id}", "sk": _numbered_sk(f"in#{stream}#", number)}
        if s3_key is not None:
            item["s3_key"] = s3_key
        else:
            item["data"] = data
        self._put(item, condition=None)

    def chunks(self, inst_id: str, stream: str, first: int, last: int) -> list[dict[str, Any]]:
        """Chunks ``first``..``last`` (inclusive) of ``stream``: {"n", "data"} or {"n", "s3_key"}."""
        return [{"n": i["n"], **{k: i[k] for k in ("data", "s3_key") if k in i}}
                for i in self._numbered(f"inst#{inst_id}", f"in#{stream}#", first, last)]

    # -- events ----------------------------------------------------------------------------------
    def add_event_in(self, inst_id: str, name: str, message_json: str, quota: int) -> bool:
        """Queue an event for the instance; False when it is no longer active, or when the events
        sent to it would pass ``quota`` bytes of JSON in all."""
        result = self._update(_inst_key(inst_id), {}, adds={"evin_seq": 1, "evin_bytes": len(message_json)},
                              condition=f"{_IS_ACTIVE} AND (attribute_not_exists(#eb) OR #eb < :quota)",
                              names={"#st": "status", "#eb": "evin_bytes"}, values={**_ACTIVE_VALUES, ":quota": quota},
                              returns="UPDATED_NEW")
        if result is None:
            return False
        number = int(result["evin_seq"])
        self._put({"pk": f"inst#{inst_id}", "sk": _numbered_sk("evin#", number), "name": name, "message": message_json},
                  condition=None)
        return True

    def events_in(self, inst_id: str, first: int, last: int) -> list[dict[str, Any]]:
        return [{"n": i["n"], "name": i["name"], "message": i["message"]}
                for i in self._numbered(f"inst#{inst_id}", "evin#", first, last)]

    def put_event_out(self, inst_id: str, name: str, message_json: str, at: float) -> None:
        self._put({"pk": f"inst#{inst_id}", "sk": f"evout#{name}", "message": message_json, "at": at},
                  condition=None)

    def get_event_out(self, inst_id: str, name: str) -> dict[str, Any] | None:
        return self._get(_inst_key(inst_id, f"evout#{name}"))

    # -- topics ----------------------------------------------------------------------------------
    def get_topic(self, name: str) -> dict[str, Any] | None:
        return self._get(_topic_key(name))

    def create_topic(self, name: str, meta: dict[str, Any]) -> dict[str, Any] | None:
        """A new topic's record, as written; None when it exists (another writer made it first)."""
        item = {"pk": f"topic#{name}", "sk": META, "kind": "topic", "name": name, "lpk": "topics",
                "lsk": name, "seq": 0, "floor": 0, "version": 1, "bytes": 0, **meta}
        return item if self._put(item) else None

    def renew_topic(self, name: str, version: int, content_type: str, expires_at: int, now: float) -> dict[str, Any] | None:
        """Make a deleted or expired topic anew (any type), returning its record. Its numbering goes on
        past one more number than it had: a chunk a writer stored just as the topic went is never
        read as the new one's. None when another writer changed it first."""
        return self._update(
            _topic_key(name), {"content_type": content_type, "expires_at": expires_at, "updated": now},
            condition="#v = :v", names={"#v": "version"}, values={":v": version, ":one": 1},
            extra_set="#v = #v + :one, seq = seq + :one, floor = seq + :one", remove=("deleted",),
            returns="ALL_NEW")

    def count_topic_bytes(self, name: str, size: int) -> None:
        """What the topic holds grows (a chunk counted in) or shrinks (chunks expired) by ``size``."""
        self._update(_topic_key(name), {}, adds={"bytes": size})

    def mark_topic_deleted(self, name: str, version: int, now: float) -> bool:
        """Out of view at once, and none of its chunks read again (the floor); they expire later."""
        return self._update(_topic_key(name), {"deleted": True, "updated": now}, condition="#v = :v",
                            names={"#v": "version"}, values={":v": version, ":one": 1},
                            extra_set="#v = #v + :one, floor = seq") is not None

    def put_topic_chunk(self, name: str, chunk: dict[str, Any]) -> bool:
        """Chunk ``chunk["n"]``, if that number is free (False: another writer has it)."""
        return self._put({"pk": f"topic#{name}", "sk": _numbered_sk("d#", chunk["n"], TOPIC_CHUNK_DIGITS), **chunk})

    def advance_topic(self, name: str, number: int, expires_at: int, now: float) -> bool:
        """Count chunk ``number`` in (readers read up to the count), if the count is just below it
        and the topic was not deleted meanwhile."""
        return self._update(_topic_key(name), {"seq": number, "expires_at": expires_at, "updated": now},
                            condition="seq = :prev AND attribute_not_exists(deleted)",
                            values={":prev": number - 1}) is not None

    def topic_chunks(self, name: str, first: int, last: int, page: int | None = None) -> Iterator[dict[str, Any]]:
        """Chunks ``first``..``last`` of the topic, in order, read page by page as the caller goes."""
        return self._numbered(f"topic#{name}", "d#", first, last, TOPIC_CHUNK_DIGITS, page)

    def listed_topics(self) -> list[dict[str, Any]]:
        return sorted(self._batch_get(self._topic_keys()), key=lambda t: t["name"])

    def existing_topics(self, names: list[str]) -> set[str]:
        """Which of ``names`` still have a record (for taking back the slots of the others)."""
        return {i["name"] for i in self._batch_get([_topic_key(n) for n in names])}

    def _topic_keys(self) -> list[dict[str, Any]]:
        return [{"pk": {"S": i["pk"]}, "sk": {"S": i["sk"]}} for i in self._query(
            IndexName=LISTING_INDEX, KeyConditionExpression="lpk = :p",
            ExpressionAttributeValues={":p": {"S": "topics"}})]

    def delete_topic(self, name: str, version: int) -> bool:
        """Delete the topic's record if it is still at ``version``."""
        try:
            self._ddb.delete_item(TableName=self.table, Key=_topic_key(name), ConditionExpression="#v = :v",
                                  ExpressionAttributeNames={"#v": "version"},
                                  ExpressionAttributeValues={":v": _av(version)})
        except ClientError as exc:
            if _conditional(exc):
                return False
            raise
        return True

    def delete_topic_items(self, name: str, sks: list[str]) -> None:
        self._delete_keys([_topic_key(name, sk) for sk in sks])

    # -- removal ---------------------------------------------------------------------------------
    def delete_instance(self, inst_id: str, record: Instance | None = None) -> None:
        """Delete the instance's record, everything kept beside it (chunks, events, start data) and
        its listing items; it is no longer counted as retained. ``record``: the instance as read
        (none when DynamoDB's TTL removed the record: its listing items expire with it)."""
        keys = [{"pk": {"S": i["pk"]}, "sk": {"S": i["sk"]}} for i in self._query(
            KeyConditionExpression="pk = :p", ExpressionAttributeValues={":p": {"S": f"inst#{inst_id}"}},
            ProjectionExpression="pk, sk")]
        if record is not None:
            keys += [{"pk": {"S": i["pk"]}, "sk": {"S": i["sk"]}}
                     for i in _listing_items(record.id, record.sequence_id, record.created)]
        self._delete_keys(keys)
        self._count("instances", -1)

    def _delete_keys(self, keys: list[dict[str, Any]]) -> None:
        self._write_batch([{"DeleteRequest": {"Key": k}} for k in keys])

    def _put_items(self, items: list[dict[str, Any]]) -> None:
        """Put ``items`` (unconditionally: items of the caller's own, keyed by what it just wrote)."""
        self._write_batch([{"PutRequest": {"Item": _to_ddb(item)}} for item in items])

    def _write_batch(self, requests: list[dict[str, Any]]) -> None:
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table: requests[start:start + 25]}
            while pending:
                pending = self._ddb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
