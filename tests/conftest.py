"""Fixtures: in-process moto provisioned from infra/template.yaml, the app's settings, the API client."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from moto import mock_aws

from chalicelib import aws, config, invoker
from chalicelib.embedded import hub as localhub
from chalicelib.embedded import moto_speed
from chalicelib.embedded.hub import free_port

from .helpers import CHROMIUM, CHROMIUM_FLAGS, ROOT, SI

_DYNAMODB = threading.Lock()
REAL_INVOKE = invoker.invoke


def run_inline(settings: config.Settings, instance_id: str, engine: str = "lambda", _runtime: str = "") -> None:
    """The tests' invoker: the runner runs in this process, to the end, before ``start`` returns."""
    from chalicelib.runner.__main__ import NO_LIMIT_SECONDS
    from chalicelib.runner.service import run_instance

    deadline = time.monotonic() + (settings.time_limit(engine) or NO_LIMIT_SECONDS)
    run_instance(settings, instance_id, lambda: int((deadline - time.monotonic()) * 1000))


def atomic_dynamodb(monkeypatch) -> None:
    """DynamoDB makes each request atomic; moto in this process does not (two threads updating one
    item may lose an update). Runners run in threads beside the API here: one request at a time."""
    from moto.core.botocore_stubber import BotocoreStubber

    original = BotocoreStubber.process_request

    def process_request(self, request):
        target = request.headers.get("X-Amz-Target", b"")
        if (target.decode() if isinstance(target, bytes) else str(target)).startswith("DynamoDB_"):
            with _DYNAMODB:
                return original(self, request)
        return original(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", process_request)


@pytest.fixture
def hub_env(monkeypatch):
    """moto in this process, the template's resources, and the hub's settings; each instance runs in
    this process before its start returns (``run_inline``)."""
    atomic_dynamodb(monkeypatch)
    moto_speed.install()  # as the embedded hub's moto does
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # mock_aws ignores custom endpoints
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": localhub.REGION, "AWS_REGION": localhub.REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws(config={"lambda": {"use_docker": False}}):  # no Docker here: moto only records invokes
        aws.reset()
        env = localhub.hub_environment(localhub.provision("test"), retention=60, stage="test")
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        monkeypatch.setattr(invoker, "invoke", run_inline)
        # moto registers a service's URL handlers on its first call, in a dict other threads iterate
        # ("dictionary changed size during iteration" seen once): make each first call here, before
        # any test starts a runner thread.
        aws.client("logs").describe_log_streams(logGroupName=env["SEQHUB_LOG_GROUP"])
        aws.client("lambda").list_functions()
        aws.client("s3").list_objects_v2(Bucket=env["SEQHUB_BUCKET"])
        aws.client("dynamodb").describe_table(TableName=env["SEQHUB_TABLE"])
        yield env
    aws.reset()


@pytest.fixture
def settings(hub_env) -> config.Settings:
    return config.load()


def api_client(env: dict) -> SimpleNamespace:
    """Chalice's test HTTP client on the real app and its real config, with ``env`` on top
    (it sets the stage's environment per request, which would otherwise replace ours)."""
    from chalice.config import Config
    from chalice.test import TestHTTPClient

    import app as hub_app

    config = Config.create(chalice_stage="local", app_name="sequence-hub", project_dir=str(ROOT),
                           config_from_disk=json.loads((ROOT / ".chalice" / "config.json").read_text()),
                           environment_variables=dict(env))
    return SimpleNamespace(http=TestHTTPClient(hub_app.app, config))


@pytest.fixture
def api(hub_env):
    return api_client(hub_env)


@contextlib.contextmanager
def running_hub(home: Path, *options: str):
    """`si hub start` in its own process, as a user runs it; stopped (and checked clean) at the end."""
    port = free_port()
    env = {**os.environ, "SI_CONFIG_PATH": str(home)}
    env.pop("AWS_ENDPOINT_URL", None)
    log = (home / "hub.log").open("wb")  # a file, not a pipe: nobody reads it while tests run
    proc = subprocess.Popen([*SI, "hub", "start", "--port", str(port), "--retention", "600", *options], env=env,
                            stdout=log, stderr=log, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/v1"
    try:
        # Up, and announced (what it says at start is in its log). Generous: a loaded machine may
        # take seconds to answer its first request.
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (home / "hub.log").read_text()
            assert time.monotonic() < deadline, "the hub did not start in 120 s: " + (home / "hub.log").read_text()
            try:
                requests.get(f"{url}/version", timeout=10)
                if "Sequence Hub is running" in (home / "hub.log").read_text():
                    break
            except requests.RequestException:
                pass
            time.sleep(0.25)
        yield {"url": url, "home": home, "proc": proc, "log": home / "hub.log"}
    finally:
        stop_process_group(proc)


def stop_process_group(proc: subprocess.Popen) -> None:
    """SIGTERM, as Ctrl-C would; it must exit cleanly and leave no runner or host of its group behind.
    Whatever happened (a failed test, a hub that would not stop), nothing of it outlives the test."""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=60)
        leftovers = _live_members(proc.pid)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # its session: the hub, its runners, their hosts
        if proc.poll() is None:
            proc.wait(timeout=30)
    assert code == 0
    assert leftovers == ""


def _live_members(session: int) -> str:
    """The processes of a session still running. Zombies are not: bwrap's outer process can exit
    before its pid-namespace child, which init then collects (on some machines, seconds later)."""
    listing = subprocess.run(["ps", "-s", str(session), "-o", "pid=,stat=,args="], capture_output=True,
                             text=True).stdout
    return "\n".join(line for line in listing.splitlines() if not line.split()[1].startswith("Z")).strip()


@pytest.fixture(scope="session")
def hub(tmp_path_factory):
    """The embedded hub as a user runs it: `si hub start` in its own process."""
    with running_hub(tmp_path_factory.mktemp("si-home")) as running:
        yield running


@pytest.fixture
def session() -> str:
    """A terminal session of its own: what '-' means is per session."""
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright (tests using it are marked needs_chromium)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


# -- what a request costs on AWS: its calls and the items it reads, counted on the real clients --------
WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems", "PutObject",
          "DeleteObject", "DeleteObjects", "PutLogEvents", "CreateLogStream", "DeleteLogStream"}


