"""Isolation (#14): each attack a hostile sequence tries on the embedded hub, through the API, doing no harm.

The attacks live in ``tests/sequences/py-attacker``. The shared ``hub`` fixture sandboxes instances
with bubblewrap (CI installs it); one test runs a hub with ``--no-sandbox`` for the clean-up that
also serves AWS (the runner as a subreaper, as in a Lambda execution environment).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest
import requests

from chalicelib import config
from chalicelib.runner import leftovers, sandbox

from .conftest import running_hub
from .helpers import SEQUENCES, SI, si

pytestmark = pytest.mark.skipif(sandbox.unavailable_reason() is not None,
                                reason=f"no sandbox on this machine: {sandbox.unavailable_reason()}")
ATTACKER = str(SEQUENCES / "py-attacker")


def attack(hub, session: str, *args: str) -> dict:
    """Start the attacker with ``args``; wait for its end; return its report and its record."""
    si(hub, "seq", "start", "-", *args, session=session)
    out = si(hub, "inst", "output", "-", session=session).stdout
    info = json.loads(si(hub, "inst", "info", "-", session=session).stdout)
    return {"report": json.loads(out) if out.strip() else None, "info": info}


def listening_ports() -> list[int]:
    """Every TCP port listening on this machine (the hub's API and its moto server among them)."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                ports.add(int(fields[1].split(":")[1], 16))
    return sorted(ports)


def wait_gone(pattern: str, seconds: float = 10.0) -> str:
    """What still matches ``pattern`` after up to ``seconds`` (empty when all is gone)."""
    end = time.monotonic() + seconds
    while True:
        found = subprocess.run(["pgrep", "-af", pattern], capture_output=True, text=True).stdout.strip()
        if not found or time.monotonic() > end:
            return found
        time.sleep(0.2)


@pytest.fixture(scope="module")
def attacker(hub):
    session = "attacker"
    si(hub, "seq", "send", ATTACKER, session=session)
    return session


def test_storage_and_api_are_out_of_reach(hub, attacker):
    ports = listening_ports()
    moto_and_api = [p for p in ports if p == int(hub["url"].split(":")[2].split("/")[0])]
    assert moto_and_api, ports
    result = attack(hub, attacker, "probe", *map(str, ports))
    assert result["info"]["status"] == "completed"
    reached = result["report"]["reached"]
    assert set(reached) == {str(p) for p in ports} or set(map(int, reached)) == set(ports)
    assert "connected" not in reached.values(), reached  # no network: not moto, not the API, nothing
    assert result["report"]["listening"] == []  # its own network namespace shows no sockets at all


def test_no_process_of_the_hub_or_other_instances_can_be_seen_or_signalled(hub, attacker):
    victim = "victim-session"
    si(hub, "seq", "send", ATTACKER, session=victim)
    si(hub, "seq", "start", "-", "hold", "s3cr3t-of-the-victim", "8", session=victim)
    time.sleep(1.5)  # the victim is running
    result = attack(hub, attacker, "signal-all")
    seen = result["report"]["seen"]
    # Only the sandbox's own processes: its init (bwrap) and the host itself, not the hub, its runners
    # or the victim.
    assert sorted(seen) == ["1", "2"], seen
    assert seen["1"].startswith("/usr/bin/bwrap") and seen["2"].endswith("python_host.py"), seen
    victim_out = json.loads(si(hub, "inst", "output", "-", session=victim).stdout)
    assert victim_out == {"held": 2 * len("s3cr3t-of-the-victim")}  # it ran to its end, untouched
    assert requests.get(f"{hub['url']}/version", timeout=30).status_code == 200


def test_another_instance_s_files_memory_and_args_are_out_of_reach(hub, attacker):
    victim = "victim-snoop"
    secret = "s3cr3t-snoop-target"
    si(hub, "seq", "send", ATTACKER, session=victim)
    si(hub, "seq", "start", "-", "hold", secret, "6", session=victim)
    time.sleep(1.5)
    result = attack(hub, attacker, "snoop", secret[::-1])
    assert result["report"]["found"] == [], result["report"]
    assert not any(secret in cmd for cmd in result["report"]["processes"].values())


def test_nothing_an_instance_starts_outlives_it(hub, attacker):
    result = attack(hub, attacker, "detach", "3131")
    assert result["info"]["status"] == "completed" and result["report"]["left"] == [3131, 3132]
    assert wait_gone(r"^sleep 313[12]$") == ""


def test_a_fork_bomb_stops_at_the_process_limit_and_the_hub_carries_on(hub, attacker):
    limit = 256  # SEQHUB_SANDBOX_MAX_PROCS's default
    result = attack(hub, attacker, "fork-bomb")
    assert result["info"]["status"] == "completed"
    assert result["report"]["error"] == "BlockingIOError" and 0 < result["report"]["forked"] < limit
    again = attack(hub, attacker, "probe")
    assert again["info"]["status"] == "completed"


def test_disk_is_limited_and_the_rest_of_the_filesystem_is_read_only(hub, attacker):
    result = attack(hub, attacker, "fill-disk")
    report = result["report"]
    assert report["error"] == "OSError" and report["written"] <= 512 * 1024 * 1024  # its /tmp is full
    assert "written" not in report["outside"].values(), report["outside"]


def test_memory_beyond_the_limit_ends_the_instance_not_the_hub(hub, attacker):
    if not _cgroups_available():
        pytest.skip("this machine gives the runner no memory cgroup")
    result = attack(hub, attacker, "eat-memory", "4000")
    assert result["info"]["status"] == "errored"
    assert result["info"]["terminated"]["reason"] == "Out of memory: the instance's limit is 1024 MiB"
    assert attack(hub, attacker, "probe")["info"]["status"] == "completed"


def _cgroups_available() -> bool:
    box = sandbox.Box.create("probe-memory", sandbox.Limits(8, 64, 8))
    try:
        return any("memory" in str(cg) for cg in box.cgroups)
    finally:
        box.remove()


def test_the_kernels_risky_surface_is_filtered_out_and_etc_is_the_runtimes_only(hub, attacker):
    """issue 24: inside an instance, `unshare -Urn` gave a user namespace with every capability;
    keys added to the keyring outlived the instance; io_uring worked; all of /etc was readable."""
    report = attack(hub, attacker, "kernel")["report"]
    for call in ("unshare(user)", "unshare(net)", "clone(user)", "add_key", "keyctl", "io_uring_setup", "bpf",
                 "perf_event_open", "userfaultfd", "mount"):
        assert report[call] == "EPERM", (call, report[call])
    assert report["unshare -Urn"] != "allowed"
    assert {"shadow", "gshadow", "sudoers", "ssh", "machine-id", "crontab", "apt"}.isdisjoint(report["etc"])
    assert {"passwd", "group", "hosts", "ld.so.cache"} <= set(report["etc"])
    users = [line.split(":")[0] for line in report["passwd"].splitlines()]
    assert users == ["root", "sequence", "nobody"]


def test_a_package_unpacks_inside_its_instance_and_costs_the_host_no_disk(hub, session, tmp_path):
    """issue 24: a 369 KB package of 380 MB of zeros, started 5 times, put 1.8 GB on the host's /tmp.
    The sandbox unpacks a package inside the instance (its own tmpfs, under its own limits): the
    host holds only the archive."""
    from .corpus import gzip_bomb

    resp = requests.post(f"{hub['url']}/sequence", data=gzip_bomb(380 * 1024**2), timeout=120,
                         headers={"Content-Type": "application/octet-stream"})
    assert resp.status_code == 200, resp.text  # within the upload limits (400 MB unpacked)
    free_before = os.statvfs("/tmp").f_bavail * os.statvfs("/tmp").f_frsize
    started = [si(hub, "seq", "start", resp.json()["id"], session=session).stdout.decode().split()[-1] for _ in range(5)]
    low = free_before
    ended: list[dict] = []
    while len(ended) < len(started):
        low = min(low, os.statvfs("/tmp").f_bavail * os.statvfs("/tmp").f_frsize)
        ended = [i for i in (json.loads(si(hub, "inst", "info", inst, session=session).stdout) for inst in started)
                 if i["status"] in ("completed", "errored")]
        time.sleep(0.1)
    assert free_before - low < 50 * 1024**2, f"the host's /tmp lost {(free_before - low) >> 20} MiB"
    # Each unpacked it (its main, "x", then fails to load), within its own disk and memory.
    assert {i["terminated"]["reason"] for i in ended} == {"Sequence failed on start"}


def test_a_package_larger_than_the_instances_disk_is_refused_before_it_is_unpacked(hub_env, monkeypatch):
    from chalicelib import instances, invoker, sequences
    from chalicelib.runner.service import run_instance

    from .helpers import make_package

    monkeypatch.setenv("SEQHUB_SANDBOX", "bwrap")
    monkeypatch.setenv("SEQHUB_SANDBOX_DISK_MB", "1")
    monkeypatch.setattr(invoker, "invoke", lambda settings, inst_id, *_: run_instance(settings, inst_id, lambda: 60_000))
    settings = config.load()
    seq_id = sequences.create(settings, make_package({"package.json": {"main": "index.js"}, "index.js": "x",
                                                      "data": b"\0" * (2 * 1024**2)}))["id"]
    inst = instances.start(settings, seq_id, {})["id"]
    info = instances.info(settings, inst)
    assert info["status"] == "errored" and info["terminated"]["exitcode"] == 10
    assert "unpacks to 2097" in info["terminated"]["reason"] and "SEQHUB_SANDBOX_DISK_MB" in info["terminated"]["reason"]


def test_without_a_sandbox_the_runner_still_leaves_nothing_running(tmp_path):
    """The clean-up that also runs on AWS: no namespaces, only the runner as a subreaper."""
    with running_hub(tmp_path, "--no-sandbox") as plain:
        assert "instances are not isolated" in plain["log"].read_text()
        si(plain, "seq", "send", ATTACKER, session="plain")
        result = attack(plain, "plain", "detach", "4141")
        assert result["info"]["status"] == "completed"
        assert wait_gone(r"^sleep 414[12]$") == ""


def test_a_hub_beyond_loopback_keeps_its_token_from_runners_and_refuses_to_run_unisolated(tmp_path):
    refused = subprocess.run([*SI, "hub", "start", "--host", "0.0.0.0", "--no-sandbox"], capture_output=True,
                             text=True, timeout=60, env={**os.environ, "SI_CONFIG_PATH": str(tmp_path)})
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().startswith("Error: refusing to listen beyond this machine without isolating")
    with running_hub(tmp_path, "--host", "0.0.0.0") as shared:
        token = re.search(r"token[^\n]*\n(\S+)", shared["log"].read_text()).group(1)
        si(shared, "config", "set", "token", token, session="shared")
        si(shared, "seq", "send", ATTACKER, session="shared")

        def fork_servers() -> list[str]:
            return subprocess.run(["pgrep", "-P", str(shared["proc"].pid), "-f", "chalicelib.runner --fork-server"],
                                  capture_output=True, text=True).stdout.split()

        before = fork_servers()
        result = attack(shared, "shared", "signal-all")
        assert result["info"]["status"] == "completed"
        mine = fork_servers()
        assert len(before) == 1 and mine == before  # the sequence could not kill it (nor restart it)
        environ = Path(f"/proc/{mine[0]}/environ").read_bytes().split(b"\0")
        assert not any(item.startswith(b"SEQHUB_LOCAL_TOKEN=") for item in environ)
        assert token.encode() not in b"\0".join(environ)


def test_the_runner_empties_a_directory_whatever_the_sequence_left(tmp_path):
    """On Lambda the runner empties /tmp after each instance (``Settings.owns_environment``)."""
    base = {"SEQHUB_TABLE": "t", "SEQHUB_BUCKET": "b", "SEQHUB_LOG_GROUP": "g", "RUNNER_FUNCTION": "r"}
    assert config.load({**base, "AWS_LAMBDA_FUNCTION_NAME": "sequence-hub-dev-runner"}).owns_environment
    assert not config.load(base).owns_environment  # never on the embedded hub or in tests: /tmp is shared there
    (tmp_path / "locked" / "deep").mkdir(parents=True)
    (tmp_path / "locked" / "deep" / "f").write_bytes(b"x")
    (tmp_path / "file").write_bytes(b"y")
    os.symlink("/etc/passwd", tmp_path / "link")
    os.chmod(tmp_path / "locked" / "deep", 0)
    os.chmod(tmp_path / "locked", 0)
    leftovers.empty_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert Path("/etc/passwd").exists()
