"""JSON as the standard has it, for everything users send: no NaN or Infinity (they would come back
out in listings and break every client's JSON.parse), and a bounded nesting depth (Python's decoder
would otherwise raise RecursionError, and deep documents cost memory for nothing)."""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 64


class InvalidJSON(ValueError):
    """Not strict JSON, or nested deeper than ``MAX_DEPTH``; the message says which."""


def _no_constants(name: str) -> Any:
    raise InvalidJSON(f"{name} is not JSON: use a number or null")


def _depth(raw: str) -> int:
    """How deeply brackets nest, outside strings (no recursion, one pass)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if _depth(text) > max_depth:
        raise InvalidJSON(f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text, parse_constant=_no_constants)
    except InvalidJSON:
        raise
    except (ValueError, RecursionError) as exc:
        raise InvalidJSON(f"not valid JSON: {exc}") from None
