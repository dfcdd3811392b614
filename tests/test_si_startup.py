"""`si` starts fast (#28): help lists the command groups without importing them, no command imports
more than it uses, and HTTP is the standard library's (si/transport.py), kept alive, retried once
when a kept connection was closed, and through the proxy the environment names."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from si import cli, help_texts, session
from si.client import Client
from si.errors import SiError

from .helpers import ROOT


def modules_loaded_by(*argv: str, env: dict | None = None) -> set[str]:
    """The modules `si ARGV` has imported when it exits."""
    probe = ("import atexit, os, sys\n"
             "def report(*_): print('\\n' + ' '.join(sorted(sys.modules)), file=sys.stderr, flush=True)\n"
             "atexit.register(report)\n"
             "leave = os._exit\n"
             "os._exit = lambda code: (report(), leave(code))  # si leaves without the teardown\n"
             "from si.cli import main\n"
             f"sys.argv = ['si', *{list(argv)!r}]\n"
             "main()\n")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT, timeout=60,
                          env={**os.environ, **(env or {})})
    return set(done.stderr.strip().splitlines()[-1].split())


def test_help_lists_every_group_without_importing_any():
    loaded = modules_loaded_by("--help")
    assert not {m for m in loaded if m.startswith("si.commands.")}
    assert not loaded & {"requests", "http.client", "rich", "si.client", "si.protocol"}


def test_a_listing_imports_no_requests_and_no_other_group(tmp_path):
    loaded = modules_loaded_by("seq", "list", env={"SI_API_URL": "http://127.0.0.1:9/api/v1",
                                                    "SI_CONFIG_PATH": str(tmp_path)})
    assert "si.commands.seq" in loaded and "http.client" in loaded
    assert not loaded & {"requests", "urllib3", "si.commands.topic", "si.commands.config", "si.packing", "tempfile"}


def test_si_leaves_without_the_interpreters_teardown_and_loses_no_output(tmp_path):
    """Nothing runs after a command but the teardown (~10 ms): si skips it, once its output is out."""
    probe = ("import atexit, sys\n"
             "atexit.register(lambda: print('torn down', file=sys.stderr))\n"
             "from si.cli import main\n"
             "sys.argv = ['si', *sys.argv[1:]]\n"
             "main()\n")
    env = {**os.environ, "SI_CONFIG_PATH": str(tmp_path), "SI_API_URL": "http://127.0.0.1:9/api/v1"}
    script = subprocess.run([sys.executable, "-c", probe, "completion", "bash"], capture_output=True, text=True,
                            cwd=ROOT, env=env, timeout=60)
    assert script.returncode == 0 and "torn down" not in script.stderr
    assert script.stdout.rstrip().endswith("_si_completion_setup;")  # all of it, flushed
    refused = subprocess.run([sys.executable, "-c", probe, "seq", "list"], capture_output=True, text=True,
                             cwd=ROOT, env=env, timeout=60)
    assert refused.returncode == 1 and refused.stderr.startswith("Error: cannot reach the hub")
    assert "torn down" not in refused.stderr


def test_the_written_helps_are_clicks_own():
    """si/entry.py says these without click: each must be what click renders (else: make si-help)."""
    assert set(help_texts.TEXTS) == set(cli.WRITTEN_HELP)
    for path in cli.WRITTEN_HELP:
        assert help_texts.TEXTS[path] == cli.render_help(path), f"si {path} --help changed: run make si-help"


def _si(*argv: str, columns: str | None = None) -> subprocess.CompletedProcess:
    """`python -m si ARGV` as a user runs it (its output not a terminal), with its imports listed."""
    env = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    if columns is not None:
        env["COLUMNS"] = columns
    return subprocess.run([sys.executable, "-X", "importtime", "-m", "si", *argv], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=60)


@pytest.mark.parametrize("argv", [("--help",), ("-h",), ("seq", "--help"), ("instance", "-h")])
def test_a_written_help_is_said_without_importing_click(argv):
    said = _si(*argv)
    assert said.returncode == 0 and said.stdout == help_texts.TEXTS[" ".join(argv[:-1])]
    assert " click" not in said.stderr and " si.cli" not in said.stderr


def test_any_other_help_and_a_narrow_terminal_are_clicks(tmp_path):
    narrow = _si("--help", columns="60")
    assert narrow.returncode == 0 and " click" in narrow.stderr
    assert narrow.stdout.startswith("Usage: si [OPTIONS]") and max(map(len, narrow.stdout.splitlines()[8:])) <= 58
    assert narrow.stdout != help_texts.TEXTS[""]
    command = _si("seq", "start", "--help")
    assert command.returncode == 0 and command.stdout.startswith("Usage: si seq start [OPTIONS] SEQ_ID") and " click" in command.stderr



@pytest.mark.parametrize("path", cli.WRITTEN_HELP)
def test_click_says_each_written_help_as_written(path):
    """The same help asked through click (an option first, so si/entry.py passes it on)."""
    through_click = _si("--format", "pretty", *path.split(), "--help")
    assert " click" in through_click.stderr and through_click.stdout == help_texts.TEXTS[path]


def test_the_help_summaries_are_each_groups_own():
    for module, summary in cli.SUMMARIES.items():
        group = getattr(importlib.import_module(f"si.commands.{module}"), module)
        assert (group.help or "").startswith(summary), module


class _Answers(BaseHTTPRequestHandler):
    """HTTP/1.1 that closes every connection after one answer without saying so: what a hub that
    timed out an idle kept-alive connection looks like to the next request on it."""

    protocol_version = "HTTP/1.1"
    seen: list[str] = []

    def do_GET(self) -> None:
        type(self).seen.append(self.path)
        body = json.dumps({"service": "sequence-hub", "version": "0", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def answers():
    _Answers.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Answers)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_kept_connection_the_hub_closed_is_retried_once(answers):
    client = Client(f"{answers}/api/v1")
    assert [client.version()["path"] for _ in range(3)] == ["/api/v1/version"] * 3


def test_requests_go_through_the_proxy_the_environment_names(answers, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", answers)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    found = Client("http://hub.example.invalid/api/v1").version()
    assert found["path"] == "http://hub.example.invalid/api/v1/version"  # the proxy got the whole URL


def test_an_unreachable_hub_is_one_line():
    with pytest.raises(SiError, match="cannot reach the hub at http://127.0.0.1:9/api/v1"):
        Client("http://127.0.0.1:9/api/v1").version()


@pytest.mark.parametrize(("env", "where"), [({"TMPDIR": "{tmp}/a/"}, "{tmp}/a"), ({"TMP": "{tmp}/b"}, "{tmp}/b"),
                                            ({"TEMP": "{tmp}/c"}, "{tmp}/c"), ({}, "/tmp")])
def test_the_session_is_kept_where_scramjets_si_keeps_it(tmp_path, monkeypatch, env, where):
    """Node's os.tmpdir(): TMPDIR, TMP, TEMP, else /tmp (no trailing slash), then .si-tmp/<session id>."""
    for key in ("TMPDIR", "TMP", "TEMP"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value.format(tmp=tmp_path))
    monkeypatch.setenv("SI_SESSION_ID", f"test-{os.getpid()}")
    kept = Path(where.format(tmp=tmp_path)) / ".si-tmp" / f"test-{os.getpid()}" / "session-config.json"
    try:
        session.remember("instance", "abc")
        assert json.loads(kept.read_text()) == {"lastInstanceId": "abc"}
        assert session.resolve("instance", "-") == "abc"
    finally:
        kept.unlink(missing_ok=True)
        if not env:
            kept.parent.rmdir()
