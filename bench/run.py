"""Sequence Hub benchmarks, each a ratio against a baseline measured in the same run.

    make bench            (or: .venv/bin/python bench/run.py [--quick])

Writes bench/RESULTS.md (and prints it). See the README's Performance section for what they mean.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chalicelib import aws, config, instances, invoker, sequences  # noqa: E402
from chalicelib.embedded.hub import LocalHub, free_port, hub_environment, provision  # noqa: E402
from chalicelib.runner import child, sandbox  # noqa: E402
from chalicelib.runner.service import run_instance  # noqa: E402
from si.client import Client  # noqa: E402
from si.packing import pack  # noqa: E402

SEQS = Path(__file__).resolve().parent / "sequences"
HISTORY = "## Before and after the fast path"
EXAMPLES = ROOT / "examples"


def package(path: Path) -> bytes:
    with tempfile.TemporaryFile() as fh:
        pack(path, fh)
        fh.seek(0)
        return fh.read()


def expected_bytes(runtime: str, count: int) -> int:
    return sum(len(f"{i}\n") for i in range(count))


# -- baselines: the runtime host alone ------------------------------------------------------------
def host_direct(seq_dir: Path, runtime: str, args: list, box: sandbox.Box | None = None) -> tuple[float, float, int]:
    """Run a sequence with its runtime host (in ``box`` when given), output drained to /dev/null:
    (total s, first byte s, bytes)."""
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        seq = work / "sequence"
        shutil.copytree(seq_dir, seq)
        manifest = json.loads((seq / "package.json").read_text())
        if box is not None:  # the sandbox unpacks the package itself
            from tests.helpers import package_dir

            archive = work / "package.tar.gz"
            archive.write_bytes(package_dir(seq))
        t0 = time.perf_counter()
        proc = child.spawn(runtime, archive if box is not None else seq,
                           {"main": manifest["main"], "args": args, "config": {}, "instanceId": "bench"}, work, box)
        first = [0.0]
        total = [0]

        def drain(fd: int, is_output: bool) -> None:
            with open("/dev/null", "wb") as null:
                while data := os.read(fd, 256 * 1024):
                    if is_output and not total[0]:
                        first[0] = time.perf_counter() - t0
                    if is_output:
                        total[0] += len(data)
                    null.write(data)
            os.close(fd)

        threads = [threading.Thread(target=drain, args=(proc.fds[n], n == "output"))
                   for n in ("output", "log", "events", "stdout", "stderr")]
        for t in threads:
            t.start()
        proc.proc.wait()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        os.close(proc.control_w)
        os.close(proc.input_w)
        os.close(proc.fds["stdin"])
        return elapsed, first[0], total[0]


# -- on the embedded hub ---------------------------------------------------------------------------
def send(client: Client, path: Path) -> str:
    import io

    return client.send_sequence(io.BytesIO(package(path)))["id"]


def run_to_end(client: Client, seq_id: str, args: list) -> tuple[float, int]:
    t0 = time.perf_counter()
    inst = client.start(seq_id, args)["id"]
    size = sum(len(chunk) for chunk in client.follow(inst, "output"))
    return time.perf_counter() - t0, size


def first_byte(client: Client, seq_id: str) -> float:
    t0 = time.perf_counter()
    inst = client.start(seq_id, [])["id"]
    for chunk in client.follow(inst, "output"):
        if chunk:
            return time.perf_counter() - t0
    raise RuntimeError("no output")


def peak_rss_of_runner(client: Client, seq_id: str, args: list) -> int:
    """Peak RSS (bytes) of the instance's runner process (not its host) while the instance runs: of
    the fork server's children, the one that ends with the instance (a standby made for the next
    instance stays)."""
    server = invoker.fork_server_pid()
    inst = client.start(seq_id, args)["id"]
    peaks: dict[int, int] = {}
    ended: set[int] = set()
    done = threading.Event()

    def follow():
        for _ in client.follow(inst, "output"):
            pass
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    give_up = time.monotonic() + 120
    while not (done.is_set() and ended) and time.monotonic() < give_up:
        for pid in (_children_of(server) | set(peaks)) - ended:
            try:
                with open(f"/proc/{pid}/status") as fh:
                    status = fh.read()
            except OSError:
                status = ""
            if "VmHWM:" not in status:  # exited (a zombie until reaped)
                ended.add(pid)
                continue
            peaks[pid] = max(peaks.get(pid, 0), int(status.split("VmHWM:")[1].split()[0]) * 1024)
        time.sleep(0.02)
    return max((peaks.get(pid, 0) for pid in ended), default=0)


def _children_of(pid: int) -> set[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return {int(p) for p in fh.read().split()}
    except OSError:
        return set()


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


# -- AWS calls (in-process moto, the runner inline) ---------------------------------------------------
@contextlib.contextmanager
def in_process_hub(stage: str) -> Iterator[Any]:
    """moto in this process, provisioned from the template, and the hub's settings for it."""
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        os.environ.pop(name, None)
    os.environ.update({"AWS_ACCESS_KEY_ID": "b", "AWS_SECRET_ACCESS_KEY": "b", "AWS_DEFAULT_REGION": "us-east-1"})
    with mock_aws(config={"lambda": {"use_docker": False}}):
        aws.reset()
        os.environ.update(hub_environment(provision(stage), 600, stage=stage))
        from chalicelib import config

        try:
            yield config.load()
        finally:
            aws.reset()


