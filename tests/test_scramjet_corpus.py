"""Scramjet's own published samples (``tests/scramjet``, see ``scramjet_corpus``) through the API of
the embedded hub as a user starts it, sandboxed: each with the exact bytes, events, health and
statuses Scramjet's hub gives, from the samples' own tests (transform-hub's BDD features) and
READMEs, or from Scramjet's runners where those are silent.

Where this hub differs on purpose, the test says so: a killed or stopped Python instance ends
``completed`` (137, 138) as a Node one does, where Scramjet's Python runner exits 1 (``errored``).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
from pathlib import Path

import pytest
import requests

from . import scramjet_corpus
from .helpers import package_dir

JSON = {"Content-Type": "application/json"}
FINAL = ("completed", "errored")
KILLED = {"exitcode": 137, "reason": "Instance killed"}
STOPPED = {"exitcode": 138, "reason": "Instance stopped"}
COMPLETED = {"exitcode": 0, "reason": "Instance completed"}


@pytest.fixture(scope="module")
def built() -> Path:
    return scramjet_corpus.build()


class Hub:
    """The embedded hub's API, as the tests of this file use it."""

    def __init__(self, url: str, built: Path):
        self.url = url
        self.built = built
        self.http = requests.Session()

    def send(self, sample: str) -> str:
        resp = self.http.post(f"{self.url}/sequence", data=package_dir(self.built / sample), timeout=120,
                              headers={"Content-Type": "application/octet-stream"})
        assert resp.status_code == 200, resp.text
        return resp.json()["id"]

    def start(self, sample: str, *args, **options) -> str:
        seq_id = options.pop("seq_id", None) or self.send(sample)
        resp = self.http.post(f"{self.url}/sequence/{seq_id}/start", json={"args": list(args), **options}, timeout=60)
        assert resp.status_code == 200, resp.text
        return resp.json()["id"]

    def info(self, inst: str) -> dict:
        return self.http.get(f"{self.url}/instance/{inst}", timeout=30).json()

    def read(self, inst: str, channel: str = "output", until: bytes | None = None, timeout: float = 60) -> bytes:
        """A channel, to its end or until it holds ``until``."""
        data, cursor, end = b"", "", time.monotonic() + timeout
        while time.monotonic() < end:
            resp = self.http.get(f"{self.url}/instance/{inst}/{channel}", params={"cursor": cursor, "wait": 2},
                                 timeout=30)
            assert resp.status_code == 200, resp.text
            data += resp.content
            cursor = resp.headers["X-Next-Cursor"]
            if resp.headers["X-Channel-Ended"] == "true" or (until is not None and until in data):
                return data
        raise AssertionError(f"{channel} of {inst} did not end; got {data[:500]!r}")

    def ended(self, inst: str, timeout: float = 60) -> dict:
        end = time.monotonic() + timeout
        while (info := self.info(inst))["status"] not in FINAL:
            assert time.monotonic() < end, f"{inst} stayed {info['status']}"
            time.sleep(0.1)
        return info

    def running(self, inst: str) -> None:
        end = time.monotonic() + 60
        while self.info(inst)["status"] == "starting":
            assert time.monotonic() < end, "never started"
            time.sleep(0.05)

    def send_to(self, inst: str, data: bytes, stream: str = "input", content_type: str = "text/plain") -> None:
        resp = self.http.post(f"{self.url}/instance/{inst}/{stream}", data=data, timeout=60,
                              headers={"Content-Type": content_type, "x-end-stream": "true"})
        assert resp.status_code == 200, resp.text

    def emit(self, inst: str, name: str, message) -> None:
        resp = self.http.post(f"{self.url}/instance/{inst}/_event", json=[5001, {"eventName": name, "message": message}],
                              timeout=30)
        assert resp.json() == {"accepted": "OK"}

    def event(self, inst: str, name: str, timeout: float = 30):
        end = time.monotonic() + timeout
        while True:
            resp = self.http.get(f"{self.url}/instance/{inst}/event/{name}", params={"wait": 2}, timeout=30)
            if resp.status_code == 200:
                return resp.json()
            assert time.monotonic() < end, resp.text

    def health(self, inst: str) -> requests.Response:
        return self.http.get(f"{self.url}/instance/{inst}/health", timeout=30)

    def called(self, inst: str) -> None:
        """Wait until its function was called (what it sets up as it is called is then in place)."""
        self.read(inst, "log", until=b"Sequence called")

    def healthy(self, inst: str, expected: bool, timeout: float = 20) -> None:
        """Wait for the health the sequence reports (each second, carried by the runner's heartbeat)."""
        end = time.monotonic() + timeout
        while (found := self.health(inst).json().get("healthy")) is not expected:
            assert time.monotonic() < end, f"health stayed {found}"
            time.sleep(0.2)

    def stop(self, inst: str, timeout_ms: int, keep_alive: bool) -> dict:
        resp = self.http.post(f"{self.url}/instance/{inst}/_stop", json={"timeout": timeout_ms,
                                                                         "canCallKeepalive": keep_alive}, timeout=60)
        assert resp.status_code == 202, resp.text
        return resp.json()

    def kill(self, inst: str) -> dict:
        self.running(inst)
        resp = self.http.post(f"{self.url}/instance/{inst}/_kill", json={}, timeout=30)
        assert resp.status_code == 202, resp.text
        return self.ended(inst, timeout=30)


