"""Sequences: validate and store uploaded packages, list, inspect and delete them."""

from __future__ import annotations

import hashlib
import io
import json
import re
import time
import uuid
from typing import Any

from botocore.exceptions import ClientError

from . import aws, clock, models, observability, packages, paging
from .config import Settings
from .errors import Conflict, NotFound, TooLarge
from .observability import logger
from .repository import Repository, sequence_slots


def package_key(seq_id: str) -> str:
    return f"packages/{seq_id}.tar.gz"


UPLOAD_URL_SECONDS = 3600
_UPLOAD_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def upload_key(seq_id: str) -> str:
    return f"uploads/{seq_id}.tar.gz"


def _limits(settings: Settings) -> packages.Limits:
    return packages.Limits(settings.max_unpacked_bytes, settings.max_package_files)


def _record(settings: Settings, seq_id: str, info: packages.PackageInfo, size: int, sha256: str) -> dict[str, Any]:
    item = {
        "id": seq_id, "created": clock.now(), "package_key": package_key(seq_id), "size": size,
        "sha256": sha256, "files": info.files, "unpacked_bytes": info.unpacked_bytes,
        "manifest": json.dumps(info.manifest), "name": info.manifest.get("name"),
        "runtime": info.runtime, "language": info.language,
    }
    try:
        Repository(settings.table).put_sequence(item)
    except Exception:
        aws.client("s3").delete_object(Bucket=settings.bucket, Key=package_key(seq_id))
        raise
    logger.info(f"sequence {seq_id} stored ({info.manifest.get('name')}, {size} bytes)")
    observability.package_stored(size)
    return {"id": seq_id}


def create(settings: Settings, body: bytes) -> dict[str, Any]:
    """Validate ``body`` (a tar.gz); store it and record the sequence. A refused upload stores nothing."""
    if len(body) > settings.max_package_bytes:
        raise TooLarge(f"package is {len(body)} bytes; the direct upload limit is {settings.max_package_bytes} "
                       "(si seq send uploads larger packages through S3 by itself)")
    info = packages.scan(io.BytesIO(body), _limits(settings))
    seq_id = str(uuid.uuid4())
    aws.client("s3").put_object(Bucket=settings.bucket, Key=package_key(seq_id), Body=body,
                                ContentType="application/gzip")
    return _record(settings, seq_id, info, len(body), hashlib.sha256(body).hexdigest())


def begin_upload(settings: Settings) -> dict[str, Any]:
    """A presigned S3 PUT for a large package; ``commit`` validates and records it."""
    seq_id = str(uuid.uuid4())
    url = aws.client("s3").generate_presigned_url(
        "put_object", Params={"Bucket": settings.bucket, "Key": upload_key(seq_id)},
        ExpiresIn=UPLOAD_URL_SECONDS, HttpMethod="PUT")
    return {"id": seq_id, "url": url, "method": "PUT", "expiresIn": UPLOAD_URL_SECONDS}


# A commit validates within API Gateway's 29 s; the size bound keeps a valid package well inside it.
VALIDATE_SECONDS = 20.0
_MISSING = ("NoSuchKey", "404", "NotFound", "403", "AccessDenied")  # without ListBucket S3 answers 403


class _Streamed:
    """The uploaded object read once, straight from S3 (no /tmp): hashed, counted, and cut off at
    the validation deadline."""

    def __init__(self, body: Any, deadline: float):
        self.body = body
        self.deadline = deadline
        self.digest = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        if time.monotonic() > self.deadline:
            raise TooLarge(f"package took over {VALIDATE_SECONDS:.0f} s to validate; make it smaller")
        data: bytes = self.body.read(n if n and n > 0 else None)
        self.digest.update(data)
        self.size += len(data)
        return data


def commit_upload(settings: Settings, seq_id: str) -> dict[str, Any]:
    """Validate an uploaded package exactly as a direct upload; keep it only if it passes.
    Committing the same upload again answers the same id."""
    if _UPLOAD_ID.fullmatch(seq_id) is None:
        raise NotFound(f"Upload {seq_id} not found")
    if Repository(settings.table).get_sequence(seq_id) is not None:
        return {"id": seq_id}
    s3 = aws.client("s3")
    key = upload_key(seq_id)
    try:
        size = s3.head_object(Bucket=settings.bucket, Key=key)["ContentLength"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] in _MISSING:
            raise NotFound(f"Upload {seq_id} not found (never uploaded, or expired)") from None
        raise
    try:
        if size > settings.max_upload_bytes:
            raise TooLarge(f"package is {size} bytes; the limit is {settings.max_upload_bytes} (SEQHUB_MAX_UPLOAD_BYTES)")
        stream = _Streamed(s3.get_object(Bucket=settings.bucket, Key=key)["Body"],
                           time.monotonic() + VALIDATE_SECONDS)
        info = packages.scan(stream, _limits(settings))
        s3.copy_object(Bucket=settings.bucket, Key=package_key(seq_id),
                       CopySource={"Bucket": settings.bucket, "Key": key})
    finally:
        s3.delete_object(Bucket=settings.bucket, Key=key)
    return _record(settings, seq_id, info, stream.size, stream.digest.hexdigest())


def get_item(settings: Settings, seq_id: str) -> dict[str, Any]:
    if not models.valid_id(seq_id):
        raise NotFound(f"Sequence {seq_id} not found")
    seq = Repository(settings.table).get_sequence(seq_id)
    if seq is None:
        raise NotFound(f"Sequence {seq_id} not found")
    return seq


def list_page(settings: Settings, cursor: str | None = None, limit: int = 100) -> tuple[list[dict[str, Any]], str]:
    """A page of sequences, newest first, and the next page's cursor ("": none)."""
    found, after = Repository(settings.table).list_sequences(paging.decode(cursor), limit)
    return found, paging.encode(after)


def view(seq: dict[str, Any], instance_ids: list[str]) -> dict[str, Any]:
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


def delete(settings: Settings, seq_id: str, force: bool) -> dict[str, Any]:
    """Delete a sequence and its package; 409 while instances run unless ``force`` (which kills them)."""
    get_item(settings, seq_id)
    repo = Repository(settings.table)
    running = [slot["owner"] for slot in repo.slot_owners(sequence_slots(seq_id)).values()]
    if running and not force:
        raise Conflict(f"Can't remove sequence {seq_id}: {len(running)} instance(s) still running "
                       "(kill them first, or force with x-seq-kill-inst: true / si seq rm --force)")
    for inst_id in running:
        repo.kill(inst_id, clock.now(), settings.retention_seconds)
    aws.client("s3").delete_object(Bucket=settings.bucket, Key=package_key(seq_id))
    repo.delete_sequence(seq_id)
    logger.info(f"sequence {seq_id} deleted")
    return {"id": seq_id}