def aws_calls(count_items: int, slow: bool = False) -> dict:
    with in_process_hub("bench") as settings:
        calls: Counter = Counter()
        who = threading.local()

        def count(model, **_):
            calls[(getattr(who, "name", "runner"), model.name)] += 1

        for svc in ("dynamodb", "s3", "logs"):
            aws.client(svc).meta.events.register("before-call.*.*", count)
        invoker_invoke = invoker.invoke
        invoker.invoke = lambda *_: None
        try:
            if slow:
                src = ("import asyncio\n\nasync def run(context, input):\n"
                       f"    for i in range({count_items}):\n"
                       "        await asyncio.sleep(0.3)\n        yield f'{i}\\n'\n")
                from tests.helpers import py_package

                body = py_package(src)
                args = []
            else:
                body, args = package(SEQS / "py-million"), [count_items]
            seq = sequences.create(settings, body)["id"]
            inst = instances.start(settings, seq, {"args": args})["id"]
            calls.clear()
            runner = threading.Thread(target=run_instance, args=(settings, inst, lambda: 600_000))
            t0 = time.perf_counter()
            runner.start()

            def read():
                who.name = "reader"
                cursor, size = "", 0
                while True:
                    page = instances.read_channel(settings, inst, "output", cursor, 20)
                    size += len(page["data"])
                    cursor = page["cursor"]
                    if page["ended"]:
                        return size

            reader_bytes = read()
            runner.join()
            seconds = time.perf_counter() - t0
        finally:
            invoker.invoke = invoker_invoke
    return {"calls": calls, "seconds": seconds, "bytes": reader_bytes}


# -- followers: what following an instance costs, counted ---------------------------------------------
FOLLOW_SECONDS = 20.0
API_GB = 0.5  # the API function's memory (lambda_memory_size 512)
BUSY = ("import asyncio\n\nasync def run(context, input, seconds):\n"
        "    for i in range(int(seconds * 20)):\n        await asyncio.sleep(0.05)\n        yield f'line {i}\\n'\n")
IDLE = "import asyncio\n\nasync def run(context, input, seconds):\n    await asyncio.sleep(seconds)\n"


def follow(read_page, seconds: float) -> tuple[int, float]:
    """Follow a channel like `si inst output -` for ``seconds``: (requests, request-seconds)."""
    cursor, requests_made, busy, end = "", 0, 0.0, time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.monotonic()
        page = read_page(cursor, max(0.0, min(20.0, end - time.monotonic())))
        busy += time.monotonic() - t0
        requests_made += 1
        cursor = page["cursor"]
        if page["ended"]:
            break
    return requests_made, busy


def follower_costs() -> dict[str, dict]:
    """Per follower-minute on an idle and on a busy instance: API requests, DynamoDB reads, S3 GETs,
    GetLogEvents, API GB-seconds (in-process moto, the runner in a thread)."""
    from tests.helpers import py_package

    out = {}
    with in_process_hub("bench-follow") as settings:
        calls: Counter = Counter()
        who = threading.local()
        for svc in ("dynamodb", "s3", "logs"):
            aws.client(svc).meta.events.register(
                "before-call.*.*", lambda model, **_: calls.update([model.name]) if getattr(who, "name", "") == "reader" else None)
        saved, invoker.invoke = invoker.invoke, (lambda *_: None)
        try:
            for kind, source in (("idle", IDLE), ("busy", BUSY)):
                seq = sequences.create(settings, py_package(source))["id"]
                inst = instances.start(settings, seq, {"args": [FOLLOW_SECONDS + 5]})["id"]
                runner = threading.Thread(target=run_instance, args=(settings, inst, lambda: 600_000))
                runner.start()
                calls.clear()
                who.name = "reader"
                made, busy = follow(lambda c, w, inst=inst: instances.read_channel(settings, inst, "output", c, w),
                                    FOLLOW_SECONDS)
                who.name = ""
                per_minute = 60 / FOLLOW_SECONDS
                out[kind] = {"requests": made * per_minute, "GetItem": calls["GetItem"] * per_minute,
                             "GetObject": calls["GetObject"] * per_minute, "GetLogEvents": calls["GetLogEvents"] * per_minute,
                             "GB-s": busy * API_GB * per_minute}
                runner.join()
        finally:
            invoker.invoke = saved
    return out


def fan_out(client: Client, followers: int = 50) -> dict:
    """``followers`` followers of one busy instance on the embedded hub: the API's AWS calls, counted."""
    calls: Counter = Counter()
    for svc in ("dynamodb", "s3", "logs"):
        aws.client(svc).meta.events.register("before-call.*.*", lambda model, **_: calls.update([model.name]))
    from tests.helpers import py_package

    seq = client.send_sequence(io.BytesIO(py_package(BUSY)))["id"]
    inst = client.start(seq, [FOLLOW_SECONDS])["id"]
    calls.clear()

    def one(_: int) -> int:
        return len(b"".join(client.follow(inst, "output")))

    with ThreadPoolExecutor(followers) as pool:
        sizes = list(pool.map(one, range(followers)))
    expected = sum(len(f"line {i}\n") for i in range(int(FOLLOW_SECONDS * 20)))
    assert set(sizes) == {expected}, (expected, Counter(sizes), client.instance(inst))
    return dict(calls)


