"""Client configuration profiles: ``~/.si/profiles/<name>.json`` (``SI_CONFIG_PATH`` moves ``~/.si``).

The API URL comes from ``SI_API_URL``, else the current profile, else the embedded hub's address.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import SiError

DEFAULT_API_URL = "http://127.0.0.1:8000/api/v1"
# auth: "" = SigV4 for API Gateway URLs, the token (if any) elsewhere; "iam" or "token" to force one.
DEFAULTS = {"apiUrl": DEFAULT_API_URL, "token": "", "format": "pretty", "auth": "", "awsProfile": "",
            "awsRegion": ""}
# Scramjet's CLI reads and writes the same files, with keys of its own; without these it does not
# work at all (it spins, never sending a request), so a profile we write carries them too.
SCRAMJET_DEFAULTS = {"configVersion": 1, "middlewareApiUrl": "", "env": "development", "scope": "",
                     "log": {"debug": False, "format": "pretty"}}
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def root() -> Path:
    return Path(os.environ.get("SI_CONFIG_PATH") or Path.home() / ".si")


def current_name() -> str:
    env = os.environ.get("SI_CONFIG")
    if env:
        return env
    try:
        found = json.loads((root() / "si-config.json").read_text()).get("profile", "default")
    except (OSError, ValueError, AttributeError):  # unreadable, not JSON, not an object
        return "default"
    return found if isinstance(found, str) else "default"


def _file(name: str) -> Path:
    if _NAME.fullmatch(name) is None:
        raise SiError(f"invalid profile name {name!r}: use letters, digits, '.', '_' or '-'")
    return root() / "profiles" / f"{name}.json"


def load(name: str | None = None) -> dict[str, Any]:
    name = name or current_name()
    path = _file(name)
    data = dict(DEFAULTS)
    if path.exists():
        try:
            data.update(json.loads(path.read_text()))
        except ValueError:
            raise SiError(f"profile {name} ({path}) is not valid JSON; fix it or run: si config reset") from None
    elif name != "default":
        raise SiError(f"no profile named {name}; list them with: si config profile list")
    return data


def save(data: dict[str, Any], name: str | None = None) -> None:
    path = _file(name or current_name())
    path.parent.mkdir(parents=True, exist_ok=True)
    try:  # keys other tools keep here (Scramjet's CLI) stay as they are
        kept = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        kept = {}
    kept = kept if isinstance(kept, dict) else {}
    path.write_text(json.dumps({**SCRAMJET_DEFAULTS, **kept, **{k: data[k] for k in DEFAULTS if k in data}},
                               indent=2) + "\n")


def api_url() -> str:
    return os.environ.get("SI_API_URL") or load()["apiUrl"]


def names() -> list[str]:
    folder = root() / "profiles"
    found = sorted(p.stem for p in folder.glob("*.json")) if folder.exists() else []
    return found if "default" in found else ["default", *found]


def use(name: str) -> None:
    if name not in names():
        raise SiError(f"no profile named {name}; create it with: si config profile create {name}")
    root().mkdir(parents=True, exist_ok=True)
    (root() / "si-config.json").write_text(json.dumps({"profile": name}) + "\n")


def create(name: str) -> None:
    if _file(name).exists():
        raise SiError(f"profile {name} already exists")
    save(dict(DEFAULTS), name)


def remove(name: str) -> None:
    if name == "default":
        raise SiError("the default profile cannot be removed")
    path = _file(name)
    if not path.exists():
        raise SiError(f"no profile named {name}")
    path.unlink()
    if current_name() == name:
        use("default")
