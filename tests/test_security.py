"""Security: IAM on every route, SigV4 from si, the embedded hub's token, limits, and sequences
that cannot reach the hub's credentials or another instance's files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from chalice import IAMAuthorizer

from chalicelib import aws, invoker
from chalicelib.embedded.hub import free_port
from chalicelib.runner import sandbox
from si.client import Client

from .conftest import api_client, stop_process_group
from .helpers import EXAMPLES, SEQUENCES, SI, package_dir, si

JSON = {"Content-Type": "application/json"}


def test_every_api_route_requires_iam_on_aws():
    import app as hub_app

    api_routes = {p: m for p, m in hub_app.app.routes.items() if p.startswith("/api/v1")}
    assert len(api_routes) >= 20
    for path, methods in api_routes.items():
        for method, entry in methods.items():
            assert isinstance(entry.authorizer, IAMAuthorizer), f"{method} {path}"
    # Only the console's static files are public: they hold no data and call the API signed.
    assert set(hub_app.app.routes) - set(api_routes) == {"/console", "/console/{asset}"}


class _Recorder(BaseHTTPRequestHandler):
    seen: list = []
    answer = (200, b'{"service": "sequence-hub", "version": "x"}')

    def _handle(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).seen.append((self.command, self.path, dict(self.headers), body))
        self.send_response(self.answer[0])
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.answer[1])

    do_GET = do_POST = _handle

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_gateway(monkeypatch):
    """A loopback server standing in for API Gateway: it records what si sends."""
    for key, value in {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret-example",
                       "AWS_DEFAULT_REGION": "eu-west-1"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    _Recorder.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), _Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/v1"
    server.shutdown()


def test_si_signs_requests_with_valid_sigv4(fake_gateway):
    client = Client(fake_gateway, auth="iam", aws_region="eu-west-1")
    client.version()
    client.start("seq-1", [1, "two"])
    for method, path, headers, body in _Recorder.seen:
        assert re.match(r"AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/\d{8}/eu-west-1/execute-api/aws4_request, "
                        r"SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$", headers["Authorization"])
        # Recompute the signature from what arrived, as API Gateway's IAM authorizer does.
        signed_names = headers["Authorization"].split("SignedHeaders=")[1].split(",")[0].split(";")
        lower = {k.lower(): v for k, v in headers.items()}
        again = AWSRequest(method=method, url=fake_gateway.rsplit("/api/v1", 1)[0] + path, data=body,
                           headers={n: lower[n] for n in signed_names if n != "host"})
        again.context["timestamp"] = lower["x-amz-date"]  # sign at the request's own time
        signer = SigV4Auth(Credentials("AKIDEXAMPLE", "secret-example"), "execute-api", "eu-west-1")

        def signature_of(request, signer=signer):
            return signer.signature(signer.string_to_sign(request, signer.canonical_request(request)), request)

        assert headers["Authorization"].endswith("Signature=" + signature_of(again))
        tampered = AWSRequest(method=method, url=again.url, data=body + b" ", headers=dict(again.headers))
        tampered.context["timestamp"] = lower["x-amz-date"]
        assert not headers["Authorization"].endswith("Signature=" + signature_of(tampered))


def test_si_explains_a_refused_signature_in_one_line(fake_gateway, tmp_path):
    _Recorder.answer = (403, b'{"message": "The security token included in the request is invalid."}')
    try:
        env = {**os.environ, "SI_API_URL": fake_gateway, "SI_CONFIG_PATH": str(tmp_path), "SI_SESSION_ID": "s"}
        subprocess.run([*SI, "config", "set", "auth", "iam"], env=env, check=True)
        subprocess.run([*SI, "config", "set", "awsRegion", "eu-west-1"], env=env, check=True)
        result = subprocess.run([*SI, "seq", "list"], env=env, capture_output=True, text=True, timeout=60)
    finally:
        _Recorder.answer = (200, b'{"service": "sequence-hub", "version": "x"}')
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "refused your AWS credentials" in result.stderr and "si config set awsProfile" in result.stderr
    assert "security token included in the request is invalid" in result.stderr


def test_hub_beyond_loopback_requires_its_token(tmp_path, session):
    port = free_port()
    env = {**os.environ, "SI_CONFIG_PATH": str(tmp_path)}
    env.pop("AWS_ENDPOINT_URL", None)
    if sandbox.unavailable_reason() is not None:
        # Where instances cannot be isolated, a hub others could reach refuses to start, and says why.
        refused = subprocess.run([*SI, "hub", "start", "--host", "0.0.0.0", "--port", str(port)], env=env,
                                 capture_output=True, text=True, timeout=120)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1].startswith(
            "Error: refusing to listen beyond this machine without isolating instances")
        return
    log = (tmp_path / "hub.log").open("wb")
    proc = subprocess.Popen([*SI, "hub", "start", "--host", "0.0.0.0", "--port", str(port)], env=env,
                            stderr=log, stdout=log, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}/api/v1"
        for _ in range(240):
            text = (tmp_path / "hub.log").read_text()
            if "token" in text:
                break
            assert proc.poll() is None, text
            time.sleep(0.25)
        token = text.strip().splitlines()[-1]
        refused = requests.get(f"{url}/sequences", timeout=10)
        assert refused.status_code == 403 and "needs its token" in refused.json()["error"]
        wrong = requests.get(f"{url}/sequences", headers={"Authorization": "Bearer nope"}, timeout=10)
        assert wrong.status_code == 403
        assert requests.get(f"{url}/sequences", headers={"Authorization": f"Bearer {token}"}, timeout=10).json() == []
        hub = {"url": url, "home": tmp_path}
        assert b"needs its token" in si(hub, "seq", "list", session=session, check=False).stderr
        si(hub, "config", "set", "token", token, session=session)
        seq = si(hub, "seq", "send", str(EXAMPLES / "counter-py"), session=session).stdout.decode().strip()
        assert len(seq) == 36
    finally:
        stop_process_group(proc)


def test_limits_answer_413_and_429(hub_env, monkeypatch):
    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)  # instances stay "starting" (= running)
    api = api_client({**hub_env, "SEQHUB_MAX_RUNNING_PER_SEQUENCE": "1", "SEQHUB_MAX_RUNNING": "2"})
    octet = {"Content-Type": "application/octet-stream"}
    seqs = [json.loads(api.http.post("/api/v1/sequence", headers=octet, body=package_dir(EXAMPLES / "counter-py")).body)["id"]
            for _ in range(3)]
    big = json.dumps({"args": ["x" * (256 * 1024)]})
    resp = api.http.post(f"/api/v1/sequence/{seqs[0]}/start", headers=JSON, body=big)
    assert resp.status_code == 413 and "limit is 262144" in json.loads(resp.body)["error"]
    first = json.loads(api.http.post(f"/api/v1/sequence/{seqs[0]}/start", headers=JSON, body="{}").body)["id"]
    resp = api.http.post(f"/api/v1/sequence/{seqs[0]}/start", headers=JSON, body="{}")
    assert resp.status_code == 429 and "too many instances of sequence" in json.loads(resp.body)["error"]
    assert api.http.post(f"/api/v1/sequence/{seqs[1]}/start", headers=JSON, body="{}").status_code == 200
    resp = api.http.post(f"/api/v1/sequence/{seqs[2]}/start", headers=JSON, body="{}")
    assert resp.status_code == 429 and "too many instances running on this hub" in json.loads(resp.body)["error"]
    resp = api.http.post(f"/api/v1/instance/{first}/input", body=b"x" * (1024 * 1024 + 1),
                         headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 413 and "at most 1048576 bytes" in json.loads(resp.body)["error"]


@pytest.mark.parametrize("bad", ["a'b", "x" * 200, "..", "-leading-dash", "with space"])
def test_malformed_ids_never_reach_aws(api, bad):
    calls = []
    aws.client("dynamodb").meta.events.register("before-call.*.*", lambda **kw: calls.append(kw))
    for path in (f"/api/v1/instance/{requests.utils.quote(bad)}", f"/api/v1/sequence/{requests.utils.quote(bad)}"):
        resp = api.http.get(path)
        assert resp.status_code in (400, 403, 404) and "error" in json.loads(resp.body), path
    assert calls == []


def test_a_hostile_sequence_finds_no_credentials(hub, session):
    si(hub, "seq", "send", str(SEQUENCES / "py-hostile"), session=session)
    si(hub, "seq", "start", "-", session=session)
    report = json.loads(si(hub, "inst", "output", "-", session=session).stdout)
    leaked = [k for k in report["env"] if k.startswith(("AWS_", "SEQHUB_", "RUNNER_", "POWERTOOLS_"))]
    assert leaked == ["AWS_EC2_METADATA_DISABLED"]  # set by the runner, to keep SDKs off IMDS
    # In the sandbox the runner is not even visible; wherever an ancestor is, its environ is closed.
    assert all(text.startswith("denied") for text in report["parent_environ"].values())
    assert report["parent_mem"].startswith("denied")
    for pid, text in report["parent_environ"].items():
        assert "AWS_SECRET_ACCESS_KEY=local" not in text and "SEQHUB_TABLE=" not in text, pid
    assert report["sdk_credentials"] is None  # no env, no ~/.aws, no container endpoint, IMDS not asked
    # Each instance runs in a fresh copy of its package: the next one does not see what this one wrote.
    assert "secret.txt" not in report["cwd_before"]
    if sandbox.unavailable_reason() is None:  # else a directory of its own under the runner's /tmp
        assert report["cwd"] == "/package"
    si(hub, "seq", "start", "-", session=session)
    second = json.loads(si(hub, "inst", "output", "-", session=session).stdout)
    assert "secret.txt" not in second["cwd_before"]


POISON = """const fs = require("fs");
const path = require("path");
const { spawn } = require("child_process");
module.exports = async function (input, tmp) {
  // Plant a module where the next instance's require() looks (its package lies below tmp).
  fs.mkdirSync(path.join(tmp, "node_modules", "evil"), { recursive: true });
  fs.writeFileSync(path.join(tmp, "node_modules", "evil", "index.js"),
                   "module.exports = 'planted: ' + JSON.stringify(require('fs').readFileSync(" +
                   "process.env.SEQHUB_START || '/dev/null', 'utf8'));");
  spawn("sleep", ["4242"], { detached: true, stdio: "ignore" }).unref();
  process.kill(process.ppid, "SIGKILL");  // its runner: no clean-up after it
  await new Promise((resolve) => setTimeout(resolve, 1e9));
};
"""
VICTIM = """module.exports = async function () {
  try { return String(require("evil")); } catch (e) { return "clean"; }
};
"""
# A Lambda execution environment's process space, played by a PID namespace: its first process
# starts the runtime (the runner) for each invocation, again after the runtime was killed.
ENVIRONMENT = """import subprocess, sys
for line in sys.stdin:
    done = subprocess.run([sys.executable, "-m", "chalicelib.runner", line.strip()])
    print(done.returncode, flush=True)
