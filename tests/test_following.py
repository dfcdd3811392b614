"""What following and feeding an instance cost (#28), counted on the real boto3 clients as AWS bills
them, never timed: an input request costs the same storage calls however much input came before;
a follower's looks in a long poll are bounded by design whether the channel is idle or busy (and
do not grow with history); a followed instance writes the same bytes as one nobody follows."""

from __future__ import annotations

import asyncio
import os
import threading
from typing import Any

import pytest

from chalicelib import clock, instances, longpoll, sequences, topics
from chalicelib.repository import Repository
from chalicelib.runner.service import PROGRESS_INTERVAL, run_instance

from .helpers import py_package, si

ECHO = "async def run(context, input):\n    async for chunk in input:\n        yield chunk\n"
COUNT = "def run(context, input, n):\n    for i in range(int(n)):\n        yield f'{i} ' * 40 + '\\n'\n"


def _started(settings, source: str, args=None) -> str:
    seq_id = sequences.create(settings, py_package(source))["id"]
    return instances.start(settings, seq_id, {"args": args or []})["id"]


def _running(settings, inst_id: str) -> None:
    Repository(settings.table).claim(inst_id, clock.now())  # as the runner does when it takes the instance



def test_an_input_request_costs_two_writes_however_much_input_came_before(settings, calls, not_invoked):
    inst = _started(settings, ECHO)
    _running(settings, inst)

    def send() -> None:
        instances.append_input(settings, inst, "input", b"one line\n", "text/plain", False)

    first = calls.of(send)
    for _ in range(300):
        send()
    later = calls.of(send)
    assert first == later
    assert first[0] == {("dynamodb", "UpdateItem"): 1, ("dynamodb", "PutItem"): 1}


