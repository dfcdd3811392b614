"""The embedded hub's storage answers the hub's credentials only.

moto's server accepts any credentials, lets every origin read its answers (CORS ``*``) and offers
``/moto-api/reset`` to anyone: a web page that finds its port, or another user of the machine,
could read or wipe every sequence, instance and channel. So each hub starts with a secret key of
its own, and every request must carry a valid AWS Signature Version 4 made with it, checked here
with botocore's own signers before moto sees the request:

- header-signed requests (everything the hub and its runners send through botocore);
- presigned URLs (the large-package uploads the API hands out), until they expire.

Browsers reach the storage only for those presigned uploads from the hub's own console; any other
``Origin`` is refused, and moto's own API is never served. Sequences cannot reach it at all when
sandboxed (no network); they never get the key in any case.
"""

from __future__ import annotations

import calendar
import hmac
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any
from urllib.parse import parse_qsl

from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

_AUTH = re.compile(r"AWS4-HMAC-SHA256 Credential=([^/,]+)/(\d{8})/([^/,]+)/([^/,]+)/aws4_request, ?"
                   r"SignedHeaders=([a-z0-9;._-]+), ?Signature=([0-9a-f]{64})")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z")
MAX_SKEW_SECONDS = 900  # as AWS: a signature older (or newer) than 15 minutes is refused
MAX_PRESIGNED_SECONDS = 7 * 86400

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class Refused(Exception):
    """The request does not carry the hub's credentials (the message says how)."""


def _epoch(amz_date: str) -> int:
    if not _AMZ_DATE.fullmatch(amz_date):
        raise Refused("bad X-Amz-Date")
    return calendar.timegm(time.strptime(amz_date, "%Y%m%dT%H%M%SZ"))


@dataclass
class StorageGuard:
    access_key: str
    secret_key: str
    # Web origins whose pages may send presigned uploads (the hub's console); None: any (a hub
    # beyond loopback cannot know the names it is reached by; the signature still decides).
    origins: set[str] | None = field(default_factory=set)

    @property
    def _credentials(self) -> Credentials:
        return Credentials(self.access_key, self.secret_key)

    def check(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> None:
        """Raise Refused unless the request is signed with the hub's key. ``headers``: lower-case
        names; ``url``: as sent (raw path and query); ``body``: None when the payload hash is in a
        header (S3)."""
        origin = headers.get("origin")
        if origin is not None and self.origins is not None and origin not in self.origins:
            raise Refused(f"requests from {origin[:100]} are refused")
        if method == "OPTIONS":  # a preflight of the console's own presigned upload
            if origin is None:
                raise Refused("preflight without an origin")
            return
        if "authorization" in headers:
            self._check_header_auth(method, url, headers, body)
        elif "X-Amz-Signature=" in url:
            self._check_presigned(method, url, headers)
        else:
            raise Refused("unsigned request")

    def _check_header_auth(self, method: str, url: str, headers: dict[str, str], body: bytes | None) -> None:
        match = _AUTH.fullmatch(headers["authorization"])
        if match is None:
            raise Refused("unrecognised Authorization header")
        access_key, _, region, service, signed, signature = match.groups()
        if not hmac.compare_digest(access_key, self.access_key):
            raise Refused("unknown access key")
        amz_date = headers.get("x-amz-date", "")
        if abs(time.time() - _epoch(amz_date)) > MAX_SKEW_SECONDS:
            raise Refused("signature expired")
        names = signed.split(";")
        if "host" not in names or any(n not in headers for n in names):
            raise Refused("a signed header is missing")
        request = AWSRequest(method=method, url=url, headers={n: headers[n] for n in names}, data=body or b"")
        request.context["timestamp"] = amz_date
        signer = (S3SigV4Auth if service == "s3" else SigV4Auth)(self._credentials, service, region)
        if "x-amz-content-sha256" not in names and body is None:
            raise Refused("the payload is not signed")
        self._compare(signer, request, signature)

    def _check_presigned(self, method: str, url: str, headers: dict[str, str]) -> None:
        path, _, query = url.partition("?")
        pairs = query.split("&")
        params = dict(parse_qsl(query, keep_blank_values=True))
        try:
            credential = params["X-Amz-Credential"].split("/")
            access_key, region, service = credential[0], credential[2], credential[3]
            expires = int(params["X-Amz-Expires"])
            signed_at = _epoch(params["X-Amz-Date"])
            signature = params["X-Amz-Signature"]
            names = params["X-Amz-SignedHeaders"].split(";")
        except (KeyError, IndexError, ValueError):
            raise Refused("incomplete presigned URL") from None
        if params.get("X-Amz-Algorithm") != "AWS4-HMAC-SHA256" or service != "s3":
            raise Refused("unsupported presigned URL")
        if not hmac.compare_digest(access_key, self.access_key):
            raise Refused("unknown access key")
        if not 0 < expires <= MAX_PRESIGNED_SECONDS or time.time() > signed_at + expires:
            raise Refused("the presigned URL has expired")
        if any(n not in headers for n in names):
            raise Refused("a signed header is missing")
        unsigned = "&".join(p for p in pairs if not p.startswith("X-Amz-Signature="))
        request = AWSRequest(method=method, url=f"{path}?{unsigned}", headers={n: headers[n] for n in names})
        request.context["timestamp"] = params["X-Amz-Date"]
        self._compare(S3SigV4QueryAuth(self._credentials, "s3", region, expires=expires), request, signature)

    @staticmethod
    def _compare(signer: SigV4Auth, request: AWSRequest, signature: str) -> None:
        expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)
        if not hmac.compare_digest(expected, signature):
            raise Refused("the signature does not match")

    def wrap(self, app: WSGIApp) -> WSGIApp:
        """``app`` (moto's WSGI application) behind this guard: a refused request gets 403."""

        def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            if environ.get("PATH_INFO", "").startswith("/moto-api"):
                return _forbidden(start_response, "moto's own API is not served")
            headers = {k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")}
            for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                if environ.get(key):
                    headers[key.replace("_", "-").lower()] = environ[key]
            raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO", "/")
            url = f"http://{headers.get('host', '')}{raw}"
            body = None
            if "x-amz-content-sha256" not in headers and "authorization" in headers:
                # Services other than S3 sign a hash of the body: it is read here, and handed on.
                body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
                environ["wsgi.input"] = BytesIO(body)
            try:
                self.check(environ.get("REQUEST_METHOD", "GET"), url, headers, body)
            except Refused as exc:
                return _forbidden(start_response, str(exc))
            return app(environ, start_response)

        return guarded


def _forbidden(start_response: Callable[..., Any], why: str) -> list[bytes]:
    body = f'{{"__type": "AccessDeniedException", "message": "{why}"}}'.encode()
    start_response("403 Forbidden", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
