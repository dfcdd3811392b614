"""Topics: named, typed streams that sequences and clients write to and read from (Scramjet's
service discovery), kept in the table and the bucket, never in a process.

A topic is a record (content type, chunk count, version) and numbered chunks beside it. A write
stores chunk count+1 only if that number is free, then counts it in (any writer counts in a chunk it
finds stored, so a writer that died between the two steps never stalls the topic). Readers read up
to the count: chunks are numbered without gaps, in the order writes landed, and a producer that
writes one chunk after another keeps its order. No transactions: one request never depends on the
size of the table, in DynamoDB or in the embedded hub's moto. Readers hold a cursor (the next chunk number) and
each read every chunk: a topic is a retained log, not a queue. Chunks expire ``retention`` after they
were written (DynamoDB TTL on AWS, the sweeper sooner); the record outlives its chunks, so numbers
never restart while a chunk is readable.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import aws, clock, protocol
from .config import Settings
from .errors import BadRequest, Busy, NotFound, TooLarge, TooMany, UnsupportedType
from .longpoll import LongPoll
from .protocol import CONTENT_TYPES
from .repository import INLINE_CHUNK_BYTES, TOPIC_SLOTS, Repository, topic_record

DEFAULT_TYPE = "application/x-ndjson"  # what Scramjet's CLI sends when no type is given
S3_PREFIX = "topics/"  # large chunks (the bucket's lifecycle rule for it is the backstop)
MAX_PAGE_BYTES = protocol.MAX_PAGE_BYTES
WRITE_ATTEMPTS = 30  # a write lost to a concurrent one is retried this often, then answers 503
EXPIRY_PAGE = 25  # chunks read at a time by expiry, which stops at the first live one


@dataclass(frozen=True)
class Topic:
    name: str
    content_type: str
    seq: int  # chunks numbered so far (the last chunk's number)
    floor: int  # chunks up to this number are not part of the topic (written before a delete)
    version: int
    expires_at: int
    deleted: bool
    bytes: int = 0  # what its unexpired chunks hold (the quota counts it)
    slot: int | None = None  # the one of the hub's topic slots it holds (the cap on topics)

    def live(self, now: float) -> bool:
        return not self.deleted and self.expires_at > now

    def view(self) -> dict[str, Any]:
        """Scramjet's shape of a topic in ``GET /topics``."""
        return {"contentType": self.content_type, "localProvider": "", "topic": self.name, "topicName": self.name}


def _topic_or_none(item: dict[str, Any] | None) -> Topic | None:
    return None if item is None else _topic(item)


def _topic(item: dict[str, Any]) -> Topic:
    return Topic(name=item["name"], content_type=item["content_type"], seq=int(item["seq"]),
                 floor=int(item["floor"]), version=int(item["version"]), expires_at=int(item["expires_at"]),
                 deleted=bool(item.get("deleted")), bytes=max(0, int(item.get("bytes", 0))),
                 slot=int(item["slot"]) if "slot" in item else None)


def check_name(name: Any) -> str:
    if not protocol.valid_topic(name):
        raise BadRequest("Topic id incorrect format: 1-200 letters, digits, '_', '+', '-'")
    return name


def check_type(content_type: Any) -> str:
    value = (content_type or "").split(";", 1)[0].strip().lower() if isinstance(content_type, str) else ""
    if value not in CONTENT_TYPES:
        raise BadRequest(f"Unsupported content-type {content_type!r}: one of {', '.join(CONTENT_TYPES)}")
    return value


def _repo(settings: Settings) -> Repository:
    return Repository(settings.table)


def get(settings: Settings, name: str) -> Topic | None:
    """The topic, if it exists now (unexpired, not deleted)."""
    topic = _topic_or_none(_repo(settings).get_topic(check_name(name)))
    return topic if topic is not None and topic.live(clock.now()) else None


def listed(settings: Settings) -> list[Topic]:
    now = clock.now()
    return [t for t in map(_topic, _repo(settings).listed_topics()) if t.live(now)]


# -- writing ------------------------------------------------------------------------------------
def create(settings: Settings, name: str, content_type: str) -> Topic:
    """``POST /topics``: a new, empty topic; 400 when it exists (as Scramjet's hub answers)."""
    return _write(settings, check_name(name), check_type(content_type), b"", must_be_new=True)


