"""Configuration, parsed in one place from environment variables at call time (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from . import protocol

INVOKE_MODES = ("lambda", "local")
ENGINES = protocol.ENGINES
CAPACITIES = ("FARGATE", "FARGATE_SPOT")
SANDBOXES = ("none", "bwrap")
# How often a runner records new segments while output flows, unless SEQHUB_PROGRESS_MS says: each
# record is a DynamoDB write, and readers see new output when it lands.
PROGRESS_MS = 500
# Which channels are copied to CloudWatch Logs (readers read S3; the copy is for search and audit).
LOG_COPIES = ("all", "log", "none")


class ConfigError(RuntimeError):
    """The hub is deployed or started without a setting it needs."""


@dataclass(frozen=True)
class Limits:
    """One sandboxed instance's limits (the embedded hub; see ``runner.sandbox``)."""

    max_procs: int
    memory_mb: int
    disk_mb: int


@dataclass(frozen=True)
class Quotas:
    """What one instance or topic may store, in all (see docs/security.md). Each is refused with a
    clear 413/429 above it, and an instance that outgrows one ends, its log saying which."""

    output_bytes: int         # every channel of one instance together
    input_bytes: int          # input and stdin sent to one instance, in all
    unread_input_bytes: int   # sent to one instance and not yet read by it
    event_bytes: int          # events sent to one instance, as JSON, in all
    event_names: int          # distinct event names one instance emits (the last message of each is kept)
    topic_bytes: int          # data one topic holds (written since it was made, while it lives)


@dataclass(frozen=True)
class Fargate:
    """The fargate engine's ECS resources (infra/fargate.yaml's, copied into the stage by infra/wire.py).
    Empty ``cluster``: this stage has no fargate engine (the embedded hub plays it with a process)."""

    cluster: str = ""
    task_definition: str = ""
    subnets: tuple[str, ...] = ()
    security_group: str = ""
    capacity: str = "FARGATE"  # or FARGATE_SPOT: about a third of the price, stopped at two minutes' notice
    public_ip: bool = True  # a default VPC's subnets reach AWS's endpoints through a public address only
    timeout_seconds: int = 0  # stop an instance after this long on fargate (0: never)


@dataclass(frozen=True)
class Wiring:
    """What a deployed stage needs beyond what ``chalice deploy`` declares (``chalicelib.wiring``):
    the functions it sets up, by name, and the stateful stack's stream and failure queue."""

    runner: str
    cleanup: str
    api: str  # the API function: its resource policy names the REST API that invokes it
    table_stream: str
    failure_queue: str
    runner_tmp_mb: int = 2048
    api_stage: str = "api"


def load_wiring(environ: Mapping[str, str] | None = None) -> Wiring:
    """The wiring function's settings (infra/wire.py env writes them into its environment)."""
    env = os.environ if environ is None else environ
    missing = [n for n in ("SEQHUB_STAGE", "RUNNER_FUNCTION", "SEQHUB_TABLE_STREAM", "SEQHUB_FAILURE_QUEUE")
               if not env.get(n)]
    if missing:
        raise ConfigError(f"missing configuration: {', '.join(missing)} (make setup writes them)")
    prefix = f"{protocol.SERVICE}-{env['SEQHUB_STAGE']}"  # Chalice names functions <app>-<stage>[-<name>]
    tmp_mb = _int(env, "SEQHUB_RUNNER_TMP_MB", 2048)
    if not 512 <= tmp_mb <= 10240:
        raise ConfigError(f"SEQHUB_RUNNER_TMP_MB must be 512-10240 (Lambda's range), got {tmp_mb}")
    return Wiring(runner=env["RUNNER_FUNCTION"], cleanup=f"{prefix}-cleanup", api=prefix,
                  table_stream=env["SEQHUB_TABLE_STREAM"], failure_queue=env["SEQHUB_FAILURE_QUEUE"],
                  runner_tmp_mb=tmp_mb, api_stage=env.get("SEQHUB_API_STAGE", "api"))


