"""The hub's API, served to one instance on a Unix socket: what its ``this.hub`` (Scramjet's
HostClient) talks to.

A sandboxed instance has no network, so it cannot reach the API itself; a file in its sandbox can
be a socket. The runner listens there and sends each HTTP request on to this hub's own API
(``Settings.api_url``) and nowhere else, then streams the answer back. Requests carry no
credentials of the runner's: on a hub that needs a token (one listening beyond loopback) they are
refused as any client without it is. On AWS, where the API wants IAM, the runner signs them with
its own role (which may invoke exactly this stage's API).
"""

from __future__ import annotations

import http.client
import json
import os
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..protocol import API_BASE

# Hop-by-hop headers (RFC 9110), and what the upstream request sets itself.
_DROPPED = {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
            "transfer-encoding", "upgrade", "host", "content-length", "authorization"}
MAX_SIGNED_BODY = 10 * 1024 * 1024  # API Gateway's limit: a signed request's body is held whole
UPSTREAM_SECONDS = 60


def for_instance(api_url: str | None, runtime: str, work_dir: Path) -> HubProxy | None:
    """The endpoint of an instance's ``this.hub``, in ``work_dir``: Scramjet gives JavaScript
    sequences one, where this hub's API is known."""
    return HubProxy(work_dir / "hub.sock", api_url) if api_url and runtime == "node" else None


class HubProxy:
    """One instance's hub client endpoint: a Unix socket whose requests go to ``api_url``."""

    def __init__(self, path: Path, api_url: str):
        self.path = path
        upstream = urlsplit(api_url)
        handler = type("Handler", (_Forward,), {"upstream": upstream})
        self._server = socketserver.ThreadingUnixStreamServer(str(path), handler)
        self._server.daemon_threads = True
        os.chmod(path, 0o666)  # the instance's own uid connects to it (inside its sandbox only)
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-proxy", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        try:
            self.path.unlink()
        except OSError:
            pass


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream: Any  # urllib.parse.SplitResult of the API base, set per server

    def log_message(self, *args: Any) -> None:  # the instance's requests are not the runner's log
        pass

    def do_GET(self) -> None:
        self._forward()

    do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

    def _forward(self) -> None:
        # Scramjet's client asks for http://scramjet-host/api/v1/...: only the API's own paths go on.
        path = urlsplit(self.path).path
        if not path.startswith(API_BASE + "/"):
            self._answer(404, {"error": f"no such endpoint: {self.command} {path}"})
            return
        query = urlsplit(self.path).query
        target = self.upstream.path.rstrip("/") + path[len(API_BASE):] + (f"?{query}" if query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _DROPPED}
        body: Any = self._body()
        conn_class = http.client.HTTPSConnection if self.upstream.scheme == "https" else http.client.HTTPConnection
        conn = conn_class(self.upstream.netloc, timeout=UPSTREAM_SECONDS)
        try:
            if (self.upstream.hostname or "").endswith(".amazonaws.com"):  # API Gateway wants IAM
                body = b"".join(body) if isinstance(body, Iterator) else body or b""
                if len(body) > MAX_SIGNED_BODY:
                    self._answer(413, {"error": f"a request from a sequence may carry at most {MAX_SIGNED_BODY} bytes"})
                    return
                headers = _signed(self.command, f"{self.upstream.scheme}://{self.upstream.netloc}{target}", headers, body)
            conn.request(self.command, target, body=body, headers=headers,
                         encode_chunked=body is not None and not isinstance(body, bytes))
            resp = conn.getresponse()
            self.send_response(resp.status)
            length = resp.getheader("content-length")
            for name, value in resp.getheaders():
                if name.lower() not in _DROPPED:
                    self.send_header(name, value)
            if length is not None:
                self.send_header("Content-Length", length)
            else:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while chunk := resp.read1(64 * 1024):
                self.wfile.write(chunk if length is not None else b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            if length is None:
                self.wfile.write(b"0\r\n\r\n")
        except OSError as exc:  # the hub went away, or the instance did
            if not self.wfile.closed:
                try:
                    self._answer(502, {"error": f"the hub could not be reached: {exc}"})
                except OSError:
                    pass
        finally:
            conn.close()

    def _body(self) -> Iterator[bytes] | bytes | None:
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            return self._chunks()
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length else None

    def _chunks(self) -> Iterator[bytes]:
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                    pass
                return
            yield self.rfile.read(size)
            self.rfile.readline()

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _signed(method: str, url: str, headers: dict[str, str], body: bytes) -> dict[str, str]:
    """``headers`` with a SigV4 signature of the runner's own role, as API Gateway's IAM wants."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = botocore.session.get_session()
    credentials = session.get_credentials()
    if credentials is None:
        raise OSError("the runner has no AWS credentials to sign the hub's API requests with")
    region = session.get_config_variable("region") or os.environ.get("AWS_REGION", "us-east-1")
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())