@pytest.fixture(scope="module")
def sth(hub, built) -> Hub:
    return Hub(hub["url"], built)


def topic() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


# -- transform-hub's BDD data ------------------------------------------------------------------------
def test_th_args_to_output_typed_args_on_a_never_ending_output(sth):
    """E2E-010 TC-014: --args ["Hello",123,{"abc":456},["789"]]."""
    inst = sth.start("th-args-to-output", "Hello", 123, {"abc": 456}, ["789"])
    assert sth.read(inst, until=b"789\n") == b"Hello\n123\n456\n789\n"
    assert sth.kill(inst)["terminated"] == KILLED


def test_th_args_config_test_startup_config(sth):
    """HUB-002 with sample-config.json: appConfig {"x": 1}, four string args."""
    inst = sth.start("th-args-config-test", "123", "false", "abc", '{"a": 1}', appConfig={"x": 1})
    assert sth.read(inst) == (b'config: {"x":1}\nstring, "123"\nstring, "false"\nstring, "abc"\n'
                              b'string, "{\\"a\\": 1}"\n')
    assert sth.ended(inst)["terminated"] == COMPLETED


def test_th_simple_stdio(sth):
    """E2E-001 TC-002: stdin "Hello Alice!" gives stdout ">>> Hello Alice!", readable after the end."""
    inst = sth.start("th-simple-stdio", "1")
    sth.send_to(inst, b"Hello Alice!", stream="stdin", content_type="application/octet-stream")
    assert sth.ended(inst)["terminated"] == COMPLETED
    assert sth.read(inst, "stdout") == b">>> Hello Alice!"


def test_th_event_sequence(sth):
    """HUB-002 TC-004's sequence: {"test": 1} in, {"test": 2} out."""
    inst = sth.start("th-event-sequence")
    sth.running(inst)
    sth.emit(inst, "in", json.dumps({"test": 1}))
    assert json.loads(sth.event(inst, "out")) == {"test": 2}
    assert sth.ended(inst)["terminated"] == COMPLETED
    assert sth.read(inst, "stdout") == b'event {"test":1}\n'


def test_th_bin_out_seq_binary_output_round_trips(sth):
    inst = sth.start("th-bin-out-seq")
    output = sth.read(inst)
    assert output == scramjet_corpus.random_bytes("th-bin-out-seq", "random.bin")
    assert sth.read(inst, "stdout") == hashlib.sha256(output).hexdigest().encode() + b"\n"


# -- reference apps, TypeScript ------------------------------------------------------------------------
def test_ra_hello_its_own_scramjet_datastream_is_written_as_it_is(sth):
    inst = sth.start("ra-hello")
    sth.send_to(inst, b"Alice")
    assert sth.read(inst) == b"Hello Alice!"  # its own copy of scramjet: not JSON lines
    assert sth.read(inst, "stdout") == b"Hello Alice!\n"


def test_ra_hello_alice_out(sth):
    inst = sth.start("ra-hello-alice-out")
    assert sth.read(inst) == "Hello Alice!\nHello Bob!\nHello Zoë!\n".encode()
    assert sth.read(inst, "stdout") == "Hello Alice!\n\nHello Bob!\n\nHello Zoë!\n\n".encode()


