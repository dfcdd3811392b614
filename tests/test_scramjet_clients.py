"""Scramjet's own clients against the embedded hub (#15): npm ``@scramjet/cli`` and PyPI
``scramjet-api-client``, at the pinned versions ``make test`` installs, asserting what a user sees."""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import json
import os
import re
import select
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import running_hub
from .helpers import EXAMPLES, ROOT, SEQUENCES, js_package

SCRAMJET_SI = ROOT / ".cache" / "scramjet-cli" / "node_modules" / ".bin" / "si"
pytestmark = pytest.mark.skipif(not SCRAMJET_SI.exists(),
                                reason="Scramjet's CLI is not installed: `make test` installs it (.cache/scramjet-cli)")


@pytest.fixture
def scramjet(hub, tmp_path):
    """Run Scramjet's `si` as its user would, with a profile of its own pointing at the hub."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SI_")}
    env.update({"HOME": str(tmp_path), "NO_COLOR": "1", "FORCE_COLOR": "0"})

    def run(*args: str, stdin: bytes | None = None, check: bool = True, timeout: float = 90) -> str:
        done = subprocess.run([str(SCRAMJET_SI), *args], env=env, input=stdin, capture_output=True,
                              timeout=timeout)
        out = done.stdout.decode()
        if check:
            assert done.returncode == 0, (args, out, done.stderr.decode())
        return out

    run("config", "set", "apiUrl", hub["url"])
    run.env = env  # type: ignore[attr-defined]  # for commands that never end (Popen)
    return run


def pack(src: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        for path in sorted(src.rglob("*")):
            tar.add(path, arcname=path.relative_to(src).as_posix())
    return dest


def js_file(tmp_path: Path, source: str) -> Path:
    """A one-file JavaScript sequence, packed."""
    path = tmp_path / "seq.tar.gz"
    path.write_bytes(js_package(source))
    return path


def body(text: str) -> str:
    """Scramjet's CLI prints a 'Current profile' line first; what follows is the answer."""
    return "\n".join(line for line in text.splitlines() if not line.startswith("Current profile"))


def test_send_start_with_args_and_config_then_output(scramjet, tmp_path):
    scramjet("seq", "send", str(pack(SEQUENCES / "js-args-to-output", tmp_path / "p.tar.gz")))
    scramjet("seq", "start", "-", "--args", '["one", 2, {"abc": "three"}, ["four"]]')
    info = scramjet("inst", "info", "-")
    assert "args: [ 'one', 2, { abc: 'three' }, [ 'four' ] ]" in info
    scramjet("inst", "kill", "-")
    scramjet("seq", "send", str(pack(EXAMPLES / "counter-py", tmp_path / "c.tar.gz")))
    scramjet("seq", "start", "-", "--args", "[3000, 3]", "--config-string", '{"who": "me"}')
    assert body(scramjet("inst", "output", "-")) == "3000\n3001\n3002"
    assert "appConfig: { who: 'me' }" in scramjet("inst", "info", "-")


def test_output_of_an_instance_running_longer_than_30_s_is_whole(scramjet, tmp_path):
    scramjet("seq", "send", str(js_file(tmp_path, (
        "module.exports = async function* () {\n"
        "  for (let i = 0; i < 36; i++) { yield `tick ${i}\\n`; await new Promise(r => setTimeout(r, 1000)); }\n"
        "};\n"))))
    scramjet("seq", "start", "-")
    lines = body(scramjet("inst", "output", "-", timeout=120)).splitlines()
    assert lines == [json.dumps(f"tick {i}\n") for i in range(36)]  # yielded strings go out as JSON, as on STH


def test_stdout_stderr_and_log(scramjet, tmp_path):
    scramjet("seq", "send", str(js_file(tmp_path, (
        "module.exports = async function () {\n"
        "  process.stdout.write('to stdout\\n'); process.stderr.write('to stderr\\n');\n"
        "  this.logger.info('to the log');\n"
        "};\n"))))
    scramjet("seq", "start", "-")
    assert body(scramjet("inst", "stdout", "-")) == "to stdout"
    assert body(scramjet("inst", "stderr", "-")) == "to stderr"
    assert "to the log" in scramjet("inst", "log", "-")