class VirtualTime:
    """longpoll's clock and sleep, advanced by the sleeps themselves: a 20 s poll in no time."""

    def __init__(self, monkeypatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(longpoll.time, "monotonic", lambda: self.now)
        monkeypatch.setattr(longpoll.time, "sleep", self.sleep)

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _looks(calls, settings, inst: str, cursor: str) -> int:
    ops, _ = calls.of(lambda: instances.read_channel(settings, inst, "output", cursor, 20))
    assert set(ops) <= {("dynamodb", "GetItem")}  # nothing new: no S3 read, no CloudWatch
    return ops.get(("dynamodb", "GetItem"), 0)


@pytest.mark.parametrize("history", [0, 1000])
def test_a_followers_looks_in_a_poll_are_bounded_idle_or_busy(settings, calls, not_invoked, monkeypatch, history):
    inst = _started(settings, ECHO)
    _running(settings, inst)
    repo = Repository(settings.table)
    segments = {"output": history, "log": 0, "stdout": 0, "stderr": 0}
    cursor = instances.channels.encode_cursor(history, 0)
    VirtualTime(monkeypatch)
    # An hour-old instance whose output is idle: pauses double up to a second, then a look a second.
    later = clock.now() + 3600
    monkeypatch.setattr(instances.clock, "now", lambda: later)
    repo.heartbeat(inst, later - 60, segments, set(), None)
    idle = _looks(calls, settings, inst, cursor)
    # The same, while the runner records new segments (busy): a look every POLL_BUSY, no more.
    repo.heartbeat(inst, later - 0.1, segments, set(), None, progressed=True)
    busy = _looks(calls, settings, inst, cursor)
    # 0.1 + 0.2 + 0.4 + 0.8 s, then 1 s each: 24 looks in 20 s; busy, 20 s / POLL_BUSY; whatever the history
    assert idle <= 24
    assert idle < busy <= 20 / longpoll.POLL_BUSY + 1
    # Backing off while busy missed the runner's 0.5 s records by up to 0.4 s: busy looks stay
    # at least twice as frequent as its records.
    assert longpoll.POLL_BUSY <= PROGRESS_INTERVAL / 2


def test_a_followed_instance_writes_what_an_unfollowed_one_does(settings, not_invoked):
    followed, alone = _started(settings, COUNT, [20000]), _started(settings, COUNT, [20000])
    pages: dict[str, list[bytes]] = {followed: [], alone: []}

    def follow(inst: str) -> None:
        cursor = None
        while True:
            page = instances.read_channel(settings, inst, "output", cursor, 5)
            pages[inst].append(page["data"])
            cursor = page["cursor"]
            if page["ended"]:
                return

    reader = threading.Thread(target=follow, args=(followed,))
    reader.start()
    assert run_instance(settings, followed, lambda: 600_000) == "completed"
    reader.join(timeout=60)
    assert run_instance(settings, alone, lambda: 600_000) == "completed"
    follow(alone)  # read once it has ended
    expected = b"".join(f"{i} ".encode() * 40 + b"\n" for i in range(20000))
    assert b"".join(pages[followed]) == b"".join(pages[alone]) == expected
    assert len([p for p in pages[followed] if p]) > 1  # read while it ran, page after page


@pytest.fixture
def change_source():
    """The embedded hub's change source, announcing moto's writes (as `si hub start` installs it)."""
    from chalicelib.embedded import record_changes

    yield record_changes.install()
    record_changes.uninstall()


def _channel_end(settings, inst: str) -> None:
    segments = {"output": 0, "log": 0, "stdout": 0, "stderr": 0}
    Repository(settings.table).heartbeat(inst, clock.now(), segments, {"output"}, None, progressed=True)


# What a waiter waits on, the write that answers it (as the runner or the API makes it), what it then
# answers, and the GetItems of one look (the instance record; the event too; the topic's record).
WAITS = {
    "channel": (lambda s, inst: instances.read_channel(s, inst, "output", instances.channels.encode_cursor(0, 0), 3600),
                _channel_end, lambda answer: answer["ended"] is True and answer["data"] == b"", 1),
    "event": (lambda s, inst: instances.wait_for_event(s, inst, "tick", 3600),
              lambda s, inst: Repository(s.table).put_event_out(inst, "tick", '"now"', clock.now()),
              lambda answer: answer.found and answer.message == "now", 2),
    "topic": (lambda s, inst: topics.read(s, "ticks", "", 3600),
              lambda s, inst: topics.publish(s, "ticks", b"one line\n", "text/plain"),
              lambda answer: answer["data"] == b"one line\n", 1),
}


@pytest.mark.parametrize("waiting_on", WAITS)
def test_on_the_embedded_hub_a_waiter_looks_when_its_record_changes(settings, not_invoked, monkeypatch,
                                                                   change_source, waiting_on):
    """Every write of the embedded hub is made in its process, so a reader waiting for news (of a
    channel, an event, a topic) is woken by the write itself: with no timer left to wake it (every
    pause an hour), it looks twice, before the write and after it."""
    from chalicelib import aws

    wait, write, answered, reads_per_look = WAITS[waiting_on]
    inst = _started(settings, ECHO)
    _running(settings, inst)
    topics.create(settings, "ticks", "text/plain")
    for pause in ("POLL_FIRST", "POLL_MIN", "POLL_BUSY", "POLL_MAX"):  # no timer wakes it within the test
        monkeypatch.setattr(longpoll, pause, 3600.0)
    reader_reads: list[str] = []
    answer: list = []

    def count(model, **_) -> None:
        if model.name == "GetItem" and threading.current_thread().name == "reader":
            reader_reads.append(model.name)

    aws.client("dynamodb").meta.events.register("before-parameter-build.dynamodb.GetItem", count)
    reader = threading.Thread(name="reader", daemon=True, target=lambda: answer.append(wait(settings, inst)))
    reader.start()
    for _ in range(3000):  # until its first look is made (it then waits)
        if len(reader_reads) >= reads_per_look:
            break
        threading.Event().wait(0.01)
    write(settings, inst)
    reader.join(timeout=60)
    assert not reader.is_alive()
    assert answered(answer[0])
    assert len(reader_reads) == 2 * reads_per_look


def test_a_change_source_counts_only_records_waited_on_and_misses_no_change():
    from chalicelib.embedded.record_changes import RecordChanges

    source = RecordChanges()
    source.changed("record")  # nobody waits on it: not counted, nothing kept
    seen = source.watch("record")
    assert seen == 0
    source.changed("record")  # between a look and the wait that follows it
    assert source.wait("record", seen, timeout=60) == 1  # at once: the change is not missed
    source.unwatch("record")
    assert source.watch("record") == 0  # forgotten once its last watcher left
    source.unwatch("record")


def test_runners_record_progress_every_half_second_on_aws_and_at_each_flush_on_the_embedded_hub():
    """On AWS each record is a DynamoDB write: 0.5 s apart while output flows (what the counted
    calls per flush assume). The embedded hub's writes cost nothing: it records at each flush."""
    from chalicelib import config
    from chalicelib.embedded.hub import own_settings
    from chalicelib.runner.service import FLUSH_INTERVAL

    base = {"SEQHUB_TABLE": "t", "SEQHUB_BUCKET": "b", "SEQHUB_LOG_GROUP": "g", "RUNNER_FUNCTION": "f"}
    assert config.load(base).progress_ms == PROGRESS_INTERVAL * 1000 == 500
    assert config.load({**base, **own_settings()}).progress_ms == FLUSH_INTERVAL * 1000


CLOSES_STDOUT = """import os, sys, time
async def run(context, input):
    print("first", flush=True)
    time.sleep(0.3)
    print("last", flush=True)
    os.close(1)  # its stdout ends here; the instance goes on until its input ends
    sys.stdout = open(os.devnull, "w")
    async for _ in input:
        pass
    yield "done"
"""


def test_a_channels_last_bytes_are_read_when_it_ends_not_when_the_instance_does(settings, not_invoked, monkeypatch):
    """What a channel wrote last is flushed as soon as the channel ends (more cannot come, so there
    is nothing to batch it with), however long the flush interval and the instance go on."""
    from chalicelib.runner import service

    monkeypatch.setattr(service, "FLUSH_INTERVAL", 3600.0)
    inst = _started(settings, CLOSES_STDOUT)
    runner = threading.Thread(target=run_instance, args=(settings, inst, lambda: 600_000), daemon=True)
    runner.start()
    read, cursor, ended = b"", None, False
    for _ in range(30):  # 30 s of long polls (a busy machine starts a host slowly); an hour-long flush interval never ends them
        page = instances.read_channel(settings, inst, "stdout", cursor, 1)
        read, cursor, ended = read + page["data"], page["cursor"], page["ended"]
        if ended:
            break
    assert ended and read == b"first\nlast\n"
    assert instances.get(settings, inst).status == "running"  # read while it still ran
    instances.append_input(settings, inst, "input", b"", "text/plain", True)
    runner.join(timeout=60)
    assert instances.get(settings, inst).status == "completed"


def run_on_own_loop(coro: Any) -> None:
    """Run ``coro`` to its end on an event loop of its own thread: the session's browser
    (Playwright's sync API) keeps a loop running on the main thread, where asyncio.run refuses."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coro)
        except BaseException as exc:  # raised again on the test's own thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def test_the_python_host_writes_output_that_trickles_at_once_and_a_burst_in_batches():
    """An item after a quiet flush tick reaches the pipe (and so its readers) at once, not a tick
    later; items in a burst wait for the tick, to be written together."""
    from chalicelib.runner.hosts.python_host import Output

    r, w = os.pipe()
    os.set_blocking(r, False)
    out = Output(w)

    def in_pipe() -> bytes:
        try:
            return os.read(r, 1 << 16)
        except BlockingIOError:
            return b""

    try:
        out.write("first\n")
        assert in_pipe() == b"first\n"  # nothing came before it: written at once
        out.write("second\n")
        out.write("third\n")
        assert in_pipe() == b""  # a burst waits for the tick
        out.tick()
        assert in_pipe() == b"second\nthird\n"
        out.tick()  # a tick that found nothing new: quiet again
        out.write("later\n")
        assert in_pipe() == b"later\n"
        out.write(b"bytes")  # after text: the text is out already, so nothing waits on it
        out.write(b" in a burst")
        assert in_pipe() == b""
        out.tick()
        assert in_pipe() == b"bytes in a burst"
        out.tick()

        async def items():
            for item in ("one\n", "two\n", "three\n"):
                yield item

        run_on_own_loop(out.write_all(items()))  # the same rules on the quick path
        assert in_pipe() == b"one\n"
        out.tick()
        assert in_pipe() == b"two\nthree\n"
    finally:
        out.close()
        os.close(r)


def test_the_python_host_writes_every_kind_of_item_exactly_and_in_order(tmp_path):
    """str as UTF-8, bytes-like as they are, anything else as a JSON line, None as nothing (ndjson:
    every item a JSON line), one item at a time or a stream's items through the quick path."""
    from chalicelib.runner.hosts.python_host import Output

    text_items = ["a\n", b"\x00\xff", "é", bytearray(b"ba"), memoryview(b"mv"), {"k": "é"}, [1, 2], 3, None,
                  "", b"", "z\n", "y", b"x"]
    want_text = (b"a\n\x00\xff" + "é".encode() + b"bamv" + b'{"k": "\\u00e9"}\n[1, 2]\n3\n' + b"z\nyx")
    json_items = ["a", {"k": [1, None]}, 3, None, "é", []]
    want_json = b'"a"\n{"k": [1, null]}\n3\n"\\u00e9"\n[]\n'

    async def stream(items: list) -> Any:
        for item in items:
            yield item

    for n, (items, ndjson, want) in enumerate(((text_items, False, want_text), (json_items, True, want_json))):
        for way in ("write", "write_all"):
            path = tmp_path / f"{n}-{way}"
            out = Output(os.open(path, os.O_WRONLY | os.O_CREAT), ndjson=ndjson)
            if way == "write":
                for item in items:
                    out.write(item)
            else:
                run_on_own_loop(out.write_all(stream(items)))
            out.close()
            assert path.read_bytes() == want, (ndjson, way)


def test_binary_output_passes_the_embedded_gateway_exactly_and_chalice_still_encodes_for_lambda(hub, session, tmp_path):
    """The embedded gateway takes Chalice's binary bodies as they are (no base64 both ways in one
    process); every byte value still reaches the reader, and Chalice's answer to anyone else (Lambda
    as API Gateway calls it, the test client) is base64 as before."""
    from chalice.app import Chalice, Response
    from chalice.config import Config

    from chalicelib.embedded.gateway import BodyLimits, Bridge

    seq = tmp_path / "bytes"
    seq.mkdir()
    (seq / "package.json").write_text('{"name": "bytes", "main": "main.py", "engines": {"python3": "3.12"}}')
    (seq / "main.py").write_text("import sys\n\ndef run(context, input):\n"
                                 "    for _ in range(4096):\n        sys.stdout.buffer.write(bytes(range(256)))\n"
                                 "    sys.stdout.flush()\n    return None\n")
    si(hub, "seq", "deploy", str(seq), "--wait", session=session)
    assert si(hub, "inst", "stdout", "-", session=session).stdout == bytes(range(256)) * 4096

    Bridge(Chalice("elsewhere"), Config(), BodyLimits(1024, 1024, 1024, 1024, 1024))  # what the hub installs
    answer = Response(body=b"\x00\xff", headers={"Content-Type": "application/octet-stream"}).to_dict(["*/*"])
    assert answer["isBase64Encoded"] and answer["body"] == "AP8="