def test_ra_endless_names_output_feeds_hello_input_out_through_a_topic(sth):
    """The TypeScript sample that printed `"Name is: Hulk"` (quoted, newline added): an object-mode
    PassThrough of its own is written as it is."""
    names = topic()
    consumer = sth.start("ra-hello-input-out", inputTopic=names)
    producer = sth.start("ra-endless-names-output", 3, outputTopic=names)
    expected = ["Alice", "Ada", "Grace", "Michał"]
    assert sth.read(producer) == "".join(f'{{"name":"{n}"}}\n' for n in expected).encode()
    assert sth.read(consumer, until="Michał\n".encode()) == "".join(f"Name is: {n}\n" for n in expected).encode()
    assert sth.info(consumer)["requires"] == names and sth.info(producer)["provides"] == names
    assert sth.kill(consumer)["terminated"] == KILLED


def test_ra_avengers_names_output(sth):
    avengers = topic()
    inst = sth.start("ra-avengers-names-output", outputTopic=avengers)
    assert sth.read(inst) == b'{"name":"Hulk"}\n'
    sth.ended(inst)
    resp = sth.http.get(f"{sth.url}/topic/{avengers}", params={"cursor": "", "wait": 0}, timeout=30)
    assert resp.content == b'{"name":"Hulk"}\n' and resp.headers["Content-Type"] == "application/x-ndjson"


def test_ra_debug_args(sth):
    inst = sth.start("ra-debug-args", "foo", "3")
    assert sth.read(inst, until=b"}") == b'{"first_arg":"foo","second_arg":"3"}'
    sth.kill(inst)


def test_ra_forever_is_healthy_and_killed(sth):
    inst = sth.start("ra-forever")
    sth.running(inst)
    assert sth.health(inst).json()["healthy"] is True
    assert sth.kill(inst)["terminated"] == KILLED
    assert sth.health(inst).status_code == 404  # E2E-010 TC-009: no health once it has ended


def test_ra_stop_handler(sth):
    """E2E-015 TC-008: stop(2000, false) gives stdout exactly "Cleaning up... Cleanup done.\\n"."""
    inst = sth.start("ra-stop-handler")
    sth.called(inst)  # its handler is added as it is called: a stop before that is a plain stop
    assert sth.stop(inst, 2000, False)["status"] == "stopping"
    assert sth.ended(inst)["terminated"] == STOPPED
    assert sth.read(inst, "stdout") == b"Cleaning up... Cleanup done.\n"


@pytest.mark.parametrize("sample", ["ra-can-keep-alive", "ra-python-can-keep-alive"])
def test_can_keep_alive_stopped_twice_with_keep_alive_then_without(sth, sample):
    """E2E-002 TC-001: stop(5000, true) twice, the instance keeps itself alive; stop(0, false) ends it."""
    inst = sth.start(sample, "SEND_KEEPALIVE", "1")
    sth.called(inst)
    for kept in (1, 2):
        assert sth.stop(inst, 1500, True)["status"] == "stopping"
        end = time.monotonic() + 30
        while sth.read(inst, "log", until=b"kept itself running").count(b"kept itself running") < kept:
            assert time.monotonic() < end
            time.sleep(0.1)
        time.sleep(2)  # past the stop's timeout
        assert sth.info(inst)["status"] == "stopping" and sth.health(inst).json()["healthy"] is True
    sth.stop(inst, 0, False)
    assert sth.ended(inst)["terminated"] == STOPPED


@pytest.mark.parametrize("sample", ["ra-events", "ra-python-events"])
def test_events_answered(sth, sample):
    inst = sth.start(sample)
    sth.running(inst)
    sth.emit(inst, "test-event", "foo")
    assert sth.event(inst, "test-response") == "reply to foo"
    sth.kill(inst)


def test_ra_event_sequence_v2(sth):
    """E2E-010 TC-013."""
    inst = sth.start("ra-event-sequence-v2")
    sth.running(inst)
    sth.emit(inst, "test-event", "test message")
    assert sth.event(inst, "test-event-response") == "message from sequence"
    assert sth.ended(inst)["terminated"] == COMPLETED
    assert sth.read(inst) == b"undefined"  # an inert function's output, as Scramjet's runner writes it


def test_ra_checksum_sequence(sth):
    """E2E-010 TC-012: the md5 of the input, exactly, as the whole output."""
    data = json.dumps([{"id": n, "name": f"żółw {n}", "tags": ["a", "b"] * n} for n in range(300)]).encode()
    inst = sth.start("ra-checksum-sequence")
    sth.send_to(inst, data)
    assert sth.read(inst) == hashlib.md5(data).hexdigest().encode()
    assert sth.ended(inst)["terminated"] == COMPLETED


