"""End to end: the embedded hub as a subprocess, driven by the si CLI exactly as a user types it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests

from si.localhub import free_port

from .helpers import EXAMPLES

SI = [sys.executable, "-m", "si"]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    port = free_port()
    home = tmp_path_factory.mktemp("si-home")
    env = {**os.environ, "SI_CONFIG_PATH": str(home)}
    env.pop("AWS_ENDPOINT_URL", None)
    proc = subprocess.Popen([*SI, "hub", "start", "--port", str(port), "--retention", "600"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    url = f"http://127.0.0.1:{port}/api/v1"
    for _ in range(240):
        try:
            requests.get(f"{url}/version", timeout=1)
            break
        except requests.ConnectionError:
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.25)
    yield {"url": url, "home": home, "proc": proc}
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    # Ctrl-C/SIGTERM leaves nothing behind: no runner or host of this hub is still alive.
    leftovers = subprocess.run(["pgrep", "-s", str(proc.pid)], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


def si(hub, *args: str, session: str, check: bool = True, stdin: bytes | None = None,
       env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SI_API_URL": hub["url"], "SI_SESSION_ID": session,
                "SI_CONFIG_PATH": str(hub["home"]), **(env or {})}
    result = subprocess.run([*SI, *args], capture_output=True, env=full_env, input=stdin, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


@pytest.fixture
def session():
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("example", ["counter-js", "counter-py"])
def test_seed_transcript(hub, session, tmp_path, example):
    source = tmp_path / example
    shutil.copytree(EXAMPLES / example, source)
    packed = si(hub, "seq", "pack", str(source), session=session)
    assert packed.stdout.decode().strip() == f"{source}.tar.gz"
    assert Path(f"{source}.tar.gz").is_file()
    seq_id = si(hub, "seq", "send", "-", session=session).stdout.decode().strip()
    inst_id = si(hub, "seq", "start", "-", "3000", "10", session=session).stdout.decode().strip()
    assert seq_id != inst_id and len(inst_id) == 36
    output = si(hub, "inst", "output", "-", session=session).stdout.decode()
    assert output == "".join(f"{n}\n" for n in range(3000, 3010))


def test_args_json_and_info(hub, session, tmp_path):
    seq_id = json.loads(si(hub, "--format", "json", "seq", "send", str(EXAMPLES / "counter-py"),
                           session=session).stdout)["_id"]
    started = json.loads(si(hub, "--format", "json", "seq", "start", seq_id, "--args", "[5, 2]",
                            "--config-string", '{"a": 1}', session=session).stdout)
    assert si(hub, "inst", "output", started["_id"], session=session).stdout == b"5\n6\n"
    info = json.loads(si(hub, "--format", "json", "inst", "info", "-", session=session).stdout)
    assert info["args"] == [5, 2] and info["appConfig"] == {"a": 1}
    listed = json.loads(si(hub, "--format", "json", "inst", "list", session=session).stdout)
    assert started["_id"] in [i["id"] for i in listed]


def test_wait_exits_with_the_instance_exit_code(hub, session, tmp_path):
    seq = tmp_path / "fails"
    seq.mkdir()
    (seq / "package.json").write_text(json.dumps({"name": "fails", "main": "main.py",
                                                  "engines": {"python3": "3.12"}}))
    (seq / "main.py").write_text("def run(context, input):\n    print('partial')\n    raise ValueError('boom')\n")
    result = si(hub, "seq", "deploy", str(seq), "--wait", session=session, check=False)
    assert result.returncode == 23
    assert b"ValueError: boom" in result.stderr
    info = json.loads(si(hub, "--format", "json", "inst", "info", "-", session=session).stdout)
    assert info["status"] == "errored"
    stdout = si(hub, "inst", "stdout", "-", session=session).stdout
    assert stdout == b"partial\n"


def test_user_errors_are_one_line_and_exit_1(hub, session, tmp_path):
    cases = [
        (["seq", "send", "-"], "no last package in this terminal session"),
        (["inst", "info", "does-not-exist"], "Instance does-not-exist not found"),
        (["seq", "start", "nope", "1"], "Sequence nope not found"),
        (["seq", "pack", str(tmp_path)], "package.json not found"),
        (["seq", "start", "x", "--args", "{}"], "Arguments must be in array"),
        (["inst", "output"], "Missing argument"),
    ]
    for args, expected in cases:
        result = si(hub, *args, session=session, check=False)
        err = result.stderr.decode()
        assert result.returncode == 1, (args, err)
        assert expected in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_unreachable_hub_message(session, tmp_path):
    env = {**os.environ, "SI_API_URL": f"http://127.0.0.1:{free_port()}/api/v1", "SI_SESSION_ID": session,
           "SI_CONFIG_PATH": str(tmp_path)}
    result = subprocess.run([*SI, "seq", "list"], capture_output=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "cannot reach the hub at" in result.stderr.decode() and "si hub start" in result.stderr.decode()


def test_a_100_mb_package_sends_through_s3_and_runs(hub, session, tmp_path):
    seq = tmp_path / "big"
    seq.mkdir()
    (seq / "package.json").write_text(json.dumps({"name": "big", "main": "main.py", "engines": {"python3": "3.12"}}))
    (seq / "main.py").write_text(
        "import hashlib\n\ndef run(context, input):\n"
        "    return hashlib.sha256(open('blob.bin', 'rb').read()).hexdigest()\n")
    blob = os.urandom(100 * 1024 * 1024)  # incompressible: the package stays ~100 MB
    (seq / "blob.bin").write_bytes(blob)
    pack = si(hub, "seq", "pack", str(seq), session=session)
    assert b"will upload it through S3" in pack.stderr
    seq_id = si(hub, "seq", "send", "-", session=session).stdout.decode().strip()
    info = json.loads(si(hub, "--format", "json", "seq", "info", seq_id, session=session).stdout)
    assert info["size"] > 100 * 1024 * 1024 and len(info["sha256"]) == 64
    si(hub, "seq", "start", "-", session=session)
    import hashlib

    assert si(hub, "inst", "output", "-", session=session).stdout.decode() == hashlib.sha256(blob).hexdigest()


def test_hostile_packages_through_si_seq_send(hub, session, tmp_path):
    from .corpus import corpus

    before = si(hub, "--format", "json", "seq", "list", session=session).stdout
    for name, body, message, _status in corpus():
        path = tmp_path / f"{name}.tar.gz"
        path.write_bytes(body)
        result = si(hub, "seq", "send", str(path), session=session, check=False)
        assert result.returncode == 1, name
        err = result.stderr.decode()
        assert message in err and len(err.strip().splitlines()) == 1, (name, err)
    assert si(hub, "--format", "json", "seq", "list", session=session).stdout == before


def test_pack_checks_before_writing_and_honours_siignore(hub, session, tmp_path):
    seq = tmp_path / "seq"
    seq.mkdir()
    (seq / "package.json").write_text(json.dumps({"name": "s", "main": "app.js"}))
    result = si(hub, "seq", "pack", str(seq), session=session, check=False)
    assert result.returncode == 1 and b"Sequence entrypoint path app.js is invalid" in result.stderr
    assert not Path(f"{seq}.tar.gz").exists()
    (seq / "package.json").write_text(json.dumps({"name": "s", "main": "index", "engines": {"a": "1", "b": "2"}}))
    (seq / "index.js").write_text("module.exports = () => 'ok';")
    result = si(hub, "seq", "pack", str(seq), session=session, check=False)
    assert result.returncode == 1 and b"can't contain more than one element" in result.stderr
    (seq / "package.json").write_text(json.dumps({"name": "s", "main": "index"}))
    (seq / ".env").write_text("SECRET=1")
    (seq / "logs").mkdir()
    (seq / "logs" / "big.log").write_text("x")
    (seq / "notes.tmp").write_text("x")
    (seq / ".siignore").write_text("# local files\nlogs/\n*.tmp\n")
    result = si(hub, "seq", "pack", str(seq), "-o", str(tmp_path / "out.tar.gz"), session=session)
    assert b"look like secrets: .env" in result.stderr
    import tarfile

    with tarfile.open(tmp_path / "out.tar.gz") as tar:
        assert sorted(tar.getnames()) == [".env", ".siignore", "index.js", "package.json"]
    inst = si(hub, "seq", "deploy", str(tmp_path / "out.tar.gz"), session=session).stdout.decode().strip()
    assert si(hub, "inst", "output", inst, session=session).stdout == b"ok"