# -- pack -------------------------------------------------------------------------------------------
def pack_bench(small: int) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        tree.mkdir()
        (tree / "package.json").write_text(json.dumps({"name": "big-tree", "main": "index.js"}))
        (tree / "index.js").write_text("module.exports = () => 'x';")
        for i in range(small):
            d = tree / "node_modules" / f"pkg{i // 100}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"f{i}.js").write_text(f"module.exports = {{ id: {i}, name: 'file {i}' }};\n" * 4)
        for i in range(3):
            (tree / f"data{i}.bin").write_bytes(os.urandom(8 * 1024 * 1024))
        t0 = time.perf_counter()
        subprocess.run(["tar", "czf", str(Path(tmp) / "base.tgz"), "-C", str(tree), "."], check=True)
        base = time.perf_counter() - t0
        t0 = time.perf_counter()
        with open(Path(tmp) / "si.tar.gz", "wb") as fh:
            pack(tree, fh)
        ours = time.perf_counter() - t0
        return ours, base, small + 5


# -- report -----------------------------------------------------------------------------------------
def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, Node {node}, {platform.system()} {platform.release()}"


# Prices (us-east-1, on-demand, list): the docs' cost table is computed from these and the counts.
PRICE = {"request": 3.50e-6, "GetItem": 0.125e-6, "GetObject": 0.4e-6, "GB-s": 16.6667e-6}


def sandbox_rows(row, starts: int, items: int) -> None:
    """What the embedded hub's sandbox costs: the same host started in bwrap and without it."""
    reason = sandbox.unavailable_reason()
    if reason:
        row("sandbox", "not measured", reason, "", "")
        return
    limits = config.Limits(max_procs=256, memory_mb=1024, disk_mb=512)
    for runtime, name in (("python", "py-one"), ("node", "js-one")):
        plain, boxed = [], []
        for i in range(starts):
            plain.append(host_direct(SEQS / name, runtime, [])[1])
            box = sandbox.Box.create(f"bench-{i}", limits)
            try:
                boxed.append(host_direct(SEQS / name, runtime, [], box)[1])
            finally:
                box.remove()
        row(f"sandbox: start → first output byte, {name}, {starts} starts",
            f"in bwrap p50 {statistics.median(boxed) * 1000:.0f} ms", f"host alone p50 {statistics.median(plain) * 1000:.0f} ms",
            f"+{(statistics.median(boxed) - statistics.median(plain)) * 1000:.0f} ms", "< +50 ms")
    box = sandbox.Box.create("bench-throughput", limits)
    try:
        boxed_s, _, boxed_bytes = host_direct(SEQS / "py-million", "python", [items], box)
    finally:
        box.remove()
    plain_s, _, plain_bytes = host_direct(SEQS / "py-million", "python", [items])
    assert boxed_bytes == plain_bytes == expected_bytes("python", items), (boxed_bytes, plain_bytes)
    row(f"sandbox: throughput py-million ({items:,} items)", f"in bwrap {boxed_s:.2f} s", f"host alone {plain_s:.2f} s",
        f"{boxed_s / plain_s:.2f}×", "≤ 1.1×")


COUNT_LINES = ("async def run(context, input, count):\n    seen = 0\n    async for _ in input:\n"
               "        seen += 1\n        if seen == count:\n            return f'{seen}\\n'\n")
ECHO_LINES = "async def run(context, input):\n    async for line in input:\n        yield line\n"


def topic_rows(row, client: Client, items: int, hops: int) -> None:
    """A producer feeding a consumer through a topic, against the same pipeline by hand (a client
    copying output to input); and one line's hop through a topic to a consumer's output, against
    the same hop through an instance's input."""
    import uuid

    from tests.helpers import py_package

    producer = send(client, SEQS / "py-million")
    counter = client.send_sequence(io.BytesIO(py_package(COUNT_LINES)))["id"]
    # Baseline: the pipeline by hand, as without topics: the producer's output read by a client and
    # sent on as the consumer's input.
    t0 = time.perf_counter()
    consumer = client.start(counter, [items])["id"]
    source = client.start(producer, [items])["id"]
    for chunk in client.follow(source, "output"):
        client.send_input(consumer, "input", chunk, "text/plain", False)
    by_hand = b"".join(client.follow(consumer, "output"))
    alone = time.perf_counter() - t0
    assert by_hand == f"{items}\n".encode(), by_hand
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    t0 = time.perf_counter()
    consumer = client.start(counter, [items], input_topic=topic)["id"]
    client.start(producer, [items], output_topic=topic)
    counted = b"".join(client.follow(consumer, "output"))
    through = time.perf_counter() - t0
    assert counted == f"{items}\n".encode(), counted
    row(f"producer → topic → consumer ({items:,} lines)", f"{through:.2f} s",
        f"output → client → input {alone:.2f} s", f"{through / alone:.2f}×", "≤ 1×")
    echo = client.send_sequence(io.BytesIO(py_package(ECHO_LINES)))["id"]

    def hop(send_line, inst: str) -> list[float]:
        times, got = [], b""
        reader = client.follow(inst, "output")
        for i in range(hops):
            line = f"{i}\n".encode()
            t = time.perf_counter()
            send_line(line)
            while line not in got:
                got += next(reader)
            times.append(time.perf_counter() - t)
        return times

    via_input = client.start(echo, [])["id"]
    direct = hop(lambda line: client.send_input(via_input, "input", line, "text/plain", False), via_input)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    client.send_topic(topic, b"", "text/plain")
    via_topic = client.start(echo, [], input_topic=topic)["id"]
    topical = hop(lambda line: client.send_topic(topic, line, "text/plain"), via_topic)
    for inst in (via_input, via_topic):
        client.kill(inst)
    row(f"one line → consumer's output, {hops} lines", f"via a topic p50 {statistics.median(topical) * 1000:.0f} ms",
        f"via input p50 {statistics.median(direct) * 1000:.0f} ms",
        f"{statistics.median(topical) / statistics.median(direct):.2f}×", "≤ 2×")