def publish(settings: Settings, name: str, data: bytes, content_type: str | None) -> Topic:
    """Append ``data`` to the topic, creating it (typed ``content_type``) on the first write.

    415 when the topic has another type; nothing is stored for a refused write."""
    check_name(name)
    ctype = check_type(content_type)
    if len(data) > settings.max_input_chunk_bytes:
        raise TooLarge(f"one topic write may carry at most {settings.max_input_chunk_bytes} bytes; "
                       "send more in several requests (si topic send does)")
    return _write(settings, name, ctype, data)


def _write(settings: Settings, name: str, ctype: str, data: bytes, must_be_new: bool = False) -> Topic:
    repo = _repo(settings)
    s3_key = None
    if len(data) > INLINE_CHUNK_BYTES:
        s3_key = f"{S3_PREFIX}{uuid.uuid4()}"
        aws.client("s3").put_object(Bucket=settings.bucket, Key=s3_key, Body=data)
    try:
        for attempt in range(WRITE_ATTEMPTS):
            now = clock.now()
            expires_at = math.ceil(now) + settings.retention_seconds  # TTL takes whole seconds: never sooner
            topic = _topic_or_none(repo.get_topic(name))
            if topic is None:
                made = _make(settings, repo, name, {"content_type": ctype, "expires_at": expires_at, "updated": now})
                if made is None:
                    continue  # another writer made it first: look again
                topic = made
            elif not topic.live(now):
                renewed = repo.renew_topic(name, topic.version, ctype, expires_at, now)
                if renewed is None:
                    continue  # another writer changed it first: look again
                topic = _topic(renewed)
            elif must_be_new:
                raise BadRequest("Topic with given id already exist")
            elif topic.content_type != ctype:
                raise UnsupportedType(f"Acceptable Content-Type for {name} is {topic.content_type}")
            if not data:
                return topic
            quota = settings.quotas.topic_bytes
            if topic.bytes + len(data) > quota:  # writers at once may pass it by a request each
                raise TooMany(f"topic {name} holds {topic.bytes} bytes, its most is {quota} (SEQHUB_MAX_TOPIC_BYTES); "
                              "its data expires after the retention, or remove it (si topic rm)")
            number = topic.seq + 1
            chunk = {"n": number, "size": len(data), "expires_at": expires_at, "at": now,
                     **({"s3_key": s3_key} if s3_key else {"data": data})}
            stored = repo.put_topic_chunk(name, chunk)
            # Count the chunk in, ours or the one that took the number (its writer may be slow, or
            # gone): so the count only ever covers stored chunks, and never stalls.
            repo.advance_topic(name, number, expires_at, now)
            if stored:
                repo.count_topic_bytes(name, len(data))
                return topic
            time.sleep(random.uniform(0, min(0.05, 0.002 * 2 ** attempt)))
        raise Busy(f"topic {name} is too busy right now; try again")
    except BaseException:
        if s3_key:  # refused or failed: nothing of it stays
            aws.client("s3").delete_object(Bucket=settings.bucket, Key=s3_key)
        raise


def _make(settings: Settings, repo: Repository, name: str, meta: dict[str, Any]) -> Topic | None:
    """A new topic's record, holding one of the hub's topic slots (the cap holds under any burst of
    writers); None when another writer made it first. 429 when the hub holds its most topics."""
    slot = repo.take_slot(TOPIC_SLOTS, settings.max_topics, name, meta["updated"], repo.existing_topics)
    if slot is None:
        raise TooMany(f"this hub holds {settings.max_topics} topics, its most (SEQHUB_MAX_TOPICS); "
                      "remove some (si topic rm) or let them expire")
    made = None
    try:
        made = repo.create_topic(name, {**meta, "slot": slot})
    finally:
        if made is None:
            repo.release_slot(TOPIC_SLOTS, slot, name)
    return _topic(made) if made is not None else None


def delete(settings: Settings, name: str) -> None:
    """Remove the topic from view at once; its chunks go with the sweeper (or their TTL)."""
    repo = _repo(settings)
    for _ in range(WRITE_ATTEMPTS):
        now = clock.now()
        topic = _topic_or_none(repo.get_topic(check_name(name)))
        if topic is None or not topic.live(now):
            raise NotFound(f"Topic {name} not found")
        if repo.mark_topic_deleted(name, topic.version, now):
            return
    raise Busy(f"topic {name} is too busy right now; try again")


# -- reading ------------------------------------------------------------------------------------
def decode_cursor(cursor: str | None) -> int | None:
    """The next chunk number to read; None (no cursor) is where the retained data begins."""
    if not cursor:
        return None
    if not (cursor.isascii() and cursor.isdigit()) or len(cursor) > 12:
        raise BadRequest("invalid cursor: pass back the X-Next-Cursor of the previous page")
    return int(cursor)


