"""``-`` means "the last one" of this terminal session, as in Scramjet's ``si``.

Remembered per session id (the shell's, from ``getsid``) in ``$TMPDIR/.si-tmp/<sid>/session-config.json``;
``SI_SESSION_ID`` overrides the id (scripts and tests that want their own "last").
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import SiError

KEYS = {"package": "lastPackagePath", "sequence": "lastSequenceId", "instance": "lastInstanceId"}


def _path() -> Path:
    sid = os.environ.get("SI_SESSION_ID") or str(os.getsid(0))
    return _temp_dir() / ".si-tmp" / sid / "session-config.json"


def _temp_dir() -> Path:
    """Node's ``os.tmpdir()``, where Scramjet's ``si`` keeps its session: tempfile's lookup (an
    import of shutil and random, a probe file written) costs every command ~4 ms for the same answer."""
    found = os.environ.get("TMPDIR") or os.environ.get("TMP") or os.environ.get("TEMP") or "/tmp"
    return Path(found.rstrip("/") or "/")


def _load() -> dict[str, Any]:
    try:
        found = json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def remember(kind: str, value: str) -> None:
    data = _load()
    data[KEYS[kind]] = value
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def forget(kind: str, value: str | None = None) -> None:
    data = _load()
    if value is None or data.get(KEYS[kind]) == value:
        data.pop(KEYS[kind], None)
        if _path().parent.exists():
            _path().write_text(json.dumps(data))


def resolve(kind: str, value: str) -> str:
    """``value``, or the remembered last ``kind`` when ``value`` is ``-``."""
    if value != "-":
        return value
    found = _load().get(KEYS[kind])
    if not found or not isinstance(found, str):
        raise SiError(f"no last {kind} in this terminal session: you can't use '-' to replace it yet")
    return found