class Calls:
    """Every AWS call made while ``on``: (service, operation), items read, request bytes."""

    def __init__(self) -> None:
        self.ops: Counter = Counter()
        self.items_read = 0
        self.request_bytes = 0
        self.on = False

    def reset(self) -> None:
        self.ops.clear()
        self.items_read = 0
        self.request_bytes = 0

    def writes(self) -> int:
        return sum(n for (_, op), n in self.ops.items() if op in WRITES)

    def of(self, action: Any) -> tuple[dict, int]:
        """What ``action()`` costs: its calls by (service, operation), and the items it read."""
        self.reset()
        self.on = True
        try:
            action()
        finally:
            self.on = False
        return dict(self.ops), self.items_read


@pytest.fixture
def calls(settings) -> Calls:
    counter = Calls()

    def before(params: dict, model: Any, **_: Any) -> None:
        if counter.on:
            counter.ops[(model.service_model.service_name, model.name)] += 1
            counter.request_bytes += len(json.dumps(params, default=len))

    def after(parsed: dict, model: Any, **_: Any) -> None:
        if counter.on and model.service_model.service_name == "dynamodb":
            counter.items_read += parsed.get("Count", 0) + ("Item" in parsed) + sum(
                len(v) for v in parsed.get("Responses", {}).values())

    for service in ("dynamodb", "s3", "logs", "lambda", "apigateway"):
        events = aws.client(service).meta.events
        events.register("before-parameter-build.*.*", before)
        events.register("after-call.*.*", after)
    return counter


@pytest.fixture
def not_invoked(monkeypatch) -> None:
    """Starts leave the instance "starting": these tests run the runner themselves, when they choose."""
    monkeypatch.setattr(invoker, "invoke", lambda _settings, inst_id, _engine="lambda", _runtime="": None)
