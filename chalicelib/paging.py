"""Listing pages: how many a page holds, and the cursor a client passes back for the next one.

Every listing (instances, a sequence's instances, sequences) is read a page at a time, newest
first, so that what one request costs never depends on how much history the hub keeps. A cursor is
the last listing key of the page before, opaque to clients (base64url) and checked whole before it
reaches a query.
"""

from __future__ import annotations

import base64

from .errors import BadRequest
from .repository import LISTING_CURSOR, MAX_PAGE

DEFAULT_PAGE = 100  # a listing without a limit: Scramjet's clients ask for all, and get the newest 100
MAX_CURSOR_CHARS = 120


def encode(key: str | None) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=") if key else ""


def decode(cursor: str | None) -> str | None:
    """The listing key a cursor names; None for no cursor (the first page)."""
    if not cursor:
        return None
    try:
        key = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode() if len(cursor) <= MAX_CURSOR_CHARS else ""
    except (ValueError, UnicodeDecodeError):
        key = ""
    if LISTING_CURSOR.fullmatch(key) is None:
        raise BadRequest("invalid cursor: pass back the X-Next-Cursor of the previous page")
    return key


def limit(raw: str | None) -> int:
    """A page size from a query parameter: 1 to MAX_PAGE, DEFAULT_PAGE when absent."""
    if raw is None or raw == "":
        return DEFAULT_PAGE
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}")
    return int(raw)
