"""The embedded local hub: moto (provisioned from infra/template.yaml), the Chalice app, local runners.

Everything runs in this one foreground process, except the runners: each instance gets its own OS
process, as Lambda would give it its own invocation.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import socket
import threading
import warnings
from http import HTTPStatus
from dataclasses import dataclass
from pathlib import Path

from chalicelib import aws

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "infra" / "template.yaml"
STACK = "sequence-hub-local"
REGION = "us-east-1"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def provision(stage: str = "local") -> dict[str, str]:
    """Create the template's stack (on whatever endpoint botocore is pointed at) and return its outputs."""
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName=f"{STACK}-{stage}", TemplateBody=TEMPLATE.read_text(),
                     Parameters=[{"ParameterKey": "Stage", "ParameterValue": stage}])
    cfn.get_waiter("stack_create_complete").wait(StackName=f"{STACK}-{stage}",
                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    stack = cfn.describe_stacks(StackName=f"{STACK}-{stage}")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    # moto creates the table but ignores TimeToLiveSpecification (aws-notes): apply it explicitly.
    aws.client("dynamodb").update_time_to_live(
        TableName=outputs["TableName"],
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    return outputs


def hub_environment(outputs: dict[str, str], retention: int, stage: str = "local") -> dict[str, str]:
    """The app's settings for these resources (what infra/wire.py writes into a deployed stage)."""
    return {"SEQHUB_TABLE": outputs["TableName"], "SEQHUB_BUCKET": outputs["BucketName"],
            "SEQHUB_LOG_GROUP": outputs["LogGroupName"], "SEQHUB_STAGE": stage,
            "SEQHUB_RETENTION_SECONDS": str(retention), "RUNNER_INVOKE_MODE": "local",
            # The hub's console is for problems, not for every instance's progress.
            "POWERTOOLS_LOG_LEVEL": "WARNING"}


def _quiet_handler_base():
    from chalice.local import ChaliceRequestHandler

    return ChaliceRequestHandler


class _QuietHandler(_quiet_handler_base()):
    # The stdlib handler writes headers and body in separate small sends; with Nagle's algorithm
    # and delayed ACKs that costs ~40 ms per response. Buffer the response and send it at once.
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (the stdlib's name)
        """Per-request lines are noise for a local hub."""

    def __getattr__(self, name: str) -> object:
        # Methods the app has no route for at all (TRACE, CONNECT, made-up ones): 405, not the
        # standard library's 501 HTML page.
        if name.startswith("do_"):
            return lambda: self.send_error(405, f"method {self.command} is not allowed")
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own errors (bad request lines, unknown methods) as JSON too."""
        body = json.dumps({"error": message or HTTPStatus(code).phrase}).encode()
        self.send_response(code, message)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)


class NotIsolated(RuntimeError):
    """A hub others can reach must isolate their instances, and this machine cannot."""


@dataclass
class LocalHub:
    host: str = "127.0.0.1"
    port: int = 8000
    retention: int = 3600
    token: str = ""  # required from clients when set (a hub listening beyond loopback)
    sandbox: bool = True  # isolate each instance (bubblewrap); off only on request, on loopback
    not_isolated: str = ""  # why instances are not isolated, once start() has looked

    def start(self) -> str:
        """Start moto and the API in background threads; return the API URL."""
        from chalicelib.runner import sandbox
        from chalicelib.runner.child import harden

        reason = sandbox.unavailable_reason() if self.sandbox else "--no-sandbox was given"
        if reason and self.token:
            raise NotIsolated(f"refusing to listen beyond this machine without isolating instances: {reason}"
                              " (install bubblewrap: apt install bubblewrap)")
        self.not_isolated = reason or ""
        harden()  # the hub holds the (fake) AWS settings its runners get: keep sequences out
        from chalice.config import Config
        from chalice.local import create_local_server
        from moto.server import ThreadedMotoServer

        # The hub announces itself; per-request lines from werkzeug and Chalice are noise here.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        logging.getLogger("chalice").setLevel(logging.WARNING)
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
        self._moto.start()
        moto_url = f"http://127.0.0.1:{self._moto._port}"
        # Fake credentials, the moto endpoint: botocore in this process and in every runner it starts.
        os.environ.update({"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": "local",
                           "AWS_SECRET_ACCESS_KEY": "local", "AWS_DEFAULT_REGION": REGION,
                           "AWS_REGION": REGION})
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        os.environ.update(hub_environment(provision(), self.retention))
        os.environ["SEQHUB_SANDBOX"] = "none" if reason else "bwrap"
        if self.token:
            os.environ["SEQHUB_LOCAL_TOKEN"] = self.token
        # Chalice warns, per request, that it does not check IAM locally: the token is our check here.
        warnings.filterwarnings("ignore", message=".*IAMAuthorizer.*")

        import app as hub_app

        config = Config.create(chalice_stage="local", app_name="sequence-hub", chalice_app=hub_app.app,
                               config_from_disk=json.loads((ROOT / ".chalice" / "config.json").read_text()),
                               project_dir=str(ROOT))
        self._server = create_local_server(hub_app.app, config, self.host, self.port)
        self._server.server.RequestHandlerClass = functools.partial(
            _QuietHandler, app_object=hub_app.app, config=config)
        self._thread = threading.Thread(target=self._server.server.serve_forever, daemon=True)
        self._thread.start()
        from chalicelib import invoker

        invoker.warm_up()
        self._stop_sweeper = threading.Event()
        threading.Thread(target=self._sweep, daemon=True).start()
        return f"http://{self.host}:{self._server.server.server_address[1]}/api/v1"

    def _sweep(self) -> None:
        """The housekeeping AWS runs on a schedule (and moto has no TTL): settle, expire, clean up."""
        from chalicelib import config, sweeper

        while not self._stop_sweeper.wait(min(5.0, max(1.0, self.retention / 4))):
            try:
                settings = config.load()
                sweeper.sweep(settings)
                sweeper.sweep_stale_uploads(settings)
            except Exception:  # never let housekeeping take the hub down; try again next round
                logging.getLogger(__name__).exception("expiry sweep failed")

    def stop(self) -> None:
        from chalicelib import invoker

        self._stop_sweeper.set()
        self._server.server.shutdown()
        self._server.server.server_close()
        invoker.stop_local_runners()
        self._moto.stop()

    def run_forever(self, announce) -> None:
        """Start, announce the URL, and block until SIGINT or SIGTERM; then stop cleanly."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        url = self.start()
        announce(url)
        try:
            done.wait()
        finally:
            self.stop()
