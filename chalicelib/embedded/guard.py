"""Who may talk to the embedded hub: its user, never a web page open in the user's browser.

A hub on 127.0.0.1 is reachable from every page the user visits. This is the local dev-server
hole that Jupyter, Vite and webpack-dev-server close with host allow-lists and origin checks, and
that is how it is closed here, with nothing for non-browser clients to change (Scramjet's CLI and
Python client send neither ``Origin`` nor ``Sec-Fetch-*``):

- **Host**: a loopback hub answers only requests that name it (``127.0.0.1:<port>``,
  ``localhost:<port>``, ``[::1]:<port>``). A DNS-rebinding page reaches the hub under its own
  domain name, so its requests carry that name and are refused. A hub beyond loopback cannot know
  every name it is reached by; its token (which no page has) protects it instead.
- **Origin**: a browser names the page behind every cross-origin request and every POST. Only
  the hub's own origin (its console) and origins the user allowed (``--allow-origin``) pass.
  ``Origin: null`` (a ``file://`` page, a sandboxed frame) never does.
- **Fetch metadata**: ``Sec-Fetch-Site: cross-site``/``same-site`` marks requests a page made
  without an ``Origin`` (``<img>``, ``<script>``); they are refused too, except a navigation to the
  console (a link the user followed: the page it opens runs as the hub's own origin).
- **CORS** is granted to the allowed origins alone; other pages get no readable answer, and their
  preflights are refused, so they cannot send JSON, packages or input.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
EXPOSED = "X-Next-Cursor, X-Channel-Ended, X-Instance-Ended, X-Retained-Count, ETag"


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def loopback_hosts(host: str, port: int) -> frozenset[str]:
    """The ``Host`` header values a loopback hub on ``host``:``port`` answers."""
    names = {*_LOOPBACK_NAMES, f"[{host}]" if ":" in host else host}
    values = {f"{name}:{port}" for name in names}
    if port == 80:
        values |= names
    return frozenset(v.lower() for v in values)


@dataclass(frozen=True)
class Guard:
    """The embedded hub's rules for who may send a request (see the module's docstring)."""

    hosts: frozenset[str] = frozenset()  # accepted Host values; empty: any (a hub beyond loopback)
    origins: frozenset[str] = field(default_factory=frozenset)  # web origins the user allowed

    def refusal(self, method: str, path: str, headers: dict[str, str]) -> str | None:
        """Why the request is refused; None when it may go on. ``headers`` have lower-case names."""
        host = headers.get("host", "").lower()
        if self.hosts and host not in self.hosts:
            return (f"this hub answers requests for {min(self.hosts)} only, not for {host or 'no Host'!r} "
                    "(a page that rebound a domain name to this machine?)")
        origin = headers.get("origin")
        if origin is not None and origin != f"http://{host}" and origin not in self.origins:
            return (f"requests from web pages are refused unless their origin is allowed: {origin[:100]} "
                    "is not (si hub start --allow-origin ORIGIN)")
        site = headers.get("sec-fetch-site")
        if site in ("cross-site", "same-site") and (origin is None or origin not in self.origins):
            navigation = method == "GET" and headers.get("sec-fetch-mode") == "navigate"
            if not (navigation and (path == "/console" or path.startswith("/console/"))):
                return "requests made by web pages on other sites are refused"
        return None

    def cors(self, origin: str | None) -> list[tuple[bytes, bytes]]:
        """The CORS grant for ``origin``: only for an allowed one (same-origin pages need none)."""
        if origin is None or origin not in self.origins:
            return [(b"vary", b"Origin")]
        return [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin"),
                (b"access-control-expose-headers", EXPOSED.encode())]

    def preflight(self, origin: str | None) -> list[tuple[bytes, bytes]] | None:
        """Headers answering an allowed origin's preflight; None: refuse it."""
        if origin is None or origin not in self.origins:
            return None
        return [*self.cors(origin), (b"access-control-allow-headers", b"*"),
                (b"access-control-allow-methods", b"DELETE, POST, GET, PUT, OPTIONS"),
                (b"access-control-max-age", b"600")]
