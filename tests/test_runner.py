"""The runner run directly on real packages, under moto: exactly once, every end state, flushing."""

from __future__ import annotations

import fcntl
import io
import json
import tarfile
import threading
import time

import pytest

from chalicelib import clock, instances, invoker, models, protocol, sequences, sweeper
from chalicelib.errors import InvalidPackage
from chalicelib.repository import Repository
from chalicelib.runner import child as child_mod
from chalicelib.runner.service import run_instance

from .helpers import EXAMPLES, js_package, package_dir, py_package


@pytest.fixture(autouse=True)
def invoked(hub_env, monkeypatch) -> list[str]:
    """Starts only record the invocation here: these tests run the runner themselves."""
    calls: list[str] = []
    monkeypatch.setattr(invoker, "invoke", lambda _settings, inst_id, _engine="lambda", _runtime="": calls.append(inst_id))
    return calls


def created(settings, body: bytes, args=None) -> str:
    """An instance record in ``starting``, as the API leaves it for a runner."""
    seq_id = sequences.create(settings, body)["id"]
    return instances.start(settings, seq_id, {"args": args or []})["id"]


def output_of(settings, inst_id: str, channel: str = "output") -> bytes:
    return instances.read_channel(settings, inst_id, channel, None, 0, until_end=True)["data"]


def far() -> int:
    return 600_000


def time_left(seconds: float):
    """A runner's time left, running out as Lambda's does from ``seconds`` now."""
    deadline = time.monotonic() + seconds
    return lambda: int((deadline - time.monotonic()) * 1000)


@pytest.mark.parametrize("example", ["counter-js", "counter-py"])
def test_counters_run_to_completion(settings, example):
    inst = created(settings, package_dir(EXAMPLES / example), [3000, 10])
    assert run_instance(settings, inst, far) == protocol.COMPLETED
    assert output_of(settings, inst) == "".join(f"{n}\n" for n in range(3000, 3010)).encode()
    item = Repository(settings.table).get_instance(inst)
    assert item.exitcode == 0 and item.expires_at == int(item.ended + settings.retention_seconds)
    assert item.ended_channels == {"output", "stdout", "stderr", "log"}


def test_a_second_delivery_never_runs_the_sequence_again(settings):
    inst = created(settings, py_package("def run(context, input):\n    print('ran')\n"))
    assert run_instance(settings, inst, far) == protocol.COMPLETED
    assert run_instance(settings, inst, far) == "skipped"
    assert output_of(settings, inst, "stdout") == b"ran\n"


def test_main_that_is_not_a_file_is_refused_with_sths_message(settings):
    # "main" names a directory: refused at upload, where every bad "main" is (the runner checks too).
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        manifest = json.dumps({"name": "bad", "main": "app", "engines": {"python3": "3.12"}}).encode()
        info = tarfile.TarInfo("package.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
        folder = tarfile.TarInfo("app")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    with pytest.raises(InvalidPackage, match="Sequence entrypoint path app is invalid. Check `main` field"):
        sequences.create(settings, buf.getvalue())


def test_a_package_changed_after_upload_is_not_run(settings):
    """The runner checks the stored package against the sha256 recorded at upload."""
    from chalicelib import aws

    inst = created(settings, py_package("def run(context, input):\n    print('original')\n"))
    seq = sequences.get_item(settings, instances.get(settings, inst).sequence_id)
    aws.client("s3").put_object(Bucket=settings.bucket, Key=seq["package_key"],
                                Body=py_package("def run(context, input):\n    print('replaced')\n"))
    assert run_instance(settings, inst, far) == protocol.ERRORED
    terminated = instances.info(settings, inst)["terminated"]
    assert terminated["exitcode"] == 10 and "does not match" in terminated["reason"]
    assert output_of(settings, inst, "stdout") == b""


def test_kill_ends_a_busy_loop_within_seconds(settings):
    inst = created(settings, js_package("module.exports = function () { while (true) {} };"))
    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("status", run_instance(settings, inst, far)))
    thread.start()
    wait_for(lambda: Repository(settings.table).get_instance(inst).status == protocol.RUNNING)
    instances.request_kill(settings, inst)
    thread.join(timeout=20)
    assert not thread.is_alive()
    view = instances.info(settings, inst)
    assert view["status"] == "completed"
    assert view["terminated"] == {"exitcode": 137, "reason": "Instance killed"}


def test_at_the_time_limit_an_instance_is_stopped_as_si_inst_stop_would(settings):
    source = ("import asyncio, sys\n\n"
              "async def run(context, input):\n"
              "    def stopping(*_):\n"
              "        print('stop handler ran', file=sys.stderr, flush=True)\n"
              "    context.set_stop_handler(stopping)\n"
              "    yield 'before the deadline\\n'\n"
              "    await asyncio.sleep(3600)\n")
    inst = created(settings, py_package(source))
    status = run_instance(settings, inst, time_left(38))  # the graceful stop starts 35 s before it: after ~3 s
    assert status == protocol.COMPLETED
    terminated = instances.info(settings, inst)["terminated"]
    assert terminated["reason"] == models.reached_limit(38) and terminated["exitcode"] == protocol.ExitCode.STOPPED
    assert output_of(settings, inst) == b"before the deadline\n"
    assert b"stop handler ran" in output_of(settings, inst, "stderr")
    assert b"time limit (38 s) is near" in output_of(settings, inst, "log")