def cli_rows(row, api_url: str, runs: int = 9) -> None:
    """How long `si` takes to start: help (no hub) and a listing (one request), against a bare
    Python start in the same run."""
    env = {**os.environ, "SI_API_URL": api_url, "SI_CONFIG_PATH": tempfile.mkdtemp(prefix="si-bench-")}

    def median_run(*argv: str) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(argv, env=env, check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    bare = median_run(sys.executable, "-c", "pass")
    took = {}
    for what, argv, goal in (("si --help", ["--help"], "≤ 2×"), ("si seq list (embedded hub)", ["seq", "list"], "< 200 ms")):
        took[what] = median_run(sys.executable, "-m", "si", *argv)
        row(f"{what}, median of {runs}", f"{took[what] * 1000:.0f} ms", f"python -c pass {bare * 1000:.0f} ms",
            f"{took[what] / bare:.1f}×", goal)
    # The least a command line on click can take to say its help, and on argparse (the standard
    # library's): why si says its help without either (si/entry.py).
    floor = {parser: median_run(sys.executable, "-c", code) for parser, code in PARSER_FLOORS.items()}
    row(f"si --help against the least a parser takes, median of {runs}", f"{took['si --help'] * 1000:.0f} ms",
        f"a one-command click group's --help {floor['click'] * 1000:.0f} ms (argparse's -h "
        f"{floor['argparse'] * 1000:.0f} ms = {floor['argparse'] / bare:.1f}× python -c pass)",
        f"{took['si --help'] / floor['click']:.2f}×", "≤ 1×")


PARSER_FLOORS = {
    "click": "import click\n@click.group()\ndef si() -> None: pass\n@si.command()\ndef seq() -> None: pass\n"
             "si(['--help'], prog_name='si')",
    "argparse": "import argparse\nparser = argparse.ArgumentParser(prog='si')\n"
                "parser.add_subparsers().add_parser('seq', help='seq')\nparser.parse_args(['-h'])",
}


def history_rows(row, client: Client, runs: int = 9, retained: tuple[int, int] = (10, 300)) -> None:
    """What listings cost as history grows: the same requests with few and with many ended
    instances retained, on the embedded hub, through the API and as `si` runs (issue 26)."""
    env = {**os.environ, "SI_API_URL": client.api_url, "SI_CONFIG_PATH": tempfile.mkdtemp(prefix="si-bench-")}
    seq = send(client, SEQS / "py-one")

    def retain(count: int) -> None:
        while len(client.instances(every=True)) < count:
            with ThreadPoolExecutor(8) as pool:
                left = count - len(client.instances(every=True))
                list(pool.map(lambda _: run_to_end(client, seq, []), range(min(left, 50))))

    def median(action) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            action()
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    measures = {
        "GET /instances (plain, Scramjet's clients)": lambda: client.request("GET", "instances"),
        "GET /instances?limit=10 (a page of 10 at both)": lambda: client.request("GET", "instances",
                                                                                 params={"limit": 10}),
        "GET /instances?limit=50 (the console)": lambda: client.request("GET", "instances", params={"limit": 50}),
        "GET /sequences": lambda: client.request("GET", "sequences"),
        "si inst list": lambda: subprocess.run([sys.executable, "-m", "si", "inst", "list"], env=env,
                                               check=True, capture_output=True),
        "si seq list": lambda: subprocess.run([sys.executable, "-m", "si", "seq", "list"], env=env,
                                              check=True, capture_output=True),
    }
    few, many = retained
    retain(few)
    at_few = {name: median(action) for name, action in measures.items()}
    retain(many)
    at_many = {name: median(action) for name, action in measures.items()}
    for name in measures:
        goal = "≤ 250 ms, ≈ 1×" if name.startswith("si ") else "≈ 1×"
        row(f"{name}, {many} retained, median of {runs}", f"{at_many[name] * 1000:.0f} ms",
            f"{few} retained {at_few[name] * 1000:.0f} ms", f"{at_many[name] / at_few[name]:.2f}×", goal)


# -- as a user runs it: `si hub start` in its own process, `si` commands, whole-process times (#28) --
# The raw programs run in the environment a host is given (child.base_environment), not the bench's:
# a shell's PYTHONUNBUFFERED (a write per item) or NODE_EXTRA_CA_CERTS (~35 ms of certificates at
# Node's start) would slow the baseline, not the instance, and flatter the ratio.
RAW_PY = ("import asyncio, importlib.util, sys\n"
          "spec = importlib.util.spec_from_file_location('seq', sys.argv[1])\n"
          "seq = importlib.util.module_from_spec(spec); spec.loader.exec_module(seq)\n"
          "async def main():\n"
          "    write = sys.stdout.write\n"
          "    async for item in seq.run(None, None, int(sys.argv[2])):\n"
          "        write(item)\n"
          "asyncio.run(main())\n")
# The sequence's own generator, its items as JSON lines in 64 KB batches: what the host does, raw.
RAW_JS = ("const gen = require(process.argv[1]);\n"
          "(async () => {\n"
          "  let buf = [], size = 0;\n"
          "  for await (const v of gen(null, Number(process.argv[2]))) {\n"
          "    const line = JSON.stringify(v) + '\\n'; buf.push(line); size += line.length;\n"
          "    if (size >= 65536) {\n"
          "      if (!process.stdout.write(buf.join(''))) await new Promise((r) => process.stdout.once('drain', r));\n"
          "      buf = []; size = 0;\n"
          "    }\n"
          "  }\n"
          "  process.stdout.write(buf.join(''));\n"
          "})();\n")
ECHO_SEQ = "async def run(context, input):\n    async for chunk in input:\n        yield chunk\n"
BIG_SEQ = ("def run(context, input, mib=400):\n    block = 'x' * (1024 * 1024 - 1) + '\\n'\n"
           "    for _ in range(int(mib)):\n        yield block\n")


@contextlib.contextmanager
def user_hub() -> Iterator[dict[str, Any]]:
    """`si hub start` in a process of its own, and the environment `si` commands run with."""
    home = Path(tempfile.mkdtemp(prefix="si-bench-hub-"))
    port = free_port()
    env = {**os.environ, "SI_CONFIG_PATH": str(home)}
    env.pop("AWS_ENDPOINT_URL", None)
    with open(home / "hub.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "si", "hub", "start", "--port", str(port), "--retention", "600"],
                                env=env, stdout=log, stderr=log, start_new_session=True, cwd=ROOT)
    url = f"http://127.0.0.1:{port}/api/v1"
    client = Client(url, timeout=120)
    try:
        for _ in range(400):
            try:
                client.version()
                break
            except Exception:
                assert proc.poll() is None, (home / "hub.log").read_text()
                time.sleep(0.1)
        yield {"url": url, "client": client, "pid": proc.pid, "env": {**env, "SI_API_URL": url}}
    finally:
        proc.send_signal(2)
        proc.wait(60)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        return int(fh.read().split("VmRSS:")[1].split()[0]) / 1024


def _timed(argv: list[str], **kwargs: Any) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, **kwargs)
    return time.perf_counter() - t0


