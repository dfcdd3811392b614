"""End to end: the embedded hub as a subprocess, driven by the si CLI exactly as a user types it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from chalicelib.embedded.hub import free_port

from .helpers import EXAMPLES, SI, si


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
    assert info["engine"] == "lambda"
    # The embedded hub plays the fargate engine too: the same run, without Lambda's time limit.
    si(hub, "seq", "start", seq_id, "7", "1", "--engine", "fargate", session=session)
    assert si(hub, "inst", "output", "-", session=session).stdout == b"7\n"
    assert json.loads(si(hub, "--format", "json", "inst", "info", "-", session=session).stdout)["engine"] == "fargate"


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
        (["seq", "start", "x", "--engine", "ec2"], "'ec2' is not one of 'lambda', 'fargate'"),
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


def test_dash_chain_pack_send_start_info_kill_rm(hub, session, tmp_path):
    seq = tmp_path / "forever"
    seq.mkdir()
    (seq / "package.json").write_text(json.dumps({"name": "forever", "main": "main.py", "engines": {"python3": "3.12"}}))
    (seq / "main.py").write_text("import asyncio\n\nasync def run(context, input):\n    await asyncio.sleep(3600)\n")
    si(hub, "seq", "pack", str(seq), session=session)
    seq_id = si(hub, "seq", "send", "-", session=session).stdout.decode().strip()
    inst_id = si(hub, "seq", "start", "-", session=session).stdout.decode().strip()
    info = json.loads(si(hub, "--format", "json", "inst", "info", "-", session=session).stdout)
    assert info["id"] == inst_id and info["sequence"]["id"] == seq_id
    result = si(hub, "seq", "rm", "-", session=session, check=False)
    assert result.returncode == 1 and b"still running" in result.stderr
    killed = json.loads(si(hub, "--format", "json", "inst", "kill", "-", session=session).stdout)
    assert killed["status"] in ("killing", "completed")
    assert b"no last instance" in si(hub, "inst", "info", "-", session=session, check=False).stderr
    for _ in range(100):  # "killing" still counts as running for rm, as in STH
        if json.loads(si(hub, "--format", "json", "inst", "info", inst_id, session=session).stdout)["status"] == "completed":
            break
        time.sleep(0.2)
    si(hub, "seq", "rm", "-", session=session)
    assert b"not found" in si(hub, "seq", "info", seq_id, session=session, check=False).stderr
    assert b"no last sequence" in si(hub, "seq", "info", "-", session=session, check=False).stderr


def test_last_is_per_terminal_session(hub, session, tmp_path):
    seq_id = si(hub, "seq", "send", str(EXAMPLES / "counter-py"), session=session).stdout.decode().strip()
    other = si(hub, "seq", "info", "-", session=session + "-other", check=False)
    assert other.returncode == 1 and b"no last sequence" in other.stderr
    si(hub, "seq", "use", seq_id, session=session + "-other")
    assert json.loads(si(hub, "--format", "json", "seq", "info", "-", session=session + "-other").stdout)["id"] == seq_id


def test_control_commands(hub, session):
    si(hub, "seq", "send", str(EXAMPLES.parent / "tests" / "sequences" / "py-events"), session=session)
    inst = si(hub, "seq", "start", "-", session=session).stdout.decode().strip()
    for _ in range(100):
        if json.loads(si(hub, "--format", "json", "inst", "info", inst, session=session).stdout)["status"] == "running":
            break
        time.sleep(0.2)
    health = json.loads(si(hub, "--format", "json", "inst", "health", "-", session=session).stdout)
    assert health["healthy"] is True
    si(hub, "inst", "event", "emit", "-", "test-event", "foo", session=session)
    got = si(hub, "--format", "json", "inst", "event", "on", "-", "test-response", session=session).stdout
    assert json.loads(got) == "reply to foo"
    restarted = json.loads(si(hub, "--format", "json", "inst", "restart", "-", session=session).stdout)
    assert restarted["killed"] == inst and restarted["id"] != inst
    assert json.loads(si(hub, "--format", "json", "inst", "info", inst, session=session).stdout)["status"] == "completed"
    stopped = json.loads(si(hub, "--format", "json", "inst", "stop", "-", "1000", session=session).stdout)
    assert stopped["status"] in ("stopping", "completed")


def test_input_and_attach(hub, session):
    si(hub, "seq", "send", str(EXAMPLES.parent / "tests" / "sequences" / "py-hello"), session=session)
    si(hub, "seq", "start", "-", session=session)
    si(hub, "inst", "input", "-", session=session, stdin=b"Alice\n")
    si(hub, "inst", "input", "-", "--end", session=session, stdin=b"Bob\n")
    assert si(hub, "inst", "output", "-", session=session).stdout == b"Hello Alice!\nHello Bob!\n"
    si(hub, "seq", "send", str(EXAMPLES.parent / "tests" / "sequences" / "py-stdio"), session=session)
    si(hub, "seq", "start", "-", session=session)
    attached = si(hub, "inst", "attach", "-", session=session, stdin=b"one\ntwo\n")
    assert attached.stdout == b"Got on stdin: one\nGot on stdin: two\n"


def test_profiles_hold_the_api_url(hub, session, tmp_path):
    env = {"SI_API_URL": "", "SI_CONFIG_PATH": str(tmp_path)}
    base = {**os.environ, "SI_SESSION_ID": session, **env}
    base.pop("SI_API_URL")

    def run(*args):
        return subprocess.run([*SI, *args], capture_output=True, env=base, timeout=60)

    assert run("config", "profile", "create", "here").returncode == 0
    assert run("config", "profile", "use", "here").returncode == 0
    assert run("config", "set", "apiUrl", hub["url"]).returncode == 0
    assert json.loads(run("--format", "json", "hub", "version").stdout)["service"] == "sequence-hub"
    listing = json.loads(run("--format", "json", "config", "profile", "list").stdout)
    assert listing == {"current": "here", "profiles": ["default", "here"]}
    assert run("config", "profile", "use", "default").returncode == 0
    unreachable = run("hub", "version")  # default profile: 127.0.0.1:8000, nothing (or another hub) there
    assert unreachable.returncode == 0 or b"cannot reach the hub at http://127.0.0.1:8000/api/v1" in unreachable.stderr
    bad = run("config", "set", "apiUrl", "not-a-url")
    assert bad.returncode == 1 and b"must be an http(s) URL" in bad.stderr
    assert run("config", "profile", "remove", "here").returncode == 0
    assert b"no profile named here" in run("config", "profile", "use", "here").stderr


def test_list_by_name_prune_and_help(hub, session):
    si(hub, "seq", "send", str(EXAMPLES / "counter-js"), session=session)
    listed = si(hub, "seq", "list", "-n", "counter-js", session=session).stdout.decode()
    assert "counter-js" in listed and "ID" in listed
    missing = si(hub, "seq", "list", "-n", "no-such-name", session=session, check=False)
    assert missing.returncode == 1 and b"No results found" in missing.stderr
    for args in (["--help"], ["seq", "--help"], ["seq", "start", "--help"], ["inst", "output", "--help"],
                 ["hub", "start", "--help"], ["config", "profile", "use", "--help"]):
        assert "Example" in si(hub, *args, session=session).stdout.decode(), args
    # Destructive and bulk: it asks first (a "no" keeps everything), --yes skips the question.
    kept = si(hub, "seq", "prune", "--force", session=session, stdin=b"n\n", check=False)
    assert kept.returncode == 1 and b"Delete all" in kept.stderr and b"Aborted" in kept.stderr
    assert json.loads(si(hub, "--format", "json", "seq", "list", session=session).stdout) != []
    si(hub, "seq", "prune", "--force", "--yes", session=session)
    assert json.loads(si(hub, "--format", "json", "seq", "list", session=session).stdout) == []


def test_progress_bar_on_a_terminal_only(hub, session, tmp_path):
    import pty

    seq = tmp_path / "many"
    seq.mkdir()
    (seq / "package.json").write_text(json.dumps({"name": "many", "main": "index.js"}))
    (seq / "index.js").write_text("module.exports = () => 'x';")
    for i in range(300):
        (seq / f"f{i}.txt").write_text("data")
    env = {**os.environ, "SI_API_URL": hub["url"], "SI_SESSION_ID": session, "SI_CONFIG_PATH": str(hub["home"])}
    master, slave = pty.openpty()
    proc = subprocess.Popen([*SI, "seq", "pack", str(seq)], stderr=slave, stdout=subprocess.PIPE, env=env)
    os.close(slave)
    seen = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=60) == 0
    assert b"packing many" in seen
    piped = si(hub, "seq", "pack", str(seq), session=session)
    assert b"packing many" not in piped.stderr and piped.stderr.decode().startswith("packed 302 files")
