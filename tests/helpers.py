"""Building packages in tests: real tar.gz archives made from a dict of files."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEQUENCES = Path(__file__).resolve().parent / "sequences"
SI = [sys.executable, "-m", "si"]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                    reason="needs Debian's chromium (apt-get install chromium; .ci/run installs it)")
# What the probe found works here: no sandbox as root, no background network (it is closed).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def make_package(files: dict[str, bytes | str | dict]) -> bytes:
    """A tar.gz with ``files`` at the archive root (dict values are written as JSON)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            if isinstance(content, dict):
                content = json.dumps(content)
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def package_dir(path: Path) -> bytes:
    """A directory's files as a package."""
    return make_package({p.relative_to(path).as_posix(): p.read_bytes()
                         for p in sorted(path.rglob("*")) if p.is_file()})


def js_package(source: str, name: str = "seq-js", main: str = "index.js") -> bytes:
    return make_package({"package.json": {"name": name, "version": "1.0.0", "main": main}, main: source})


def py_package(source: str, name: str = "seq-py", main: str = "main.py") -> bytes:
    return make_package({"package.json": {"name": name, "version": "1.0.0", "main": main,
                                          "engines": {"python3": "3.12"}}, main: source})


def si(hub, *args: str, session: str, check: bool = True, stdin: bytes | None = None,
       env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SI_API_URL": hub["url"], "SI_SESSION_ID": session,
                "SI_CONFIG_PATH": str(hub["home"]), **(env or {})}
    result = subprocess.run([*SI, *args], capture_output=True, env=full_env, input=stdin, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr.decode()
    return result


@dataclass
class LambdaContext:
    """The Lambda context a function is called with, as Powertools' testing docs build it."""

    function_name: str = "sequence-hub-test-cleanup"
    memory_limit_in_mb: int = 128
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:sequence-hub-test-cleanup"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_ms: int = 600_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