@pytest.mark.parametrize("sample, exitcode", [("ra-exception-test", 23), ("ra-python-exception-test", 23)])
def test_an_exception_appears_on_stderr_and_the_instance_errs(sth, sample, exitcode):
    """E2E-014 TC-003."""
    inst = sth.start(sample)
    info = sth.ended(inst)
    assert info["status"] == "errored" and info["terminated"]["exitcode"] == exitcode
    assert b"TestException: This exception should appear on stderr" in sth.read(inst, "stderr")


@pytest.mark.parametrize("sample, healthy", [("ra-unhealthy-sequence", False), ("ra-healthy-sequence", True)])
def test_ts_health_checks(sth, sample, healthy):
    inst = sth.start(sample)
    sth.running(inst)
    sth.healthy(inst, healthy)
    assert sth.ended(inst)["terminated"] == COMPLETED
    assert sth.read(inst, "stdout") == b"{ x: 1 }\n{ x: 2 }\n{ x: 3 }\n"


def test_ra_sequence_with_error(sth):
    inst = sth.start("ra-sequence-with-error")
    info = sth.ended(inst)
    assert info["status"] == "errored" and info["terminated"] == {"exitcode": 23, "reason": "Sequence failed during execution"}
    assert sth.read(inst, "stdout") == b"{ x: 1 }\n{ x: 2 }\n{ x: 3 }\n"
    assert b"Error: Sorry m8" in sth.read(inst, "stderr")


def test_ra_output_streams(sth):
    inst = sth.start("ra-output-streams", "3")
    assert sth.read(inst, until=b"0,0,0,") == b"0,0,0,"
    assert sth.read(inst, "stdout", until=b"0,0,0,") == b"0,0,0,"
    assert sth.read(inst, "stderr", until=b"0,0,0,") == b"0,0,0,"
    sth.kill(inst)


def test_ra_multi_outputs(sth):
    inst = sth.start("ra-multi-outputs")
    assert sth.read(inst, until=b"3\n").startswith(b"0\n1\n2\n3\n")
    assert sth.read(inst, "stdout", until=b"1\n").startswith(b"0\n1\n")
    sth.kill(inst)


def test_ra_binary_output_a_binary_encoded_passthrough_gives_its_bytes(sth):
    inst = sth.start("ra-binary-output")
    output = sth.read(inst)
    assert output == scramjet_corpus.random_bytes("ra-binary-output", "random.bin")
    assert sth.read(inst, "stdout") == hashlib.sha256(output).hexdigest().encode() + b"\n"


@pytest.mark.parametrize("producer, consumer", [
    ("ra-topic-producer", "ra-topic-consumer"), ("ra-python-topic-producer", "ra-python-topic-consumer"),
    ("ra-python-topic-producer-runtime", "ra-python-topic-consumer-runtime"), ("ra-python-topic-producer", "ra-topic-consumer")])
def test_a_producer_feeds_a_consumer_through_a_topic(sth, producer, consumer):
    """E2E-014 TC-014: renamed with --output-topic and --input-topic."""
    name = topic()
    made = sth.start(producer, outputTopic=name)
    sth.send_to(made, b"topic test input")
    assert sth.read(made).startswith(b"producer got: topic test input")
    took = sth.start(consumer, inputTopic=name)
    expected = b"consumer got: producer got: topic test input"
    assert sth.read(took, until=expected).startswith(expected)
    assert sth.kill(took)["terminated"] == KILLED


def test_ra_stdinout(sth):
    inst = sth.start("ra-stdinout")
    sth.send_to(inst, b"python runner", stream="stdin", content_type="application/octet-stream")
    assert sth.read(inst) == b"Got on stdin: python runner"
    assert sth.read(inst, "stdout") == b"Got on stdin: python runner"


def test_ra_stdio_sequence(sth):
    inst = sth.start("ra-stdio-sequence")
    sth.send_to(inst, b"1 one\n2 two\nx none\n3 three\n", stream="stdin", content_type="application/octet-stream")
    assert sth.ended(inst)["terminated"] == COMPLETED
    assert sth.read(inst, "stdout") == b"1 one\n3 three\n"
    assert sth.read(inst, "stderr") == b"2 two\n"


