"""si seq pack's two engines (GNU tar where present, tarfile elsewhere) pack the same members."""

from __future__ import annotations

import io
import json
import os
import tarfile

from si import packing


def tree(tmp_path):
    root = tmp_path / "seq"
    (root / "lib" / "deep").mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": "s", "main": "index.js"}))
    (root / "index.js").write_text("module.exports = () => 'x';")
    (root / "lib" / "deep" / ("long-name-" * 12 + ".js")).write_text("x")
    (root / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "run.sh", 0o755)
    os.symlink("lib/deep", root / "alias")
    (root / "skip.log").write_text("x")
    (root / ".siignore").write_text("*.log\n")
    return root


def members(body: bytes) -> dict[str, tuple]:
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return {m.name: (m.type, m.mode & 0o111 != 0, m.linkname, m.uid, m.uname) for m in tar}


def test_gnu_tar_and_tarfile_pack_the_same(tmp_path, monkeypatch):
    root = tree(tmp_path)
    with_tar = io.BytesIO()
    packing.pack(root, with_tar)
    monkeypatch.setattr(packing, "_gnu_tar", lambda: None)
    with_python = io.BytesIO()
    packing.pack(root, with_python)
    a, b = members(with_tar.getvalue()), members(with_python.getvalue())
    assert sorted(a) == sorted(b) == sorted([".siignore", "alias", "index.js", "package.json", "run.sh",
                                              "lib/deep/" + "long-name-" * 12 + ".js"])
    assert a["run.sh"][1] and b["run.sh"][1]  # executables stay executable
    assert a["alias"][2] == b["alias"][2] == "lib/deep"
    assert {m[3] for m in a.values()} == {m[3] for m in b.values()} == {0}
