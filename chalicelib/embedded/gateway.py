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
- CORS on every answer, and JSON 404/405 for routes and methods the app does not have.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs

import h11
from chalice.app import Chalice
from chalice.config import Config
from chalice.local import LocalGateway, LocalGatewayException, RouteMatcher
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..protocol import API_BASE as API

# Paged with X-Next-Cursor / X-Channel-Ended: a plain GET (no cursor) streams them live.
_STREAMS = re.compile(rf"^{API}/(instance/[^/]+/(output|stdout|stderr|log|events/[^/]+)|log|topic/[^/]+)$")
# 404 with X-Instance-Ended: false means "not yet": a plain GET (no wait) waits, as Scramjet's hub does.
_WAITS = re.compile(rf"^{API}/instance/[^/]+/(event|once)/[^/]+$")
_INPUT = re.compile(rf"^{API}/(instance/[^/]+/(input|stdin)|topic/[^/]+)$")
_CORS = [(b"access-control-allow-origin", b"*"),
         (b"access-control-expose-headers", b"X-Next-Cursor, X-Channel-Ended")]
# Scramjet's hub answers preflights so (middlewares/options.ts).
_PREFLIGHT = [(b"access-control-allow-headers", b"*"),
              (b"access-control-allow-methods", b"DELETE, POST, GET, PUT, OPTIONS")]
_STREAM_WAIT = 20        # seconds one page of a live channel may wait for data
_MAX_CALLS = 1024         # requests the app handles at once (threads are made as needed)
_COALESCE_SECONDS = 0.01  # input: how long to wait for more of a body before forwarding what came

Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class _Disconnected(Exception):
    """The client went away before its request body ended (``pending``: what it had sent)."""

    def __init__(self, pending: bytes = b"") -> None:
        super().__init__("client disconnected")
        self.pending = pending


class Bridge:
    """An ASGI application: each request to the Chalice app through ``LocalGateway``."""

    def __init__(self, app: Chalice, config: Config, max_body: int, max_input_chunk: int) -> None:
        self._gateway = LocalGateway(app, config)
        self._routes = RouteMatcher(list(app.routes))
        self._app = app
        self._max_body = max_body
        self._max_chunk = max_input_chunk
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
        if method == "OPTIONS":
            await _respond(send, 200, [*_PREFLIGHT], b"")
            return
        if method == "POST" and _INPUT.match(path):
            await self._forward_input(target, headers, receive, send)
            return
        try:
            body = await self._read_body(receive)
        except _Disconnected:
            return
        if body is None:
            await _json(send, 413, {"error": f"request body over {self._max_body} bytes; "
                                             "large packages go through `si seq send` (a presigned upload)"})
            return
        params = parse_qs(query, keep_blank_values=True)
        if method == "GET" and _STREAMS.match(path) and "cursor" not in params:
            await self._until_disconnect(receive, self._stream(path, headers, send))
            return
        if method == "GET" and _WAITS.match(path) and "wait" not in params:
            await self._until_disconnect(receive, self._wait_for_event(path, headers, send))
            return
        status, out_headers, out_body = await self._in_thread(method, target, headers, body)
        await _respond(send, status, out_headers, out_body)

    # -- the gateway -----------------------------------------------------------------------------
    async def _in_thread(self, method: str, target: str, headers: dict[str, str],
                         body: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._call, method, target, headers, body)

    def _call(self, method: str, target: str, headers: dict[str, str],
              body: bytes | None) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        try:
            response = self._gateway.handle_request(method=method, path=target, headers=dict(headers), body=body)
        except LocalGatewayException as exc:
            if exc.CODE != 403:  # an authorizer's own answer: keep it
                return exc.CODE, _pairs(exc.headers), exc.body or b""
            return self._no_route(method, target.split("?", 1)[0])
        out = dict(response.get("headers") or {})
        for name, values in (response.get("multiValueHeaders") or {}).items():
            out[name] = ", ".join(values)
        data = response.get("body") or b""
        if response.get("isBase64Encoded"):
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
    async def _read_body(self, receive: Receive) -> bytes | None:
        """The whole request body; None when it is over the limit (the rest is not read)."""
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                return None
            parts.append(chunk)
            if not message.get("more_body", False):
                return b"".join(parts)

    async def _forward_input(self, target: str, headers: dict[str, str], receive: Receive, send: Send) -> None:
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
            except _Disconnected as cut:
                # What arrived is kept; the stream stays open (the client may send the rest).
                if cut.pending:
                    await self._in_thread("POST", target, {**headers, "x-end-stream": "false"},
                                            cut.pending)
                return
            while len(pending) > self._max_chunk or (pending and more):
                piece, pending = pending[:self._max_chunk], pending[self._max_chunk:]
                last = await self._in_thread("POST", target, {**headers, "x-end-stream": "false"}, piece)
                if last[0] >= 300:
                    await _respond(send, *last)
                    return
        last = await self._in_thread("POST", target, {**headers, "x-end-stream": end_stream}, pending)
        await _respond(send, *last)

    async def _gather(self, receive: Receive, pending: bytes) -> tuple[bytes, bool]:
        """Add what the client sends next (waiting a moment for more of it) to ``pending``."""
        message = await receive()
        while True:
            if message["type"] == "http.disconnect":
                raise _Disconnected(pending)
            pending += message.get("body", b"")
            if not message.get("more_body", False):
                return pending, False
            if len(pending) >= self._max_chunk:
                return pending, True
            try:
                message = await asyncio.wait_for(receive(), _COALESCE_SECONDS)
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

    async def _stream(self, path: str, headers: dict[str, str], send: Send) -> None:
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
                    await _respond(send, status, out_headers, data)
                    return
                # Mid-stream: cut the connection, so the client sees a broken stream, not an end.
                raise RuntimeError(f"reading {path} failed mid-stream: {status}")
            values = dict(out_headers)
            if not started:
                content_type = values.get(b"content-type", b"application/octet-stream")
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", content_type), *_CORS]})
                started = True
            cursor = values.get(b"x-next-cursor", cursor.encode()).decode()
            if data:
                await send({"type": "http.response.body", "body": data, "more_body": True})
            if values.get(b"x-channel-ended") == b"true":
                await send({"type": "http.response.body", "body": b"", "more_body": False})
                return

    async def _wait_for_event(self, path: str, headers: dict[str, str], send: Send) -> None:
        """``/event/{name}`` or ``/once/{name}`` with no ``wait``: until the event comes or the
        instance ends (``/once`` keeps the time of this request as its reference)."""
        after = f"&after={time.time()!r}" if "/once/" in path else ""
        while True:
            status, out_headers, data = await self._in_thread(
                "GET", f"{path}?wait={_STREAM_WAIT}{after}", headers, None)
            if status != 404 or dict(out_headers).get(b"x-instance-ended") != b"false":
                await _respond(send, status, out_headers, data)
                return


class JsonErrorsH11(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, whose own answer to a request it cannot parse (a bad request
    line, bad headers) is JSON like every other error of the hub's, not plain text."""

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


async def _respond(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    names = {name for name, _ in headers}
    extra = [pair for pair in _CORS if pair[0] not in names]
    headers = [(k, v) for k, v in headers if k not in (b"content-length", b"transfer-encoding")]
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, *extra, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, body: dict[str, Any]) -> None:
    await _respond(send, status, [(b"content-type", b"application/json")], json.dumps(body).encode())
