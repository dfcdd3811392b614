"""The embedded hub's own AWS calls reach its moto server's app directly, not over TCP.

The API runs in the process that serves moto, yet each of its calls went through botocore's HTTP
to moto's werkzeug server, which closes every connection after one answer: a new TCP connection
and a new server thread per call, about 1.6 ms of a GetItem's 2.7 ms (``bench/RESULTS.md``). Calls
to the moto server's URL made in this process are handed to its WSGI app in the calling thread
(the app the server runs, behind the same DynamoDB lock); the runners, in processes of their own,
still reach it over HTTP through the storage guard. Nothing else in this process talks to AWS.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

_handler: Callable[..., Any] | None = None


def install(url: str, app: WSGIApp) -> None:
    """From now on, botocore clients created in this process send requests for ``url`` to ``app``."""
    global _handler
    import botocore.handlers
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    base = url.rstrip("/")
    target = urlsplit(base)

    def before_send(request: Any, **_: Any) -> Any:
        if not (request.url == base or request.url.startswith(base + "/")):
            return None  # not ours: botocore sends it as usual
        status, headers, body = call(app, request.method, request.url, dict(request.headers.items()),
                                     _body_bytes(request.body), target.hostname or "", target.port or 80)
        answer_headers = HTTPHeaders()
        for name, value in headers.items():
            answer_headers[name] = value
        return AWSResponse(request.url, status, answer_headers, body)

    if _handler is not None:
        uninstall()
    _handler = before_send
    # Clients are created lazily, after the hub starts: the builtin handlers reach each new session.
    botocore.handlers.BUILTIN_HANDLERS.append(("before-send", before_send))


def uninstall() -> None:
    global _handler
    import botocore.handlers

    if _handler is not None:
        botocore.handlers.BUILTIN_HANDLERS[:] = [h for h in botocore.handlers.BUILTIN_HANDLERS if h[1] is not _handler]
        _handler = None


def _body_bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, (bytes, bytearray)):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    return bytes(body.read())  # a file-like body (an upload): read whole, as moto's server does


def call(app: WSGIApp, method: str, url: str, headers: dict[str, str], body: bytes,
         host: str, port: int) -> tuple[int, dict[str, str], _Body]:
    """One request to a WSGI app, as werkzeug's server would pass it: (status, headers, body)."""
    parts = urlsplit(url)
    raw_path = parts.path or "/"
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": unquote(raw_path, "latin-1"),
        "QUERY_STRING": parts.query, "RAW_URI": raw_path + (f"?{parts.query}" if parts.query else ""),
        "REQUEST_URI": raw_path + (f"?{parts.query}" if parts.query else ""),
        "SERVER_NAME": host, "SERVER_PORT": str(port), "SERVER_PROTOCOL": "HTTP/1.1", "REMOTE_ADDR": "127.0.0.1",
        "wsgi.version": (1, 0), "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False,
        "CONTENT_LENGTH": str(len(body)),
    }
    for name, value in headers.items():
        value = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        key = name.upper().replace("-", "_")
        if key == "CONTENT_TYPE":
            environ["CONTENT_TYPE"] = value
        elif key != "CONTENT_LENGTH":
            environ[f"HTTP_{key}"] = value
    environ.setdefault("HTTP_HOST", parts.netloc)
    started: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        started["status"] = int(status.split(" ", 1)[0])
        started["headers"] = response_headers
        return lambda data: None

    chunks = app(environ, start_response)
    body_out = _Body(chunks)
    if not started:  # an app may start its answer on its first chunk
        body_out.peek()
    return started["status"], {k.lower(): v for k, v in started["headers"]}, body_out


class _Body:
    """An answer's body as botocore reads a socket's: ``read(n)`` for a streamed object (a
    package), ``stream()`` for the rest; the app's chunks are taken as they are asked for."""

    def __init__(self, chunks: Iterable[bytes]):
        self._chunks = iter(chunks)
        self._close = getattr(chunks, "close", None)
        self._left = bytearray()

    def peek(self) -> None:
        chunk = next(self._chunks, None)
        if chunk is not None:
            self._left += chunk

    def read(self, amt: int | None = None) -> bytes:
        while amt is None or len(self._left) < amt:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._left += chunk
        size = len(self._left) if amt is None else min(amt, len(self._left))
        data = bytes(self._left[:size])
        del self._left[:size]
        if not data:
            self.close()
        return data

    def stream(self, **_: Any) -> Iterable[bytes]:
        while data := self.read(1024 * 1024):
            yield data

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None