def user_rows(row, starts: int, items: int, inputs: int, big_mib: int) -> None:
    """The rows of #28, measured as a user runs them: a hub of its own process, `si` commands."""
    si = [sys.executable, "-m", "si"]
    with user_hub() as hub:
        client, env = hub["client"], hub["env"]
        plain_get = {}
        for runtime, name in (("python", "py-one"), ("node", "js-one")):
            base = [host_direct(SEQS / name, runtime, [])[1] for _ in range(starts)]
            seq = send(client, SEQS / name)
            paged = [first_byte(client, seq) for _ in range(starts)]
            plain = []
            for _ in range(starts):
                t0 = time.perf_counter()
                inst = client.start(seq, [])["id"]
                client.request("GET", f"instance/{inst}/output", timeout=60)  # Scramjet's clients' way
                plain.append(time.perf_counter() - t0)
            plain_get[name] = statistics.median(plain)
            row(f"start → first output byte, {name}, paged (si), {starts} starts",
                f"p50 {statistics.median(paged) * 1000:.0f} ms, p95 {pct(paged, 95) * 1000:.0f} ms",
                f"host alone p50 {statistics.median(base) * 1000:.0f} ms",
                f"{statistics.median(paged) / statistics.median(base):.2f}×", "p50 < 200 ms")
            row(f"start → first output byte, {name}, plain GET (Scramjet's clients), {starts} starts",
                f"p50 {plain_get[name] * 1000:.0f} ms", f"paged p50 {statistics.median(paged) * 1000:.0f} ms",
                f"{plain_get[name] / statistics.median(paged):.2f}×", "< 200 ms, ≤ 1× paged")
        # 1,000,000 items: `si seq start` then `si inst output -`, against the program run raw
        with tempfile.TemporaryDirectory() as tmp:
            for runtime, name in (("python", "py-million"), ("node", "js-million")):
                seq = send(client, SEQS / name)
                main = json.loads((SEQS / name / "package.json").read_text())["main"]
                raw_argv = ([sys.executable, "-c", RAW_PY] if runtime == "python" else ["node", "-e", RAW_JS])
                raw = statistics.median(_timed([*raw_argv, str(SEQS / name / main), str(items)],
                                               stdout=subprocess.DEVNULL, env=child.base_environment())
                                        for _ in range(3))
                session = {**env, "SI_SESSION_ID": f"bench-{name}"}
                followed = []
                for _ in range(3):
                    out = Path(tmp) / "out"
                    with open(out, "wb") as sink:
                        t0 = time.perf_counter()
                        subprocess.run([*si, "seq", "start", seq, str(items)], env=session, check=True,
                                       stdout=subprocess.DEVNULL)
                        subprocess.run([*si, "inst", "output", "-"], env=session, check=True, stdout=sink)
                        followed.append(time.perf_counter() - t0)
                    assert out.stat().st_size == expected_bytes(runtime, items), out.stat().st_size
                row(f"{items:,} items, si seq start → si inst output to the end, {name}",
                    f"{statistics.median(followed):.2f} s", f"raw program {raw:.2f} s",
                    f"{statistics.median(followed) / raw:.2f}×", "≤ 1.5×")
                # following costs the instance nothing: its own run time, followed and not
                runs = {}
                for kind in ("followed", "unfollowed"):
                    inst = client.start(seq, [items])["id"]
                    if kind == "followed":
                        size = sum(len(c) for c in client.follow(inst, "output"))
                    while client.instance(inst)["status"] not in ("completed", "errored"):
                        time.sleep(0.02)
                    info = client.instance(inst)
                    runs[kind] = (datetime.fromisoformat(info["ended"]) - datetime.fromisoformat(info["started"])
                                  ).total_seconds()
                t0 = time.perf_counter()
                with open(Path(tmp) / "after", "wb") as sink:
                    subprocess.run([*si, "inst", "output", inst], env=env, check=True, stdout=sink)
                read_after = time.perf_counter() - t0
                assert size == (Path(tmp) / "after").stat().st_size
                row(f"{name} run time followed vs unfollowed (then read by si in {read_after:.2f} s)",
                    f"followed {runs['followed']:.2f} s", f"unfollowed {runs['unfollowed']:.2f} s",
                    f"{runs['followed'] / runs['unfollowed']:.2f}×", "≈ 1×: following costs nothing")
        # one-line input requests, 8 at a time, against the hub's cheapest request at the same rate
        from tests.helpers import py_package

        seq = client.send_sequence(io.BytesIO(py_package(ECHO_SEQ)))["id"]
        inst = client.start(seq, [])["id"]
        while client.instance(inst)["status"] != "running":
            time.sleep(0.02)

        def rate(action) -> float:
            def worker(k: int) -> None:
                own = Client(hub["url"], timeout=60)
                for i in range(inputs // 8):
                    action(own, k, i)

            t0 = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(worker, range(8)))
            return inputs // 8 * 8 / (time.perf_counter() - t0)

        versions = rate(lambda own, k, i: own.version())
        lines = rate(lambda own, k, i: own.send_input(inst, "input", f"line {k} {i}\n".encode(), "text/plain", False))
        client.send_input(inst, "input", b"", "text/plain", True)
        echoed = b"".join(client.follow(inst, "output"))
        assert echoed.count(b"\n") == inputs // 8 * 8, echoed.count(b"\n")
        row("one-line input requests, 8 at a time", f"{lines:.0f}/s", f"GET /version {versions:.0f}/s",
            f"{lines / versions:.2f}×", "≥ 200/s")
        # big output, produced and read end to end, and the hub's memory meanwhile
        seq = client.send_sequence(io.BytesIO(py_package(BIG_SEQ)))["id"]
        module = Path(tempfile.mkdtemp()) / "big.py"
        module.write_text(BIG_SEQ.replace("def run(", "async def run("))  # RAW_PY runs async generators
        raw = _timed([sys.executable, "-c", RAW_PY, str(module), str(big_mib)], stdout=subprocess.DEVNULL,
                     env=child.base_environment())
        before = _rss_mb(hub["pid"])
        peak, t0 = before, time.perf_counter()
        inst = client.start(seq, [big_mib])["id"]
        got = 0
        for chunk in client.follow(inst, "output"):
            got += len(chunk)
            peak = max(peak, _rss_mb(hub["pid"]))
        took = time.perf_counter() - t0
        assert got == big_mib * 1024 * 1024, got
        row(f"{big_mib} MiB of output produced and read", f"{got / 1e6 / took:.0f} MB/s",
            f"raw program {got / 1e6 / raw:.0f} MB/s", f"{(got / raw) / (got / took):.2f}× the time",
            f"≥ 50 MB/s; hub memory {before:.0f} → peak {peak:.0f} MiB (flat)")
        news_rows(row, hub["url"], 10 if starts < 30 else 20)


