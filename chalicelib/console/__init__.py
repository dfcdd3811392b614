"""The web console's static files (no build step), served by the app at /console."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

_DIR = Path(__file__).resolve().parent
_TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}


def security_headers(storage_endpoint: str) -> dict[str, str]:
    """What keeps the console's page to itself: its own scripts only, no framing (clickjacking), and
    connections only to the hub and to the storage its presigned uploads go to (S3, or the embedded
    hub's own storage endpoint)."""
    storage = " ".join(filter(None, ["https://*.amazonaws.com", _origin(storage_endpoint)]))
    policy = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
              f"connect-src 'self' {storage}; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
    return {"Content-Security-Policy": policy, "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff"}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else ""


def asset(name: str) -> tuple[bytes, str] | None:
    """(bytes, content type) of a console file; None for anything not in the fixed list."""
    if name not in _TYPES:
        return None
    return (_DIR / name).read_bytes(), _TYPES[name]