"""


def test_an_instance_that_kills_its_runner_leaves_nothing_for_the_next_one_without_a_sandbox(tmp_path, monkeypatch):
    """issue 24, on Lambda (no sandbox, one uid for the runner and the sequence): an instance killed its
    runner, so no clean-up ran; a detached process survived, and a file it planted in
    /tmp/node_modules was loaded by the next instance's require, which read that instance's start
    data. The runner now cleans its environment before each instance too."""
    if subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a PID namespace here (unshare --pid needs root or user namespaces)")
    from chalicelib import config, instances, sequences
    from chalicelib.embedded import hub as localhub

    from .helpers import ROOT, js_package

    server = localhub.moto_server()
    server.start()
    tmp = tmp_path / "lambda-tmp"  # the environment's /tmp (never the machine's: it is emptied)
    tmp.mkdir()
    try:
        for key, value in {"AWS_ENDPOINT_URL": server.url, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                           "AWS_DEFAULT_REGION": localhub.REGION, "AWS_REGION": localhub.REGION}.items():
            monkeypatch.setenv(key, value)
        aws.reset()
        for key, value in localhub.hub_environment(localhub.provision("lambda"), retention=600, stage="lambda").items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(invoker, "invoke", lambda *_: None)  # the environment below runs them
        settings = config.load()
        poison = instances.start(settings, sequences.create(settings, js_package(POISON))["id"], {"args": [str(tmp)]})["id"]
        victim = instances.start(settings, sequences.create(settings, js_package(VICTIM))["id"],
                                 {"args": [], "appConfig": {"secret": "the victim's"}})["id"]
        env = {**os.environ, "AWS_LAMBDA_FUNCTION_NAME": "sequence-hub-test-runner", "TMPDIR": str(tmp),
               "PYTHONPATH": str(ROOT)}
        lambda_env = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable,
                                       "-c", ENVIRONMENT], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                                      cwd=ROOT, text=True)
        try:
            lambda_env.stdin.write(f"{poison}\n")
            lambda_env.stdin.flush()
            assert lambda_env.stdout.readline().strip() == "-9"  # the runtime was killed by its instance
            assert (tmp / "node_modules" / "evil" / "index.js").exists()
            assert subprocess.run(["pgrep", "-f", "^sleep 4242$"], capture_output=True).returncode == 0
            lambda_env.stdin.write(f"{victim}\n")
            lambda_env.stdin.flush()
            assert lambda_env.stdout.readline().strip() == "0"
        finally:
            lambda_env.kill()
            lambda_env.wait()
        assert instances.read_channel(settings, victim, "output", "", 0)["data"] == b"clean"
        assert not (tmp / "node_modules").exists()
        assert subprocess.run(["pgrep", "-f", "^sleep 4242$"], capture_output=True).returncode == 1
    finally:
        aws.reset()
        server.stop()