def test_ra_process_not_responding_is_killed_all_the_same(sth):
    inst = sth.start("ra-process-not-responding")
    assert sth.kill(inst)["terminated"] == KILLED


def test_ra_event_sequence_2_a_chain_with_an_event_between_its_functions(sth):
    inst = sth.start("ra-event-sequence-2")
    assert sth.ended(inst)["terminated"] == COMPLETED
    # Scramjet's hub sends an event to every instance but the one that emitted it: its own
    # listener never hears it.
    assert sth.read(inst, "stdout") == b"{ x: 1 }\n{ x: 2 }\n{ x: 3 }\n"


# -- reference apps, JavaScript --------------------------------------------------------------------------
def test_ra_js_hello_world(sth):
    inst = sth.start("ra-js-hello-world")
    assert sth.read(inst, until=b"!") == b"Hello World!"
    sth.kill(inst)


def test_ra_js_inert_function(sth):
    """E2E-010 TC-009/010: its log has entries; no health once it has ended."""
    inst = sth.start("ra-js-inert-function")
    assert sth.ended(inst)["terminated"] == COMPLETED
    assert sth.read(inst, "stdout") == b"{ x: 1 }\n{ x: 2 }\n{ x: 3 }\n{ x: 4 }\n"
    assert sth.read(inst) == b"undefined"
    assert b"Instance completed" in sth.read(inst, "log")
    assert sth.health(inst).status_code == 404


def test_ra_js_hostclient_basic_asks_its_hub(sth):
    """E2E-007 TC-001: this.hub answers from inside the sandbox, which has no network."""
    inst = sth.start("ra-js-hostclient-basic")
    output = sth.read(inst).decode()
    assert re.fullmatch(r"\d+\n\d+\n", output), output
    sequences, instances = map(int, output.split())
    assert sequences >= 1 and instances >= 1  # its own, at least
    stdout = sth.read(inst, "stdout").decode()
    assert "service: 'sequence-hub'" in stdout and "cpm: {}" in stdout
    assert sth.ended(inst)["terminated"] == COMPLETED


def test_ra_js_hostclient_start_seq_starts_another_sequence(sth):
    """E2E-007 TC-002."""
    target = sth.send("ra-forever")
    inst = sth.start("ra-js-hostclient-start-seq", target)
    started = sth.read(inst).decode().strip()
    info = sth.info(started)
    assert info["sequence"]["id"] == target and info["status"] in ("starting", "running")
    assert sth.kill(started)["terminated"] == KILLED


# -- create-sequence templates -----------------------------------------------------------------------------
@pytest.mark.parametrize("sample", ["cs-js-transformer", "cs-ts-transformer"])
def test_cs_transformer_templates_are_generators(sth, sample):
    inst = sth.start(sample)
    sth.send_to(inst, b"abc")
    assert sth.read(inst) == b'"Your result: abc"\n'


def test_cs_js_generator(sth):
    inst = sth.start("cs-js-generator")
    assert sth.read(inst, until=b'"Your result"\n' * 3).startswith(b'"Your result"\n' * 3)
    sth.kill(inst)


def test_cs_js_consumer(sth):
    inst = sth.start("cs-js-consumer")
    sth.send_to(inst, b"one\ntwo\n")
    assert sth.read(inst) == b""
    assert sth.ended(inst)["terminated"] == COMPLETED


@pytest.mark.parametrize("sample, args, expected", [("cs-js-task", [100], b"Your result"),
                                                    ("cs-ts-task", [], b'"Your result"\n'),
                                                    ("cs-py-task", [], b"Your result \n")])
def test_cs_task_templates(sth, sample, args, expected):
    inst = sth.start(sample, *args)
    assert sth.read(inst) == expected
    assert sth.ended(inst)["terminated"] == COMPLETED


def test_cs_py_transformer(sth):
    inst = sth.start("cs-py-transformer")
    sth.send_to(inst, b"a\nb\n")
    assert sth.read(inst) == b"Your result: a\n\nYour result: b\n\n"  # text input is lines, with their \n


def test_cs_py_generator_yields_a_character_at_a_time(sth):
    inst = sth.start("cs-py-generator")
    assert sth.read(inst, until=b"Your result \nYour result \n").startswith(b"Your result \nYour result \n")
    sth.kill(inst)


# -- platform samples ------------------------------------------------------------------------------------------
def test_ps_hello_pipes_its_input_through_a_transform_of_its_own(sth):
    inst = sth.start("ps-hello")
    sth.send_to(inst, b"World")
    assert sth.read(inst) == b"Hello World"


