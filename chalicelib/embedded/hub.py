"""The embedded hub: moto (provisioned from infra/template.yaml), the Chalice app, local runners.

It runs from a checkout of the server (it needs ``app.py``, ``.chalice/`` and ``infra/`` beside
``chalicelib/``). Everything runs in this one foreground process, except the runners: each instance
gets its own OS process, as Lambda would give it its own invocation.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import logging
import os
import resource
import secrets
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .. import aws
from . import in_process, moto_memory, moto_speed, record_changes
from .storage_guard import StorageGuard

ROOT = Path(__file__).resolve().parents[2]  # the server's checkout: app.py, .chalice/, infra/
TEMPLATE = ROOT / "infra" / "template.yaml"
STACK = "sequence-hub-local"
REGION = "us-east-1"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def provision(stage: str = "local") -> dict[str, str]:
    """Create the template's stack (on whatever endpoint botocore is pointed at) and return its outputs."""
    cfn = aws.client("cloudformation")
    cfn.create_stack(StackName=f"{STACK}-{stage}", TemplateBody=TEMPLATE.read_text(),
                     Parameters=[{"ParameterKey": "Stage", "ParameterValue": stage}])
    cfn.get_waiter("stack_create_complete").wait(StackName=f"{STACK}-{stage}",
                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    stack = cfn.describe_stacks(StackName=f"{STACK}-{stage}")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    # moto creates the table but ignores its TimeToLiveSpecification: apply it explicitly.
    aws.client("dynamodb").update_time_to_live(
        TableName=outputs["TableName"],
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    return outputs


def hub_environment(outputs: dict[str, str], retention: int, stage: str = "local") -> dict[str, str]:
    """The app's settings for these resources (what infra/wire.py writes into a deployed stage)."""
    return {"SEQHUB_TABLE": outputs["TableName"], "SEQHUB_BUCKET": outputs["BucketName"],
            "SEQHUB_LOG_GROUP": outputs["LogGroupName"], "SEQHUB_STAGE": stage,
            "SEQHUB_RETENTION_SECONDS": str(retention), "RUNNER_INVOKE_MODE": "local",
            # The hub's console is for problems, not for every instance's progress; and there is no
            # CloudWatch to send metrics to.
            "POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}


def own_settings() -> dict[str, str]:
    """What the embedded hub chooses for itself, where a stage on AWS keeps the defaults (each may
    still be set in the environment)."""
    from ..runner.service import FLUSH_INTERVAL

    # No one reads CloudWatch here (readers read the S3 segments), and moto would keep a copy of
    # every byte of output in this process's memory.
    return {"SEQHUB_LOG_COPY": "none",
            # Storage writes cost nothing here: record new output at each flush, so readers (woken
            # by the write: record_changes) get it 0.2 s after it was written, not 0.5 s.
            "SEQHUB_PROGRESS_MS": str(int(FLUSH_INTERVAL * 1000))}


def _return_large_blocks() -> None:
    """Have glibc give blocks of 128 KiB and more back to the system when they are freed. Its
    default threshold grows after each large free, after which every megabyte a segment, page or
    body passed through stays in the heap: the hub's memory would grow with the traffic it served."""
    try:
        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, 128 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 512 * 1024)
    except (OSError, AttributeError):  # not glibc
        pass


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def _connection_limit() -> int:
    """Raise this process's open-file limit as far as allowed, and keep connections well below it
    (runners, moto's sockets and files need descriptors too)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = min(hard, 65536) if hard != resource.RLIM_INFINITY else 65536
    if wanted > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return max(64, min(1024, soft // 4))


class CannotStart(RuntimeError):
    """The embedded hub cannot run here; the message says why."""


class NotIsolated(CannotStart):
    """A hub others can reach must isolate their instances, and this machine cannot."""


def load_app() -> ModuleType:
    """The server's ``app.py`` (the Chalice app), by path: it is the Chalice project's entry point,
    not an installed module. Loaded once, as ``app``, so the tests' ``import app`` is this one."""
    loaded = sys.modules.get("app")
    if loaded is not None and Path(loaded.__file__ or "").resolve() == ROOT / "app.py":
        return loaded
    spec = importlib.util.spec_from_file_location("app", ROOT / "app.py")
    if spec is None or spec.loader is None or not (ROOT / "app.py").is_file():
        raise CannotStart(f"no app.py in {ROOT}: the embedded hub runs from a checkout of the server")
    module = importlib.util.module_from_spec(spec)
    sys.modules["app"] = module
    spec.loader.exec_module(module)
    return module


def moto_server(port: int = 0, guard: StorageGuard | None = None) -> Any:
    """moto's threaded server, with one DynamoDB request at a time: moto's DynamoDB is not thread
    safe (two conditional writes at once may both pass their condition, and a read may see a write
    half done), where DynamoDB makes each request atomic, which the hub relies on. With ``guard``,
    only requests signed with the hub's own key reach it (see ``storage_guard``)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from moto.server import ThreadedMotoServer
    from werkzeug.serving import make_server

    moto_speed.install()
    moto_memory.install()
    lock = threading.Lock()

    def serialised(environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            with lock:
                return list(moto_app(environ, start_response))
        return moto_app(environ, start_response)

    moto_app = DomainDispatcherApplication(create_backend_app)
    app = guard.wrap(serialised) if guard is not None else serialised

    def direct_dynamodb(request: Any) -> tuple[int, dict[str, str], bytes] | None:
        if not in_process.is_dynamodb(request):
            return None
        with lock:
            return in_process.dynamodb(request)

    class Server(ThreadedMotoServer):
        # This process's own calls (in_process): no guard, the same lock.
        direct_app = staticmethod(serialised)
        direct = staticmethod(direct_dynamodb)

        def _server_entry(self) -> None:  # ThreadedMotoServer's, with the lock in front of the app
            self._server = make_server(self._ip_address, self._port, app, True, request_handler=MotoRequestHandler)
            self._server_ready_event.set()
            self._server.serve_forever()

        @property
        def url(self) -> str:
            """Where it listens, once started (``port`` 0: the port it was given)."""
            if self._server is None:
                raise RuntimeError("the moto server is not started")
            return f"http://{self._ip_address}:{self._server.server_port}"

        def stop(self) -> None:
            super().stop()
            if self._server is not None:  # closed, not only stopped: a late request fails at once
                self._server.server_close()

    return Server(ip_address="127.0.0.1", port=port, verbose=False)


@dataclass
class LocalHub:
    host: str = "127.0.0.1"
    port: int = 8000
    retention: int = 3600
    token: str = ""  # required from clients when set (a hub listening beyond loopback)
    allow_origins: tuple[str, ...] = ()  # web origins whose pages may use the hub (CORS)
    sandbox: bool = True  # isolate each instance (bubblewrap); off only on request, on loopback
    not_isolated: str = ""  # why instances are not isolated, once start() has looked

    def start(self) -> str:
        """Start moto and the API in background threads; return the API URL."""
        from ..runner import sandbox
        from ..runner.child import harden

        reason = sandbox.unavailable_reason() if self.sandbox else "--no-sandbox was given"
        if reason and self.token:
            raise NotIsolated(f"refusing to listen beyond this machine without isolating instances: {reason}"
                              " (install bubblewrap: apt install bubblewrap)")
        self.not_isolated = reason or ""
        harden()  # the hub holds the (fake) AWS settings its runners get: keep sequences out
        _return_large_blocks()
        import uvicorn
        from chalice.config import Config

        from .. import config as config_mod
        from .gateway import BodyLimits, Bridge, HubH11
        from .guard import Guard, loopback_hosts

        # The hub announces itself; per-request lines from werkzeug and Chalice are noise here.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        logging.getLogger("chalice").setLevel(logging.WARNING)
        # The storage's own key, new at every start: only the hub and its runners hold it.
        self._storage_guard = StorageGuard(access_key="LOCALHUB", secret_key=secrets.token_urlsafe(32))
        # moto keeps every S3 object in a buffer that spills to a temporary file past this size:
        # channel segments, inputs and packages then live on disk, not in the hub's memory.
        os.environ.setdefault("MOTO_S3_DEFAULT_KEY_BUFFER_SIZE", str(64 * 1024))
        self._moto = moto_server(guard=self._storage_guard)
        self._moto.start()
        moto_url = self._moto.url
        # The key and the moto endpoint: botocore in this process and in every runner it starts.
        os.environ.update({"AWS_ENDPOINT_URL": moto_url, "AWS_ACCESS_KEY_ID": self._storage_guard.access_key,
                           "AWS_SECRET_ACCESS_KEY": self._storage_guard.secret_key, "AWS_DEFAULT_REGION": REGION,
                           "AWS_REGION": REGION})
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
            os.environ.pop(name, None)
        in_process.install(moto_url, self._moto.direct_app, self._moto.direct)  # the API's calls skip TCP; runners' do not
        record_changes.install()  # long polls look when a record changes (every write is made here)
        outputs = provision()
        # Nothing reads the table's stream here (the sweeper purges what expires, as on a stage
        # without the cleanup's mapping), and moto would keep every record of it in memory
        # (turned off, it records nothing: moto_memory, which moto_server installed).
        aws.client("dynamodb").update_table(TableName=outputs["TableName"], StreamSpecification={"StreamEnabled": False})
        os.environ.update(hub_environment(outputs, self.retention))
        os.environ["SEQHUB_SANDBOX"] = "none" if reason else "bwrap"
        for name, value in own_settings().items():
            os.environ.setdefault(name, value)
        if self.token:
            os.environ["SEQHUB_LOCAL_TOKEN"] = self.token
        # Chalice warns, per request, that it does not check IAM locally: the token is our check here.
        warnings.filterwarnings("ignore", message=".*IAMAuthorizer.*")

        from .. import hubinfo
        from ..observability import logger as hub_logger

        hub_app = load_app()

        # The hub's own log (`si hub logs`, GET /log) keeps what it does; its console only problems.
        hubinfo.keep_hub_log((hub_logger.name,))
        hub_logger.registered_handler.setLevel(logging.WARNING)
        hub_logger.setLevel(logging.INFO)

        config = Config.create(chalice_stage="local", app_name="sequence-hub", chalice_app=hub_app.app,
                               config_from_disk=json.loads((ROOT / ".chalice" / "config.json").read_text()),
                               project_dir=str(ROOT))
        settings = config_mod.load()
        family = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)[0][0]
        sock = socket.create_server((self.host, self.port), family=family)  # OSError here: the CLI says why
        # Headers and body go out in separate writes; without TCP_NODELAY (inherited by accepted
        # sockets) Nagle's algorithm and the client's delayed ACK add ~40 ms to every answer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port = sock.getsockname()[1]
        # Beyond loopback the hub is reached by names it cannot know; its token protects it there.
        guard = Guard(hosts=frozenset() if self.token else loopback_hosts(self.host, port),
                      origins=frozenset(self.allow_origins))
        # The console (this hub's own origin) uploads large packages to the storage, presigned.
        self._storage_guard.origins = {f"http://{h}" for h in guard.hosts} if guard.hosts else None
        # No API Gateway in front of this hub: packages of any allowed size may be posted directly
        # (the bridge stores large ones through the presigned path, never holding them in memory).
        limits = BodyLimits(body=settings.max_request_bytes, input_piece=settings.max_input_chunk_bytes,
                            package=settings.max_upload_bytes, direct_package=settings.max_package_bytes,
                            input_request=settings.quotas.input_bytes, idle_seconds=settings.http_body_idle_seconds)
        bridge = Bridge(hub_app.app, config, limits, guard=guard)
        HubH11.max_connections = _connection_limit()
        HubH11.header_seconds = settings.http_header_seconds
        self._server = uvicorn.Server(uvicorn.Config(bridge, http=HubH11, log_level="warning",
                                                     access_log=False, lifespan="off", timeout_keep_alive=30,
                                                     # At Ctrl-C, followers' streams and long polls are cut
                                                     # after this, not waited for.
                                                     timeout_graceful_shutdown=2))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise OSError(f"the HTTP server did not start on {self.host}:{self.port}")
            time.sleep(0.01)
        hub_logger.info(f"hub started on {self.host}:{port}")
        # Runners serve this API to their instances' hub clients (Scramjet's this.hub).
        local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)
        os.environ["SEQHUB_API_URL"] = f"http://{f'[{local}]' if ':' in local else local}:{port}/api/v1"
        from .. import invoker

        invoker.warm_up()
        self._stop_sweeper = threading.Event()
        threading.Thread(target=self._sweep, daemon=True).start()
        return f"http://{self.host}:{port}/api/v1"

    def _sweep(self) -> None:
        """The housekeeping AWS runs on a schedule (and moto has no TTL): settle, expire, clean up."""
        from .. import config, sweeper

        while not self._stop_sweeper.wait(min(5.0, max(1.0, self.retention / 4))):
            try:
                settings = config.load()
                sweeper.sweep(settings)
                sweeper.sweep_stale_uploads(settings)
            except Exception:  # never let housekeeping take the hub down; try again next round
                logging.getLogger(__name__).exception("expiry sweep failed")

    def stop(self) -> None:
        from .. import invoker

        self._stop_sweeper.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        invoker.stop_local_runners()
        in_process.uninstall()
        record_changes.uninstall()
        self._moto.stop()

    def run_forever(self, announce: Callable[[str], None]) -> None:
        """Start, announce the URL, and block until SIGINT or SIGTERM; then stop cleanly."""
        done = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
        url = self.start()
        announce(url)
        try:
            # Never one long wait: the kernel may deliver the signal to another thread, and Python
            # runs its handler only when the main thread next wakes (a wait with no timeout: never).
            while not done.wait(0.5):
                pass
        finally:
            self.stop()
