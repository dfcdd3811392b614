"""Sequence Hub's Chalice app: HTTP routes and the Lambda entry points. Thin by design: each route
parses the request, calls ``chalicelib``, and maps domain errors to JSON ``{"error": ...}``."""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from chalice.app import CaseInsensitiveMapping, Chalice, ConvertToMiddleware, IAMAuthorizer, Rate, Request, Response

from chalicelib import clock, config, console, hubinfo, instances, models, observability, openapi, paging, protocol, sequences, topics
from chalicelib.errors import BadRequest, HubError, NotFound, TooLarge
from chalicelib.observability import logger
from chalicelib.protocol import strictjson

app = Chalice(app_name=protocol.SERVICE)
# Every function's logs carry its Lambda context (request id, cold start), as Chalice's docs show.
app.register_middleware(ConvertToMiddleware(observability.inject_lambda_context))
_send_metrics = ConvertToMiddleware(observability.log_metrics)


@app.middleware("all")
def send_metrics(event, get_response):
    """What an invocation measured goes to CloudWatch (EMF) when it returns; not on the embedded hub."""
    if observability.metrics_enabled():
        return _send_metrics(event, get_response)
    return get_response(event)


# Every body is binary to API Gateway: it passes request bodies byte for byte (input of any content
# type), and decodes our base64 responses whatever the client's Accept says. With only some types
# binary it decodes a response only when the request's *first* Accept value is one of them, so
# curl's and Scramjet's `*/*` would get base64 text; and `chalice deploy` refuses a route whose
# content types mix binary and text ones.
app.api.binary_types = ["*/*"]

API = protocol.API_BASE
# On AWS every route is SigV4-signed and checked by API Gateway (si signs with the user's AWS
# credentials). Locally Chalice lets such requests through; the embedded hub's token covers that.
IAM = IAMAuthorizer()
PACKAGE_TYPES = list(protocol.PACKAGE_TYPES)
INPUT_TYPES = list(protocol.CONTENT_TYPES)
MAX_WAIT_SECONDS = 25.0  # API Gateway cuts requests at 29 s


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body=json.dumps(body), status_code=status,
                    headers={"Content-Type": "application/json", **(headers or {})})


def _listing(body: Any, headers: dict[str, str]) -> Response:
    """A listing page, with an ETag: a client that has it (the console, polling) gets 304 and no
    body while nothing on the page changed."""
    data = json.dumps(body)
    etag = '"' + hashlib.sha256(data.encode()).hexdigest()[:32] + '"'
    common: dict[str, str | list[str]] = {"ETag": etag, "Cache-Control": "no-cache", **headers}
    if etag in [tag.strip() for tag in (_request().headers.get("if-none-match") or "").split(",")]:
        return Response(body="", status_code=304, headers=common)
    return Response(body=data, status_code=200, headers={"Content-Type": "application/json", **common})


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


@app.middleware("http")
def local_token(event, get_response):
    """The embedded hub beyond loopback: every API request carries its token (on AWS, IAM does this)."""
    public = event.path == "/console" or event.path.startswith("/console/")  # static files, no data
    if not public:
        try:
            token = _settings().local_token
        except config.ConfigError as exc:
            return _error(500, f"hub misconfigured: {exc}")
        if token and not hmac.compare_digest(event.headers.get("authorization") or "", f"Bearer {token}"):
            return _error(403, "this hub needs its token: si config set token <the token si hub start printed>")
    return get_response(event)


@app.middleware("http")
def request_logging(event, get_response):
    if "accept" not in event.headers:
        # No Accept means any (RFC 9110); Chalice would refuse to answer it with a binary body.
        event.headers = CaseInsensitiveMapping({**dict(event.headers), "accept": "*/*"})
    ctx = event.context or {}
    logger.set_correlation_id(ctx.get("requestId"))
    params = event.uri_params or {}
    logger.append_keys(sequence_id=params.get("seq_id"), instance_id=params.get("inst_id"))
    return _json_error_shape(get_response(event))