@dataclass(frozen=True)
class Settings:
    table: str
    bucket: str
    log_group: str
    runner_function: str
    invoke_mode: str
    retention_seconds: int
    runner_timeout_seconds: int
    lost_after_seconds: int
    max_package_bytes: int
    max_upload_bytes: int
    max_unpacked_bytes: int
    max_package_files: int
    max_request_bytes: int
    max_input_chunk_bytes: int
    max_start_data_bytes: int
    max_event_bytes: int
    max_running: int
    max_running_per_sequence: int
    max_topics: int
    quotas: Quotas
    local_token: str
    stage: str
    sandbox: str
    sandbox_limits: Limits
    owns_environment: bool
    storage_endpoint: str = ""  # botocore's AWS_ENDPOINT_URL: the embedded hub's moto, else AWS
    # The embedded hub's HTTP server: how long a client may take to send headers, and how long a
    # request body may send nothing, before the connection is cut.
    http_header_seconds: int = 10
    http_body_idle_seconds: int = 30
    log_copy: str = "all"  # one of LOG_COPIES
    # This hub's own API, which the runner serves to its instances' hub clients (Scramjet's this.hub);
    # none: sequences get no API.
    api_url: str = ""
    fargate: Fargate = Fargate()
    host_uid: int = 0  # a Fargate task's host runs as this uid (0: as the runner)
    progress_ms: int = PROGRESS_MS  # the embedded hub's storage writes cost nothing: it records more often

    def engines(self) -> tuple[str, ...]:
        """The engines this hub can run instances on (the embedded hub plays both)."""
        return ENGINES if self.invoke_mode == "local" or self.fargate.cluster else ("lambda",)

    def time_limit(self, engine: str) -> int:
        """Seconds an instance on ``engine`` may run (0: no limit)."""
        return self.runner_timeout_seconds if engine == "lambda" else self.fargate.timeout_seconds


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "")
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def load(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the hub's settings from the environment (``os.environ`` unless given)."""
    env = os.environ if environ is None else environ
    missing = [n for n in ("SEQHUB_TABLE", "SEQHUB_BUCKET", "SEQHUB_LOG_GROUP") if not env.get(n)]
    if missing:
        raise ConfigError(f"missing configuration: {', '.join(missing)}")
    mode = env.get("RUNNER_INVOKE_MODE", "lambda")
    if mode not in INVOKE_MODES:
        raise ConfigError(f"RUNNER_INVOKE_MODE must be one of {', '.join(INVOKE_MODES)}, got {mode!r}")
    if mode == "lambda" and not env.get("RUNNER_FUNCTION"):
        raise ConfigError("RUNNER_FUNCTION must name the runner Lambda when RUNNER_INVOKE_MODE=lambda")
    log_copy = env.get("SEQHUB_LOG_COPY", "all")
    if log_copy not in LOG_COPIES:
        raise ConfigError(f"SEQHUB_LOG_COPY must be one of {', '.join(LOG_COPIES)}, got {log_copy!r}")
    sandbox = env.get("SEQHUB_SANDBOX", "none")
    if sandbox not in SANDBOXES:
        raise ConfigError(f"SEQHUB_SANDBOX must be one of {', '.join(SANDBOXES)}, got {sandbox!r}")
    capacity = env.get("SEQHUB_FARGATE_CAPACITY", "FARGATE")
    if capacity not in CAPACITIES:
        raise ConfigError(f"SEQHUB_FARGATE_CAPACITY must be one of {', '.join(CAPACITIES)}, got {capacity!r}")
    fargate = Fargate(cluster=env.get("SEQHUB_FARGATE_CLUSTER", ""),
                      task_definition=env.get("SEQHUB_FARGATE_TASK_DEFINITION", ""),
                      subnets=tuple(s for s in env.get("SEQHUB_FARGATE_SUBNETS", "").split(",") if s),
                      security_group=env.get("SEQHUB_FARGATE_SECURITY_GROUP", ""), capacity=capacity,
                      public_ip=env.get("SEQHUB_FARGATE_PUBLIC_IP", "true") != "false",
                      timeout_seconds=_int(env, "SEQHUB_FARGATE_TIMEOUT_SECONDS", 0))
    if fargate.cluster and not (fargate.task_definition and fargate.subnets and fargate.security_group):
        raise ConfigError("SEQHUB_FARGATE_CLUSTER needs SEQHUB_FARGATE_TASK_DEFINITION, SEQHUB_FARGATE_SUBNETS and "
                          "SEQHUB_FARGATE_SECURITY_GROUP (infra/wire.py env writes them)")
    return Settings(
        table=env["SEQHUB_TABLE"],
        bucket=env["SEQHUB_BUCKET"],
        log_group=env["SEQHUB_LOG_GROUP"],
        runner_function=env.get("RUNNER_FUNCTION", ""),
        invoke_mode=mode,
        # An hour: long enough to come back to a finished run after a meeting, short enough
        # that `si inst list` stays about what is happening now.
        retention_seconds=_int(env, "SEQHUB_RETENTION_SECONDS", 3600),
        runner_timeout_seconds=_int(env, "SEQHUB_RUNNER_TIMEOUT_SECONDS", 900),
        lost_after_seconds=_int(env, "SEQHUB_LOST_AFTER_SECONDS", 30),
        max_package_bytes=_int(env, "SEQHUB_MAX_PACKAGE_BYTES", protocol.DIRECT_UPLOAD_BYTES),
        # Through the presigned S3 upload: checked before anything is downloaded.
        max_upload_bytes=_int(env, "SEQHUB_MAX_UPLOAD_BYTES", 400 * 1024 * 1024),
        # Lambda's default /tmp is 512 MB; leave room for the runner's own files.
        max_unpacked_bytes=_int(env, "SEQHUB_MAX_UNPACKED_BYTES", 400 * 1024 * 1024),
        max_package_files=_int(env, "SEQHUB_MAX_PACKAGE_FILES", 50_000),
        # JSON bodies (start: args + appConfig; events) and one input/stdin request.
        max_request_bytes=_int(env, "SEQHUB_MAX_REQUEST_BYTES", 640 * 1024),
        max_input_chunk_bytes=_int(env, "SEQHUB_MAX_INPUT_CHUNK_BYTES", protocol.MAX_WRITE_BYTES),
        # Each of args and appConfig, as JSON, and one event's message (each a DynamoDB item of its
        # own when large: an item holds at most 400 KB).
        max_start_data_bytes=_int(env, "SEQHUB_MAX_START_DATA_BYTES", 256 * 1024),
        max_event_bytes=_int(env, "SEQHUB_MAX_EVENT_BYTES", 256 * 1024),
        # Soft caps checked at start; Lambda reserved concurrency is the hard backstop on AWS.
        max_running=_int(env, "SEQHUB_MAX_RUNNING", 200),
        max_running_per_sequence=_int(env, "SEQHUB_MAX_RUNNING_PER_SEQUENCE", 50),
        # Topics are cheap to make: a cap keeps GET /topics within one response and the sweep short.
        max_topics=_int(env, "SEQHUB_MAX_TOPICS", 1000),
        quotas=Quotas(output_bytes=_int(env, "SEQHUB_MAX_OUTPUT_BYTES", 1024**3),
                      input_bytes=_int(env, "SEQHUB_MAX_INPUT_BYTES", 1024**3),
                      # Like a pipe's buffer, only bigger: a reader that falls behind holds up the writer.
                      unread_input_bytes=_int(env, "SEQHUB_MAX_UNREAD_INPUT_BYTES", 64 * 1024**2),
                      event_bytes=_int(env, "SEQHUB_MAX_EVENTS_BYTES", 64 * 1024**2),
                      event_names=_int(env, "SEQHUB_MAX_EVENT_NAMES", 100),
                      topic_bytes=_int(env, "SEQHUB_MAX_TOPIC_BYTES", 1024**3)),
        # Set by the embedded hub when it listens beyond loopback; never on AWS (IAM there).
        local_token=env.get("SEQHUB_LOCAL_TOKEN", ""),
        stage=env.get("SEQHUB_STAGE", "dev"),
        # The embedded hub's per-instance sandbox (set by the hub after it checked bwrap works).
        sandbox=sandbox,
        sandbox_limits=Limits(max_procs=_int(env, "SEQHUB_SANDBOX_MAX_PROCS", 256),
                              memory_mb=_int(env, "SEQHUB_SANDBOX_MEMORY_MB", 1024),
                              # Lambda's default /tmp, for /tmp and again for the working directory.
                              disk_mb=_int(env, "SEQHUB_SANDBOX_DISK_MB", 512)),
        # On Lambda the runner cleans its execution environment before and after each instance:
        # the next may be another user's (leftovers.clean_environment).
        owns_environment=bool(env.get("AWS_LAMBDA_FUNCTION_NAME")),
        storage_endpoint=env.get("AWS_ENDPOINT_URL", ""),
        http_header_seconds=_int(env, "SEQHUB_HTTP_HEADER_SECONDS", 10),
        http_body_idle_seconds=_int(env, "SEQHUB_HTTP_BODY_IDLE_SECONDS", 30),
        log_copy=log_copy,
        api_url=env.get("SEQHUB_API_URL", ""),
        fargate=fargate,
        host_uid=_int(env, "SEQHUB_HOST_UID", 0),
        progress_ms=_int(env, "SEQHUB_PROGRESS_MS", PROGRESS_MS),
    )