def read(settings: Settings, name: str, cursor: str | None, wait_seconds: float,
         max_bytes: int = MAX_PAGE_BYTES) -> dict[str, Any]:
    """Chunks after ``cursor``, long-polling up to ``wait_seconds`` for some. Returns {"data",
    "cursor", "content_type"}; an unknown topic is waited on like an empty one (a consumer may
    start before its producer). Each look is one read of the topic's record."""
    check_name(name)
    wanted = decode_cursor(cursor)
    repo = _repo(settings)
    # Woken by the write counting a new chunk in, where the store says (the embedded hub).
    with LongPoll(wait_seconds, watch=topic_record(settings.table, name)) as poll:
        while True:
            topic = _topic_or_none(repo.get_topic(name))
            now = clock.now()
            if topic is not None and topic.live(now):
                first = topic.floor + 1 if wanted is None or wanted <= topic.floor or wanted > topic.seq + 1 else wanted
                if topic.seq >= first:
                    data, after = _page(settings, repo, topic, first, now, max_bytes)
                    if data or poll.over():
                        return {"data": data, "cursor": str(after), "content_type": topic.content_type}
                    wanted = after  # only expired chunks: look again from past them
            if poll.over():
                next_cursor = "" if wanted is None else str(wanted)
                return {"data": b"", "cursor": next_cursor,
                        "content_type": topic.content_type if topic is not None else DEFAULT_TYPE}
            poll.sleep()


def _page(settings: Settings, repo: Repository, topic: Topic, first: int, now: float,
          max_bytes: int) -> tuple[bytes, int]:
    """Bytes of the unexpired chunks from ``first`` on, up to ``max_bytes`` (at least one chunk),
    and the number of the first chunk not included."""
    out = bytearray()
    after = first
    for chunk in repo.topic_chunks(topic.name, first, topic.seq):
        if out and len(out) + int(chunk["size"]) > max_bytes:
            break
        after = chunk["n"] + 1
        if int(chunk["expires_at"]) <= now:
            continue
        out += _chunk_bytes(settings, chunk)
    else:
        after = topic.seq + 1  # chunks missing at the end had expired and were deleted
    return bytes(out), after


def _chunk_bytes(settings: Settings, chunk: dict[str, Any]) -> bytes:
    if "s3_key" in chunk:
        data: bytes = aws.client("s3").get_object(Bucket=settings.bucket, Key=chunk["s3_key"])["Body"].read()
        return data
    return bytes(chunk["data"])


# -- expiry ---------------------------------------------------------------------------------------
def _dead_chunks(repo: Repository, topic: Topic, now: float) -> list[dict[str, Any]]:
    """The topic's chunks past their time or below its floor. Chunks expire in the order they were
    written, so the dead ones are the oldest: the read stops at the first live chunk and costs what
    expired, not what the topic holds."""
    dead = []
    for chunk in repo.topic_chunks(topic.name, 1, topic.seq, page=EXPIRY_PAGE):
        if chunk["n"] > topic.floor and int(chunk["expires_at"]) > now:
            break
        dead.append(chunk)
    return dead


def expire(settings: Settings, budget_seconds: float) -> list[str]:
    """What DynamoDB's TTL and the bucket's lifecycle rule do on AWS, sooner: delete chunks past
    their time or below a delete's floor, and the records of topics with nothing left. Returns the
    names of topics whose record went."""
    repo = _repo(settings)
    s3: Any = aws.client("s3")
    stop_at = time.monotonic() + budget_seconds
    gone = []
    for topic in map(_topic, repo.listed_topics()):
        if time.monotonic() > stop_at:
            break
        now = clock.now()
        dead = _dead_chunks(repo, topic, now)
        keys = [c["s3_key"] for c in dead if "s3_key" in c]
        for start in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=settings.bucket,
                              Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]], "Quiet": True})
        repo.delete_topic_items(topic.name, [c["sk"] for c in dead])
        freed = sum(int(c["size"]) for c in dead)  # each was counted in by the writer that stored it
        if freed:
            repo.count_topic_bytes(topic.name, -freed)
        left = next(iter(repo.topic_chunks(topic.name, 1, topic.seq, page=1)), None)
        # Only if no writer brought it back meanwhile (the record's version is unchanged).
        if not topic.live(now) and left is None and repo.delete_topic(topic.name, topic.version):
            if topic.slot is not None:
                repo.release_slot(TOPIC_SLOTS, topic.slot, topic.name)
            gone.append(topic.name)
    return gone
