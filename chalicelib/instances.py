"""Instances: start, inspect, read channels, control. Expiry is decided here, on every read."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from . import aws, clock, invoker, logstore, models, sequences
from .config import Settings
from .errors import BadRequest, Conflict, NotFound, TooLarge, TooMany
from .store import Store

START_TIMEOUT_SECONDS = 300  # an instance still "starting" after this never reached a runner
MAX_PAGE_BYTES = 4 * 1024 * 1024  # base64 of this fits in a 6 MB Lambda response
POLL_SECONDS = 0.1  # how often a waiting reader looks at the instance record (a cheap GetItem)


def end_fields(settings: Settings, status: str, exitcode: int, reason: str, now: float) -> dict:
    """What recording an end writes, wherever it is recorded: the state, when it expires, and
    every channel ended (so readers stop waiting)."""
    fields = {"status": status, "exitcode": exitcode, "reason": reason, "ended": now,
              "expires_at": int(now + settings.retention_seconds)}
    fields.update({f"end_{c}": True for c in logstore.CHANNELS})
    return fields


# -- reading ------------------------------------------------------------------------------------
def _settle(settings: Settings, store: Store, item: dict, now: float) -> dict:
    """Record an end the runner could not: a lost heartbeat or a runner that never started."""
    status = item["status"]
    reason = None
    if status in (models.RUNNING, models.STOPPING, models.KILLING):
        if now - item.get("heartbeat", now) > settings.lost_after_seconds:
            reason = models.REASON_LOST
    elif status == models.STARTING and now - item["created"] > START_TIMEOUT_SECONDS:
        reason = models.REASON_NEVER_STARTED
    if reason is None:
        return item
    fields = end_fields(settings, models.ERRORED, -1, reason, now)
    # Only if nothing moved meanwhile (a late claim, a new heartbeat): the runner's word wins.
    if "heartbeat" in item:
        condition, values = "#st = :was AND #hb = :hb", {":was": status, ":hb": item["heartbeat"]}
    else:
        condition, values = "#st = :was AND attribute_not_exists(#hb)", {":was": status}
    updated = store.update_instance(item["id"], fields, condition=condition, values=values,
                                    names={"#st": "status", "#hb": "heartbeat"}, return_new=True)
    return updated or store.get_instance(item["id"]) or item


def _alive(item: dict | None, now: float) -> bool:
    return item is not None and not (item.get("expires_at") and item["expires_at"] <= now)


def get_item(settings: Settings, inst_id: str) -> dict:
    if not models.valid_id(inst_id):
        raise NotFound(f"Instance {inst_id} not found")
    store = Store(settings.table)
    now = clock.now()
    item = store.get_instance(inst_id)
    if not _alive(item, now):
        raise NotFound(f"Instance {inst_id} not found")
    return _settle(settings, store, item, now)


def live_items(settings: Settings, sequence_id: str | None = None) -> list[dict]:
    store = Store(settings.table)
    now = clock.now()
    items = [i for i in store.list_instances() if _alive(i, now)
             and (sequence_id is None or i["sequence_id"] == sequence_id)]
    return [_settle(settings, store, i, now) for i in items]


def view(item: dict) -> dict:
    """The STH instance info object."""
    out: dict[str, Any] = {
        "id": item["id"], "appConfig": json.loads(item.get("app_config", "null")) or {},
        "args": json.loads(item.get("args", "[]")),
        "sequence": {"id": item["sequence_id"], "name": item.get("sequence_name")},
        "created": clock.iso(item["created"]), "started": clock.iso(item.get("started")),
        "ended": clock.iso(item.get("ended")), "status": item["status"],
    }
    if item["status"] in models.FINAL:
        out["terminated"] = {"exitcode": item.get("exitcode"), "reason": item.get("reason")}
        out["expires"] = clock.iso(item.get("expires_at"))
    return {k: v for k, v in out.items() if v is not None}


# -- starting -----------------------------------------------------------------------------------
def start(settings: Settings, seq_id: str, body: dict) -> dict:
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
    inst_id = body.get("instanceId") or str(uuid.uuid4())
    if not isinstance(inst_id, str) or not models.valid_id(inst_id):
        raise BadRequest("instanceId must be 1-64 letters, digits, '-' or '_'")
    seq = sequences.get_item(settings, seq_id)
    _check_caps(settings, seq_id)
    now = clock.now()
    item = {"id": inst_id, "sequence_id": seq_id, "sequence_name": seq.get("name"),
            "status": models.STARTING, "created": now, "args": json.dumps(args),
            "app_config": json.dumps(app_config), "runtime": seq["runtime"]}
    item.update({f"n_{c}": 0 for c in logstore.CHANNELS})
    store = Store(settings.table)
    if not store.put_instance(item):
        raise Conflict("Instance with a given ID already exists")
    try:
        invoker.invoke(settings, inst_id)
    except Exception as exc:
        store.update_instance(inst_id, end_fields(settings, models.ERRORED, -1,
                                                  f"could not start the runner: {exc}", clock.now()))
        raise
    return {"id": inst_id, "message": f"Sequence {inst_id} starting"}


def _check_caps(settings: Settings, seq_id: str) -> None:
    active = [i for i in live_items(settings) if i["status"] in models.ACTIVE]
    if len(active) >= settings.max_running:
        raise TooMany(f"too many instances running on this hub ({len(active)} of {settings.max_running}); "
                      "wait for some to end, or raise SEQHUB_MAX_RUNNING")
    mine = [i for i in active if i["sequence_id"] == seq_id]
    if len(mine) >= settings.max_running_per_sequence:
        raise TooMany(f"too many instances of sequence {seq_id} running ({len(mine)} of "
                      f"{settings.max_running_per_sequence}); wait for some to end, or raise "
                      "SEQHUB_MAX_RUNNING_PER_SEQUENCE")


# -- channels -----------------------------------------------------------------------------------
def read_channel(settings: Settings, inst_id: str, channel: str, cursor: str | None,
                 wait_seconds: float, until_end: bool = False) -> dict:
    """Bytes of ``channel`` after ``cursor``, long-polling up to ``wait_seconds`` for news.

    ``until_end`` (a plain STH ``GET`` with no cursor) waits for the end of the channel instead,
    then answers everything from the start. Returns {"data", "cursor", "ended"}.
    GetLogEvents is only called when the instance record says more has been written.
    """
    try:
        seen, token = logstore.decode_cursor(cursor)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    began = time.monotonic()
    deadline = began + wait_seconds
    stream = logstore.stream_name(inst_id, channel)
    while True:
        # A consistent GetItem is cheap; GetLogEvents (≈25/s per account) is spent only on news.
        item = get_item(settings, inst_id)
        written = int(item.get(f"n_{channel}", 0))
        ended = bool(item.get(f"end_{channel}")) or item["status"] in models.FINAL
        waiting = not ended if until_end else written <= seen and not ended
        if not waiting or time.monotonic() >= deadline:
            break
        # Look often in the first second (a reader that just started an instance), then calmly.
        time.sleep(POLL_SECONDS / 4 if time.monotonic() - began < 1 else POLL_SECONDS)
    data = b""
    if written > seen:
        data, token, count = logstore.read(settings.log_group, stream, token, MAX_PAGE_BYTES,
                                           want_events=written - seen)
        seen += count
    return {"data": data, "cursor": logstore.encode_cursor(seen, token), "ended": ended and seen >= written}


# -- control ------------------------------------------------------------------------------------
def _require_active(item: dict) -> None:
    if item["status"] not in models.ACTIVE:
        raise BadRequest("Instance not running")


def request_kill(settings: Settings, inst_id: str, require_running: bool = True) -> dict:
    item = get_item(settings, inst_id)
    if require_running:
        _require_active(item)
    store = Store(settings.table)
    if item["status"] == models.STARTING:
        # No runner has claimed it yet, and none will once it is no longer "starting".
        fields = end_fields(settings, models.COMPLETED, 137, models.REASON_KILLED, clock.now())
        done = store.update_instance(inst_id, fields, condition="#st = :s", names={"#st": "status"},
                                     values={":s": models.STARTING}, return_new=True)
        if done is not None:
            return view(done)
    updated = store.update_instance(
        inst_id, {"kill_requested": clock.now(), "status": models.KILLING},
        condition="#st IN (:a, :b, :c, :d)", names={"#st": "status"},
        values={f":{k}": v for k, v in zip("abcd", models.ACTIVE, strict=True)}, return_new=True)
    if updated is None:
        raise BadRequest("Instance not running")
    return view(updated)


def request_stop(settings: Settings, inst_id: str, timeout_ms: Any, can_keep_alive: Any) -> dict:
    if not isinstance(timeout_ms, int) or isinstance(timeout_ms, bool) or timeout_ms < 0:
        raise BadRequest("Invalid timeout format")
    if not isinstance(can_keep_alive, bool):
        raise BadRequest("Invalid canCallKeepalive format")
    item = get_item(settings, inst_id)
    if item["status"] != models.RUNNING:
        raise BadRequest("Instance not running")
    request = json.dumps({"timeout": timeout_ms, "canCallKeepalive": can_keep_alive, "at": clock.now()})
    updated = Store(settings.table).update_instance(
        inst_id, {"stop_requested": request, "status": models.STOPPING},
        condition="#st = :r", names={"#st": "status"}, values={":r": models.RUNNING}, return_new=True)
    if updated is None:
        raise BadRequest("Instance not running")
    return view(updated)


def send_event(settings: Settings, inst_id: str, body: Any) -> dict:
    """STH's encoded control message: ``[5001, {"eventName": ..., "message": ...}]``."""
    payload = body[1] if isinstance(body, list) and len(body) == 2 else body
    if not isinstance(payload, dict) or not isinstance(payload.get("eventName"), str) \
            or not payload["eventName"]:
        raise BadRequest("Invalid format, eventName missing.")
    item = get_item(settings, inst_id)
    _require_active(item)
    entry = {"name": payload["eventName"], "message": json.dumps(payload.get("message"))}
    Store(settings.table).append_to_list(inst_id, "inbox", [entry])
    return {"accepted": "OK"}


