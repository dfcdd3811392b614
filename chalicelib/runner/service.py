"""The runner: claim an instance, unpack its package, run it in a host, pump channels, record the end.

One invocation runs one instance, exactly once (a conditional claim), and always records an end
state: completed, errored with the host's reason, killed, stopped, or timed out before the deadline.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from .. import aws, clock, config, models, observability, packages, protocol
from ..config import Settings
from ..models import Instance
from ..observability import logger
from ..protocol import CHANNELS, COMPLETED, ERRORED, INPUT_STREAMS, ExitCode
from ..protocol import manifest as manifest_rules
from ..repository import Repository
from . import child as child_mod
from . import hubproxy, leftovers, sandbox, topicio
from .feed import Feeder, InOrder
from .hubproxy import HubProxy
from .pump import Budget, Channel, pump_fd
from .standby import ARCHIVE, Standby
from .topicio import TopicInput, TopicOutput

FLUSH_INTERVAL = 0.2        # CloudWatch writes while output flows
HEARTBEAT_INTERVAL = 1.0    # item writes while nothing changes (and the control read)
PROGRESS_INTERVAL = config.PROGRESS_MS / 1000  # item writes while output flows (how fresh readers' views are)
KILL_GRACE = 2.0            # kill handlers get this long before SIGKILL
DEADLINE_MARGIN_MS = 5000   # kill this long before the Lambda deadline, to flush and record
DEADLINE_STOP_MS = 30_000   # before that, this long to stop gracefully (stop handlers, last output)
GRACEFUL_STOP_MS = DEADLINE_MARGIN_MS + DEADLINE_STOP_MS  # from this far before its end an instance is stopped
DRAIN_SECONDS = 3.0         # after the host exits: the most its channels' last bytes may take
MAX_EVENT_NAME_CHARS = 256
DELETED_BEFORE_START = "Sequence was deleted before the instance started"
_MISSING = ("NoSuchKey", "404", "AccessDenied", "403")  # S3 answers 403 for a missing key without ListBucket

RemainingMs = Callable[[], int]


class PackageChanged(Exception):
    """The package in S3 is not the one validated at upload: it is never run."""


def run_instance(settings: Settings, instance_id: str, remaining_ms: RemainingMs,
                 cut_reason: Callable[[], str | None] = lambda: None, host_user: int | None = None,
                 standby: Standby | None = None) -> str:
    """Run one instance to its end; returns the final status (or "skipped" if not ours to run).
    ``cut_reason`` says why the deadline came early, once it has (a Fargate task being stopped);
    ``host_user``: the uid its host runs as, where the runner is root outside a sandbox (a task);
    ``standby``: a sandbox made for whichever instance came (used if it is of its runtime)."""
    if settings.owns_environment:  # Lambda: an earlier instance may have left something behind
        leftovers.clean_environment(Path(tempfile.gettempdir()))
    repo = Repository(settings.table)
    inst = repo.claim(instance_id, clock.now())
    if inst is None:
        logger.warning("instance not claimable (duplicate delivery or already ended)",
                       extra={"instance_id": instance_id})
        if standby is not None:
            standby.discard()
        return "skipped"
    logger.append_keys(instance_id=instance_id, sequence_id=inst.sequence_id)
    run = _Run(settings, repo, inst, remaining_ms, cut_reason, host_user, standby)
    try:
        return run.run()
    finally:
        if run.standby is not None:  # never taken (the instance ended before its host was needed)
            run.standby.discard()
        leftovers.kill_all()  # whatever the instance started, however it detached
        if run.hub_proxy is not None:
            run.hub_proxy.close()
        if run.box is not None:
            run.box.remove()
        shutil.rmtree(run.work, ignore_errors=True)
        if settings.owns_environment:  # Lambda: the next invocation may be another user's instance
            leftovers.empty_dir(Path(tempfile.gettempdir()))


class _Run:
    def __init__(self, settings: Settings, repo: Repository, inst: Instance, remaining_ms: RemainingMs,
                 cut_reason: Callable[[], str | None], host_user: int | None, standby: Standby | None):
        self.settings = settings
        self.repo = repo
        self.inst = inst
        self.id = inst.id
        self.began = time.monotonic()
        self.standby = standby
        self.work = standby.work if standby is not None else Path(tempfile.mkdtemp(prefix="seqhub-"))
        self.remaining_ms = remaining_ms
        self.cut_reason = cut_reason
        self.host_user = host_user
        self.data_ready = threading.Event()  # bytes arrived: the flusher should look
        self.flushed = threading.Event()  # bytes were written: the record may need telling
        self.channels = {name: Channel(settings.bucket, settings.log_group, self.id, name, data_ready=self.data_ready,
                                       copy_to_logs=settings.log_copy == "all" or (settings.log_copy == "log" and name == "log"))
                         for name in CHANNELS}
        self.health: dict[str, Any] | None = None
        self.keepalive = False
        self.events: dict[str, object] = {}
        self.events_lock = threading.Lock()
        self.kill_at: float | None = None
        self.stop_deadline: float | None = None
        self.stop_at: float | None = None  # when the stop request acted on was made
        self.killed = False
        self.stopped = False
        self.timed_out = False
        self.at_limit = False  # stopped by the runner itself as its time limit came near
        self.limit_seconds = round(remaining_ms() / 1000)  # the engine's whole time (Lambda's lambda_timeout)
        self.events_in = InOrder("events")
        self.box: sandbox.Box | None = None
        # Topics: what the host announced (read_events) is acted on by the supervising loop.
        self.announced_output: dict[str, Any] | None = None
        self.announced_requires: dict[str, Any] | None = None
        self.output_routed = False  # the output's topic has been decided (once)
        self.topic_input: TopicInput | None = None
        self.feeders: dict[str, Feeder] = {}
        self.hub_proxy: HubProxy | None = None
        self.output_budget = Budget(settings.quotas.output_bytes)
        self.event_names: set[str] = set()  # the names it has emitted (each one record: their number is capped)
        self.over_quota = False

    # -- the run -------------------------------------------------------------------------------
    def run(self) -> str:
        seq = self.repo.get_sequence(self.inst.sequence_id)
        if seq is None:
            return self.record_end(ERRORED, ExitCode.SEQUENCE_UNPACK_FAILED, DELETED_BEFORE_START)
        manifest = json.loads(seq["manifest"])
        runtime = manifest_rules.runtime_of(manifest)
        standby = self.take_standby(runtime)
        sandboxed = self.settings.sandbox == "bwrap"
        unpacked = int(seq.get("unpacked_bytes") or 0)
        disk = self.settings.sandbox_limits.disk_mb * 1024 * 1024
        if sandboxed and unpacked > disk:
            return self.record_end(ERRORED, ExitCode.SEQUENCE_UNPACK_FAILED,
                                   f"Sequence unpack failed: the package unpacks to {unpacked} bytes, more than the "
                                   f"{disk} bytes of disk an instance has here (SEQHUB_SANDBOX_DISK_MB)")
        # In a sandbox the package is unpacked inside it, where its bytes count against the instance.
        package = self.work / (ARCHIVE if sandboxed else "sequence")
        try:
            self.fetch(seq, package) if sandboxed else self.unpack(seq, package)
        except Exception as exc:  # a package that cannot be unpacked ends the instance, not the runner
            if isinstance(exc, ClientError) and exc.response["Error"]["Code"] in _MISSING:
                return self.record_end(ERRORED, ExitCode.SEQUENCE_UNPACK_FAILED, DELETED_BEFORE_START)  # deleted while starting
            if not isinstance(exc, PackageChanged):
                logger.exception("unpack failed")
            return self.record_end(ERRORED, ExitCode.SEQUENCE_UNPACK_FAILED, f"Sequence unpack failed: {exc}")
        if not sandboxed and not any((package / c).is_file() for c in manifest_rules.entrypoint_candidates(manifest)):
            return self.record_end(ERRORED, ExitCode.INVALID_SEQUENCE_PATH, manifest_rules.invalid_main_message(manifest))
        args, app_config = self.repo.start_data(self.inst)
        start = {"main": manifest["main"], "args": args if args is not None else [],
                 "config": app_config, "instanceId": self.id}
        if runtime == "python" and start["config"] is None:
            start["config"] = {}
        if standby is not None:
            child = standby.child
            try:
                child_mod.begin(child, self.work, start)
            except OSError as exc:  # its host went since take_standby looked
                return self.record_end(ERRORED, ExitCode.HOST_UNAVAILABLE, f"Runtime host could not start: {exc}")
        else:
            if self.settings.sandbox == "bwrap":
                self.box = sandbox.Box.create(self.id, self.settings.sandbox_limits)
            child_mod.harden()
            self.hub_proxy = hubproxy.for_instance(self.settings.api_url, runtime, self.work)
            try:
                child = child_mod.spawn(runtime, package, start, self.work, self.box,
                                        self.hub_proxy.path if self.hub_proxy else None, self.host_user)
            except child_mod.HostUnavailable as exc:
                return self.record_end(ERRORED, ExitCode.HOST_UNAVAILABLE, str(exc))
            except OSError as exc:  # e.g. a Node layer built for another architecture (exec format error)
                return self.record_end(ERRORED, ExitCode.HOST_UNAVAILABLE, f"Runtime host could not start: {exc}")
        try:
            return self.supervise(child, manifest)
        except Exception as exc:  # our own failure: never leave the sequence running unrecorded
            logger.exception("runner failed")
            child_mod.kill_group(child)
            return self.record_end(ERRORED, ExitCode.UNCAUGHT_EXCEPTION, f"Runner failed: {exc}")

    def take_standby(self, runtime: str) -> Standby | None:
        """The standby, now this instance's sandbox, if it is one for ``runtime``; else it is
        discarded (and the instance gets a work directory of its own)."""
        standby, self.standby = self.standby, None
        if standby is None:
            return None
        if standby.runtime != runtime or self.settings.sandbox != "bwrap" or standby.child.proc.poll() is not None:
            standby.discard()
            self.work = Path(tempfile.mkdtemp(prefix="seqhub-"))
            return None
        self.box, self.hub_proxy = standby.box, standby.hub_proxy
        return standby

    def fetch(self, seq: dict[str, Any], dest: Path) -> None:
        """Download the package to ``dest``; PackageChanged unless it is the one uploaded (sha256)."""
        body = aws.client("s3").get_object(Bucket=self.settings.bucket, Key=seq["package_key"])["Body"]
        digest = hashlib.sha256()
        with dest.open("wb") as fh:
            for chunk in body.iter_chunks(1024 * 1024):
                digest.update(chunk)
                fh.write(chunk)
        if digest.hexdigest() != seq["sha256"]:
            raise PackageChanged("the stored package does not match the sha256 recorded at upload")

    def unpack(self, seq: dict[str, Any], dest: Path) -> None:
        """Fetch the package and extract it into ``dest`` by the package rules."""
        limits = packages.Limits(self.settings.max_unpacked_bytes, self.settings.max_package_files)
        archive = self.work / ARCHIVE
        self.fetch(seq, archive)
        dest.mkdir()
        with archive.open("rb") as fh:
            packages.scan(fh, limits, dest=dest)
        archive.unlink()

    def supervise(self, child: child_mod.Child, manifest: dict[str, Any]) -> str:
        fds = child.fds
        pumps = [pump_fd(fds[name], self.channels[name], self.output_budget) for name in CHANNELS]
        events = threading.Thread(target=self.read_events, args=(fds["events"],), daemon=True)
        events.start()
        feeders = self.feeders = {name: Feeder(self.settings.bucket, fd, name, preamble=name == "input",
                                               read_chunks=functools.partial(self.repo.chunks, self.id, name))
                                  for name, fd in (("input", child.input_w), ("stdin", fds["stdin"]))}
        if self.inst.requires:  # from the start (inputTopic) or the package: never the API's input
            feeders["input"].hand_over()
            self.topic_input = TopicInput(self.settings, self.inst.requires, self.inst.requires_type, child.input_w)
        stop_flusher = threading.Event()
        flusher = threading.Thread(target=self.flush_loop, args=(stop_flusher,), daemon=True)
        flusher.start()

        last_write = last_progress = 0.0
        progress_interval = self.settings.progress_ms / 1000  # PROGRESS_INTERVAL unless the stage says otherwise
        written, ended = self.counters(), self.ended_channels()
        while child.proc.poll() is None:
            now = time.monotonic()
            counters, now_ended = self.counters(), self.ended_channels()
            progressed = counters != written
            # Readers wait on the record: tell them at once about a first output or an end.
            news = any(counters[k] and not written[k] for k in counters) or now_ended != ended
            # New segments are recorded at most once per progress interval, counted from the last
            # record of progress: an idle heartbeat just before does not hold them back.
            due = (now - last_progress >= progress_interval if progressed else
                   now - last_write >= HEARTBEAT_INTERVAL)
            if news or due:
                self.control(child, feeders, self.heartbeat(progressed=progressed))
                written, ended, last_write = counters, now_ended, now
                if progressed:
                    last_progress = now
            self.route_topics(child, feeders)
            self.enforce(child)
            if any(pump.is_alive() for pump in pumps):
                self.flushed.wait(0.05)
                self.flushed.clear()
            else:  # the host closed its channels, so it is ending: see its exit as it comes
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.proc.wait(0.05)

        exit_code = child.proc.returncode
        # One deadline for everything after the host's exit: a process that escaped the group and
        # still holds a pipe open must not keep the runner past Lambda's deadline.
        drain_until = time.monotonic() + min(DRAIN_SECONDS, max(0.0, self.remaining_ms() / 1000 - 1))
        child.signal_group(9)  # anything the host left in its group goes with it; piped bytes stay
        leftovers.kill_all()  # and anything it detached from the group (none survive a sandbox)
        for pump in pumps:
            pump.join(timeout=max(0.0, drain_until - time.monotonic()))
        # What the host said last (a short-lived producer's topic, say) may still be in the pipe:
        # read it to its end and act on it, so every announcement counts, whenever it came.
        events.join(timeout=max(0.0, drain_until - time.monotonic()))
        self.route_output_topic()
        for feeder in feeders.values():
            feeder.close()
        if self.topic_input is not None:
            self.topic_input.close()
        if self.inst.provides and not self.output_routed:  # the host never said what its output is
            self.tee_output(self.inst.provides, None)
        stop_flusher.set()
        self.data_ready.set()  # wake the flusher now rather than at its next interval
        # The flusher only writes what is buffered to AWS: it gets the time left before the deadline.
        flusher.join(timeout=max(0.0, self.remaining_ms() / 1000 - 1))
        status, code, reason = models.end_state(
            exit_code, killed=self.killed, stopped=self.stopped,
            invalid_main_message=manifest_rules.invalid_main_message(manifest))
        if self.over_quota:
            status, code = ERRORED, int(ExitCode.KILLED)
            reason = (f"Output quota exceeded: the instance wrote more than {self.settings.quotas.output_bytes} bytes "
                      "to its channels (SEQHUB_MAX_OUTPUT_BYTES)")
        elif self.timed_out:
            status, reason = ERRORED, models.REASON_TIMED_OUT
        elif self.at_limit and not self.killed:
            reason = self.cut_reason() or models.reached_limit(self.limit_seconds, self.inst.engine)
        elif self.box is not None and not self.killed and self.box.out_of_memory():
            status, code = ERRORED, int(ExitCode.KILLED)
            reason = f"Out of memory: the instance's limit is {self.box.limits.memory_mb} MiB"
        return self.record_end(status, code, reason)

    # -- pieces --------------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        return {name: ch.segments_written for name, ch in self.channels.items()}

    def ended_channels(self) -> set[str]:
        return {name for name, ch in self.channels.items() if ch.finished()}

    def flush_loop(self, stop: threading.Event) -> None:
        """Flush a channel's first bytes and its last at once, then everything once per
        FLUSH_INTERVAL while output flows; in between, whole PutLogEvents batches as soon as they
        are buffered: fast output never waits out the interval behind a full buffer (which would
        stall the sequence), and no flush writes a segment or a CloudWatch batch smaller than it
        need be."""
        last = 0.0
        while not stop.is_set():
            self.data_ready.wait(FLUSH_INTERVAL)
            self.data_ready.clear()
            # Every append of a first byte or of a full batch sets data_ready, as a channel's end does.
            while not stop.is_set() and not any(ch.flush_due() for ch in self.channels.values()):
                pause = FLUSH_INTERVAL - (time.monotonic() - last)
                if pause <= 0:
                    break
                if any(ch.backlogged() for ch in self.channels.values()):
                    self.flush_all(full_only=True)
                self.data_ready.wait(pause)
                self.data_ready.clear()
            if self.flush_all():  # the interval runs from the last flush that wrote: not from an idle look
                last = time.monotonic()
        self.flush_all()

    def flush_all(self, full_only: bool = False) -> bool:
        """Flush every channel; True when something was written."""
        wrote = False
        for ch in self.channels.values():
            try:
                if ch.flush(full_only):
                    self.flushed.set()
                    wrote = True
            except Exception:  # a CloudWatch hiccup must not end the run: the bytes are kept for the next try
                logger.exception("flush failed", extra={"channel": ch.name})
        return wrote

    def read_events(self, fd: int) -> None:
        with os.fdopen(fd, "rb") as pipe:
            for line in pipe:
                try:
                    msg = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(msg, dict):  # the sequence can find this pipe: anything may come
                    continue
                kind = msg.get("type")
                if kind == "health":
                    self.health = {"healthy": bool(msg.get("healthy", True))}
                elif kind == "keepalive":
                    if self.stop_deadline is not None:
                        self.log_line("INFO", "the sequence kept itself running (keepAlive): the stop is called off")
                    self.keepalive = True
                    self.stop_deadline = None
                elif kind == "output" and self.announced_output is None:
                    self.announced_output = msg
                elif kind == "requires" and self.announced_requires is None:
                    self.announced_requires = msg
                elif kind == "event":
                    with self.events_lock:
                        self.events[str(msg.get("name"))] = msg.get("message")
                    self.publish_events()

    def publish_events(self) -> None:
        """Each event name the sequence emits is one record holding its last message; what would
        not fit is refused with a line in the instance's log, never silently."""
        with self.events_lock:
            pending, self.events = self.events, {}
        for name, message in pending.items():
            try:
                encoded = json.dumps(message, allow_nan=False)
            except ValueError:  # NaN or Infinity: every client's JSON parser would fail on it
                self.log_line("ERROR", f"event {name[:64]!r} not sent: its message holds NaN or Infinity")
                continue
            if len(name) > MAX_EVENT_NAME_CHARS or len(encoded.encode()) > self.settings.max_event_bytes:
                self.log_line("ERROR", f"event {name[:64]!r} not sent: names are at most {MAX_EVENT_NAME_CHARS} "
                                       f"characters and messages at most {self.settings.max_event_bytes} bytes of JSON")
                continue
            if name not in self.event_names and len(self.event_names) >= self.settings.quotas.event_names:
                self.log_line("ERROR", f"event {name[:64]!r} not sent: the instance has emitted "
                                       f"{self.settings.quotas.event_names} event names, its most (SEQHUB_MAX_EVENT_NAMES)")
                continue
            self.event_names.add(name)
            self.repo.put_event_out(self.id, name, encoded, clock.now())

    def route_topics(self, child: child_mod.Child, feeders: dict[str, Feeder]) -> None:
        """Act on the host's announcements: the topic its output goes to (unless the start named
        one: Scramjet's outputTopic wins) and the topic its input comes from."""
        self.route_output_topic()
        wanted, self.announced_requires = self.announced_requires, None
        if wanted is not None and not self.inst.requires:
            name, ctype = wanted.get("topic"), wanted.get("contentType")
            if not protocol.valid_topic(name) or (ctype is not None and ctype not in protocol.CONTENT_TYPES):
                self.log_line("ERROR", f"input not read from topic {str(name)[:64]!r}: not a valid topic name "
                                       "or content type")
            elif not feeders["input"].hand_over():
                self.log_line("ERROR", f"input not read from topic {name}: input had already been sent to the "
                                       "instance through the API")
            else:
                self.inst.requires = name
                self.repo.record_topics(self.id, {"requires": name})
                self.topic_input = TopicInput(self.settings, name, ctype, child.input_w)

    def route_output_topic(self) -> None:
        """The topic the host announced its output goes to, if any, once."""
        announced, self.announced_output = self.announced_output, None
        if announced is None or self.output_routed:
            return
        name = self.inst.provides or announced.get("topic")
        if name and not protocol.valid_topic(name):
            self.log_line("ERROR", f"output not sent to topic {str(name)[:64]!r}: not a valid topic name")
        elif name:
            if not self.inst.provides:
                self.inst.provides = name
                self.repo.record_topics(self.id, {"provides": name})
            self.tee_output(name, announced)

    def tee_output(self, name: str, announced: dict[str, Any] | None) -> None:
        self.output_routed = True
        declared = self.inst.provides_type or (announced or {}).get("contentType")
        if declared is not None and declared not in protocol.CONTENT_TYPES:
            self.log_line("ERROR", f"output not sent to topic {name}: content type {str(declared)[:64]!r} "
                                   f"is not one of {', '.join(protocol.CONTENT_TYPES)}")
            return
        ctype = topicio.output_type(self.settings, name, declared, (announced or {}).get("format"))
        self.channels["output"].tee(TopicOutput(self.settings, name, ctype, self.log_line))

    def log_line(self, level: str, message: str, last: bool = False) -> None:
        line = {"ts": int(clock.now() * 1000), "level": level, "from": "Runner", "msg": message}
        data = (json.dumps(line) + "\n").encode()
        if last:
            self.channels["log"].append_last(data)
        else:
            self.channels["log"].append(data)

    def heartbeat(self, progressed: bool = False) -> Instance | None:
        read = sum(feeder.written for feeder in self.feeders.values())
        return self.repo.heartbeat(self.id, clock.now(), self.counters(), self.ended_channels(), self.health,
                                   input_limit=read + self.settings.quotas.unread_input_bytes, progressed=progressed)

    def control(self, child: child_mod.Child, feeders: dict[str, Feeder], inst: Instance | None) -> None:
        """Act on what the API asked for since the last heartbeat: kill, stop, events, input."""
        if inst is None:
            return
        if inst.kill_requested and self.kill_at is None:
            self.killed = True
            child.send({"type": "kill"})
            self.kill_at = time.monotonic() + KILL_GRACE
        request = inst.stop_requested
        if request and request.get("at") != self.stop_at and not self.killed:
            # Each stop (a second one after a keep-alive, too) runs the stop handlers again and
            # waits its own timeout; only a keep-alive sent after it saves the instance.
            self.stopped = True
            self.stop_at = request.get("at")
            self.keepalive = False
            child.send({"type": "stop", "timeout": request["timeout"],
                        "canCallKeepalive": request["canCallKeepalive"]})
            self.stop_deadline = time.monotonic() + request["timeout"] / 1000
        for event in self.events_in.take(inst.events_in, functools.partial(self.repo.events_in, self.id)):
            child.send({"type": "event", "name": event["name"], "message": json.loads(event["message"])})
        for name in INPUT_STREAMS:
            feeders[name].offer(inst.chunks[name], inst.input_type, inst.chunks_end.get(name))

    def enforce(self, child: child_mod.Child) -> None:
        now = time.monotonic()
        if self.output_budget.exceeded.is_set() and not self.over_quota:
            self.over_quota = True
            self.log_line("ERROR", f"the instance wrote more than its {self.settings.quotas.output_bytes} bytes of "
                                   "output (SEQHUB_MAX_OUTPUT_BYTES): it is ended, and what it wrote past that is not kept")
            child_mod.kill_group(child)
        if self.kill_at is not None and now >= self.kill_at:
            child_mod.kill_group(child)
        if self.stop_deadline is not None and now >= self.stop_deadline and not self.keepalive:
            self.timed_out = self.timed_out or self.at_limit  # it did not stop in its time: not a stop
            child_mod.kill_group(child)
        left = self.remaining_ms()
        near = not self.at_limit and left < GRACEFUL_STOP_MS
        if near and not self.killed and self.cut_reason() is not None:
            # ECS is stopping the task: a kill asked of the hub (which stops its task too) may be why.
            self.control(child, self.feeders, self.heartbeat())
        if near and not self.killed:
            # Lambda ends every invocation at its timeout: stop the instance as `si inst stop` would
            # while there is time for its stop handlers and its last output, not kill it at the end.
            self.at_limit = self.stopped = True
            timeout_ms = max(0, left - DEADLINE_MARGIN_MS - 1000)
            why = ("its Fargate task is being stopped" if self.cut_reason() else
                   f"the {self.inst.engine} engine's time limit ({self.limit_seconds} s) is near")
            self.log_line("WARN", f"{why}: stopping the instance as `si inst stop` would (its stop handlers get "
                                  f"{timeout_ms} ms)")
            child.send({"type": "stop", "timeout": timeout_ms, "canCallKeepalive": False})
            self.stop_deadline = now + timeout_ms / 1000
        if not self.timed_out and left < DEADLINE_MARGIN_MS:
            logger.warning("stopping the instance before the runner's deadline")
            self.timed_out = True
            child_mod.kill_group(child)

    def record_end(self, status: str, exit_code: int, reason: str) -> str:
        exit_code = int(exit_code)  # an ExitCode is stored and shown as its number
        self.publish_events()  # first: a refused event's log line goes before the log's last line
        self.log_line("INFO" if status == COMPLETED else "ERROR", f"{reason} (exit code {exit_code})",
                      last=True)
        for ch in self.channels.values():
            ch.close()
        self.flush_all()
        self.repo.end(self.id, status, exit_code, reason, clock.now(), self.settings.retention_seconds,
                      self.counters())
        logger.info("instance ended", extra={"status": status, "exit_code": exit_code, "reason": reason})
        observability.instance_ended(status, (time.monotonic() - self.began) * 1000)
        return status