def _json_error_shape(response: Response) -> Response:
    """Chalice answers some errors itself (415 for a content type a route does not take) as
    {"Code", "Message"}: give those our shape too, {"error": "..."}."""
    if response.status_code < 400 or not isinstance(response.body, (str, bytes, dict)):
        return response
    body = response.body
    try:
        body = json.loads(body) if isinstance(body, (str, bytes)) else body
    except ValueError:
        return response
    if isinstance(body, dict) and "error" not in body and ("Message" in body or "message" in body):
        return _error(response.status_code, str(body.get("Message") or body.get("message")))
    return response


def route(path: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``app.route`` under ``/api/v1``, mapping domain errors to JSON (Chalice would answer them
    itself, before any middleware sees them, with a body of its own shape)."""

    def register(view: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(view)
        def handler(*args: Any, **kw: Any) -> Any:
            try:
                return view(*args, **kw)
            except HubError as exc:
                return _error(exc.status, exc.message)
            except config.ConfigError as exc:
                logger.exception("misconfigured")
                observability.request_failed()
                return _error(500, f"hub misconfigured: {exc}")
            except Exception:
                logger.exception("unhandled error")
                observability.request_failed()
                return _error(500, "internal error; see the hub's logs")

        return app.route(API + path, authorizer=IAM, **kwargs)(handler)

    return register


def _request() -> Request:
    request = app.current_request
    assert request is not None  # routes run only inside a request
    return request


def _raw_body() -> bytes:
    raw = _request().raw_body
    return raw if isinstance(raw, bytes) else raw.encode()


def _settings() -> config.Settings:
    settings = config.load()
    observability.for_stage(settings.stage)  # the metrics this invocation sends are the stage's
    return settings


def _body_json(default: Any = None) -> Any:
    raw = _raw_body()
    if not raw:
        return default
    limit = _settings().max_request_bytes
    if len(raw) > limit:
        raise TooLarge(f"request body is {len(raw)} bytes; the limit is {limit} (SEQHUB_MAX_REQUEST_BYTES)")
    try:
        return strictjson.loads(raw)
    except UnicodeDecodeError:
        raise BadRequest("request body is not valid JSON: not UTF-8") from None
    except strictjson.InvalidJSON as exc:
        raise BadRequest(f"request body: {exc}") from None


def _query_params() -> Mapping[str, str]:
    return _request().query_params or {}


def _query(name: str) -> str | None:
    return _query_params().get(name)


def _finite_query(name: str, message: str) -> float | None:
    """Query parameter ``name`` as a finite number (None when absent); 400 with ``message`` else."""
    raw = _query(name)
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise BadRequest(message)
    return value


def _wait() -> float:
    wait = _finite_query("wait", f"wait must be a number of seconds (0 to {MAX_WAIT_SECONDS:.0f})")
    return 20.0 if wait is None else max(0.0, min(wait, MAX_WAIT_SECONDS))


# -- hub ----------------------------------------------------------------------------------------
@route("/version", methods=["GET"])
def version():
    return {"service": protocol.SERVICE, "apiVersion": "v1", "version": protocol.VERSION}


@route("/openapi.json", methods=["GET"])
def openapi_document():
    return openapi.build(app.routes)


# -- the hub itself, in Scramjet's shapes ---------------------------------------------------------
@route("/load-check", methods=["GET"])
def load_check():
    return hubinfo.load_check()


@route("/config", methods=["GET"])
def hub_config():
    return hubinfo.public_config(_settings())


@route("/status", methods=["GET"])
def hub_status():
    return {"cpm": {}}  # as a Scramjet hub not connected to a platform


@route("/entities", methods=["GET"])
def entities():
    """Scramjet's shape: the first page of each listing (newest first)."""
    settings = _settings()
    return {"sequences": _sequence_views(settings, sequences.list_page(settings)[0]),
            "instances": instances.list_info(settings, instances.list_page(settings))}


@route("/log", methods=["GET"])
def hub_log():
    log = hubinfo.hub_log()
    if log is None:
        raise NotFound("this hub's own log is in CloudWatch Logs, in its API function's log group")
    cursor = _query("cursor")
    if cursor and not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 20):
        raise BadRequest("cursor must be a line number")
    data, next_cursor = log.after(int(cursor or 0), _wait() if cursor is not None else 0)
    return Response(body=data, status_code=200, headers={
        "Content-Type": "application/octet-stream", "X-Next-Cursor": str(next_cursor), "X-Channel-Ended": "false"})


