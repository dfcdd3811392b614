"""A package's ``package.json``: what it must say, checked the same way by ``si seq pack``, the
upload API and the runner. Standard library only (the client imports it)."""

from __future__ import annotations

from typing import Any

from . import CONTENT_TYPES, ENGINES, strictjson, valid_topic

MANIFEST = "package.json"
# package.json is kept on the sequence's record: well under DynamoDB's 400 KB item, and read with a
# bound, so a manifest of 380 MB of whitespace costs nothing to refuse.
MAX_MANIFEST_BYTES = 64 * 1024
# Sequence Hub's own options, beside Scramjet's keys: {"engine": "lambda" | "fargate", "runSeconds": n}.
HUB_OPTIONS = "sequenceHub"


class InvalidManifest(ValueError):
    """The manifest breaks a rule; the message says what to fix."""


def runtime_of(manifest: dict[str, Any]) -> str:
    """STH's rule: ``python3`` in engines means Python, anything else Node."""
    return "python" if "python3" in (manifest.get("engines") or {}) else "node"


def normalise(name: str) -> str:
    """The path a member really names: ``./a//b/`` is ``a/b``; ``.//tmp/x`` is ``/tmp/x`` (absolute)."""
    rest = name
    while rest.startswith("./"):
        rest = rest[2:]
    absolute = rest.startswith("/")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    return ("/" if absolute else "") + "/".join(parts)


def entrypoint_candidates(manifest: dict[str, Any]) -> list[str]:
    """Paths (relative to the package root) that may hold ``main``, in the order the host tries them."""
    main = normalise(manifest["main"])
    if runtime_of(manifest) == "python":
        return [main]
    # The Node runner strips a trailing .js and appends .js, so "index" and "index.js" both work.
    stem = main[:-3] if main.endswith(".js") else main
    return [stem + ".js", main] if stem + ".js" != main else [main]


def invalid_main_message(manifest: dict[str, Any]) -> str:
    return (f"Sequence entrypoint path {manifest.get('main')} is invalid. "
            "Check `main` field in Sequence package.json")


def check(manifest: Any) -> dict[str, Any]:
    """Check a decoded ``package.json``; raise ``InvalidManifest`` saying what to fix."""
    if not isinstance(manifest, dict):
        raise InvalidManifest("package.json must be a JSON object")
    main = manifest.get("main")
    if main is None:
        raise InvalidManifest('package.json has no "main": add "main": "<your entry file>"')
    if not isinstance(main, str) or not main.strip():
        raise InvalidManifest('package.json "main" must be a non-empty string naming the entry file')
    norm_main = normalise(main)
    if norm_main.startswith("/") or ".." in norm_main.split("/") or not norm_main:
        raise InvalidManifest('package.json "main" must be a path inside the package')
    engines = manifest.get("engines", {})
    if engines is None:
        engines = {}
    if not isinstance(engines, dict):
        raise InvalidManifest('package.json "engines" must be an object, e.g. {"python3": "3.12"}')
    if len(engines) > 1:
        raise InvalidManifest("'engines' field can't contain more than one element")
    for key in ("name", "version"):
        if key in manifest and not isinstance(manifest[key], str):
            raise InvalidManifest(f'package.json "{key}" must be a string')
    try:
        hub_options(manifest)
    except ValueError as exc:
        raise InvalidManifest(f"package.json {exc}") from None
    for key in ("provides", "requires"):
        if key in manifest:
            try:
                topic_declaration(manifest, key)
            except ValueError as exc:
                raise InvalidManifest(f"package.json {exc}") from None
    return manifest


def hub_options(manifest: dict[str, Any]) -> tuple[str | None, int | None]:
    """(engine, runSeconds) of ``"sequenceHub"``, each None when not given: the engine its instances
    run on unless a start says otherwise, and how long they are expected to run (longer than the
    lambda engine's limit chooses fargate). ValueError says what is wrong."""
    options = manifest.get(HUB_OPTIONS)
    if options is None:
        return None, None
    if not isinstance(options, dict):
        raise ValueError(f'"{HUB_OPTIONS}" must be an object, e.g. {{"engine": "fargate"}}')
    engine, seconds = options.get("engine"), options.get("runSeconds")
    if engine is not None and engine not in ENGINES:
        raise ValueError(f'"{HUB_OPTIONS}.engine" must be one of {", ".join(ENGINES)}')
    if seconds is not None and (type(seconds) is not int or seconds <= 0):
        raise ValueError(f'"{HUB_OPTIONS}.runSeconds" must be a whole number of seconds above 0')
    return engine, seconds


def topic_declaration(manifest: dict[str, Any], key: str) -> tuple[str, str | None] | None:
    """(topic, content type or None) of ``"provides"``/``"requires"``: a topic name, or
    ``{"topic": name, "contentType": type}``; None when absent. ValueError says what is wrong."""
    value = manifest.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = {"topic": value}
    if not isinstance(value, dict):
        raise ValueError(f'"{key}" must be a topic name or {{"topic": name, "contentType": type}}')
    name, ctype = value.get("topic"), value.get("contentType")
    if not valid_topic(name):
        raise ValueError(f'"{key}" topic must be 1-200 letters, digits, "_", "+", "-"')
    if ctype is not None and ctype not in CONTENT_TYPES:
        raise ValueError(f'"{key}" contentType must be one of {", ".join(CONTENT_TYPES)}')
    return name, ctype


def parse(raw: bytes) -> dict[str, Any]:
    """Decode and check a ``package.json``'s bytes; raise ``InvalidManifest`` saying what to fix."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidManifest(f"package.json is over {MAX_MANIFEST_BYTES} bytes; keep data in other files")
    try:
        manifest = strictjson.loads(raw)
    except UnicodeDecodeError:
        raise InvalidManifest("package.json is not valid JSON: not UTF-8") from None
    except strictjson.InvalidJSON as exc:
        raise InvalidManifest(f"package.json: {exc}") from None
    return check(manifest)
