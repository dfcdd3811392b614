"""The embedded hub's HTTP server: uvicorn in front of Chalice's own local API Gateway.

uvicorn speaks HTTP/1.1 as clients expect of a real server (keep-alive, chunked bodies both ways,
``Expect: 100-continue``, many connections at once); Chalice's ``LocalGateway`` turns each request
into the event API Gateway would send, so the Chalice app stays the one source of routes. What this
bridge adds is what a self-hosted Scramjet hub does and API Gateway cannot:

- a plain GET of a channel, of the hub's log, of an event stream or of a topic (no ``cursor``)
  streams live until it ends (a topic never does), page after page; a plain GET of an event waits
  until the event comes;
- an input, stdin or topic body is forwarded as it arrives (Scramjet's CLI pipes a file or a terminal as one
  chunked request), in pieces the route takes; the stream ends only when the whole body was read;
- only its user gets answers (``guard``: the Host, Origin and fetch-metadata checks, CORS only for
  allowed origins), and JSON 404/405 for routes and methods the app does not have.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import tempfile
import threading
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import parse_qs

import h11
from chalice.app import Chalice, Response
from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException, RouteMatcher
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..protocol import API_BASE as API
from .guard import Guard

# Paged with X-Next-Cursor / X-Channel-Ended: a plain GET (no cursor) streams them live.
_STREAMS = re.compile(rf"{API}/(instance/[^/]+/(output|stdout|stderr|log|events/[^/]+)|log|topic/[^/]+)")
# 404 with X-Instance-Ended: false means "not yet": a plain GET (no wait) waits, as Scramjet's hub does.
_WAITS = re.compile(rf"{API}/instance/[^/]+/(event|once)/[^/]+")
_INPUT = re.compile(rf"{API}/(instance/[^/]+/(input|stdin)|topic/[^/]+)")
# Every answer: a browser must never run a channel's bytes as a script or a page (nosniff).
_ALWAYS = [(b"x-content-type-options", b"nosniff")]
_ALLOW = [(b"allow", b"DELETE, POST, GET, PUT, OPTIONS")]
_PACKAGE = f"{API}/sequence"
_STREAM_WAIT = 20        # seconds one page of a live channel may wait for data
_MAX_CALLS = 1024         # requests the app handles at once (threads are made as needed)
_COALESCE_SECONDS = 0.01  # input: how long to wait for more of a body before forwarding what came
_SPOOL_BYTES = 1024 * 1024  # a package body beyond this waits in a temporary file, not in memory
_UPLOADS_AT_ONCE = 4      # package bodies received at once (each may be hundreds of MiB on disk)
_MAX_BUFFERED = 128 * 1024 * 1024  # request bytes all requests together may hold in memory

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# Chalice base64-encodes a binary body into the answer Lambda gives API Gateway, which decodes it.
# In the gateway's own calls both halves are in this process, for the same bytes: ~5 ms of CPU per
# MB read (a third of the hub's work while a million-item instance is followed). Those calls mark
# their thread and take the body as it was; every other caller of Chalice gets base64 as before.
_calling = threading.local()


def _keep_raw_bodies() -> None:
    original = Response._base64encode
    if getattr(original, "keeps_raw", False):
        return

    def _base64encode(self: Response, data: bytes) -> Any:
        if getattr(_calling, "raw", False) and isinstance(data, bytes):
            return data
        return original(self, data)

    _base64encode.keeps_raw = True  # type: ignore[attr-defined]
    Response._base64encode = _base64encode  # type: ignore[method-assign]


class _Disconnected(Exception):
    """The client went away before its request body ended (``pending``: what it had sent)."""

    def __init__(self, pending: bytes = b"") -> None:
        super().__init__("client disconnected")
        self.pending = pending


class _Refused(Exception):
    """A request body the hub will not take: answered ``status`` with ``message``, then cut."""

    def __init__(self, status: int, message: str, pending: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.pending = pending


@dataclass(frozen=True)
class BodyLimits:
    """What one request may send: JSON and other small bodies (held in memory), one input piece,
    a package (received into a temporary file beyond ``direct``), and an input request in all."""

    body: int
    input_piece: int
    package: int
    direct_package: int
    input_request: int
    idle_seconds: float = 30.0  # a body that sends nothing for this long is cut off (408)


class Bridge:
    """An ASGI application: each request to the Chalice app through ``LocalGateway``."""

    def __init__(self, app: Chalice, config: Config, limits: BodyLimits, guard: Guard | None = None) -> None:
        self._gateway = LocalGateway(app, config)
        _keep_raw_bodies()
        self._guard = guard or Guard()
        self._routes = RouteMatcher(list(app.routes))
        self._app = app
        self._limits = limits
        self._max_chunk = limits.input_piece
        self._buffered = 0  # request bytes held in memory now (the event loop's thread alone changes it)
        self._uploads = asyncio.Semaphore(_UPLOADS_AT_ONCE)
        # Routes block (long polls wait up to 25 s): each call needs a thread of its own. asyncio's
        # default pool has min(32, cores + 4) threads, so a few followers would stall everyone else.
        self._pool = ThreadPoolExecutor(max_workers=_MAX_CALLS, thread_name_prefix="hub-request")

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        method = scope["method"]
        path = scope["raw_path"].decode("latin-1")
        query = scope.get("query_string", b"").decode("latin-1")
        target = path + (f"?{query}" if query else "")
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            key = name.decode("latin-1").lower()
            headers[key] = f"{headers[key]}, {value.decode('latin-1')}" if key in headers else value.decode("latin-1")
        refused = self._guard.refusal(method, path, headers)
        if refused is not None:
            await _json(send, 403, {"error": refused})
            return
        origin = headers.get("origin")
        cors = self._guard.cors(origin)
        if method == "OPTIONS":
            grant = self._guard.preflight(origin)
            if origin is not None and grant is None:
                await _json(send, 403, {"error": f"no CORS grant for {origin[:100]} (si hub start --allow-origin)"})
            else:
                await _respond(send, 200, [*_ALLOW, *(grant or [])], b"")
            return
        is_input, is_package = method == "POST" and _INPUT.fullmatch(path), method == "POST" and path == _PACKAGE
        limit = self._limits.input_request if is_input else self._limits.package if is_package else self._limits.body
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            # Refused before a byte of it is read (and before any 100 Continue is sent).
            await _json(send, 413, {"error": f"request body of {declared} bytes is over this route's limit of {limit}"},
                        [*cors, (b"connection", b"close")])
            return
        try:
            if is_input:
                await self._forward_input(target, headers, receive, send, cors)
                return
            if is_package:
                await self._receive_package(target, headers, receive, send, cors)
                return
            body = await self._read_body(receive, limit)
        except _Disconnected:
            return
        except _Refused as cut:
            await _json(send, cut.status, {"error": cut.message}, [*cors, (b"connection", b"close")])
            return
        params = parse_qs(query, keep_blank_values=True)
        if method == "GET" and _STREAMS.fullmatch(path) and "cursor" not in params:
            await self._until_disconnect(receive, self._stream(path, headers, send, cors))
            return
        if method == "GET" and _WAITS.fullmatch(path) and "wait" not in params:
            await self._until_disconnect(receive, self._wait_for_event(path, headers, send, cors))
            return
        status, out_headers, out_body = await self._in_thread(method, target, headers, body)
        await _respond(send, status, out_headers, out_body, cors)

    # -- the gateway -----------------------------------------------------------------------------
    async def _in_thread(self, method: str, target: str, headers: dict[str, str],
                         body: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, method, target, headers, body)

    def _call(self, method: str, target: str, headers: dict[str, str],
              body: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        _calling.raw = True
        try:
            response = self._gateway.handle_request(method=method, path=target, headers=dict(headers), body=body)
        except LocalGatewayException as exc:
            if exc.CODE != 403:  # an authorizer's own answer: keep it
                return exc.CODE, _pairs(exc.headers), exc.body or b""
            return self._no_route(method, target.split("?", 1)[0])
        finally:
            _calling.raw = False
        out = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            out[name] = ", ".join(values)
        data = response.get("body") or b""
        if response.get("isBase64Encoded") and not isinstance(data, bytes):
            data = base64.b64decode(data)
        elif isinstance(data, str):
            data = data.encode()
        return response["statusCode"], _pairs(out), data

    def _no_route(self, method: str, path: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        try:
            route = self._routes.match_route(path).route
        except ValueError:
            return 404, [(b"content-type", b"application/json")], json.dumps(
                {"error": f"no such endpoint: {method} {path}"}).encode()
        allowed = ", ".join(sorted(self._app.routes[route]))
        return 405, [(b"content-type", b"application/json"), (b"allow", allowed.encode())], json.dumps(
            {"error": f"method {method} is not allowed on {path} (allowed: {allowed})"}).encode()

    # -- bodies ----------------------------------------------------------------------------------
    async def _next(self, receive: Receive, pending: bytes = b"", wait: float | None = None) -> dict[str, Any]:
        """The client's next body message, within ``wait`` seconds (TimeoutError past it)."""
        message = await asyncio.wait_for(receive(), self._limits.idle_seconds if wait is None else wait)
        if message["type"] == "http.disconnect":
            raise _Disconnected(pending)
        return message

    async def _body_message(self, receive: Receive, pending: bytes = b"") -> dict[str, Any]:
        try:
            return await self._next(receive, pending)
        except TimeoutError:
            raise _Refused(408, f"the request body sent nothing for {self._limits.idle_seconds:g} s", pending) from None

    async def _read_body(self, receive: Receive, limit: int) -> bytes:
        """The whole request body, held in memory (``limit`` is small), within the hub's budget."""
        parts: list[bytes] = []
        size = 0
        try:
            while True:
                message = await self._body_message(receive)
                chunk = message.get("body", b"")
                size += len(chunk)
                self._buffered += len(chunk)
                if size > limit:
                    raise _Refused(413, f"request body over {limit} bytes")
                if self._buffered > _MAX_BUFFERED:
                    raise _Refused(503, "the hub holds too many request bodies at once; try again")
                parts.append(chunk)
                if not message.get("more_body", False):
                    return b"".join(parts)
        finally:
            self._buffered -= size

    async def _receive_package(self, target: str, headers: dict[str, str], receive: Receive, send: Send,
                               cors: list[tuple[bytes, bytes]]) -> None:
        """``POST /sequence``: a small package goes to the route as it is; a large one (Scramjet's
        CLI posts any size) is received into a temporary file and stored the way ``si seq send``
        stores one, through a presigned upload and its commit, so no package is held in memory."""
        async with self._uploads:
            with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
                size = 0
                while True:
                    message = await self._body_message(receive)
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self._limits.package:
                        raise _Refused(413, f"package over {self._limits.package} bytes (SEQHUB_MAX_UPLOAD_BYTES)")
                    spool.write(chunk)
                    if not message.get("more_body", False):
                        break
                spool.seek(0)
                if size <= self._limits.direct_package:
                    answer = await self._in_thread("POST", target, headers, spool.read())
                else:
                    answer = await asyncio.get_running_loop().run_in_executor(
                        self._pool, self._store_large_package, headers, spool, size)
        await _respond(send, *answer, cors)

    def _store_large_package(self, headers: dict[str, str], spool: IO[bytes],
                             size: int) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        asked = {k: v for k, v in headers.items() if k in ("host", "authorization")}
        asked["content-type"] = "application/json"
        status, out, body = self._call("POST", f"{_PACKAGE}/upload", asked, b"")
        if status != 200:
            return status, out, body
        upload = json.loads(body)
        # A content type of its own: urllib's default (a form) has werkzeug, under moto, parse the body.
        put = urllib.request.Request(upload["url"], data=spool, method="PUT",
                                     headers={"Content-Length": str(size), "Content-Type": "application/gzip"})
        with urllib.request.urlopen(put, timeout=300) as stored:
            stored.read()
        return self._call("POST", f"{_PACKAGE}/{upload['id']}/commit", asked, b"")

    async def _forward_input(self, target: str, headers: dict[str, str], receive: Receive, send: Send,
                             cors: list[tuple[bytes, bytes]]) -> None:
        """Forward an input/stdin body to the route as it arrives, in pieces it takes.

        Every piece but the last keeps the stream open; the last carries the client's own
        ``x-end-stream`` (default true). A client that goes away mid-body never ends the stream."""
        end_stream = headers.get("x-end-stream") or "true"
        pending = b""
        more = True
        last: tuple[int, list[tuple[bytes, bytes]], bytes] | None = None
        while more:
            try:
                pending, more = await self._gather(receive, pending)
            except (_Disconnected, _Refused) as cut:
                # What arrived is kept; the stream stays open (the client may send the rest).
                if cut.pending:
                    await self._in_thread("POST", target, {**headers, "x-end-stream": "false"},
                                            cut.pending)
                if isinstance(cut, _Refused):
                    raise
                return
            while len(pending) > self._max_chunk or (pending and more):
                piece, pending = pending[:self._max_chunk], pending[self._max_chunk:]
                last = await self._in_thread("POST", target, {**headers, "x-end-stream": "false"}, piece)
                if last[0] >= 300:
                    await _respond(send, *last, cors)
                    return
        last = await self._in_thread("POST", target, {**headers, "x-end-stream": end_stream}, pending)
        await _respond(send, *last, cors)

    async def _gather(self, receive: Receive, pending: bytes) -> tuple[bytes, bool]:
        """Add what the client sends next (waiting a moment for more of it) to ``pending``."""
        message = await self._body_message(receive, pending)
        while True:
            pending += message.get("body", b"")
            if not message.get("more_body", False):
                return pending, False
            if len(pending) >= self._max_chunk:
                return pending, True
            try:
                message = await self._next(receive, pending, _COALESCE_SECONDS)
            except TimeoutError:
                return pending, True

    # -- answers that wait or stream ------------------------------------------------------------
    @staticmethod
    async def _until_disconnect(receive: Receive, answer: Awaitable[None]) -> None:
        """Run ``answer``; stop it when the client goes away (no reader left behind on the hub)."""
        async def disconnected() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        tasks = [asyncio.ensure_future(answer), asyncio.ensure_future(disconnected())]
        done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in done:
            task.result()

    async def _stream(self, path: str, headers: dict[str, str], send: Send, cors: list[tuple[bytes, bytes]]) -> None:
        """A plain GET of a channel, the hub's log or an event stream, as on Scramjet's hub: the
        bytes as they come, page after page, until it ends."""
        cursor = ""
        started = False
        while True:
            # The first page does not wait: the client has its answer's status and headers at once.
            wait = _STREAM_WAIT if started else 0
            status, out_headers, data = await self._in_thread("GET", f"{path}?cursor={cursor}&wait={wait}", headers, None)
            if status != 200:
                if not started:
                    await _respond(send, status, out_headers, data, cors)
                    return
                # Mid-stream: cut the connection, so the client sees a broken stream, not an end.
                raise RuntimeError(f"reading {path} failed mid-stream: {status}")
            values = dict(out_headers)
            if not started:
                content_type = values.get(b"content-type", b"application/octet-stream")
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", content_type), *_ALWAYS, *cors]})
                started = True
            cursor = values.get(b"x-next-cursor", cursor.encode()).decode()
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            if values.get(b"x-channel-ended") == b"true":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return

    async def _wait_for_event(self, path: str, headers: dict[str, str], send: Send,
                              cors: list[tuple[bytes, bytes]]) -> None:
        """``/event/{name}`` or ``/once/{name}`` with no ``wait``: until the event comes or the
        instance ends (``/once`` keeps the time of this request as its reference)."""
        after = f"&after={time.time()!r}" if "/once/" in path else ""
        while True:
            status, out_headers, data = await self._in_thread(
                "GET", f"{path}?wait={_STREAM_WAIT}{after}", headers, None)
            if status != 404 or dict(out_headers).get(b"x-instance-ended") != b"false":
                await _respond(send, status, out_headers, data, cors)
                return


