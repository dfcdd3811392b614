"""The Node layer: built from the pinned wheel, reproducibly, and the runner runs JS sequences with it."""

from __future__ import annotations

import platform
import stat
import subprocess
import zipfile

import pytest

from chalicelib import instances, invoker, protocol, sequences
from chalicelib.runner.service import run_instance
from infra import node_layer

from .helpers import EXAMPLES, package_dir


@pytest.fixture(scope="module")
def layer(tmp_path_factory):
    arch = "aarch64" if platform.machine() in ("aarch64", "arm64") else "x86_64"
    return node_layer.build(tmp_path_factory.mktemp("layer"), arch)


@pytest.fixture(scope="module")
def layer_node(layer, tmp_path_factory):
    """The layer unpacked as Lambda mounts it (at /opt there, here in a temp dir)."""
    opt = tmp_path_factory.mktemp("opt")
    with zipfile.ZipFile(layer) as zf:
        assert zf.namelist() == ["bin/node"]
        zf.extractall(opt)
    node = opt / "bin" / "node"
    node.chmod(node.stat().st_mode | stat.S_IXUSR)
    return node


def test_layer_node_runs(layer_node):
    result = subprocess.run([str(layer_node), "-e", "console.log(process.version)"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "v24.19.0"


def test_layer_build_is_reproducible(layer, tmp_path):
    again = node_layer.build(tmp_path, layer.stem.rsplit("-", 1)[-1])
    assert node_layer.sha256(again) == node_layer.sha256(layer)


def test_runner_runs_the_seed_counter_on_the_layers_node(settings, layer_node, monkeypatch):
    monkeypatch.setenv("SEQHUB_NODE", str(layer_node))
    monkeypatch.setattr(invoker, "invoke", lambda _s, _i, _engine="lambda", _runtime="": None)
    seq_id = sequences.create(settings, package_dir(EXAMPLES / "counter-js"))["id"]
    inst = instances.start(settings, seq_id, {"args": [3000, 3]})["id"]
    assert run_instance(settings, inst, lambda: 600_000) == protocol.COMPLETED
    assert instances.read_channel(settings, inst, "output", None, 0, until_end=True)["data"] == b"3000\n3001\n3002\n"