def test_what_does_not_stop_by_the_deadline_is_killed_with_its_output_kept(settings):
    # A busy loop holds Node's event loop: the stop is never heard, so it is killed when its stop's
    # time is up, and that is a time-out, not a stop.
    source = 'module.exports = function () { console.log("before the deadline"); while (true) {} };'
    inst = created(settings, js_package(source))
    status = run_instance(settings, inst, time_left(12))  # stopped at once, with 6 s for it; killed then
    assert status == protocol.ERRORED
    assert instances.info(settings, inst)["terminated"]["reason"] == "timed out"
    assert output_of(settings, inst, "stdout") == b"before the deadline\n"


def test_a_runner_that_stops_heartbeating_is_reported_lost(settings, monkeypatch):
    inst = created(settings, py_package("def run(context, input):\n    pass\n"))
    Repository(settings.table).claim(inst, clock.now())  # a runner claims it, then dies
    later = clock.now() + settings.lost_after_seconds + 1
    monkeypatch.setattr(clock, "now", lambda: later)
    assert instances.info(settings, inst)["status"] == "running"  # reads never write…
    assert sweeper.settle(settings) == [inst]  # …the sweeper records the end
    view = instances.info(settings, inst)
    assert view["status"] == "errored" and view["terminated"]["reason"] == "lost"


def test_child_environment_is_scrubbed(settings, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret")
    source = "import os, json\n\ndef run(context, input):\n    return json.dumps(dict(os.environ))\n"
    inst = created(settings, py_package(source))
    run_instance(settings, inst, far)
    env = json.loads(output_of(settings, inst))
    assert [k for k in env if k.startswith(("AWS_", "SEQHUB_", "RUNNER_"))] == ["AWS_EC2_METADATA_DISABLED"]
    assert "very-secret" not in json.dumps(env)


def wait_for(predicate, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.1)


def test_a_start_whose_invocation_never_arrives_is_reported(settings, monkeypatch):
    """Async invoke dropped (no retries by design): the API reports it instead of "starting" forever."""
    inst = created(settings, py_package("def run(context, input):\n    pass\n"))
    item = Repository(settings.table).get_instance(inst)
    monkeypatch.setattr(clock, "now", lambda: item.created + sweeper.START_TIMEOUT_SECONDS - 1)
    assert sweeper.settle(settings) == []
    assert instances.info(settings, inst)["status"] == "starting"
    monkeypatch.setattr(clock, "now", lambda: item.created + sweeper.START_TIMEOUT_SECONDS + 1)
    assert sweeper.settle(settings) == [inst]
    view = instances.info(settings, inst)
    assert view["status"] == "errored" and view["terminated"]["reason"] == "never started"
    # …and a late delivery then finds nothing to run.
    assert run_instance(settings, inst, far) == "skipped"


@pytest.mark.parametrize("package", [
    py_package("async def run(context, input):\n    async for _ in input:\n        pass\n    yield 'input ended'\n"),
    js_package("module.exports = async function* (input) {\n  for await (const _ of input) {}\n"
               "  yield 'input ended';\n};\n"),
], ids=["python", "node"])
def test_an_input_ended_before_any_byte_of_it_ends_the_sequences_input(settings, package):
    """`si inst input - --end` with nothing sent (or an empty file piped): the sequence's input ends
    empty, as on Scramjet's hub; it never waits for a byte that cannot come."""
    inst = created(settings, package)
    instances.append_input(settings, inst, "input", b"", "text/plain", True)
    assert run_instance(settings, inst, time_left(60)) == protocol.COMPLETED  # short: a wait that cannot end fails soon
    assert b"input ended" in output_of(settings, inst)


@pytest.mark.parametrize("package", [
    py_package("async def run(context, input):\n    async for item in input:\n        yield item\n"),
    js_package("module.exports = async function* (input) {\n  for await (const item of input) yield item;\n};\n"),
], ids=["python", "node"])
def test_input_that_is_not_the_json_lines_it_says_it_is_ends_the_instance_errored(settings, package):
    """A line of x-ndjson input that is not JSON cannot become an item: the instance ends, errored,
    saying so on its stderr (as Scramjet's runner's stream error does), rather than waiting out its
    time limit for input that cannot come."""
    inst = created(settings, package)
    instances.append_input(settings, inst, "input", b'{"a": 1}\nnot json\n{"b": 2}\n', "application/x-ndjson", True)
    assert run_instance(settings, inst, time_left(60)) == protocol.ERRORED  # short: a wait that cannot end fails soon
    ended = instances.get(settings, inst)
    assert ended.exitcode == protocol.ExitCode.SEQUENCE_FAILED_DURING_EXECUTION
    assert b"JSON" in output_of(settings, inst, "stderr")


def test_a_hosts_output_pipe_holds_a_segment(tmp_path):
    """A host writing fast runs a segment (1 MiB) ahead of the runner's reads, not Linux's 64 KiB."""
    package = tmp_path / "sequence"
    package.mkdir()
    (package / "main.py").write_text("def run(context, input):\n    yield 'x'\n")
    work = tmp_path / "work"
    work.mkdir()
    child = child_mod.spawn("python", package, {"main": "main.py", "args": [], "config": {}, "instanceId": "t"}, work)
    try:
        assert fcntl.fcntl(child.fds["output"], fcntl.F_GETPIPE_SZ) == child_mod.OUTPUT_PIPE_BYTES
    finally:
        child_mod.kill_group(child)
        child.proc.wait(timeout=30)
