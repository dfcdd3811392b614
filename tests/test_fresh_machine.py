"""`make test` on a machine without bubblewrap (#29): the hub-starting tests run there too, with
bwrap hidden from PATH; each either passes on an unisolated loopback hub or checks what such a hub
does (it refuses to listen beyond loopback), and the isolation tests say why they skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .helpers import ROOT

# Hub-starting tests of several kinds: the seed's transcript, si's controls, a hub beyond loopback,
# Scramjet's own CLI, the isolation suite (which must skip, saying why).
SELECTION = ["tests/test_e2e_cli.py::test_seed_transcript", "tests/test_e2e_cli.py::test_control_commands",
             "tests/test_security.py::test_hub_beyond_loopback_requires_its_token",
             "tests/test_scramjet_clients.py::test_send_start_with_args_and_config_then_output",
             "tests/test_isolation.py"]


def path_without(tool: str, tmp_path: Path) -> str:
    """PATH as it is, with ``tool`` nowhere on it: each directory mirrored by links, less that name."""
    dirs = []
    for n, directory in enumerate(p for p in os.environ["PATH"].split(os.pathsep) if p):
        if not os.path.isdir(directory):
            continue
        mirror = tmp_path / f"path{n}"
        mirror.mkdir()
        for name in os.listdir(directory):
            if name != tool:
                (mirror / name).symlink_to(Path(directory) / name)
        dirs.append(str(mirror))
    return os.pathsep.join(dirs)


def test_the_hub_starting_tests_pass_without_bubblewrap(tmp_path):
    env = {**os.environ, "PATH": path_without("bwrap", tmp_path)}
    probe = subprocess.run([sys.executable, "-c", "import shutil; print(shutil.which('bwrap'))"], env=env,
                           capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "None"
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *SELECTION],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "bubblewrap (bwrap) is not installed" in done.stdout  # the isolation tests' reason to skip
    assert " passed" in done.stdout.splitlines()[-1]
