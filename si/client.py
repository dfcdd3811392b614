"""HTTP client for the Sequence Hub API (``/api/v1``)."""

from __future__ import annotations

import json as jsonlib
import re
from collections.abc import Iterator
from typing import Any, Protocol
from urllib.parse import quote, urlencode

from .errors import SiError
from .transport import Response, Transport, TransportError, TransportTimeout

_SIGNED_HEADERS = ("content-type", "x-end-stream", "x-seq-kill-inst", "accept")


class SigV4:
    """Signs requests for API Gateway's IAM authorizer with the user's own AWS credentials."""

    def __init__(self, aws_profile: str = "", region: str = ""):
        import botocore.session

        self.session = botocore.session.Session(profile=aws_profile or None)
        self.region = region

    def sign(self, method: str, url: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with the signature's own added."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        try:
            creds = self.session.get_credentials()
        except Exception as exc:  # botocore raises several kinds for a broken profile
            raise SiError(f"cannot load your AWS credentials: {exc}") from None
        if creds is None:
            raise SiError("no AWS credentials found: configure them (aws configure / aws sso login) "
                          "or pick a profile with: si config set awsProfile NAME")
        signed = AWSRequest(method=method, url=url, data=body,
                            headers={k: v for k, v in headers.items() if k.lower() in _SIGNED_HEADERS})
        SigV4Auth(creds.get_frozen_credentials(), "execute-api", self.region or _region_of(url)).add_auth(signed)
        return {**headers, **dict(signed.headers)}


def _region_of(url: str) -> str:
    """The region in an API Gateway URL (<id>.execute-api.<region>.amazonaws.com)."""
    match = re.search(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com", url)
    if not match:
        raise SiError("cannot tell the AWS region from the API URL: si config set awsRegion REGION")
    return match.group(1)


class Readable(Protocol):
    """What a package upload reads from: a file, or the CLI's progress-reporting wrapper of one."""

    def read(self, size: int = -1, /) -> bytes: ...


def needs_sigv4(api_url: str, auth: str = "") -> bool:
    return auth == "iam" or (auth == "" and ".amazonaws.com" in api_url)


class Client:
    def __init__(self, api_url: str, token: str = "", timeout: float = 60.0, auth: str = "",
                 aws_profile: str = "", aws_region: str = ""):
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.http = Transport()
        self.signer = SigV4(aws_profile, aws_region) if needs_sigv4(self.api_url, auth) else None
        self.signed = self.signer is not None
        self.headers = {"Authorization": f"Bearer {token}"} if token and not self.signed else {}

    # -- plumbing ------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, data: Any = None,
                json: Any = None, headers: dict[str, str] | None = None, timeout: float | None = None) -> Response:
        url = f"{self.api_url}/{path.lstrip('/')}"
        if params:
            url += f"?{urlencode(params)}"
        sent = {**self.headers, **(headers or {})}
        if json is not None:
            data = jsonlib.dumps(json).encode()
            sent.setdefault("Content-Type", "application/json")
        if self.signer is not None:  # the signature covers the URL with its query and the body
            sent = self.signer.sign(method, url, data if isinstance(data, bytes) else b"", sent)
        try:
            resp = self.http.request(method, url, data=data, headers=sent,
                                     timeout=self.timeout if timeout is None else timeout)
        except TransportTimeout:
            raise SiError(f"the hub at {self.api_url} did not answer in time") from None
        except TransportError:
            raise SiError(f"cannot reach the hub at {self.api_url} — is it running? "
                          "start one with: si hub start") from None
        if resp.status_code == 403:
            raise SiError(self._forbidden(resp), 403)
        if resp.status_code >= 400:
            raise SiError(_error_message(resp), resp.status_code)
        return resp

    def _forbidden(self, resp: Response) -> str:
        why = _error_message(resp)
        if self.signed:
            return (f"the hub refused your AWS credentials ({why}): check them with `aws sts "
                    "get-caller-identity`, or pick another profile: si config set awsProfile NAME")
        return f"the hub refused the request ({why})"

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.request(method, path, **kwargs)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise SiError(f"the hub answered {path} with something that is not JSON") from None

    def obj(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """An answer that is a JSON object (or empty); anything else is said in one line."""
        found = self.json(method, path, **kwargs)
        if found is None:
            return {}
        if not isinstance(found, dict):
            raise SiError(f"the hub answered {path} with a JSON {type(found).__name__}, not an object")
        return found

    def objects(self, method: str, path: str, **kwargs: Any) -> list[dict[str, Any]]:
        """An answer that is a JSON list of objects; anything else is said in one line."""
        found = self.json(method, path, **kwargs)
        if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
            raise SiError(f"the hub answered {path} with something that is not a list of objects")
        return found

    # -- API -----------------------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        return self.obj("GET", "version")

    def send_sequence(self, package: Readable) -> dict[str, Any]:
        # A signed request hashes its body, so it is read whole (direct uploads are ≤ 4.5 MB).
        return self.obj("POST", "sequence", data=package.read() if self.signed else package,
                         headers={"Content-Type": "application/octet-stream"})

    def send_large(self, package: Readable, size: int) -> dict[str, Any]:
        """Upload through a presigned S3 PUT, then have the hub validate and record it."""
        upload = self.obj("POST", "sequence/upload", json={"size": size})
        try:
            resp = self.http.request("PUT", upload["url"], data=package, headers={"Content-Length": str(size)},
                                     timeout=self.timeout * 10)
        except TransportError as exc:
            raise SiError(f"uploading the package to storage failed: {exc}") from None
        if resp.status_code >= 300:
            raise SiError(f"uploading the package to storage failed: {resp.status_code} {resp.reason}")
        return self.obj("POST", f"sequence/{upload['id']}/commit", json={})

    def page(self, path: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], str, Response]:
        """One page of a listing: its items, the next page's cursor ("": none), the answer."""
        resp = self.request("GET", path, params={k: v for k, v in params.items() if v not in (None, "", False)})
        found = resp.json() if resp.content else []
        if not isinstance(found, list) or not all(isinstance(item, dict) for item in found):
            raise SiError(f"the hub answered {path} with something that is not a list of objects")
        return found, resp.headers.get("X-Next-Cursor", ""), resp

    def listing(self, path: str, params: dict[str, Any], every: bool = False) -> tuple[list[dict[str, Any]], str]:
        """A listing's first page, or (``every``) all of it, page after page; and what is left's cursor."""
        items, cursor, _ = self.page(path, params)
        while every and cursor:
            more, cursor, _ = self.page(path, {**params, "cursor": cursor})
            items += more
        return items, cursor

    def sequences(self, every: bool = True) -> list[dict[str, Any]]:
        return self.listing("sequences", {"limit": 200}, every)[0]

    def sequence(self, seq_id: str) -> dict[str, Any]:
        return self.obj("GET", f"sequence/{seq_id}")

    def delete_sequence(self, seq_id: str, force: bool = False) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if force:
            headers["x-seq-kill-inst"] = "true"
        return self.obj("DELETE", f"sequence/{seq_id}", headers=headers)

    def start(self, seq_id: str, args: list[Any], app_config: dict[str, Any] | None = None,
              instance_id: str | None = None, output_topic: str | None = None,
              input_topic: str | None = None, engine: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"args": args}
        if app_config is not None:
            body["appConfig"] = app_config
        if instance_id:
            body["instanceId"] = instance_id
        if output_topic:
            body["outputTopic"] = output_topic
        if input_topic:
            body["inputTopic"] = input_topic
        if engine:
            body["engine"] = engine
        return self.obj("POST", f"sequence/{seq_id}/start", json=body)

    def instances(self, every: bool = True, **filters: Any) -> list[dict[str, Any]]:
        return self.listing("instances", {"limit": 200, **filters}, every)[0]

    def instance(self, inst_id: str) -> dict[str, Any]:
        return self.obj("GET", f"instance/{inst_id}")

    def kill(self, inst_id: str) -> dict[str, Any]:
        return self.obj("POST", f"instance/{inst_id}/_kill", json={})

    def stop(self, inst_id: str, timeout_ms: int, can_keep_alive: bool = True) -> dict[str, Any]:
        return self.obj("POST", f"instance/{inst_id}/_stop",
                         json={"timeout": timeout_ms, "canCallKeepalive": can_keep_alive})

    def health(self, inst_id: str) -> dict[str, Any]:
        return self.obj("GET", f"instance/{inst_id}/health")

    def emit(self, inst_id: str, name: str, message: Any) -> dict[str, Any]:
        return self.obj("POST", f"instance/{inst_id}/_event",
                         json=[5001, {"eventName": name, "message": message}])

    def event(self, inst_id: str, name: str, wait: float = 20.0, next_only: bool = False) -> Any:
        route = "once" if next_only else "event"
        return self.json("GET", f"instance/{inst_id}/{route}/{name}", params={"wait": wait})

    def send_input(self, inst_id: str, stream: str, data: bytes, content_type: str, end: bool) -> None:
        self.request("POST", f"instance/{inst_id}/{stream}", data=data, headers={
            "Content-Type": content_type, "x-end-stream": "true" if end else "false"})

    def follow(self, inst_id: str, channel: str, follow: bool = True, wait: float = 20.0) -> Iterator[bytes]:
        """Yield the channel's bytes from the start; with ``follow``, until the channel ends."""
        return self._pages(f"instance/{inst_id}/{channel}", follow, wait, "application/octet-stream")

    def _pages(self, path: str, follow: bool, wait: float, accept: str) -> Iterator[bytes]:
        """A paged stream (a channel, a topic) from its start: each page's bytes, going on from its
        X-Next-Cursor, until X-Channel-Ended says so, or (without ``follow``) a page comes empty."""
        cursor = ""
        while True:
            resp = self.request("GET", path, params={"cursor": cursor, "wait": wait if follow else 0},
                                headers={"Accept": accept}, timeout=wait + 30)
            if resp.content:
                yield resp.content
            cursor = resp.headers.get("X-Next-Cursor", cursor)
            if resp.headers.get("X-Channel-Ended") == "true" or (not follow and not resp.content):
                return

    # -- topics ----------------------------------------------------------------------------------
    def topics(self) -> list[dict[str, Any]]:
        return self.objects("GET", "topics")

    def create_topic(self, name: str, content_type: str) -> dict[str, Any]:
        return self.obj("POST", "topics", json={"id": name, "content-type": content_type})

    def delete_topic(self, name: str) -> dict[str, Any]:
        return self.obj("DELETE", f"topics/{quote(name, safe='')}")

    def send_topic(self, name: str, data: bytes, content_type: str) -> None:
        self.request("POST", f"topic/{quote(name, safe='')}", data=data, headers={"Content-Type": content_type})

    def follow_topic(self, name: str, follow: bool = True, wait: float = 20.0) -> Iterator[bytes]:
        """Yield the topic's bytes from where its retained data begins; with ``follow``, forever (a
        topic never ends)."""
        return self._pages(f"topic/{quote(name, safe='')}", follow, wait, "*/*")


def _error_message(resp: Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error") or body.get("Message") or body.get("message")
        if err:
            return err if isinstance(err, str) else jsonlib.dumps(err)
    return f"the hub answered {resp.status_code} {resp.reason}"
