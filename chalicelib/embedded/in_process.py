"""The embedded hub's own AWS calls reach its moto server's app directly, not over TCP.

The API runs in the process that serves moto, yet each of its calls went through botocore's HTTP
to moto's werkzeug server, which closes every connection after one answer: a new TCP connection
and a new server thread per call, about 1.6 ms of a GetItem's 2.7 ms (``bench/RESULTS.md``). Calls
to the moto server's URL made in this process are handed to its WSGI app in the calling thread
(the app the server runs, behind the same DynamoDB lock); the runners, in processes of their own,
still reach it over HTTP through the storage guard. Nothing else in this process talks to AWS.

DynamoDB's requests skip the WSGI app too: they are handed to moto's DynamoDB handler as moto's
own in-process mock hands them (``moto.core.botocore_stubber``). Building the WSGI environ, Flask's
routing and its request and response objects were a tenth of the hub's time per input request
(``bench/RESULTS.md``); the handler, its lock and what it answers are the server's.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
# A handler that answers some requests itself, (status, headers, body), and None for the rest.
Direct = Callable[[Any], "tuple[int, dict[str, str], bytes] | None"]

_handlers: list[tuple[str, Callable[..., Any]]] = []


def install(url: str, app: WSGIApp, direct: Direct | None = None) -> None:
    """From now on, botocore clients created in this process send requests for ``url`` to ``app``
    (or to ``direct``, for the requests it answers)."""
    import botocore
    import botocore.handlers
    from botocore.awsrequest import AWSResponse, HTTPHeaders

    base = url.rstrip("/")
    target = urlsplit(base)

    def before_send(request: Any, **_: Any) -> Any:
        if not (request.url == base or request.url.startswith(base + "/")):
            return None  # not ours: botocore sends it as usual
        answered = direct(request) if direct is not None else None
        if answered is not None:
            status, headers, body = answered[0], answered[1], _Body([answered[2]])
        else:
            status, headers, body = call(app, request.method, request.url, dict(request.headers.items()),
                                         _body_bytes(request.body), target.hostname or "", target.port or 80)
        answer_headers = HTTPHeaders()
        for name, value in headers.items():
            answer_headers[name] = value
        return AWSResponse(request.url, status, answer_headers, body)

    def unsigned(**_: Any) -> Any:
        return botocore.UNSIGNED

    uninstall()
    _handlers.append(("before-send", before_send))
    if direct is not None:
        # What ``direct`` answers never leaves this process, so no one checks a signature on it
        # (moto reads the region and account from one when present; absent, the hub's defaults):
        # signing was a tenth of the hub's time per input request. DynamoDB is never presigned.
        _handlers.append(("choose-signer.dynamodb", unsigned))
    # Clients are created lazily, after the hub starts: the builtin handlers reach each new session.
    botocore.handlers.BUILTIN_HANDLERS.extend(_handlers)


def uninstall() -> None:
    import botocore.handlers

    botocore.handlers.BUILTIN_HANDLERS[:] = [h for h in botocore.handlers.BUILTIN_HANDLERS if h not in _handlers]
    _handlers.clear()


def is_dynamodb(request: Any) -> bool:
    target = request.headers.get("X-Amz-Target") or b""
    return (target.decode() if isinstance(target, bytes) else target).startswith("DynamoDB_")


def dynamodb(request: Any) -> tuple[int, dict[str, str], bytes]:
    """A DynamoDB request (botocore's prepared request) answered by moto's handler, as moto's
    server answers it."""
    from moto.core.request import Request
    from moto.dynamodb.responses import DynamoHandler
    from werkzeug.exceptions import HTTPException

    target = urlsplit(request.url)
    # The environ werkzeug's server would make (moto's own conversion builds one through werkzeug's
    # test client, at a few times the cost).
    normalized = Request(_environ(request.method, request.url, dict(request.headers.items()),
                                  _body_bytes(request.body), target.hostname or "", target.port or 80))
    try:
        status, headers, content = DynamoHandler.dispatch(normalized, normalized.raw_url, normalized.headers)
    except HTTPException as exc:  # as moto's server and its mock answer them
        status, headers, content = exc.code, dict(exc.get_headers()), exc.get_body()
    return status, {k: str(v) for k, v in headers.items()}, content.encode() if isinstance(content, str) else content


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
    environ = _environ(method, url, headers, body, host, port)
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


def _environ(method: str, url: str, headers: dict[str, str], body: bytes, host: str, port: int) -> dict[str, Any]:
    """The WSGI environ werkzeug's server makes of a request."""
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
    return environ


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
        if amt is None:  # the whole rest (botocore reads an object's body so): joined, not accumulated
            data = b"".join([bytes(self._left), *self._chunks]) if self._left else b"".join(self._chunks)
            self._left = bytearray()
            if not data:
                self.close()
            return data
        while len(self._left) < amt:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._left += chunk
        size = min(amt, len(self._left))
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
