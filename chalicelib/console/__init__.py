"""The web console's static files (no build step), served by the app at /console."""

from __future__ import annotations

from pathlib import Path

_DIR = Path(__file__).resolve().parent
_TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
          "style.css": "text/css; charset=utf-8"}


def asset(name: str) -> tuple[bytes, str] | None:
    """(bytes, content type) of a console file; None for anything not in the fixed list."""
    if name not in _TYPES:
        return None
    return (_DIR / name).read_bytes(), _TYPES[name]