class HubH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with the bounds a hub on a shared machine needs.

    - A connection gets ``header_seconds`` to send a request's headers (uvicorn itself waits for
      ever: idle half-open connections would pile up to the file limit and hang the hub).
    - At most ``max_connections`` at once: beyond it the longest-idle connection (no request in
      progress) is closed to make room, so a flood of idle sockets never locks out a real request.
    - Its answer to a request it cannot parse is JSON like every other error of the hub's.
    """

    max_connections = 512
    header_seconds = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._idle_since = self.loop.time()
        self._header_timer: asyncio.TimerHandle | None = None
        self._arm_header_timer()
        if len(self.connections) > self.max_connections:
            idle = [c for c in self.connections if isinstance(c, HubH11) and c is not self and c._idle()]
            victim: HubH11 = min(idle, key=lambda c: c._idle_since) if idle else self
            victim.transport.close()

    def _idle(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_seconds, self._headers_too_slow)

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._idle() and not self.transport.is_closing():
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        if self._idle():  # the first bytes of a request: its headers must follow in time
            self._arm_header_timer()
        super().data_received(data)
        if self.cycle is not cycle and self._header_timer is not None:  # its headers are in
            self._header_timer.cancel()
            self._header_timer = None

    def on_response_complete(self) -> None:
        self._idle_since = self.loop.time()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        body = json.dumps({"error": msg}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                   (b"connection", b"close")]
        for event in (h11.Response(status_code=400, headers=headers, reason=b"Bad Request"),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()


def _pairs(headers: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    return [(str(k).lower().encode("latin-1"), str(v).encode("latin-1")) for k, v in headers.items()]


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                   cors: Sequence[tuple[bytes, bytes]] = ()) -> None:
    names = {name for name, _ in headers}
    extra = [pair for pair in (*_ALWAYS, *cors) if pair[0] not in names]
    headers = [(k, v) for k, v in headers if k not in (b"content-length", b"transfer-encoding")]
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, *extra, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, body: dict[str, Any], cors: Sequence[tuple[bytes, bytes]] = ()) -> None:
    await _respond(send, status, [(b"content-type", b"application/json")], json.dumps(body).encode(), cors)
