"""A hub on a laptop that no web page, other user of the machine or flood can abuse: the attacks of
issue 24, each run against the embedded hub as a user starts it (``si hub start``)."""

from __future__ import annotations

import http.server
import json
import os
import re
import resource
import secrets
import socket
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from chalicelib.embedded.guard import Guard, loopback_hosts
from chalicelib.embedded.hub import moto_server
from chalicelib.embedded.storage_guard import StorageGuard

from .conftest import running_hub
from .helpers import CHROMIUM, CHROMIUM_FLAGS, EXAMPLES, SEQUENCES, SI, js_package, needs_chromium, package_dir, si


def _port(hub) -> int:
    return int(urlsplit(hub["url"]).port or 80)


def _raw(hub, request: bytes, timeout: float = 10) -> bytes:
    """Send raw bytes to the hub; its answer."""
    with socket.create_connection(("127.0.0.1", _port(hub)), timeout=timeout) as sock:
        sock.sendall(request)
        return _answer(sock)


def _answer(sock: socket.socket) -> bytes:
    """One HTTP answer read from ``sock``: its head, and its body as long as it says."""
    out = b""
    while chunk := sock.recv(65536):
        out += chunk
        head, sep, body = out.partition(b"\r\n\r\n")
        length = re.search(rb"content-length: (\d+)", head.lower())
        if sep and length and len(body) >= int(length.group(1)):
            break
    return out


# -- who may send a request ------------------------------------------------------------------------
def test_a_request_naming_another_host_is_refused(hub):
    """DNS rebinding: a page that points its own domain at 127.0.0.1 reaches the hub under that name."""
    port = _port(hub)
    for host in ("attacker.example", f"attacker.example:{port}", f"127.0.0.1.nip.io:{port}", f"127.0.0.1:{port + 1}"):
        resp = requests.get(f"{hub['url']}/instances", headers={"Host": host}, timeout=10)
        assert resp.status_code == 403 and "answers requests for" in resp.json()["error"], host
        assert "access-control-allow-origin" not in resp.headers
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        assert requests.get(f"{hub['url']}/version", headers={"Host": host}, timeout=10).status_code == 200


