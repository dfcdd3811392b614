"""Sequences: validate and store uploaded packages, list, inspect and delete them."""

from __future__ import annotations

import hashlib
import io
import json
import uuid

from . import aws, clock, models, packages
from .config import Settings
from .errors import Conflict, NotFound, TooLarge
from .store import Store


def package_key(seq_id: str) -> str:
    return f"packages/{seq_id}.tar.gz"


def create(settings: Settings, body: bytes) -> dict:
    """Validate ``body`` (a tar.gz); store it and record the sequence. A refused upload stores nothing."""
    if len(body) > settings.max_package_bytes:
        raise TooLarge(f"package is {len(body)} bytes; the direct upload limit is {settings.max_package_bytes}")
    limits = packages.Limits(settings.max_unpacked_bytes, settings.max_package_files)
    info = packages.scan(io.BytesIO(body), limits)
    seq_id = str(uuid.uuid4())
    key = package_key(seq_id)
    s3 = aws.client("s3")
    s3.put_object(Bucket=settings.bucket, Key=key, Body=body, ContentType="application/gzip")
    item = {
        "id": seq_id, "created": clock.now(), "package_key": key, "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(), "files": info.files,
        "unpacked_bytes": info.unpacked_bytes, "manifest": json.dumps(info.manifest),
        "name": info.manifest.get("name"), "runtime": info.runtime, "language": info.language,
    }
    try:
        Store(settings.table).put_sequence(item)
    except Exception:
        s3.delete_object(Bucket=settings.bucket, Key=key)
        raise
    return {"id": seq_id}


def get_item(settings: Settings, seq_id: str) -> dict:
    seq = Store(settings.table).get_sequence(seq_id)
    if seq is None:
        raise NotFound(f"Sequence {seq_id} not found")
    return seq


def list_items(settings: Settings) -> list[dict]:
    return sorted(Store(settings.table).list_sequences(), key=lambda s: s["created"])


def view(seq: dict, instance_ids: list[str]) -> dict:
    """The STH sequence object, plus package identity."""
    manifest = json.loads(seq["manifest"])
    config = {
        "type": "lambda", "engines": manifest.get("engines") or {}, "entrypointPath": manifest["main"],
        "version": manifest.get("version"), "name": manifest.get("name"), "id": seq["id"],
        "language": seq["language"], "runtime": seq["runtime"], "packageSize": seq["size"],
    }
    for key in ("description", "author", "keywords", "args", "repository"):
        if key in manifest:
            config[key] = manifest[key]
    return {"id": seq["id"], "name": seq.get("name"), "config": config, "location": "hub",
            "created": clock.iso(seq["created"]), "size": seq["size"], "sha256": seq["sha256"],
            "files": seq.get("files"), "instances": instance_ids}


def delete(settings: Settings, seq_id: str, force: bool) -> dict:
    """Delete a sequence and its package; 409 while instances run unless ``force`` (which kills them)."""
    from . import instances  # instances use sequences too

    get_item(settings, seq_id)
    running = [i for i in instances.live_items(settings, sequence_id=seq_id) if i["status"] in models.ACTIVE]
    if running and not force:
        raise Conflict(f"Can't remove sequence {seq_id}: {len(running)} instance(s) still running "
                       "(kill them first, or force with x-seq-kill-inst: true / si seq rm --force)")
    for inst in running:
        instances.request_kill(settings, inst["id"], require_running=False)
    aws.client("s3").delete_object(Bucket=settings.bucket, Key=package_key(seq_id))
    Store(settings.table).delete_sequence(seq_id)
    return {"id": seq_id}
