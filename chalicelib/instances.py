"""Instances: start, inspect, read channels, control. Reads never write: ends the runner could not
record are settled by ``sweeper``; expiry is decided on every read from ``expires_at``."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

from . import aws, channels, clock, invoker, models, observability, paging, protocol, sequences
from .config import Settings
from .errors import BadRequest, Conflict, NotAllowed, NotFound, TooLarge, TooMany
from .longpoll import LongPoll
from .models import Instance
from .observability import logger
from .protocol import manifest as manifest_rules
from .repository import (
    HUB_SLOTS,
    INLINE_CHUNK_BYTES,
    INLINE_START_DATA_BYTES,
    MAX_PAGE,
    Repository,
    event_record,
    instance_record,
    sequence_slots,
)

INPUT_TYPES = protocol.CONTENT_TYPES
MAX_EVENT_NAME_CHARS = 256
LISTING_START_DATA_BUDGET = 2 * 1024 * 1024  # large args/appConfig a listing carries, in all
BUSY_SECONDS = 1.0  # a channel whose runner recorded new segments this recently is being written to
EAGER_SECONDS = 3.0  # readers of an instance this young may be waiting for its first byte


def _repo(settings: Settings) -> Repository:
    return Repository(settings.table)


def _json_size(value: Any) -> int:
    return len(json.dumps(value).encode())


# -- reading ------------------------------------------------------------------------------------
def get(settings: Settings, inst_id: str) -> Instance:
    if not models.valid_id(inst_id):
        raise NotFound(f"Instance {inst_id} not found")
    inst = _repo(settings).get_instance(inst_id)
    if inst is None or not inst.alive(clock.now()):
        raise NotFound(f"Instance {inst_id} not found")
    return inst


@dataclass(frozen=True)
class Page:
    items: list[Instance]
    cursor: str  # the next page's ("": none)


def list_page(settings: Settings, sequence_id: str | None = None, cursor: str | None = None,
              limit: int = paging.DEFAULT_PAGE, status: str | None = None, live: bool = False) -> Page:
    """A page of unexpired instances, newest first (of one sequence, in one status, or only those
    starting or running). Whatever the history, a page reads ``limit`` listing keys and their
    records (live ones: the running slots, at most the cap). A page filtered by status may hold
    fewer than ``limit``: follow its cursor for more."""
    repo = _repo(settings)
    if live:
        found, after = sorted(repo.live_instances(sequence_id), key=lambda i: -i.created), None
    else:
        found, after = repo.list_instances(sequence_id, paging.decode(cursor), limit)
    now = clock.now()
    found = [i for i in found if i.alive(now) and (status is None or i.status == status)]
    return Page(found, paging.encode(after))


def live_by_sequence(settings: Settings) -> dict[str, list[str]]:
    """{sequence id: ids of its instances starting or running} (one read of the running slots)."""
    return _repo(settings).live_by_sequence()


def retained_count(settings: Settings) -> int:
    """How many instances the hub keeps (a count kept as they come and go, never a scan)."""
    return _repo(settings).retained_count()


def listed(settings: Settings, sequence_id: str | None = None) -> list[Instance]:
    """Every unexpired instance, newest first, page after page (for tests and tools, not routes)."""
    out: list[Instance] = []
    cursor = ""
    while True:
        page = list_page(settings, sequence_id, cursor, limit=MAX_PAGE)
        out += page.items
        if not page.cursor:
            return out
        cursor = page.cursor


def view(inst: Instance, args: Any = None, app_config: Any = None) -> dict[str, Any]:
    """The STH instance info object."""
    out: dict[str, Any] = {
        "id": inst.id, "appConfig": app_config or {}, "args": args if args is not None else [],
        "sequence": {"id": inst.sequence_id, "name": inst.sequence_name},
        "created": clock.iso(inst.created), "started": clock.iso(inst.started),
        "ended": clock.iso(inst.ended), "status": inst.status, "engine": inst.engine,
    }
    if inst.provides:
        out["provides"] = inst.provides
    if inst.requires:
        out["requires"] = inst.requires
    if inst.final:
        out["terminated"] = {"exitcode": inst.exitcode, "reason": inst.reason}
        out["expires"] = clock.iso(inst.expires_at)
    return {k: v for k, v in out.items() if v is not None}


def info(settings: Settings, inst_id: str) -> dict[str, Any]:
    inst = get(settings, inst_id)
    return view(inst, *_repo(settings).start_data(inst))


def list_info(settings: Settings, page: Page) -> list[dict[str, Any]]:
    """The info of a page's instances. Start data kept in records of its own is carried up to a
    budget, so a page always fits a response; an instance past it says so instead of carrying it."""
    found = page.items
    budget, fetch, omitted = LISTING_START_DATA_BUDGET, [], set()
    for inst in found:
        if inst.args_stored or inst.config_stored:
            if inst.stored_bytes <= budget:
                budget -= inst.stored_bytes
                fetch.append(inst)
            else:
                omitted.add(inst.id)
    stored = _repo(settings).start_data_many(fetch)
    out = []
    for inst in found:
        entry = view(inst, stored.get((inst.id, "args"), inst.args), stored.get((inst.id, "config"), inst.app_config))
        if inst.id in omitted:  # absent, not empty: empty would read as "started without any"
            entry.pop("args", None)
            entry.pop("appConfig", None)
            entry["startDataOmitted"] = f"args and appConfig are too large for a listing: GET /instance/{inst.id}"
        out.append(entry)
    return out


# -- starting -----------------------------------------------------------------------------------
def start(settings: Settings, seq_id: str, body: Any) -> dict[str, Any]:
    if body is None:  # Scramjet's Python client posts `null` for a start with no options
        body = {}
    if not isinstance(body, dict):
        raise BadRequest("start body must be a JSON object")
    args = body.get("args", [])
    if args is None:
        args = []
    if not isinstance(args, list):
        raise BadRequest("Arguments must be in array")
    app_config = body.get("appConfig")
    if app_config is not None and not isinstance(app_config, dict):
        raise BadRequest("appConfig must be a JSON object")
    sizes = {"args": _json_size(args), "appConfig": _json_size(app_config)}
    for name, size in sizes.items():
        if size > settings.max_start_data_bytes:
            raise TooLarge(f"{name} is {size} bytes of JSON; the limit is {settings.max_start_data_bytes} "
                           "(SEQHUB_MAX_START_DATA_BYTES): pass large data as input instead")
    inst_id = body.get("instanceId") or str(uuid.uuid4())
    if not isinstance(inst_id, str) or not models.valid_id(inst_id):
        raise BadRequest("instanceId must be 1-64 letters, digits, '-' or '_'")
    seq = sequences.get_item(settings, seq_id)
    manifest = json.loads(seq["manifest"]) if seq.get("manifest") else {}
    provides, provides_type = _start_topic(body, manifest, "outputTopic", "provides")
    requires, requires_type = _start_topic(body, manifest, "inputTopic", "requires")
    engine = choose_engine(settings, body.get("engine"), manifest, consumer=requires is not None)
    repo = _repo(settings)
    hub_slot, seq_slot = _take_running_slots(settings, repo, seq_id, inst_id)
    args_stored = sizes["args"] > INLINE_START_DATA_BYTES
    config_stored = sizes["appConfig"] > INLINE_START_DATA_BYTES
    inst = Instance(id=inst_id, sequence_id=seq_id, sequence_name=seq.get("name"), status=protocol.STARTING,
                    created=clock.now(), runtime=seq["runtime"], engine=engine, args=args, app_config=app_config,
                    args_stored=args_stored, config_stored=config_stored,
                    stored_bytes=sizes["args"] * args_stored + sizes["appConfig"] * config_stored,
                    provides=provides, provides_type=provides_type, requires=requires, requires_type=requires_type,
                    hub_slot=hub_slot, seq_slot=seq_slot)
    created = False
    try:
        created = repo.create_instance(inst)
    finally:
        if not created:  # refused or failed: the slots go back at once
            repo.release_slot(HUB_SLOTS, hub_slot, inst_id)
            repo.release_slot(sequence_slots(seq_id), seq_slot, inst_id)
    if not created:
        raise Conflict("Instance with a given ID already exists")
    try:
        task = invoker.invoke(settings, inst_id, engine, inst.runtime)
    except Exception as exc:
        repo.end(inst_id, protocol.ERRORED, -1, f"could not start the runner: {exc}", clock.now(),
                 settings.retention_seconds)
        raise
    if task is not None:  # what a kill and the sweeper stop
        try:
            repo.set_task(inst_id, task)
        except Exception:  # it runs all the same, and ends itself on a kill; only StopTask is lost
            logger.exception("could not record the instance's task", extra={"instance_id": inst_id, "task": task})
    logger.info(f"instance {inst_id} of sequence {seq_id} starting on the {engine} engine")
    observability.instance_started()
    return {"id": inst_id, "message": f"Sequence {inst_id} starting"}


def choose_engine(settings: Settings, asked: Any, manifest: dict[str, Any], consumer: bool) -> str:
    """The engine an instance runs on: the start's ``engine``, else its package's, else fargate where
    the answer is obvious (a topic consumer, which runs until stopped; a declared run longer than the
    lambda engine's limit) and this hub has it, else lambda."""
    available = settings.engines()
    try:
        declared, run_seconds = manifest_rules.hub_options(manifest)
    except ValueError as exc:  # a package sent before these options were checked at upload
        raise BadRequest(f"package.json {exc}: send the sequence again with it fixed") from None
    where = "the start's engine"
    if asked is None:
        asked, where = declared, f'its package.json\'s "{manifest_rules.HUB_OPTIONS}.engine"'
    if asked is not None:
        if asked not in protocol.ENGINES:
            raise BadRequest(f"engine must be one of {', '.join(protocol.ENGINES)}")
        if asked not in available:
            raise BadRequest(f"{where} is {asked}, which this hub does not have (it has: {', '.join(available)}); "
                             "ops add it with `make setup` (docs/deploy.md), or start it with engine lambda")
        return str(asked)
    long_run = run_seconds is not None and run_seconds > settings.runner_timeout_seconds
    return "fargate" if (consumer or long_run) and "fargate" in available else "lambda"


def _start_topic(body: dict[str, Any], manifest: dict[str, Any], option: str, key: str) -> tuple[str | None, str | None]:
    """(topic, type) ``key`` ("provides"/"requires") from the start's ``option`` (outputTopic/inputTopic),
    else from the package's own declaration (checked at upload); the sequence may still declare it as it runs."""
    declared: tuple[str | None, str | None] = manifest_rules.topic_declaration(manifest, key) or (None, None)
    name = body.get(option)
    if name in (None, ""):
        return declared
    if not protocol.valid_topic(name):
        raise BadRequest(f"{option} must be a topic name: 1-200 letters, digits, '_', '+', '-'")
    return name, declared[1] if declared[0] == name else None


def _take_running_slots(settings: Settings, repo: Repository, seq_id: str, inst_id: str) -> tuple[int, int]:
    """A running slot on the hub and one of the sequence's (the caps hold under any burst of starts:
    each slot is an item of its own, taken by a conditional write); 429 when either cap is reached."""
    now = clock.now()
    hub_slot = repo.take_slot(HUB_SLOTS, settings.max_running, inst_id, now, repo.still_running, {"seq": seq_id})
    if hub_slot is None:
        raise TooMany(f"too many instances running on this hub ({settings.max_running}, its most); "
                      "wait for some to end, or raise SEQHUB_MAX_RUNNING")
    try:
        seq_slot = repo.take_slot(sequence_slots(seq_id), settings.max_running_per_sequence, inst_id, now,
                                  repo.still_running)
    except BaseException:
        repo.release_slot(HUB_SLOTS, hub_slot, inst_id)
        raise
    if seq_slot is None:
        repo.release_slot(HUB_SLOTS, hub_slot, inst_id)
        raise TooMany(f"too many instances of sequence {seq_id} running ({settings.max_running_per_sequence}, its "
                      "most); wait for some to end, or raise SEQHUB_MAX_RUNNING_PER_SEQUENCE")
    return hub_slot, seq_slot


# -- channels -----------------------------------------------------------------------------------
def read_channel(settings: Settings, inst_id: str, channel: str, cursor: str | None,
                 wait_seconds: float, until_end: bool = False) -> dict[str, Any]:
    """Bytes of ``channel`` after ``cursor``, long-polling up to ``wait_seconds`` for news.

    ``until_end`` (a plain STH ``GET`` with no cursor) waits for the end of the channel instead,
    then answers from the start. Returns {"data", "cursor", "ended"}; ``ended`` is true only when
    the answer reaches the channel's end. Each look is one read of the instance record; S3 is read
    only when the record says a segment was written.
    """
    try:
        segment, offset = channels.decode_cursor(cursor)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    with LongPoll(wait_seconds, watch=instance_record(settings.table, inst_id)) as poll:
        while True:
            inst = get(settings, inst_id)
            written, ended = inst.segments[channel], inst.channel_ended(channel)
            waiting = not ended if until_end else written <= segment and not ended
            if not waiting or poll.over():
                break
            # A reader with nothing read yet of an instance started a moment ago (it may have just
            # started it) looks often, whether it came with no cursor (si) or with the first page's (a
            # plain GET); one of a channel written to within the last second does not back off.
            now = clock.now()
            eager = (segment, offset) == (0, 0) and now - inst.created < EAGER_SECONDS
            poll.sleep(eager=eager, busy=inst.progress is not None and now - inst.progress < BUSY_SECONDS)
    data = b""
    if written > segment:
        data, segment, offset = channels.read(settings.bucket, inst_id, channel, segment, offset, written)
    return {"data": data, "cursor": channels.encode_cursor(segment, offset),
            "ended": ended and segment >= written}


# -- control ------------------------------------------------------------------------------------
def request_kill(settings: Settings, inst_id: str, require_running: bool = True, remove: bool = False) -> dict[str, Any]:
    """Kill the instance. With ``remove`` (Scramjet's removeImmediately) it leaves no retention
    after its end, and one that has already ended is removed from view at once."""
    inst = get(settings, inst_id)
    repo = _repo(settings)
    if remove and inst.final:
        removed = repo.expire_now(inst_id, clock.now())
        if removed is not None:
            logger.info(f"instance {inst_id}: removed")
            return view(removed, *repo.start_data(removed))
    if require_running and not inst.active:
        raise BadRequest("Instance not running")
    updated = repo.kill(inst_id, clock.now(), settings.retention_seconds, inst.status, remove)
    if updated is None:
        raise BadRequest("Instance not running")
    logger.info(f"instance {inst_id}: kill requested")
    stop_task(settings, updated, "killed (si inst kill)")
    return view(updated, *repo.start_data(updated))


def stop_task(settings: Settings, inst: Instance, reason: str) -> None:
    """Stop a fargate instance's task as well, if it has one: its runner ends the instance on ECS's
    SIGTERM, and ECS's SIGKILL ends a runner that cannot (the sweeper then records it lost). The end
    or the kill is recorded already, so a failure here is logged, never the request's."""
    if inst.task is None:
        return
    try:
        invoker.stop_task(settings, inst.task, reason)
    except Exception:
        logger.exception("could not stop the instance's task", extra={"instance_id": inst.id})


MAX_STOP_TIMEOUT_MS = 900_000  # the longest a stop handler may be given (Lambda's whole 15 minutes)


def request_stop(settings: Settings, inst_id: str, timeout_ms: Any, can_keep_alive: Any) -> dict[str, Any]:
    if type(timeout_ms) is not int or not 0 <= timeout_ms <= MAX_STOP_TIMEOUT_MS:
        raise BadRequest(f"Invalid timeout format: a whole number of milliseconds, 0 to {MAX_STOP_TIMEOUT_MS}")
    if not isinstance(can_keep_alive, bool):
        raise BadRequest("Invalid canCallKeepalive format")
    inst = get(settings, inst_id)
    # Again while stopping, as Scramjet's hub allows: one that kept itself alive is asked again.
    if inst.status not in (protocol.RUNNING, protocol.STOPPING):
        raise BadRequest("Instance not running")
    repo = _repo(settings)
    updated = repo.request_stop(inst_id, {"timeout": timeout_ms, "canCallKeepalive": can_keep_alive,
                                          "at": clock.now()})
    if updated is None:
        raise BadRequest("Instance not running")
    return view(updated, *repo.start_data(updated))


def control_payload(body: Any) -> Any:
    """The object of STH's encoded control messages (``[code, {...}]``), or ``body`` itself."""
    return body[1] if isinstance(body, list) and len(body) == 2 and isinstance(body[0], int) else body


def send_event(settings: Settings, inst_id: str, body: Any) -> dict[str, Any]:
    """An event for the instance: ``{"eventName", "message"}``, or as STH encodes it,
    ``[5001, {"eventName": ..., "message": ...}]``."""
    payload = control_payload(body)
    if not isinstance(payload, dict) or not isinstance(payload.get("eventName"), str) \
            or not payload["eventName"]:
        raise BadRequest("Invalid format, eventName missing.")
    name = payload["eventName"]
    if len(name) > MAX_EVENT_NAME_CHARS:
        raise BadRequest(f"eventName may be at most {MAX_EVENT_NAME_CHARS} characters")
    message = json.dumps(payload.get("message"))
    if len(message.encode()) > settings.max_event_bytes:
        raise TooLarge(f"the event's message is {len(message.encode())} bytes of JSON; the limit is "
                       f"{settings.max_event_bytes} (SEQHUB_MAX_EVENT_BYTES)")
    get(settings, inst_id)
    quota = settings.quotas.event_bytes
    if not _repo(settings).add_event_in(inst_id, name, message, quota):
        inst = get(settings, inst_id)
        if inst.active and inst.event_bytes >= quota:
            raise TooLarge(f"instance {inst_id} has been sent {inst.event_bytes} bytes of events, its most "
                           f"(SEQHUB_MAX_EVENTS_BYTES={quota})")
        raise BadRequest("Instance not running")
    return {"accepted": "OK"}


@dataclass(frozen=True)
class EventWait:
    found: bool
    message: Any
    at: float | None      # when the instance emitted it
    ended: bool           # the instance has ended: no event will come any more


def wait_for_event(settings: Settings, inst_id: str, name: str, wait_seconds: float,
                   after: float | None = None) -> EventWait:
    """The last ``name`` event the instance emitted (only one emitted after ``after`` counts, when
    given), waiting up to ``wait_seconds`` for it."""
    if len(name) > MAX_EVENT_NAME_CHARS:
        raise BadRequest(f"event names are at most {MAX_EVENT_NAME_CHARS} characters")
    repo = _repo(settings)
    # Woken by the event's own write where the store says (the embedded hub); the instance's end
    # is then seen at the next look, at most POLL_MAX later.
    with LongPoll(wait_seconds, watch=event_record(settings.table, inst_id, name)) as poll:
        while True:
            inst = get(settings, inst_id)
            event = repo.get_event_out(inst_id, name)
            if event is not None and (after is None or event["at"] > after):
                return EventWait(True, json.loads(event["message"]), float(event["at"]), inst.final)
            if inst.final or poll.over():
                return EventWait(False, None, None, inst.final)
            poll.sleep()


def last_event(settings: Settings, inst_id: str, name: str, wait_seconds: float,
               after: float | None = None) -> tuple[bool, Any]:
    """(found, message): see ``wait_for_event``."""
    event = wait_for_event(settings, inst_id, name, wait_seconds, after)
    return event.found, event.message


def health(settings: Settings, inst_id: str) -> dict[str, Any]:
    inst = get(settings, inst_id)
    if inst.final:
        raise NotFound(f"Instance {inst_id} has ended")
    result = dict(inst.health or {"healthy": inst.status != protocol.STARTING})
    result["status"] = inst.status
    return result


def append_input(settings: Settings, inst_id: str, stream: str, body: bytes,
                 content_type: str | None, end: bool) -> bool:
    """Store one chunk of ``input`` or ``stdin`` durably and in order; True when it ended the stream.

    Two requests whatever came before: number the chunk on the instance record (conditionally: it
    exists and runs, the stream is open, the content type is known), then store the chunk as an item
    of its own (or in S3 when large).
    """
    if len(body) > settings.max_input_chunk_bytes:
        raise TooLarge(f"one {stream} request may carry at most {settings.max_input_chunk_bytes} bytes; "
                       "send the data in several requests")
    ctype = (content_type or "").split(";")[0].strip().lower() or None
    if stream == "input" and ctype is not None and ctype not in INPUT_TYPES:
        raise BadRequest(f"Content-Type must be one of {', '.join(INPUT_TYPES)}")
    if not models.valid_id(inst_id):
        raise NotFound(f"Instance {inst_id} not found")
    repo = _repo(settings)
    quotas = settings.quotas
    number = repo.reserve_chunk(inst_id, stream, ctype if stream == "input" else None, len(body), end,
                                quotas.input_bytes, quotas.unread_input_bytes)
    if number is None:  # refused: read the record to say why (404 when it is gone or expired)
        inst = get(settings, inst_id)
        if stream == "input" and inst.requires:
            raise NotAllowed(f"Input provided in other way: instance {inst_id} reads topic {inst.requires}")
        if inst.final:
            raise Conflict(f"Instance {inst_id} has ended; it takes no more {stream}")
        if stream in inst.chunks_end:
            raise Conflict(f"the {stream} of instance {inst_id} has already been ended")
        if body and inst.input_bytes >= quotas.input_bytes:
            raise TooLarge(f"instance {inst_id} has taken {inst.input_bytes} bytes of input and stdin, its most "
                           f"(SEQHUB_MAX_INPUT_BYTES={quotas.input_bytes})")
        limit = inst.input_limit if inst.input_limit is not None else quotas.unread_input_bytes
        if body and inst.input_bytes >= limit:
            raise TooMany(f"instance {inst_id} has not read the last {inst.input_bytes - limit + quotas.unread_input_bytes}"
                          f" bytes it was sent (its most is {quotas.unread_input_bytes}, SEQHUB_MAX_UNREAD_INPUT_BYTES); "
                          "send more once it reads")
        raise BadRequest("Content-Type must be defined")
    if body:
        s3_key = None
        if len(body) > INLINE_CHUNK_BYTES:
            s3_key = f"inputs/{inst_id}/{stream}/{number:010d}"
            aws.client("s3").put_object(Bucket=settings.bucket, Key=s3_key, Body=body)
        repo.put_chunk(inst_id, stream, number, None if s3_key else body, s3_key)
    return end
