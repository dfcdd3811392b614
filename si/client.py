"""HTTP client for the Sequence Hub API (``/api/v1``)."""

from __future__ import annotations

import json
from typing import IO, Any, Iterator

import requests

from .errors import SiError


class Client:
    def __init__(self, api_url: str, token: str = "", timeout: float = 60.0):
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"

    # -- plumbing ------------------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        url = f"{self.api_url}/{path.lstrip('/')}"
        try:
            resp = self.http.request(method, url, **kwargs)
        except requests.ConnectionError:
            raise SiError(f"cannot reach the hub at {self.api_url} — is it running? "
                          "start one with: si hub start") from None
        except requests.Timeout:
            raise SiError(f"the hub at {self.api_url} did not answer in time") from None
        if resp.status_code >= 400:
            raise SiError(_error_message(resp), resp.status_code)
        return resp

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.request(method, path, **kwargs)
        if not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            raise SiError(f"the hub answered {path} with something that is not JSON") from None

    # -- API -----------------------------------------------------------------------------------
    def version(self) -> dict:
        return self.json("GET", "version")

    def send_sequence(self, package: IO[bytes]) -> dict:
        return self.json("POST", "sequence", data=package,
                         headers={"Content-Type": "application/octet-stream"})

    def send_large(self, package: IO[bytes], size: int) -> dict:
        """Upload through a presigned S3 PUT, then have the hub validate and record it."""
        upload = self.json("POST", "sequence/upload", json={"size": size})
        try:
            resp = requests.put(upload["url"], data=package, headers={"Content-Length": str(size)},
                                timeout=self.timeout * 10)
        except requests.RequestException as exc:
            raise SiError(f"uploading the package to storage failed: {exc}") from None
        if resp.status_code >= 300:
            raise SiError(f"uploading the package to storage failed: {resp.status_code} {resp.reason}")
        return self.json("POST", f"sequence/{upload['id']}/commit", json={})

    def sequences(self) -> list[dict]:
        return self.json("GET", "sequences")

    def sequence(self, seq_id: str) -> dict:
        return self.json("GET", f"sequence/{seq_id}")

    def delete_sequence(self, seq_id: str, force: bool = False) -> dict:
        headers = {"Content-Type": "application/json"}
        if force:
            headers["x-seq-kill-inst"] = "true"
        return self.json("DELETE", f"sequence/{seq_id}", headers=headers)

    def start(self, seq_id: str, args: list, app_config: dict | None = None,
              instance_id: str | None = None) -> dict:
        body: dict[str, Any] = {"args": args}
        if app_config is not None:
            body["appConfig"] = app_config
        if instance_id:
            body["instanceId"] = instance_id
        return self.json("POST", f"sequence/{seq_id}/start", json=body)

    def instances(self) -> list[dict]:
        return self.json("GET", "instances")

    def instance(self, inst_id: str) -> dict:
        return self.json("GET", f"instance/{inst_id}")

    def kill(self, inst_id: str) -> dict:
        return self.json("POST", f"instance/{inst_id}/_kill", json={})

    def stop(self, inst_id: str, timeout_ms: int, can_keep_alive: bool = True) -> dict:
        return self.json("POST", f"instance/{inst_id}/_stop",
                         json={"timeout": timeout_ms, "canCallKeepalive": can_keep_alive})

    def health(self, inst_id: str) -> dict:
        return self.json("GET", f"instance/{inst_id}/health")

    def emit(self, inst_id: str, name: str, message: Any) -> dict:
        return self.json("POST", f"instance/{inst_id}/_event",
                         json=[5001, {"eventName": name, "message": message}])

    def event(self, inst_id: str, name: str, wait: float = 20.0, next_only: bool = False) -> Any:
        route = "once" if next_only else "event"
        return self.json("GET", f"instance/{inst_id}/{route}/{name}", params={"wait": wait})

    def send_input(self, inst_id: str, stream: str, data: bytes, content_type: str, end: bool) -> None:
        self.request("POST", f"instance/{inst_id}/{stream}", data=data, headers={
            "Content-Type": content_type, "x-end-stream": "true" if end else "false"})

    def follow(self, inst_id: str, channel: str, follow: bool = True, wait: float = 20.0) -> Iterator[bytes]:
        """Yield the channel's bytes from the start; with ``follow``, until the channel ends."""
        cursor = ""
        while True:
            resp = self.request("GET", f"instance/{inst_id}/{channel}",
                                params={"cursor": cursor, "wait": wait if follow else 0},
                                headers={"Accept": "application/octet-stream"},
                                timeout=wait + 30)
            if resp.content:
                yield resp.content
            cursor = resp.headers.get("X-Next-Cursor", cursor)
            if resp.headers.get("X-Channel-Ended") == "true" or (not follow and not resp.content):
                return


def _error_message(resp: requests.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        err = body.get("error") or body.get("Message") or body.get("message")
        if err:
            return err if isinstance(err, str) else json.dumps(err)
    return f"the hub answered {resp.status_code} {resp.reason}"