def test_ps_hello_snowman(sth):
    inst = sth.start("ps-hello-snowman")
    sth.send_to(inst, b"10")
    expected = "Snowman ⛄ is melting! 🥵\n".encode()
    assert sth.read(inst, until=expected) == expected
    sth.kill(inst)


def test_ps_simple_counter_js_its_own_datastream_run_to_its_end(sth):
    inst = sth.start("ps-simple-counter-js", 0, 3)
    assert sth.ended(inst)["terminated"] == COMPLETED
    assert sth.read(inst, "stdout") == b"{ x: 1 }\n{ x: 2 }\n{ x: 3 }\n"


def test_ps_hello_world_py(sth):
    inst = sth.start("ps-hello-world-py")
    assert sth.read(inst, until=b"!") == b"Hello World!"
    sth.kill(inst)


# -- reference apps, Python ---------------------------------------------------------------------------------------
def test_ra_python_hello(sth):
    inst = sth.start("ra-python-hello")
    sth.send_to(inst, b"x")
    assert sth.read(inst) == b"Hello x!"


def test_ra_python_stdinout(sth):
    inst = sth.start("ra-python-stdinout")
    sth.send_to(inst, b"python runner", stream="stdin", content_type="application/octet-stream")
    assert sth.ended(inst)["terminated"] == COMPLETED
    assert sth.read(inst, "stdout") == b"Got on stdin: python runner"


def test_ra_python_debug_args(sth):
    inst = sth.start("ra-python-debug-args", "foo", "3")
    assert sth.read(inst) == b'{"first_arg":"foo","second_arg":"3"}'


def test_ra_python_forever_killed(sth):
    inst = sth.start("ra-python-forever")
    assert sth.kill(inst)["terminated"] == KILLED  # Scramjet's Python runner: exit 1, errored


def test_ra_python_stop_handler(sth):
    inst = sth.start("ra-python-stop-handler")
    sth.called(inst)
    sth.stop(inst, 2000, False)
    assert sth.ended(inst)["terminated"] == STOPPED  # Scramjet's Python runner: exit 1, errored
    assert sth.read(inst, "stdout") == b"Cleaning up... Cleanup done.\n"


@pytest.mark.parametrize("content_type, expected", [("text/plain", b"4,8,5,"), ("application/octet-stream", b"20,")])
def test_ra_python_chunk_lengths(sth, content_type, expected):
    """E2E-014 TC-006/007: text input is decoded and split into lines; binary is neither."""
    inst = sth.start("ra-python-chunk-lengths")
    sth.send_to(inst, "foo\nbar baz\nżółw\n".encode(), content_type=content_type)
    assert sth.read(inst) == expected


@pytest.mark.parametrize("healthy", [False, True])
def test_python_health_checks(sth, healthy):
    """E2E-014 TC-010, E2E-015 TC-009."""
    inst = sth.start("ra-python-healthy-sequence" if healthy else "ra-python-unhealthy-sequence")
    sth.running(inst)
    sth.healthy(inst, healthy)
    if healthy:
        assert sth.read(inst) == b"0123"
        assert sth.read(inst, "stdout") == b"{'x': '0'}\n{'x': '1'}\n{'x': '2'}\n{'x': '3'}\n"
    else:
        sth.kill(inst)


def test_ra_python_logs_test(sth):
    """E2E-014 TC-013."""
    inst = sth.start("ra-python-logs-test")
    log = sth.read(inst, "log", until=b"Warn log message")
    assert b"Debug log message" in log and b"Info log message" in log
    sth.kill(inst)


def test_ra_python_gen_async(sth):
    """E2E-014 TC-015."""
    inst = sth.start("ra-python-gen-async")
    sth.send_to(inst, b"1")
    assert sth.read(inst) == b"saved to db: 1"


def test_ra_python_alice(sth):
    inst = sth.start("ra-python-alice")
    assert sth.read(inst) == "Hello Alice!\nHello Bob!\nHello Zoë!\n".encode()
    assert sth.read(inst, "stdout") == "Hello Alice!\nHello Bob!\nHello Zoë!\n".encode()


def test_every_sample_is_tested():
    source = Path(__file__).read_text()
    untested = [s for s in scramjet_corpus.samples() if f'"{s}"' not in source]
    assert untested == []