TICK_SEQ = ("import asyncio, time\n"
            "async def run(context, input, n):\n"
            "    for _ in range(int(n)):\n"
            "        await asyncio.sleep(1)\n"
            "        now = time.time()\n"
            "        context.emit('tick', now)\n"
            "        yield f'{now!r}\\n'\n")


def news_rows(row, url: str, ticks: int) -> None:
    """How late a waiting client hears of news that came while it waited (a second apart, as news
    comes to a waiter): an event, a line sent to a topic, against a line of output written at the
    same moment as the event, read by its follower. Each is the time from the news's own clock to
    the waiter's answer (one machine, one clock)."""
    from tests.helpers import py_package

    client = Client(url, timeout=60)
    topic_name = f"bench-news-{time.time_ns()}"  # a topic of its own: no lines of an earlier run
    seq = client.send_sequence(io.BytesIO(py_package(TICK_SEQ)))["id"]
    inst = client.start(seq, [ticks])["id"]
    late: dict[str, list[float]] = {"event": [], "output": [], "topic": []}

    def lines(kind: str, data: bytes) -> None:
        now = time.time()
        late[kind].extend(now - float(line) for line in data.splitlines())

    def events() -> None:
        own, cursor = Client(url, timeout=60), ""
        while True:  # as `si inst event on` waits
            resp = own.request("GET", f"instance/{inst}/events/tick", params={"cursor": cursor, "wait": 20})
            lines("event", resp.content)
            cursor = resp.headers.get("X-Next-Cursor", cursor)
            if resp.headers.get("X-Channel-Ended") == "true":
                return

    def topic() -> None:
        for data in Client(url, timeout=60).follow_topic(topic_name):
            lines("topic", data)
            if len(late["topic"]) >= ticks:
                return

    waiters = [threading.Thread(target=events), threading.Thread(target=topic)]
    for waiter in waiters:
        waiter.start()
    for data in client.follow(inst, "output"):
        lines("output", data)
        client.send_topic(topic_name, f"{time.time()!r}\n".encode(), "text/plain")
    for waiter in waiters:
        waiter.join(120)
    output = statistics.median(late["output"])
    for kind, what in (("event", "an event → a client waiting on it (GET /instance/{id}/events/{name})"),
                       ("topic", "a line sent to a topic → its follower (GET /topic/{name})")):
        assert len(late[kind]) == ticks, (kind, len(late[kind]))
        took = statistics.median(late[kind])
        row(f"{what}, {ticks} a second apart", f"p50 {took * 1000:.0f} ms",
            f"an output line → its follower p50 {output * 1000:.0f} ms", f"{took / output:.2f}×", "≤ 1×")


