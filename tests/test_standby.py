"""Standbys (chalicelib/runner/standby.py, issue 28): on the sandboxed embedded hub, the next
instance of a runtime starts in a sandbox made, and its host loaded, before it was asked for. Each
is one instance's alone (its own uid, /tmp and package), used once, and none outlives the hub.

Whether an instance ran in a standby is told by when its host's process began: a host made for
the instance began after the start was asked for; a standby's before."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from chalicelib.protocol import COMPLETED, ERRORED
from chalicelib.runner import sandbox

from .conftest import running_hub
from .helpers import ROOT, si

pytestmark = pytest.mark.skipif(sandbox.unavailable_reason() is not None,
                                reason=f"no sandbox on this machine: {sandbox.unavailable_reason()}")

FINAL = (COMPLETED, ERRORED)
# Each says when its host's process began (epoch seconds), its uid, and whether a file it leaves in
# /tmp was there.
PY_AGE = ("import json, os, time\n\n"
          "def run(context, input):\n"
          "    began = int(open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19]) / os.sysconf('SC_CLK_TCK')\n"
          "    age = float(open('/proc/uptime').read().split()[0]) - began\n"
          "    seen = os.path.exists('/tmp/left-here')\n"
          "    open('/tmp/left-here', 'w').close()\n"
          "    yield json.dumps({'began': time.time() - age, 'uid': os.getuid(), 'seen': seen}) + '\\n'\n")
# /proc's times are in clock ticks (10 ms): a host's beginning reads up to this much late.
TICKS = 0.02
JS_AGE = ("const fs = require('fs');\n"
          "module.exports = async function* () {\n"
          "  const seen = fs.existsSync('/tmp/left-here');\n"
          "  fs.writeFileSync('/tmp/left-here', '');\n"
          "  yield { began: Date.now() / 1000 - process.uptime(), uid: process.getuid(), seen };  // a JSON line\n"
          "};\n")


def _sequence(tmp_path: Path, hub: dict, session: str, name: str, main: str, source: str, engines: dict) -> str:
    folder = tmp_path / name
    folder.mkdir()
    (folder / main).write_text(source)
    (folder / "package.json").write_text(json.dumps({"name": name, "version": "1.0.0", "main": main, "engines": engines}))
    return si(hub, "seq", "send", str(folder), session=session).stdout.decode().split()[-1]


def _run(hub: dict, session: str, seq: str) -> tuple[dict, float]:
    """The instance's report, and when (epoch seconds) its start was asked for; returned once the
    instance has ended (so its host is gone)."""
    asked = time.time()
    si(hub, "seq", "start", seq, session=session)
    out = si(hub, "inst", "output", "-", session=session).stdout
    report = json.loads(out)
    assert isinstance(report, dict), out
    deadline = time.monotonic() + 60
    while json.loads(si(hub, "--format", "json", "inst", "info", "-", session=session).stdout)["status"] not in FINAL:
        assert time.monotonic() < deadline, "the instance did not end"
        time.sleep(0.1)
    return report, asked


def _wait_for_hosts(hub: dict, script: str, count: int = 1) -> None:
    """Until ``count`` hosts running ``script`` are among the hub's processes (a standby's, once
    the instances before it have ended)."""
    deadline = time.monotonic() + 120
    while sum(_is_host(_args(pid), script) for pid in _descendants(hub["proc"].pid)) < count:
        assert time.monotonic() < deadline, f"no standby ({script}) was made"
        time.sleep(0.1)


def _is_host(args: str, script: str) -> bool:
    """Whether a command line is a host's own (its runtime running ``script``), not the sandbox's
    processes that start it (bwrap, its shell, setpriv), which name the script too."""
    words = args.split()
    return len(words) > 1 and Path(words[0]).name.startswith(("python", "node")) and words[-1].endswith(script)


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def _standby_cgroups(hub_pid: int) -> list[str]:
    """The cgroups of the hub's standby runners (seqhub-standby-<runner pid>), where it made any."""
    runners = {str(runner) for server in _children(hub_pid) for runner in _children(server)}
    found = []
    for line in Path(f"/proc/{hub_pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(","):
            parent = Path("/sys/fs/cgroup") / controller / path.lstrip("/")
            if parent.is_dir():
                found += [str(p) for p in parent.glob("seqhub-standby-*") if p.name.rsplit("-", 1)[1] in runners]
    return found


def test_the_next_instance_of_a_runtime_starts_in_a_standby_that_is_its_alone(tmp_path):
    session = "standby"
    (tmp_path / "home").mkdir()
    with running_hub(tmp_path / "home") as hub:
        py = _sequence(tmp_path, hub, session, "py-age", "main.py", PY_AGE, {"python3": "3.12"})
        js = _sequence(tmp_path, hub, session, "js-age", "index.js", JS_AGE, {"node": ">=18"})
        reports = {}
        for step, seq in (("py-first", py), ("py-next", py), ("js-first", js), ("js-next", js), ("py-after-js", py)):
            if not step.endswith("first"):
                _wait_for_hosts(hub, "python_host.py" if seq == py else "node_host.js")
            reports[step] = _run(hub, session, seq)
        standby_cgroups = _standby_cgroups(hub["proc"].pid)
    for step, (report, asked) in reports.items():
        if step.endswith("first"):  # no standby of its runtime yet: its host came after the request
            assert report["began"] > asked, (step, report, asked)
        else:  # its host was made before the request, for whichever instance came
            assert report["began"] < asked + TICKS, (step, report, asked)
        assert report["seen"] is False, step  # nothing of an earlier instance in its /tmp
    if os.geteuid() == 0:  # a uid of its own per sandbox (where the runner may hand them out)
        uids = [report["uid"] for report, _ in reports.values()]
        assert len(set(uids)) == len(uids), uids
    # running_hub has checked that no runner or host outlived the hub; nor does a standby's cgroup
    # (where the runner may make them: two here, one per runtime, while the hub ran).
    assert all(not Path(cg).exists() for cg in standby_cgroups), standby_cgroups


def test_a_runtime_whose_instance_runs_on_still_gets_a_standby_for_its_next(tmp_path):
    """The next standby is made when the instance that took the last one ends, or soon after that
    instance's start if it runs on (here: while one sleeps, another of its runtime starts)."""
    session = "standby-long"
    (tmp_path / "home").mkdir()
    with running_hub(tmp_path / "home") as hub:
        sleeper = _sequence(tmp_path, hub, session, "py-sleep", "main.py",
                            "import asyncio\n\nasync def run(context, input, seconds):\n"
                            "    await asyncio.sleep(float(seconds))\n    yield 'done\\n'\n", {"python3": "3.12"})
        age = _sequence(tmp_path, hub, session, "py-age", "main.py", PY_AGE, {"python3": "3.12"})
        long_one = si(hub, "seq", "start", sleeper, "20", session=session).stdout.decode().split()[-1]
        _wait_for_hosts(hub, "python_host.py", count=2)  # the sleeper's and the standby made beside it
        report, asked = _run(hub, session, age)
        assert report["began"] < asked + TICKS, (report, asked)
        info = json.loads(si(hub, "inst", "info", long_one, session=session).stdout)
        assert info["status"] == "running", info  # the first still ran meanwhile
        si(hub, "inst", "kill", long_one, session=session)


def test_a_fork_server_at_its_inputs_end_discards_its_standby_and_leaves_cleanly(tmp_path):
    """The fork server's other way out (its hub gone, so its stdin ends) with a standby waiting:
    it exits 0 and nothing it started is left."""
    env = {**os.environ, "RUNNER_INVOKE_MODE": "local", "SEQHUB_SANDBOX": "bwrap", "SEQHUB_TABLE": "t",
           "SEQHUB_BUCKET": "b", "SEQHUB_LOG_GROUP": "g", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x",
           "TMPDIR": str(tmp_path)}
    server = subprocess.Popen([sys.executable, "-m", "chalicelib.runner", "--fork-server"], cwd=ROOT, env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started: list[int] = []
    try:
        # An instance nobody stored: its runner ends at once (nothing to claim), and a standby follows.
        server.stdin.write(b"no-such-instance lambda python\n")
        server.stdin.flush()
        deadline = time.monotonic() + 120
        while not any(_is_host(_args(pid), "python_host.py") for pid in started):
            assert time.monotonic() < deadline, "no standby was made"
            time.sleep(0.2)
            started = _descendants(server.pid)
        server.stdin.close()
        assert server.wait(timeout=60) == 0
        deadline = time.monotonic() + 30
        while left := [pid for pid in started if _args(pid)]:
            assert time.monotonic() < deadline, [_args(pid) for pid in left]
            time.sleep(0.2)
    finally:
        for pid in [server.pid, *started]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _descendants(pid: int) -> list[int]:
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return [found for child in children for found in (child, *_descendants(child))]


def _args(pid: int) -> str:
    """A live process's command line ("" once it has gone or is a zombie)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""
