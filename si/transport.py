"""HTTP for ``si`` on the standard library's ``http.client``: kept-alive connections, reused per host.

Why not requests: importing it (and urllib3) costs ~90 ms, more than everything else a command does
against a local hub (`si seq list` 250 ms → under 150 ms without it). ``si`` needs little of it:
whole answers (pages are bounded), bodies that are bytes or a file of known size, a timeout, and the
environment's proxy and CA settings, which this module honours as requests does.
"""

from __future__ import annotations

import http.client
import json as jsonlib
import os
import select
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

BLOCK = 1024 * 1024  # bytes read from a file body per socket write (http.client's default is 8 KiB)


class TransportError(Exception):
    """The hub could not be reached (refused, unresolvable, reset before answering)."""


class TransportTimeout(TransportError):
    """The hub did not answer within the timeout."""


@dataclass
class Response:
    status_code: int
    reason: str
    headers: http.client.HTTPMessage  # case-insensitive .get, as HTTP headers are
    content: bytes

    def json(self) -> Any:
        return jsonlib.loads(self.content)


def _content_length(body: Any) -> int | None:
    if body is None:
        return 0
    try:  # bytes, or a reader that knows its size
        return int(len(body))
    except TypeError:
        pass
    try:  # a file, or any seekable reader: what is left of it
        here = int(body.tell())
        size = int(body.seek(0, os.SEEK_END)) - here
        body.seek(here)
        return size
    except (AttributeError, OSError, ValueError):
        return None


def _proxy_for(scheme: str, host: str) -> str:
    """The proxy the environment names for this URL ("" for none), as requests reads it."""
    names = (f"{scheme}_proxy", "all_proxy")
    if not any(os.environ.get(n) or os.environ.get(n.upper()) for n in names):
        return ""  # the common case, without importing urllib.request
    import urllib.request

    if urllib.request.proxy_bypass(host):
        return ""
    proxies = urllib.request.getproxies()
    return proxies.get(scheme) or proxies.get("all") or ""


Key = tuple[str, str, int]  # scheme, host, port


class Transport:
    """Requests to any URL from any thread, reusing idle connections per (scheme, host, port)."""

    def __init__(self) -> None:
        self._idle: dict[Key, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None

    def request(self, method: str, url: str, *, data: Any = None, headers: Mapping[str, str] | None = None,
                timeout: float = 60.0) -> Response:
        """Send one request and read its whole answer. ``data``: bytes, or a readable file-like
        whose size is known (``len``, or seekable)."""
        sent = dict(headers or {})
        length = _content_length(data)
        if length is None:
            raise ValueError("a request body must be bytes or a reader of known size")
        if not any(k.lower() == "content-length" for k in sent) and (data is not None or method in ("POST", "PUT")):
            sent["Content-Length"] = str(length)
        parts = urlsplit(url)
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        key: Key = (parts.scheme, parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
        # A kept-alive connection the hub has just closed fails at once: a GET is retried once.
        for attempt in (0, 1):
            conn, reused = self._connection(key, timeout)
            try:
                conn.request(method, url if isinstance(conn, _ProxiedHTTP) else target, body=data, headers=sent)
                answer = conn.getresponse()
                content = answer.read()
            except TimeoutError:
                conn.close()
                raise TransportTimeout(f"no answer from {parts.netloc} within {timeout:g} s") from None
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                # closed between the check and the request: only a request that may be repeated is
                if reused and attempt == 0 and method in ("GET", "HEAD"):
                    continue
                raise TransportError(str(exc) or type(exc).__name__) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                raise TransportError(str(exc) or type(exc).__name__) from None
            if answer.will_close:
                conn.close()
            else:
                with self._lock:
                    self._idle.setdefault(key, []).append(conn)
            return Response(answer.status, answer.reason, answer.headers, content)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    def _connection(self, key: Key, timeout: float) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection to ``key`` (True: it served a request before), or a new one."""
        with self._lock:
            idle = self._idle.get(key)
            conn = idle.pop() if idle else None
        if conn is not None and _dropped(conn):
            conn.close()  # the hub closed it while it was idle
            conn = None
        if conn is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            return conn, True
        scheme, host, port = key
        named = _proxy_for(scheme, host)
        proxy = urlsplit(named if "://" in named else f"http://{named}") if named else None
        if scheme == "https":
            if self._tls is None:
                # requests' CA setting, when the user set one; otherwise the system's (SSL_CERT_FILE too)
                self._tls = ssl.create_default_context(cafile=os.environ.get("REQUESTS_CA_BUNDLE") or None)
            if proxy is not None:
                conn = http.client.HTTPSConnection(proxy.hostname or "", proxy.port or 8080, timeout=timeout,
                                                   context=self._tls, blocksize=BLOCK)
                conn.set_tunnel(host, port)
            else:
                conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=self._tls, blocksize=BLOCK)
        elif scheme == "http":
            conn = (_ProxiedHTTP(proxy.hostname or "", proxy.port or 8080, timeout=timeout, blocksize=BLOCK)
                    if proxy is not None else http.client.HTTPConnection(host, port, timeout=timeout, blocksize=BLOCK))
        else:
            raise TransportError(f"not an http(s) URL: {scheme}://{host}")
        return conn, False


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """An idle connection whose socket is readable has been closed by the other end (an idle hub
    answers nothing unasked), as urllib3 checks before reusing one."""
    if conn.sock is None:
        return True
    try:
        return bool(select.select([conn.sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class _ProxiedHTTP(http.client.HTTPConnection):
    """Plain HTTP through a proxy: the request line carries the whole URL."""