def follow_rows(row) -> dict:
    costs = follower_costs()
    for kind, c in costs.items():
        dollars = c["requests"] * PRICE["request"] + c["GetItem"] * PRICE["GetItem"] + \
            c["GetObject"] * PRICE["GetObject"] + c["GB-s"] * PRICE["GB-s"]
        row(f"one follower of {'an' if kind == 'idle' else 'a'} {kind} instance, per minute",
            f"{c['requests']:.0f} API requests, {c['GetItem']:.0f} DynamoDB reads, {c['GetObject']:.0f} S3 GETs, "
            f"{c['GetLogEvents']:.0f} GetLogEvents, {c['GB-s']:.1f} API GB-s",
            f"${dollars:.5f}/min", f"1,000 followers: ${dollars * 1000 * 60:.2f}/h", "reads back off when idle")
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller runs (100,000 items, 10 starts)")
    parser.add_argument("--followers", action="store_true", help="only the followers' costs")
    parser.add_argument("--sandbox", action="store_true", help="only the sandbox's costs")
    parser.add_argument("--topics", action="store_true", help="only the topics' costs")
    parser.add_argument("--cli", action="store_true", help="only si's start-up")
    parser.add_argument("--history", action="store_true", help="only listings as history grows")
    parser.add_argument("--user", action="store_true", help="only the rows measured as a user runs them")
    args = parser.parse_args()
    if args.user:
        user_rows(lambda *r: print(" | ".join(r), flush=True), 10 if args.quick else 30,
                  100_000 if args.quick else 1_000_000, 400 if args.quick else 2000, 40 if args.quick else 400)
        return
    if args.history:
        hub = LocalHub(port=free_port(), retention=3600)
        try:
            history_rows(lambda *r: print(" | ".join(r)), Client(hub.start(), timeout=120))
        finally:
            hub.stop()
        return
    if args.cli:
        hub = LocalHub(port=free_port(), retention=600)
        try:
            cli_rows(lambda *r: print(" | ".join(r)), hub.start())
        finally:
            hub.stop()
        return
    if args.topics:
        hub = LocalHub(port=free_port(), retention=600)
        try:
            topic_rows(lambda *r: print(" | ".join(r)), Client(hub.start(), timeout=120),
                       100_000 if args.quick else 1_000_000, 20)
        finally:
            hub.stop()
        return
    if args.followers:
        follow_rows(lambda *r: print(" | ".join(r)))
        return
    if args.sandbox:
        sandbox_rows(lambda *r: print(" | ".join(r)), 20, 100_000 if args.quick else 1_000_000)
        return
    items = 100_000 if args.quick else 1_000_000
    starts = 10 if args.quick else 30
    rows: list[tuple[str, str, str, str, str]] = []

    def row(name, ours, base, ratio, goal):
        rows.append((name, ours, base, ratio, goal))
        print(f"{name}: {ours} vs {base} -> {ratio} ({goal})", flush=True)

    # 5. AWS calls, in-process (before the hub sets its own endpoint)
    big = aws_calls(items)
    mib = big["bytes"] / 1024 / 1024
    puts = big["calls"][("runner", "PutLogEvents")]
    bound = int(mib) + 1 + int(big["seconds"] / 0.2) + 1
    ddb = sum(v for (w, op), v in big["calls"].items() if w == "runner" and op in ("UpdateItem", "GetItem", "PutItem"))
    row(f"AWS calls, {items:,}-item instance ({mib:.1f} MiB, {big['seconds']:.1f} s)",
        f"{puts} PutLogEvents, {big['calls'][('runner', 'PutObject')]} S3 segments, {ddb} DynamoDB",
        f"bound {bound} PutLogEvents", f"{puts / bound:.2f}× of bound", "PutLogEvents ≤ MiB + flushes")
    row("AWS calls, reader of that instance",
        f"{big['calls'][('reader', 'GetObject')]} S3 GETs, {big['calls'][('reader', 'GetLogEvents')]} GetLogEvents",
        f"{big['calls'][('runner', 'PutObject')]} segments", "", "no GetLogEvents; ≤ 1 GET per segment")
    follow_rows(row)
    sandbox_rows(row, starts, items)
    # 3. pack
    ours, base, files = pack_bench(2_000 if args.quick else 20_000)
    row(f"pack {files:,} files + 24 MiB", f"{ours:.2f} s", f"tar czf {base:.2f} s", f"{ours / base:.2f}×", "≤ 1.2×")

    # 0. as a user runs it: a hub of its own process, si commands (before this process starts its own)
    user_rows(row, starts, items, 400 if args.quick else 2000, 40 if args.quick else 400)
    hub = LocalHub(port=free_port(), retention=600)
    client = Client(hub.start(), timeout=120)
    try:
        # 7. fan-out: many followers of one busy instance
        fan = fan_out(client, 50)
        row(f"50 followers of one busy instance, {FOLLOW_SECONDS:.0f} s (embedded hub)",
            f"{fan.get('GetLogEvents', 0)} GetLogEvents, {fan.get('GetObject', 0)} S3 GETs, "
            f"{fan.get('GetItem', 0)} DynamoDB reads", "", "", "no GetLogEvents")
        # 1. throughput
        for runtime, name in (("python", "py-million"), ("node", "js-million")):
            base_s, _, base_bytes = host_direct(SEQS / name, runtime, [items])
            seq = send(client, SEQS / name)
            hub_s, hub_bytes = run_to_end(client, seq, [items])
            assert hub_bytes == base_bytes == expected_bytes(runtime, items), (hub_bytes, base_bytes)
            row(f"throughput {name} ({items:,} items, {hub_bytes / 1e6:.1f} MB)", f"{hub_s:.2f} s",
                f"host alone {base_s:.2f} s", f"{hub_s / base_s:.2f}×", "≤ 2×")
        # 2. start latency
        for runtime, name in (("python", "py-one"), ("node", "js-one")):
            base = [host_direct(SEQS / name, runtime, [])[1] for _ in range(starts)]
            seq = send(client, SEQS / name)
            ours = [first_byte(client, seq) for _ in range(starts)]
            row(f"start → first output byte, {name}, {starts} starts",
                f"p50 {statistics.median(ours) * 1000:.0f} ms, p95 {pct(ours, 95) * 1000:.0f} ms",
                f"host alone p50 {statistics.median(base) * 1000:.0f} ms",
                f"{statistics.median(ours) / statistics.median(base):.2f}×", "p50 < 300 ms")
        # 8. topics
        topic_rows(row, client, items, 10 if args.quick else 20)
        # 9. si's own start-up
        cli_rows(row, client.api_url)
        # 4. runner memory
        idle_seq = send(client, SEQS / "py-one")
        idle = peak_rss_of_runner(client, idle_seq, [])
        seq = send(client, SEQS / "py-million")
        busy = peak_rss_of_runner(client, seq, [items])
        row(f"runner peak RSS, {items:,} items", f"{busy / 2**20:.0f} MiB", f"idle runner {idle / 2**20:.0f} MiB",
            f"+{(busy - idle) / 2**20:.0f} MiB", "< +30 MiB")
        # 6. concurrency
        seq = send(client, EXAMPLES / "counter-py")
        single, _ = run_to_end(client, seq, [0, 10])
        t0 = time.perf_counter()
        with ThreadPoolExecutor(50) as pool:
            outs = list(pool.map(lambda _: run_to_end(client, seq, [0, 10])[1], range(50)))
        total = time.perf_counter() - t0
        assert outs == [len("".join(f"{i}\n" for i in range(10)))] * 50
        row("50 instances at once (all correct)", f"{total:.1f} s", f"50 × single {50 * single:.1f} s",
            f"{total / (50 * single):.2f}×", "all complete")
        # 10. listings as history grows (last: it leaves 300 instances retained)
        history_rows(row, client)
    finally:
        hub.stop()

    command = "make bench" + (" (--quick)" if args.quick else "")
    lines = ["# Benchmark results\n", f"`{command}` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}.\n",
             "| benchmark | Sequence Hub | baseline (same run) | ratio | goal |", "|---|---|---|---|---|"]
    lines += [f"| {' | '.join(r)} |" for r in rows]
    out = Path(__file__).resolve().parent / ("RESULTS.md" if not args.quick else "RESULTS-quick.md")
    # Keep the hand-written history (before/after the fast path) that follows the latest table.
    history = ""
    if out.exists() and HISTORY in out.read_text():
        history = "\n" + HISTORY + out.read_text().split(HISTORY, 1)[1]
    out.write_text("\n".join(lines) + "\n" + history)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