def last_event(settings: Settings, inst_id: str, name: str, wait_seconds: float,
               after: float | None = None) -> tuple[bool, Any]:
    """(found, message) of the last ``name`` event the instance emitted (only one emitted after
    ``after`` counts, when given), waiting up to ``wait_seconds`` for it."""
    deadline = time.monotonic() + wait_seconds
    while True:
        item = get_item(settings, inst_id)
        raw = item.get(f"ev:{name}")
        event = json.loads(raw) if raw is not None else None
        if event is not None and (after is None or event["at"] > after):
            return True, event["message"]
        if item["status"] in models.FINAL or time.monotonic() >= deadline:
            return False, None
        time.sleep(0.25)


def health(settings: Settings, inst_id: str) -> dict:
    item = get_item(settings, inst_id)
    if item["status"] in models.FINAL:
        raise NotFound(f"Instance {inst_id} has ended")
    result = dict(item.get("health") or {"healthy": item["status"] != models.STARTING})
    result["status"] = item["status"]
    return result


INPUT_TYPES = ("text/plain", "application/octet-stream", "application/x-ndjson", "text/x-ndjson")


def append_input(settings: Settings, inst_id: str, stream: str, body: bytes,
                 content_type: str | None, end: bool) -> bool:
    """Store one chunk of ``input`` or ``stdin`` durably and in order; True when it ended the stream."""
    if len(body) > settings.max_input_chunk_bytes:
        raise TooLarge(f"one {stream} request may carry at most {settings.max_input_chunk_bytes} bytes; "
                       "send the data in several requests")
    item = get_item(settings, inst_id)
    if item["status"] in models.FINAL:
        raise Conflict(f"Instance {inst_id} has ended; it takes no more {stream}")
    if item.get(f"{stream}_end"):
        raise Conflict(f"the {stream} of instance {inst_id} has already been ended")
    fields: dict[str, Any] = {}
    if stream == "input" and not item.get("input_type"):
        ctype = (content_type or "").split(";")[0].strip().lower()
        if not ctype:
            raise BadRequest("Content-Type must be defined")
        if ctype not in INPUT_TYPES:
            raise BadRequest(f"Content-Type must be one of {', '.join(INPUT_TYPES)}")
        fields["input_type"] = ctype
    store = Store(settings.table)
    keys = []
    if body:
        key = f"inputs/{inst_id}/{stream}/{time.time_ns()}-{uuid.uuid4().hex[:8]}"
        aws.client("s3").put_object(Bucket=settings.bucket, Key=key, Body=body)
        keys.append(key)
    if keys:
        store.append_to_list(inst_id, f"{stream}_keys", keys)
    if end:
        fields[f"{stream}_end"] = True
    if fields:
        store.update_instance(inst_id, fields)
    return end