@pytest.mark.parametrize("headers", [
    {"Origin": "https://attacker.example"},
    {"Origin": "null"},  # a file:// page, a sandboxed frame
    {"Origin": "http://127.0.0.1:1"},  # another port of this machine: another origin
    {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},  # <img>, <script>: no Origin sent
    {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors", "Origin": "http://localhost:3000"},
])
def test_requests_from_other_web_pages_are_refused(hub, headers):
    before = requests.get(f"{hub['url']}/sequences", timeout=10).json()
    for method, path, body, ctype in (("GET", "/instances", None, None),
                                      ("POST", "/sequence", package_dir(EXAMPLES / "counter-js"), "application/octet-stream"),
                                      ("POST", "/instance/x/input", b"data", "text/plain"),
                                      ("POST", "/topic/names", b"data", "text/plain")):
        resp = requests.request(method, hub["url"] + path, data=body, timeout=10,
                                headers={**headers, **({"Content-Type": ctype} if ctype else {})})
        assert resp.status_code == 403 and "error" in resp.json(), (method, path)
        assert "access-control-allow-origin" not in resp.headers
    preflight = requests.options(f"{hub['url']}/sequence", timeout=10, headers={
        **headers, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
    assert preflight.status_code == 403 and "access-control-allow-origin" not in preflight.headers
    assert requests.get(f"{hub['url']}/sequences", timeout=10).json() == before


def test_the_hubs_own_pages_and_clients_without_an_origin_are_served(hub):
    port = _port(hub)
    same = requests.get(f"{hub['url']}/version", timeout=10, headers={
        "Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin", "Sec-Fetch-Mode": "cors"})
    assert same.status_code == 200 and "access-control-allow-origin" not in same.headers
    assert same.headers["x-content-type-options"] == "nosniff"
    # A link followed from another site opens the console (it then runs as the hub's own origin).
    link = requests.get(hub["url"].replace("/api/v1", "/console"), timeout=10, headers={
        "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"})
    assert link.status_code == 200
    csp = link.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp and link.headers["x-frame-options"] == "DENY"
    # ...but not the API: a navigation there is a page's doing, not the console's.
    nav = requests.get(f"{hub['url']}/instances", timeout=10, headers={"Sec-Fetch-Site": "cross-site",
                                                                       "Sec-Fetch-Mode": "navigate"})
    assert nav.status_code == 403


def test_the_guard_rules():
    guard = Guard(hosts=loopback_hosts("127.0.0.1", 8000), origins=frozenset({"http://localhost:3000"}))
    ok = {"host": "127.0.0.1:8000"}
    assert guard.refusal("GET", "/api/v1/instances", ok) is None
    assert guard.refusal("GET", "/api/v1/instances", {"host": "[::1]:8000"}) is None
    assert guard.refusal("GET", "/api/v1/instances", {}) is not None  # no Host at all
    allowed = {**ok, "origin": "http://localhost:3000", "sec-fetch-site": "same-site"}
    assert guard.refusal("POST", "/api/v1/sequence", allowed) is None
    assert dict(guard.cors("http://localhost:3000"))[b"access-control-allow-origin"] == b"http://localhost:3000"
    assert b"access-control-allow-origin" not in dict(guard.cors("http://localhost:3001"))
    assert guard.preflight("http://localhost:3001") is None
    beyond = Guard()  # a hub beyond loopback: any name may reach it (its token protects it), no page may
    assert beyond.refusal("GET", "/api/v1/x", {"host": "hub.lan:8000"}) is None
    assert beyond.refusal("GET", "/api/v1/x", {"host": "hub.lan:8000", "origin": "http://hub.lan:8000"}) is None
    assert beyond.refusal("GET", "/api/v1/x", {"host": "hub.lan:8000", "origin": "http://evil"}) is not None


def test_allow_origin_grants_a_page_of_that_origin_and_refuses_a_wildcard(tmp_path):
    refused = subprocess.run([*SI, "hub", "start", "--allow-origin", "*"], capture_output=True, text=True, timeout=60,
                             env={**os.environ, "SI_CONFIG_PATH": str(tmp_path)})
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "is not an origin" in refused.stderr
    with running_hub(tmp_path, "--allow-origin", "http://localhost:3000") as own:
        headers = {"Origin": "http://localhost:3000", "Sec-Fetch-Site": "same-site"}
        resp = requests.get(f"{own['url']}/instances", headers=headers, timeout=10)
        assert resp.status_code == 200 and resp.headers["access-control-allow-origin"] == "http://localhost:3000"
        assert "X-Next-Cursor" in resp.headers["access-control-expose-headers"]
        pre = requests.options(f"{own['url']}/sequence", headers={**headers, "Access-Control-Request-Method": "POST"},
                               timeout=10)
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "http://localhost:3000"
        other = requests.get(f"{own['url']}/instances", headers={"Origin": "http://localhost:3001"}, timeout=10)
        assert other.status_code == 403


class _AttackerSite(http.server.BaseHTTPRequestHandler):
    page = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(type(self).page)

    def log_message(self, *args):
        pass


_ATTACK = """<!doctype html><script>
const hub = "%(hub)s";
const results = {};
async function attempt(name, f) {
  try { const r = await f(); results[name] = r && r.type === "opaque" ? "opaque" : "read:" + r.status; }
  catch (e) { results[name] = "blocked"; }
}
(async () => {
  await attempt("list", () => fetch(hub + "/instances"));
  await attempt("send", () => fetch(hub + "/sequence", {method: "POST", body: new Uint8Array([31, 139]),
                                                         headers: {"Content-Type": "application/octet-stream"}}));
  await attempt("start", () => fetch(hub + "/sequence/x/start", {method: "POST", body: "{}",
                                                                headers: {"Content-Type": "application/json"}}));
  await attempt("input", () => fetch(hub + "/topic/stolen", {method: "POST", mode: "no-cors", body: "planted",
                                                             headers: {"Content-Type": "text/plain"}}));
  await attempt("script", () => new Promise((ok, no) => { const s = document.createElement("script");
    s.src = hub + "/instances"; s.onload = () => ok({status: "loaded"}); s.onerror = no; document.body.append(s); }));
  const form = document.createElement("form");
  form.method = "POST"; form.enctype = "text/plain"; form.action = hub + "/topic/stolen"; form.target = "sink";
  const field = document.createElement("input"); field.name = "planted"; field.value = "by a form";
  form.append(field); document.body.append(form);
  const sink = document.createElement("iframe"); sink.name = "sink"; document.body.append(sink);
  form.submit();
  await new Promise((r) => setTimeout(r, 1000));
  document.title = "done";
  window.results = results;
})();
</script>"""


@needs_chromium
def test_a_page_on_another_origin_or_a_file_cannot_use_the_hub(hub, browser, tmp_path):
    """The attack as a browser makes it: reads, package upload, start, a no-cors text/plain POST, a
    <script> include and a cross-site form, from a page on another port and from a file:// page."""
    before = requests.get(f"{hub['url']}/sequences", timeout=10).json()
    _AttackerSite.page = (_ATTACK % {"hub": hub["url"]}).encode()
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _AttackerSite)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    (tmp_path / "attack.html").write_bytes(_AttackerSite.page)
    try:
        for url in (f"http://127.0.0.1:{site.server_address[1]}/", (tmp_path / "attack.html").as_uri()):
            context = browser.new_context()
            page = context.new_page()
            page.goto(url)
            page.wait_for_function("document.title === 'done'", timeout=30_000)
            results = page.evaluate("window.results")
            context.close()
            assert results == {"list": "blocked", "send": "blocked", "start": "blocked", "input": "opaque",
                               "script": "blocked"}, (url, results)
    finally:
        site.shutdown()
    assert requests.get(f"{hub['url']}/sequences", timeout=10).json() == before
    topics = requests.get(f"{hub['url']}/topics", timeout=10).json()
    assert all(t["topic"] != "stolen" for t in topics)  # neither the no-cors POST nor the form wrote it


@needs_chromium
def test_a_rebound_domain_gets_no_answer_from_the_hub(hub, browser):
    """DNS rebinding as Chromium meets it: attacker.test now resolves to 127.0.0.1, so the attacker's
    page is same-origin with the hub's port; the hub refuses the name."""
    rebound = browser.browser_type.launch(executable_path=CHROMIUM, args=[
        *CHROMIUM_FLAGS, "--host-resolver-rules=MAP attacker.test 127.0.0.1"])
    try:
        page = rebound.new_page()
        for path in ("/api/v1/instances", "/console"):
            answer = page.goto(f"http://attacker.test:{_port(hub)}{path}")
            assert answer is not None and answer.status == 403, path
            assert "answers requests for" in page.content()
    finally:
        rebound.close()


# -- the hub's storage -----------------------------------------------------------------------------
@pytest.fixture
def guarded_storage(monkeypatch):
    guard = StorageGuard("LOCALHUB", secrets.token_urlsafe(32), origins={"http://127.0.0.1:8000"})
    server = moto_server(guard=guard)
    server.start()
    yield server, guard
    server.stop()


def _client(server, service: str, key: str, secret: str):
    return boto3.client(service, endpoint_url=server.url, region_name="us-east-1", aws_access_key_id=key,
                        aws_secret_access_key=secret, config=Config(signature_version="s3v4", retries={"max_attempts": 1}))


def test_the_storage_answers_only_the_hubs_key(guarded_storage):
    server, guard = guarded_storage
    s3 = _client(server, "s3", guard.access_key, guard.secret_key)
    ddb = _client(server, "dynamodb", guard.access_key, guard.secret_key)
    s3.create_bucket(Bucket="hub-bucket")
    s3.put_object(Bucket="hub-bucket", Key="channels/x/output/0", Body=b"secret output")
    ddb.create_table(TableName="hub", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}], BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    assert s3.get_object(Bucket="hub-bucket", Key="channels/x/output/0")["Body"].read() == b"secret output"
    for key, secret in (("LOCALHUB", "guessed"), ("local", "local"), ("AKIDEXAMPLE", guard.secret_key)):
        with pytest.raises(ClientError) as refused:
            _client(server, "dynamodb", key, secret).scan(TableName="hub")
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert requests.get(f"{server.url}/hub-bucket/channels/x/output/0", timeout=10).status_code == 403
    # moto's own API (reset, state) is never served; neither is a page of another origin.
    assert requests.post(f"{server.url}/moto-api/reset", timeout=10).status_code == 403
    assert s3.list_objects_v2(Bucket="hub-bucket")["KeyCount"] == 1
    table_read = requests.post(server.url, data="{}", timeout=10, headers={
        "X-Amz-Target": "DynamoDB_20120810.Scan", "Origin": "https://attacker.example"})
    assert table_read.status_code == 403 and "access-control-allow-origin" not in table_read.headers


def test_presigned_uploads_work_until_they_expire_and_only_as_signed(guarded_storage):
    server, guard = guarded_storage
    s3 = _client(server, "s3", guard.access_key, guard.secret_key)
    s3.create_bucket(Bucket="hub-bucket")
    url = s3.generate_presigned_url("put_object", Params={"Bucket": "hub-bucket", "Key": "uploads/a.tar.gz"},
                                    ExpiresIn=600, HttpMethod="PUT")
    assert requests.put(url, data=b"package", timeout=10).status_code == 200
    assert requests.put(url.replace("uploads/a", "uploads/b"), data=b"x", timeout=10).status_code == 403
    assert requests.put(url.replace("X-Amz-Expires=600", "X-Amz-Expires=6000"), data=b"x", timeout=10).status_code == 403
    assert requests.get(url, timeout=10).status_code == 403  # signed for PUT only
    preflight = requests.options(url, timeout=10, headers={"Origin": "http://127.0.0.1:8000",
                                                           "Access-Control-Request-Method": "PUT"})
    assert preflight.status_code == 200  # the hub's own console uploads large packages so
    assert requests.put(url, data=b"x", timeout=10, headers={"Origin": "https://attacker.example"}).status_code == 403
    expired = s3.generate_presigned_url("put_object", Params={"Bucket": "hub-bucket", "Key": "uploads/c.tar.gz"},
                                        ExpiresIn=1, HttpMethod="PUT")
    signed_at = re.search(r"X-Amz-Date=(\d{8}T\d{6}Z)", expired).group(1)
    while time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() - 1.5)) < signed_at:  # the clock passes its expiry
        time.sleep(0.2)
    assert requests.put(expired, data=b"x", timeout=10).status_code == 403
    assert s3.get_object(Bucket="hub-bucket", Key="uploads/a.tar.gz")["Body"].read() == b"package"