# -- sequences ----------------------------------------------------------------------------------
@route("/sequence", methods=["POST"], content_types=PACKAGE_TYPES)
def send_sequence():
    return sequences.create(_settings(), _raw_body())


@route("/sequence/upload", methods=["POST"])
def begin_upload():
    return sequences.begin_upload(_settings())


@route("/sequence/{seq_id}/commit", methods=["POST"])
def commit_upload(seq_id):
    return sequences.commit_upload(_settings(), seq_id)


@route("/sequences", methods=["GET"])
def list_sequences():
    """A page of sequences, newest first (?limit=, ?cursor= the X-Next-Cursor of the page before);
    each with the ids of its instances starting or running."""
    settings = _settings()
    found, cursor = sequences.list_page(settings, _query("cursor"), paging.limit(_query("limit")))
    return _listing(_sequence_views(settings, found), {"X-Next-Cursor": cursor})


def _sequence_views(settings: config.Settings, found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    live = instances.live_by_sequence(settings)  # one read, whatever the page holds
    return [sequences.view(seq, live.get(seq["id"], [])) for seq in found]


@route("/sequence/{seq_id}", methods=["GET"])
def get_sequence(seq_id):
    """The sequence, with the ids of its newest instances (a page: /sequence/{id}/instances has them all)."""
    settings = _settings()
    seq = sequences.get_item(settings, seq_id)
    return sequences.view(seq, [i.id for i in instances.list_page(settings, seq_id).items])


@route("/sequence/{seq_id}/instances", methods=["GET"])
def get_sequence_instances(seq_id):
    """A page of the sequence's instance ids, newest first (?limit=, ?cursor=)."""
    settings = _settings()
    sequences.get_item(settings, seq_id)
    page = instances.list_page(settings, seq_id, _query("cursor"), paging.limit(_query("limit")))
    return _listing([i.id for i in page.items], {"X-Next-Cursor": page.cursor})


@route("/sequence/{seq_id}", methods=["DELETE"])
def delete_sequence(seq_id):
    force = (_request().headers.get("x-seq-kill-inst") or "").lower() == "true"
    return sequences.delete(_settings(), seq_id, force)


@route("/sequence/{seq_id}/start", methods=["POST"])
def start_sequence(seq_id):
    return instances.start(_settings(), seq_id, _body_json(default={}))


# -- instances ----------------------------------------------------------------------------------
@route("/instances", methods=["GET"])
def list_instances():
    """A page of instances, newest first: ?limit= (1-200, default 100), ?cursor= (the X-Next-Cursor
    of the page before), ?sequence=, ?status=, ?live=true (only those starting or running).
    X-Retained-Count says how many the hub keeps in all."""
    settings = _settings()
    status = _query("status")
    if status is not None and status not in protocol.ACTIVE + protocol.FINAL:
        raise BadRequest(f"status must be one of {', '.join(protocol.ACTIVE + protocol.FINAL)}")
    sequence = _query("sequence")
    if sequence is not None and not models.valid_id(sequence):
        raise BadRequest("sequence must be a sequence id")
    live = (_query("live") or "false").lower()
    if live not in ("true", "false"):
        raise BadRequest("live must be true or false")
    page = instances.list_page(settings, sequence, _query("cursor"), paging.limit(_query("limit")), status,
                               live == "true")
    return _listing(instances.list_info(settings, page),
                    {"X-Next-Cursor": page.cursor, "X-Retained-Count": str(instances.retained_count(settings))})


@route("/instance/{inst_id}", methods=["GET"])
def get_instance(inst_id):
    return instances.info(_settings(), inst_id)


def _channel(inst_id: str, channel: str) -> Response:
    params = _query_params()
    plain = "cursor" not in params  # STH clients: wait for the end, answer the whole channel
    page = instances.read_channel(_settings(), inst_id, channel, params.get("cursor"),
                                  MAX_WAIT_SECONDS if plain else _wait(), until_end=plain)
    return Response(body=page["data"], status_code=200, headers={
        "Content-Type": "application/octet-stream", "X-Next-Cursor": page["cursor"],
        "X-Channel-Ended": "true" if page["ended"] else "false"})


@route("/instance/{inst_id}/output", methods=["GET"])
def instance_output(inst_id):
    return _channel(inst_id, "output")


@route("/instance/{inst_id}/stdout", methods=["GET"])
def instance_stdout(inst_id):
    return _channel(inst_id, "stdout")


@route("/instance/{inst_id}/stderr", methods=["GET"])
def instance_stderr(inst_id):
    return _channel(inst_id, "stderr")


@route("/instance/{inst_id}/log", methods=["GET"])
def instance_log(inst_id):
    return _channel(inst_id, "log")


def _append(inst_id: str, stream: str) -> Response:
    request = _request()
    end_stream = (request.headers.get("x-end-stream") or "true").lower()
    if end_stream not in ("true", "false"):
        raise BadRequest("x-end-stream must be true or false")
    end = end_stream == "true"
    ended = instances.append_input(_settings(), inst_id, stream, _raw_body(),
                                   request.headers.get("content-type"), end)
    return Response(body="", status_code=200 if ended else 202)


@route("/instance/{inst_id}/input", methods=["POST"], content_types=INPUT_TYPES)
def instance_input(inst_id):
    return _append(inst_id, "input")


@route("/instance/{inst_id}/stdin", methods=["POST"], content_types=INPUT_TYPES)
def instance_stdin(inst_id):
    return _append(inst_id, "stdin")


@route("/instance/{inst_id}/_kill", methods=["POST"])
def kill_instance(inst_id):
    body = instances.control_payload(_body_json(default={}))
    remove = isinstance(body, dict) and body.get("removeImmediately") is True
    return _json(instances.request_kill(_settings(), inst_id, remove=remove), 202)


@route("/instance/{inst_id}/_stop", methods=["POST"])
def stop_instance(inst_id):
    body = instances.control_payload(_body_json(default={})) or {}
    if not isinstance(body, dict):
        raise BadRequest("stop body must be a JSON object")
    return _json(instances.request_stop(_settings(), inst_id, body.get("timeout", 7000),
                                        body.get("canCallKeepalive", False)), 202)


@route("/instance/{inst_id}/_event", methods=["POST"])
def emit_event(inst_id):
    return instances.send_event(_settings(), inst_id, _body_json())


@route("/instance/{inst_id}/event/{name}", methods=["GET"])
def get_event(inst_id, name):
    event = instances.wait_for_event(_settings(), inst_id, name, _wait())
    if not event.found:
        return _no_event_yet(f"no event {name} from instance {inst_id} yet", event.ended)
    return _json(event.message)


@route("/instance/{inst_id}/once/{name}", methods=["GET"])
def get_next_event(inst_id, name):
    after = _time_query("after", clock.now())  # the embedded hub's bridge keeps one reference across waits
    event = instances.wait_for_event(_settings(), inst_id, name, _wait(), after=after)
    if not event.found:
        return _no_event_yet(f"no new event {name} from instance {inst_id} yet", event.ended)
    return _json(event.message)


def _no_event_yet(message: str, ended: bool) -> Response:
    # X-Instance-Ended: a client may ask again while it is "false" (Scramjet's hub waits for the event).
    return Response(body=json.dumps({"error": message}), status_code=404,
                    headers={"Content-Type": "application/json", "X-Instance-Ended": "true" if ended else "false"})


@route("/instance/{inst_id}/events/{name}", methods=["GET"])
def stream_events(inst_id, name):
    """Events named ``name`` emitted after the cursor (a time; none: now), as JSON lines, paged
    like a channel: X-Next-Cursor, and X-Channel-Ended once the instance has ended."""
    after = _time_query("cursor", clock.now())
    event = instances.wait_for_event(_settings(), inst_id, name, _wait(), after=after)
    data = (json.dumps(event.message) + "\n").encode() if event.found else b""
    return Response(body=data, status_code=200, headers={
        "Content-Type": "application/x-ndjson", "X-Next-Cursor": repr(event.at if event.found else after),
        "X-Channel-Ended": "true" if event.ended and not event.found else "false"})


def _time_query(name: str, default: float) -> float:
    """A time in seconds since the epoch; ``default`` when absent or empty."""
    message = f"{name} must be a time in seconds since the epoch"
    value = _finite_query(name, message) if _query(name) else None
    if value is not None and value < 0:
        raise BadRequest(message)
    return default if value is None else value


@route("/instance/{inst_id}/health", methods=["GET"])
def instance_health(inst_id):
    return instances.health(_settings(), inst_id)


# -- topics (Scramjet's service discovery) ---------------------------------------------------------
@route("/topics", methods=["GET"])
def list_topics():
    return _json([t.view() for t in topics.listed(_settings())])


@route("/topics", methods=["POST"])
def create_topic():
    body = _body_json(default={})
    if not isinstance(body, dict) or not body.get("id"):
        raise BadRequest("Missing body param: id")
    if not body.get("content-type"):
        raise BadRequest("Missing body param: content-type")
    topic = topics.create(_settings(), body["id"], body["content-type"])
    return {"id": topic.name, "origin": {"id": protocol.SERVICE, "type": "hub"}, "state": "active",
            "contentType": topic.content_type}


@route("/topics/{name}", methods=["DELETE"])
def delete_topic(name):
    topics.delete(_settings(), name)
    return {"message": f"Topic {name} removed"}


@route("/topic/{name}", methods=["POST"], content_types=INPUT_TYPES)
def write_topic(name):
    request = _request()
    topics.publish(_settings(), name, _raw_body(), request.headers.get("content-type"))
    return Response(body="", status_code=200)


@route("/topic/{name}", methods=["GET"])
def read_topic(name):
    """Chunks after the cursor (none: where the retained data begins), paged like a channel. A
    topic never ends: X-Channel-Ended is always false."""
    page = topics.read(_settings(), name, _query("cursor"), _wait())
    return Response(body=page["data"], status_code=200, headers={
        "Content-Type": page["content_type"], "X-Next-Cursor": page["cursor"], "X-Channel-Ended": "false"})


# -- console (static files; the page calls the API above with the user's own credentials) ----------
@app.route("/console", methods=["GET"])
def console_page():
    return _console_file("index.html")


@app.route("/console/{asset}", methods=["GET"])
def console_asset(asset):
    return _console_file(asset)


def _console_file(name: str) -> Response:
    found = console.asset(name)
    if found is None:
        return _error(404, f"no console file {name}")
    body, content_type = found
    try:
        endpoint = _settings().storage_endpoint
    except config.ConfigError:  # the page still loads; it shows the API's errors itself
        endpoint = ""
    return Response(body=body, status_code=200, headers={"Content-Type": content_type, "Cache-Control": "no-cache",
                                                         **console.security_headers(endpoint)})


# -- Lambda entry points --------------------------------------------------------------------------
@app.lambda_function(name="runner")
def runner(event, context):
    from chalicelib.runner import leftovers
    from chalicelib.runner.service import run_instance

    leftovers.adopt_orphans()  # what the instance starts stays ours to end (see leftovers)
    return {"status": run_instance(_settings(), event["instance_id"], context.get_remaining_time_in_millis)}


@app.lambda_function(name="cleanup")
def cleanup(event, context):
    """Fed by the table's stream (REMOVE records: TTL or the sweeper): delete what the instance left.
    Answers the records that failed (``batchItemFailures``): only those are retried."""
    from chalicelib import cleanup as expiry

    return expiry.handle_stream(_settings(), event, context)


@app.schedule(Rate(1, unit=Rate.MINUTES), name="sweeper")
def sweeper(event):
    """Settle lost and never-started instances, expire ended ones (reads never write)."""
    from chalicelib import sweeper as housekeeping

    return housekeeping.sweep(_settings())


@app.schedule(Rate(1, unit=Rate.MINUTES), name="wiring")
def wiring(event):
    """Keep what `chalice deploy` cannot declare as it should be (a bare deploy is whole within a minute)."""
    from chalicelib import wiring as stage_wiring

    changed = stage_wiring.converge(config.load_wiring())
    if changed:  # a first deploy, or one that reset part of it: say what was done
        logger.warning("the stage's wiring was not whole: " + "; ".join(changed))
    return {"changed": changed}
