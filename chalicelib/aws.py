"""The one place boto3 clients are created: lazily, cached, and never with an ``endpoint_url``.

botocore reads ``AWS_ENDPOINT_URL`` itself, so the same code talks to AWS, to in-process moto or
to the embedded hub's moto server.
"""

from __future__ import annotations

import threading
from typing import Any

import boto3
from botocore.config import Config

_clients: dict[str, Any] = {}
_lock = threading.Lock()
_CONFIG = Config(retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=50)
# S3: presigned URLs signed with SigV4 at the bucket's regional, virtual-hosted endpoint (botocore
# would presign with SigV2 at the global endpoint, which newer buckets and regions refuse). With a
# custom endpoint (moto) botocore keeps path style.
_SERVICE_CONFIG = {"s3": _CONFIG.merge(Config(signature_version="s3v4", s3={"addressing_style": "virtual"}))}


def client(service: str) -> Any:
    """A shared client for ``service`` (clients are thread-safe; sessions are not)."""
    found = _clients.get(service)
    if found is None:
        with _lock:
            found = _clients.get(service)
            if found is None:
                session: Any = boto3.session.Session()  # typed per service name; ours is a str
                found = session.client(service, config=_SERVICE_CONFIG.get(service, _CONFIG))
                _clients[service] = found
    return found


def reset() -> None:
    """Forget every client, e.g. when a test starts a new moto mock."""
    with _lock:
        _clients.clear()