def test_stdin_and_input_from_a_file_and_from_a_pipe(scramjet, tmp_path):
    scramjet("seq", "send", str(pack(SEQUENCES / "js-stdio", tmp_path / "s.tar.gz")))
    data = tmp_path / "in.txt"
    data.write_text("a\nb\n")
    scramjet("seq", "start", "-")
    scramjet("inst", "stdin", "-", str(data))
    assert body(scramjet("inst", "stdout", "-")) == ">>> a\n>>> b"
    scramjet("seq", "start", "-")
    scramjet("inst", "stdin", "-", stdin=b"x\ny\n")
    assert body(scramjet("inst", "stdout", "-")) == ">>> x\n>>> y"
    scramjet("seq", "send", str(pack(SEQUENCES / "js-checksum", tmp_path / "k.tar.gz")))
    big = "".join(f"line {i}\n" for i in range(300_000))  # ~3.3 MB: more than one input request takes
    (tmp_path / "big.txt").write_text(big)
    scramjet("seq", "start", "-")
    scramjet("inst", "input", "-", str(tmp_path / "big.txt"), "--end")
    assert body(scramjet("inst", "output", "-")) == hashlib.md5(big.encode()).hexdigest()
    scramjet("seq", "start", "-")
    scramjet("inst", "input", "-", "--end", stdin=b"piped\n")
    assert body(scramjet("inst", "output", "-")) == hashlib.md5(b"piped\n").hexdigest()


def test_attach_stop_kill_health_and_logs(scramjet, tmp_path):
    scramjet("seq", "send", str(pack(SEQUENCES / "js-stop-handler", tmp_path / "h.tar.gz")))
    scramjet("seq", "start", "-")
    time.sleep(1)
    assert "healthy: true" in scramjet("inst", "health", "-")
    assert "stop handler ready" in _first_lines(scramjet, "inst", "log", "-", until="stop handler ready")
    scramjet("inst", "stop", "-", "3000")
    assert body(scramjet("inst", "stdout", "-")) == "Cleaning up... Cleanup done."
    assert "status: 'completed'" in scramjet("inst", "info", "-")
    scramjet("seq", "start", "-")
    time.sleep(1)
    scramjet("inst", "kill", "-")
    assert "reason: 'Instance killed'" in _wait_for(scramjet, "Instance killed")
    scramjet("seq", "send", str(pack(SEQUENCES / "js-stdio", tmp_path / "s.tar.gz")))
    scramjet("seq", "start", "-")
    attached = scramjet("inst", "attach", "-", stdin=b"hello\n", timeout=30, check=False)
    assert ">>> hello" in attached