def test_the_embedded_hubs_storage_refuses_anyone_without_its_key(hub):
    """The hub's own moto server (a port of its own on 127.0.0.1) answers nobody but the hub."""
    ports = [p for p in _listening_ports(hub["proc"].pid) if p != _port(hub)]
    assert ports, "the hub's storage port was not found"
    for port in ports:
        base = f"http://127.0.0.1:{port}"
        assert requests.post(f"{base}/moto-api/reset", timeout=10).status_code == 403
        with pytest.raises(ClientError) as refused:
            boto3.client("dynamodb", endpoint_url=base, region_name="us-east-1", aws_access_key_id="local",
                         aws_secret_access_key="local").list_tables()
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert requests.get(f"{hub['url']}/version", timeout=10).status_code == 200


def _listening_ports(pid: int) -> list[int]:
    """TCP ports process ``pid`` listens on (from /proc: its sockets' inodes in the LISTEN state)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:
                ports.append(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(set(ports))


# -- connections and bodies --------------------------------------------------------------------------
def test_idle_connections_never_lock_out_a_request(hub):
    """1,100 connections that never finish their headers, on a hub whose limit is below that: the
    oldest idle ones are closed to make room, and /version still answers at once."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    idle = []
    try:
        for _ in range(1100):
            sock = socket.create_connection(("127.0.0.1", _port(hub)), timeout=10)
            sock.sendall(b"GET /api/v1/version HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            idle.append(sock)
        resp = requests.get(f"{hub['url']}/version", timeout=10)
        assert resp.status_code == 200
    finally:
        for sock in idle:
            sock.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_body_declared_over_its_limit_is_refused_before_it_is_sent(hub):
    port = _port(hub)
    for path, size in (("/api/v1/sequence", 10 * 1024**3), ("/api/v1/sequence/x/start", 10 * 1024**2),
                       ("/api/v1/instance/x/input", 10 * 1024**3)):
        answer = _raw(hub, f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n"
                           f"Content-Length: {size}\r\nExpect: 100-continue\r\n\r\n".encode())
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"100 Continue" not in answer and b"over this route's limit" in answer


def test_a_stalled_body_is_cut_and_large_packages_wait_on_disk(tmp_path):
    """A body that stops sending is cut (408); three package bodies of 100 MiB sent and stalled
    hold disk, not the hub's memory."""
    os.environ["SEQHUB_HTTP_BODY_IDLE_SECONDS"] = "3"
    try:
        with running_hub(tmp_path) as own:
            rss_before = _rss(own["proc"])
            port = _port(own)
            stalled = []
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(f"POST /api/v1/sequence HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                             f"Content-Type: application/octet-stream\r\nContent-Length: {400 * 1024**2}\r\n\r\n".encode())
                block = os.urandom(1024**2)
                for _ in range(100):
                    sock.sendall(block)
                stalled.append(sock)
            grown = _rss(own["proc"]) - rss_before
            assert grown < 64 * 1024**2, f"the hub grew {grown >> 20} MiB holding 300 MiB of stalled bodies"
            for sock in stalled:
                sock.settimeout(30)
                answer = _answer(sock)
                assert answer.startswith(b"HTTP/1.1 408") and b"sent nothing for 3 s" in answer, answer[:200]
                sock.close()
            assert requests.get(f"{own['url']}/version", timeout=10).status_code == 200
    finally:
        del os.environ["SEQHUB_HTTP_BODY_IDLE_SECONDS"]


def test_a_large_package_posted_directly_is_stored(hub, session, tmp_path):
    """Scramjet's CLI posts any package to POST /sequence: beyond the direct limit the hub stores it
    through its presigned path itself."""
    source = tmp_path / "big-js"
    source.mkdir()
    for item in (EXAMPLES / "counter-js").iterdir():
        (source / item.name).write_bytes(item.read_bytes())
    (source / "blob.bin").write_bytes(os.urandom(12 * 1024**2))
    package = package_dir(source)
    assert len(package) > 4_500_000
    resp = requests.post(f"{hub['url']}/sequence", data=package, timeout=120,
                         headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 200, resp.text
    seq_id = resp.json()["id"]
    assert requests.get(f"{hub['url']}/sequence/{seq_id}", timeout=10).json()["size"] == len(package)
    inst = si(hub, "seq", "start", seq_id, "7", "2", session=session).stdout.decode().split()[-1]
    assert si(hub, "inst", "output", inst, session=session).stdout == b"7\n8\n"


def _rss(proc) -> int:
    status = Path(f"/proc/{proc.pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) * 1024


# -- caps under a burst ----------------------------------------------------------------------------
def test_a_burst_of_starts_through_the_api_never_passes_the_caps(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    os.environ.update(SEQHUB_MAX_RUNNING="12", SEQHUB_MAX_RUNNING_PER_SEQUENCE="4")
    try:
        with running_hub(tmp_path) as own:
            seqs = [requests.post(f"{own['url']}/sequence", data=package_dir(SEQUENCES / "py-keep-alive"), timeout=60,
                                  headers={"Content-Type": "application/octet-stream"}).json()["id"] for _ in range(4)]

            def start(n: int) -> tuple[str, int]:
                resp = requests.post(f"{own['url']}/sequence/{seqs[n % 4]}/start", json={}, timeout=120)
                return seqs[n % 4], resp.status_code

            with ThreadPoolExecutor(max_workers=60) as pool:
                answers = list(pool.map(start, range(60)))
            started = [seq for seq, status in answers if status == 200]
            assert {status for _, status in answers} <= {200, 429, 503}  # 503: lost every try to others
            assert 8 <= len(started) <= 12 and all(started.count(s) <= 4 for s in seqs), answers
            live = [i for i in requests.get(f"{own['url']}/instances", timeout=30).json()
                    if i["status"] in ("starting", "running")]
            assert len(live) == len(started)
            for inst in live:
                requests.post(f"{own['url']}/instance/{inst['id']}/_kill", json={}, timeout=30)
    finally:
        for key in ("SEQHUB_MAX_RUNNING", "SEQHUB_MAX_RUNNING_PER_SEQUENCE"):
            del os.environ[key]


# -- quotas on what a user can store ---------------------------------------------------------------
FLOOD = ("def run(context, input):\n"
         "    block = 'x' * (1024 * 1024)\n"
         "    while True:\n"
         "        yield block\n")


def test_floods_are_refused_at_their_quotas_and_the_hubs_memory_stays_bounded(tmp_path, session):
    """Output, input to an instance that never reads, events and a topic, each flooded past its
    quota (set small here, to keep the test short): each is refused with a clear answer, the
    instance's log says why, and the hub's memory does not grow with what was stored."""
    quotas = {"SEQHUB_MAX_OUTPUT_BYTES": str(96 * 1024**2), "SEQHUB_MAX_UNREAD_INPUT_BYTES": str(8 * 1024**2),
              "SEQHUB_MAX_EVENTS_BYTES": str(4 * 1024**2), "SEQHUB_MAX_TOPIC_BYTES": str(16 * 1024**2)}
    os.environ.update(quotas)
    try:
        with running_hub(tmp_path) as own:
            url = own["url"]
            rss_before = _rss(own["proc"])
            flood = si(own, "seq", "send", str(_package_dir(tmp_path / "flood", FLOOD)), session=session)
            inst = si(own, "seq", "start", flood.stdout.decode().split()[-1], session=session).stdout.decode().split()[-1]
            info = _wait_ended(url, inst)
            assert info["status"] == "errored" and "Output quota exceeded" in info["terminated"]["reason"]
            log = requests.get(f"{url}/instance/{inst}/log", timeout=60).text
            assert "SEQHUB_MAX_OUTPUT_BYTES" in log
            output = requests.get(f"{url}/instance/{inst}/output", timeout=120).content
            assert 80 * 1024**2 <= len(output) <= 96 * 1024**2 and set(output) == {ord("x")}  # nothing past it

            # It never reads its input (nor its events): a busy loop.
            sleeper = requests.post(f"{url}/sequence", data=package_dir(SEQUENCES / "js-busy-loop"), timeout=60,
                                    headers={"Content-Type": "application/octet-stream"}).json()["id"]
            idle = requests.post(f"{url}/sequence/{sleeper}/start", json={}, timeout=60).json()["id"]
            while requests.get(f"{url}/instance/{idle}", timeout=30).json()["status"] != "running":
                time.sleep(0.1)
            block = b"y" * 1024**2
            answers = [requests.post(f"{url}/instance/{idle}/input", data=block, timeout=60, headers={
                "Content-Type": "application/octet-stream", "x-end-stream": "false"}) for _ in range(12)]
            statuses = [a.status_code for a in answers]
            assert statuses[:8] == [202] * 8 and set(statuses[8:]) == {429}, statuses
            assert "has not read" in answers[-1].json()["error"]
            # A Node sequence that waits without reading: Node leaves the input in the pipe too.
            waiter = requests.post(f"{url}/sequence", timeout=60, headers={"Content-Type": "application/octet-stream"},
                                   data=js_package("module.exports = async function (input) {\n"
                                                   "  await new Promise((resolve) => setTimeout(resolve, 1e9));\n};\n"))
            waiting = requests.post(f"{url}/sequence/{waiter.json()['id']}/start", json={}, timeout=60).json()["id"]
            while requests.get(f"{url}/instance/{waiting}", timeout=30).json()["status"] != "running":
                time.sleep(0.1)
            taken = 0
            while requests.post(f"{url}/instance/{waiting}/input", data=block, timeout=60, headers={
                    "Content-Type": "application/octet-stream", "x-end-stream": "false"}).status_code == 202:
                taken += 1
                assert taken < 24, "the Node host took input it never read without end"
                time.sleep(1.1)  # a heartbeat: the runner tells the API what the instance has read
            requests.post(f"{url}/instance/{waiting}/_kill", json={}, timeout=60)
            events = [requests.post(f"{url}/instance/{idle}/_event", timeout=60, json=[5001, {
                "eventName": "flood", "message": "z" * 200_000}]) for _ in range(24)]
            assert [e.status_code for e in events[:20]] == [200] * 20 and events[-1].status_code == 413
            assert "SEQHUB_MAX_EVENTS_BYTES" in events[-1].json()["error"]
            writes = [requests.post(f"{url}/topic/flooded", data=block, timeout=60,
                                    headers={"Content-Type": "application/octet-stream"}) for _ in range(20)]
            assert [w.status_code for w in writes[:16]] == [200] * 16 and writes[-1].status_code == 429
            assert "SEQHUB_MAX_TOPIC_BYTES" in writes[-1].json()["error"]
            requests.post(f"{url}/instance/{idle}/_kill", json={}, timeout=60)
            grown = _rss(own["proc"]) - rss_before
            # ~130 MiB was stored: it is on disk (moto's buffers spill), not in the hub's memory.
            assert grown < 80 * 1024**2, f"the hub grew {grown >> 20} MiB"
    finally:
        for key in quotas:
            del os.environ[key]


def _package_dir(path: Path, source: str) -> Path:
    path.mkdir()
    (path / "package.json").write_text(json.dumps({"name": path.name, "main": "main.py", "engines": {"python3": "3"}}))
    (path / "main.py").write_text(source)
    return path


def _wait_ended(url: str, inst: str, timeout: float = 120) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        info = requests.get(f"{url}/instance/{inst}", timeout=30).json()
        if info["status"] in ("completed", "errored"):
            return info
        time.sleep(0.2)
    raise AssertionError(f"instance {inst} did not end")