def _first_lines(scramjet, *args: str, until: str) -> str:
    """A stream that does not end by itself (a running instance's log): what it printed once it has
    printed ``until`` (or in 60 s: generous for a loaded machine, where Node alone takes seconds)."""
    proc = subprocess.Popen([str(SCRAMJET_SI), *args], env=scramjet.env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    seen = b""
    try:
        deadline = time.monotonic() + 60
        while until.encode() not in seen and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                chunk = os.read(proc.stdout.fileno(), 65536)
                if not chunk:
                    break
                seen += chunk
    finally:
        proc.kill()
        proc.wait(timeout=30)
    return seen.decode()


def _wait_for(scramjet, text: str) -> str:
    for _ in range(50):
        info = scramjet("inst", "info", "-")
        if text in info:
            return info
        time.sleep(0.2)
    return info


def test_events_emit_on_next_and_stream(scramjet, tmp_path):
    scramjet("seq", "send", str(pack(SEQUENCES / "js-events", tmp_path / "e.tar.gz")))
    scramjet("seq", "start", "-")
    env_home = {"HOME": str(tmp_path)}
    waiting = subprocess.Popen([str(SCRAMJET_SI), "inst", "event", "on", "-", "test-response", "--next"],
                               env={**os.environ, **env_home}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    streaming = subprocess.Popen([str(SCRAMJET_SI), "inst", "event", "on", "-", "test-response", "--stream"],
                                 env={**os.environ, **env_home}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(25)  # longer than one long poll: Scramjet's hub waits for the event as long as it takes
    assert "accepted: 'OK'" in scramjet("inst", "event", "emit", "-", "test-event", "foo")
    assert waiting.wait(timeout=30) == 0
    assert "'reply to foo'" in waiting.stdout.read().decode()
    time.sleep(1)
    scramjet("inst", "event", "emit", "-", "test-event", "bar")
    for _ in range(50):  # the reply comes once the sequence has seen the event
        if "'reply to bar'" in scramjet("inst", "event", "on", "-", "test-response"):
            break
        time.sleep(0.2)
    assert "'reply to bar'" in scramjet("inst", "event", "on", "-", "test-response")
    time.sleep(2)
    streaming.terminate()
    streamed = streaming.communicate(timeout=10)[0].decode()
    assert '"reply to foo"' in streamed and '"reply to bar"' in streamed


def test_hub_load_logs_version_and_sequence_removal(scramjet, tmp_path):
    load = scramjet("hub", "load")
    assert "avgLoad" in load and "memFree" in load and "fsSize" in load
    assert "sequence-hub" in scramjet("hub", "version")
    sent = scramjet("seq", "send", str(pack(EXAMPLES / "counter-js", tmp_path / "c.tar.gz")))
    assert "SequenceClient" in sent
    # The hub is shared with other tests, which may hold a counter-js of their own: follow this one's id.
    sequence_id = re.search(r"id: '([0-9a-f-]{36})'", sent).group(1)
    assert "stored (counter-js" in _first_lines(scramjet, "hub", "logs", until="stored (counter-js")
    assert sequence_id in scramjet("seq", "list")
    scramjet("seq", "rm", "-")
    assert sequence_id not in scramjet("seq", "list")


def test_prune_kills_and_removes_every_sequence(tmp_path):
    """`si seq prune --force` removes every sequence of the hub: on a hub of its own."""
    home = tmp_path / "hub"
    home.mkdir()
    with running_hub(home) as own:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SI_")}
        env.update({"HOME": str(tmp_path), "NO_COLOR": "1"})

        def run(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([str(SCRAMJET_SI), *args], env=env, capture_output=True, timeout=120)

        run("config", "set", "apiUrl", own["url"])
        assert run("seq", "send", str(pack(EXAMPLES / "counter-js", tmp_path / "counter-js.tar.gz"))).returncode == 0
        # The last one sent waits until stopped (the counters end in a moment: they cannot be relied on
        # to be running when prune looks).
        waits = pack(SEQUENCES / "py-stop-handler", tmp_path / "waits.tar.gz")
        assert run("seq", "send", str(waits)).returncode == 0
        assert run("seq", "start", "-").returncode == 0
        refused = run("seq", "prune")
        assert b"has running instances. Use --force" in refused.stdout + refused.stderr
        pruned = run("seq", "prune", "--force")
        assert pruned.returncode == 0, pruned.stderr.decode()
        assert b"Sequences removed successfully." in pruned.stdout + pruned.stderr
        assert requests.get(f"{own['url']}/sequences", timeout=10).json() == []


def in_own_loop(coroutine: Any) -> Any:
    """asyncio.run on a thread of its own: Playwright's sync API (the session's browser) keeps an
    event loop running on the main thread once a test has used it."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def test_the_python_client(hub, tmp_path):
    """scramjet-api-client 1.1.1: send, start with no arguments (it posts `null`), info, entities,
    load, config, version, sequences, an event, health, kill, and the hub's log as a stream."""
    from client.host_client import HostClient

    async def scenario() -> dict:
        host = HostClient(hub["url"])
        seq = await host.send_sequence(pack(SEQUENCES / "js-events", tmp_path / "e.tar.gz").read_bytes())
        inst = await seq.start()
        seen: dict = {"info": await inst.get_info(), "entities": await host.list_entities(),
                      "load": await host.get_load_check(), "config": await host.get_config(),
                      "version": await host.get_version(), "sequences": await host.list_sequences()}
        seen["event"] = await inst.send_event("test-event", "py")
        for _ in range(50):
            reply = await asyncio.to_thread(requests.get, f"{hub['url']}/instance/{inst.id}/event/test-response",
                                            timeout=30)
            if reply.status_code == 200:
                break
            await asyncio.sleep(0.2)
        seen["reply"] = reply.json()
        seen["health"] = await inst.get_health()
        seen["kill"] = await inst.kill()
        lines = []
        async for line in host._get_stream("log"):
            lines.append(line)
            if "instance" in line and "starting" in line:
                break
        seen["log"] = lines
        return seen

    seen = in_own_loop(asyncio.wait_for(scenario(), 120))
    assert seen["info"]["status"] in ("starting", "running") and seen["info"]["sequence"]["name"] == "js-events"
    assert set(seen["entities"]) == {"sequences", "instances"}
    assert {"avgLoad", "currentLoad", "memFree", "memUsed", "fsSize"} <= set(seen["load"])
    assert seen["config"]["service"] == "sequence-hub" and "limits" in seen["config"]
    assert seen["version"]["service"] == "sequence-hub"
    assert any(s["name"] == "js-events" for s in seen["sequences"])
    # The client sends the message under "messagee" (its own typo), so the sequence sees none.
    assert seen["event"] == {"accepted": "OK"} and seen["reply"] == "reply to null"
    assert seen["health"]["healthy"] is True
    assert seen["kill"]["status"] in ("killing", "completed")
    assert any("starting" in line for line in seen["log"])


# -- HTTP as a real server speaks it -----------------------------------------------------------------
def _raw(hub, request: bytes, read_answer: bool = True) -> bytes:
    """Send ``request`` as written; read the answer until the hub closes (or, without
    ``read_answer``, hang up at once: a body cut short)."""
    host, port = hub["url"].split("//")[1].split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(request)
        chunks = []
        while read_answer and (data := sock.recv(65536)):
            chunks.append(data)
        return b"".join(chunks)


def test_chunked_upload_with_100_continue_and_a_cut_body_never_ends_the_input(hub, session, tmp_path):
    package = pack(SEQUENCES / "js-checksum", tmp_path / "k.tar.gz").read_bytes()
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(package[i:i + 100]), package[i:i + 100])
                       for i in range(0, len(package), 100)) + b"0\r\n\r\n"
    where, path = hub["url"].split("//")[1].split("/", 1)
    host = where.encode()  # the hub answers requests that name it
    answer = _raw(hub, b"POST /%s/sequence HTTP/1.1\r\nHost: %s\r\nContent-Type: application/octet-stream\r\n"
                       b"Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n"
                  % (path.encode(), host) + chunked)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"), answer[:200]
    seq_id = json.loads(answer.split(b"\r\n\r\n", 2)[2])["id"]
    inst_id = requests.post(f"{hub['url']}/sequence/{seq_id}/start", json={}, timeout=30).json()["id"]
    # A body cut before its last chunk: what arrived is kept, the input is not ended.
    _raw(hub, b"POST /%s/instance/%s/input HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n6\r\nhello\n\r\n" % (path.encode(), inst_id.encode(), host),
         read_answer=False)
    time.sleep(2)
    info = requests.get(f"{hub['url']}/instance/{inst_id}", timeout=30).json()
    assert info["status"] == "running"  # still reading its input: nothing ended it
    done = requests.post(f"{hub['url']}/instance/{inst_id}/input", data=b"world\n",
                         headers={"Content-Type": "text/plain"}, timeout=30)
    assert done.status_code == 200
    output = requests.get(f"{hub['url']}/instance/{inst_id}/output", timeout=60).content
    assert output.decode() == hashlib.md5(b"hello\nworld\n").hexdigest()


def test_many_live_readers_do_not_stall_other_requests(hub, tmp_path):
    """A plain GET of a running instance's output holds its request open; many at once must not
    keep the hub from answering anyone else."""
    package = js_package("module.exports = () => new Promise(r => setTimeout(r, 60000));\n")
    seq_id = requests.post(f"{hub['url']}/sequence", data=package, timeout=30,
                           headers={"Content-Type": "application/octet-stream"}).json()["id"]
    inst_id = requests.post(f"{hub['url']}/sequence/{seq_id}/start", json={}, timeout=30).json()["id"]
    readers = [requests.get(f"{hub['url']}/instance/{inst_id}/output", stream=True, timeout=60) for _ in range(12)]
    try:
        assert all(r.status_code == 200 for r in readers)  # each is streaming, waiting for output
        assert requests.get(f"{hub['url']}/version", timeout=10).status_code == 200
        assert requests.get(f"{hub['url']}/instance/{inst_id}", timeout=10).json()["status"] == "running"
    finally:
        for reader in readers:
            reader.close()
        requests.post(f"{hub['url']}/instance/{inst_id}/_kill", timeout=30)


def test_options_json_404_and_405_and_large_direct_packages(hub, tmp_path):
    # Scramjet's hub grants every origin CORS; this one grants none but those its user allows
    # (test_laptop_hub.py): a client that is no browser sends no Origin and sees the methods.
    pre = requests.options(f"{hub['url']}/sequences", timeout=10)
    assert pre.status_code == 200 and "POST" in pre.headers["Allow"]
    assert "Access-Control-Allow-Origin" not in pre.headers
    assert "Access-Control-Allow-Origin" not in requests.get(f"{hub['url']}/version", timeout=10).headers
    garbled = _raw(hub, b"NOT A REQUEST LINE\r\n\r\n")  # what the server itself refuses is JSON too
    assert garbled.startswith(b"HTTP/1.1 400 ") and "error" in json.loads(garbled.split(b"\r\n\r\n", 1)[1])
    missing = requests.get(f"{hub['url']}/no-such-thing", timeout=10)
    assert missing.status_code == 404 and missing.json() == {"error": "no such endpoint: GET /api/v1/no-such-thing"}
    wrong = requests.put(f"{hub['url']}/sequences", timeout=10)
    assert wrong.status_code == 405 and wrong.json() == {"error": "Unsupported method: PUT"}
    src = tmp_path / "big"
    src.mkdir()
    (src / "package.json").write_text('{"name": "big", "version": "1.0.0", "main": "index.js"}')
    (src / "index.js").write_text("module.exports = async function* () { yield 'ok'; };\n")
    (src / "blob.bin").write_bytes(os.urandom(6_000_000))  # over API Gateway's 4.5 MB, fine here
    sent = requests.post(f"{hub['url']}/sequence", data=pack(src, tmp_path / "b.tar.gz").read_bytes(),
                         headers={"Content-Type": "application/octet-stream"}, timeout=60)
    assert sent.status_code == 200, sent.text


def read_until(args: list[str], env: dict, expected: bytes, timeout: float = 60.0) -> bytes:
    """What a never-ending command of Scramjet's CLI (topic get, output of a consumer) printed by
    the time ``expected`` is in it; then it is stopped."""
    proc = subprocess.Popen([str(SCRAMJET_SI), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    got = bytearray()

    def pump() -> None:
        assert proc.stdout is not None
        while chunk := proc.stdout.read1(65536):
            got.extend(chunk)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while expected not in got and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.kill()
    proc.wait()
    reader.join(5)
    return bytes(got)


def test_topics_through_scramjets_cli(scramjet, tmp_path):
    cities = f"cities-{uuid.uuid4().hex[:6]}"
    data = tmp_path / "cities.json"
    data.write_text('{"city": "New York"}\n{"city": "Paris"}\n')
    scramjet("topic", "send", cities, str(data), "-t", "application/x-ndjson")
    got = read_until(["topic", "get", cities], scramjet.env, b"Paris")
    assert body(got.decode()).strip() == '{"city": "New York"}\n{"city": "Paris"}'
    listed = body(scramjet("topic", "ls"))
    assert "contentType: 'application/x-ndjson'" in listed and f"topic: '{cities}'" in listed
    refused = scramjet("topic", "send", cities, stdin=b'{"city": "Rome"}\n', check=False)  # text/plain
    assert "Acceptable Content-Type for" in refused

    # seq start --output-topic and --input-topic: a Python producer feeding a JavaScript consumer.
    names = f"names-{uuid.uuid4().hex[:6]}"
    scramjet("seq", "send", str(pack(EXAMPLES / "greeter-js", tmp_path / "g.tar.gz")))
    consumer = re.search(r"[0-9a-f-]{36}", scramjet("seq", "start", "-", "--input-topic", names)).group(0)
    scramjet("seq", "send", str(pack(EXAMPLES / "names-py", tmp_path / "n.tar.gz")))
    scramjet("seq", "start", "-", "--output-topic", names, "--args", "[3, 0.01]")
    assert body(scramjet("inst", "output", "-")) == "Ada\nGrace\nAlan"
    got = read_until(["topic", "get", names], scramjet.env, b"Alan")
    assert body(got.decode()).strip() == "Ada\nGrace\nAlan"
    greeted = read_until(["inst", "output", consumer], scramjet.env, b"Hello, Alan!")
    assert body(greeted.decode()).strip() == "Hello, Ada!\nHello, Grace!\nHello, Alan!"
    scramjet("inst", "kill", consumer)


def test_both_clis_share_the_profile_files(hub, tmp_path):
    """Scramjet's CLI and ours keep profiles in ~/.si/profiles: one set by ours works for theirs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SI_")}
    env.update({"HOME": str(tmp_path), "NO_COLOR": "1"})
    ours = subprocess.run([sys.executable, "-m", "si", "config", "set", "apiUrl", hub["url"]], env=env,
                          capture_output=True, timeout=60)
    assert ours.returncode == 0, ours.stderr
    theirs = subprocess.run([str(SCRAMJET_SI), "hub", "version"], env=env, capture_output=True, timeout=60)
    assert theirs.returncode == 0 and b"sequence-hub" in theirs.stdout, theirs.stderr
    subprocess.run([str(SCRAMJET_SI), "config", "set", "apiUrl", hub["url"]], env=env, timeout=60, check=True)
    again = subprocess.run([sys.executable, "-m", "si", "hub", "version"], env=env, capture_output=True, timeout=60)
    assert again.returncode == 0 and b"sequence-hub" in again.stdout, again.stderr
