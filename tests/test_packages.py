"""Package rules on archives built here: accepted intact or refused with a clear message."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile

import pytest

from chalicelib import packages
from chalicelib.errors import InvalidPackage, TooLarge

from .helpers import make_package

LIMITS = packages.Limits(max_unpacked_bytes=10_000_000, max_files=100)
MANIFEST = json.dumps({"name": "x", "main": "index.js"}).encode()


def tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("package.json")
        info.size = len(MANIFEST)
        tar.addfile(info, io.BytesIO(MANIFEST))
        index = tarfile.TarInfo("index.js")
        index.size = 1
        tar.addfile(index, io.BytesIO(b"x"))
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = "") -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = link
    return info, data if kind == tarfile.REGTYPE else None


def scan(body: bytes, limits: packages.Limits = LIMITS) -> packages.PackageInfo:
    return packages.scan(io.BytesIO(body), limits)


def test_a_good_package_is_described():
    info = scan(make_package({"package.json": {"name": "n", "version": "1", "main": "main.py",
                                               "engines": {"python3": "3.12"}}, "main.py": "x"}))
    assert info.runtime == "python" and info.language == "py" and info.files == 2


def test_node_main_without_js_suffix_counts():
    assert scan(make_package({"package.json": {"main": "index"}, "index.js": "x"})).runtime == "node"


@pytest.mark.parametrize("body, message", [
    (b"plain text", "not a gzip file"),
    (gzip.compress(b"this is not a tar archive" * 40), "not a tar archive"),
    (make_package({"package.json": {"main": "a.js"}, "a.js": os.urandom(5000)})[:-200], "truncated"),
    (make_package({"index.js": "x"}), "package.json not found"),
    (make_package({"package.json": "{oops", "index.js": "x"}), "not valid JSON"),
    (make_package({"package.json": "[1, 2]", "index.js": "x"}), "must be a JSON object"),
    (make_package({"package.json": {"name": "x"}, "index.js": "x"}), 'has no "main"'),
    (make_package({"package.json": {"main": 3}, "index.js": "x"}), '"main" must be a non-empty string'),
    (make_package({"package.json": {"main": "app.js"}, "index.js": "x"}),
     "Sequence entrypoint path app.js is invalid"),
    (make_package({"package.json": {"main": "index.js", "engines": {"node": "1", "python3": "2"}},
                   "index.js": "x"}), "'engines' field can't contain more than one element"),
    (tar_with([member("../escape.txt", data=b"x")]), "points outside the package"),
    (tar_with([member("/etc/evil", data=b"x")]), "absolute path"),
    (tar_with([member("link", tarfile.SYMTYPE, link="../../etc/passwd")]), "links outside the package"),
    (tar_with([member("link", tarfile.SYMTYPE, link="/etc/passwd")]), "links outside the package"),
    (tar_with([member("hard", tarfile.LNKTYPE, link="../../etc/passwd")]), "hard-links outside"),
    (tar_with([member("dev", tarfile.CHRTYPE)]), "device or fifo"),
    (tar_with([member("fifo", tarfile.FIFOTYPE)]), "device or fifo"),
])
def test_hostile_and_broken_packages_are_refused(body, message):
    with pytest.raises(InvalidPackage) as exc:
        scan(body)
    assert message in exc.value.message


def test_a_gzip_bomb_is_stopped_while_reading():
    # ~20 MB of zeros compress to ~20 KB; the limit is 10 MB, so reading stops at the header.
    bomb = make_package({"package.json": {"main": "index.js"}, "index.js": "x", "zeros": b"\0" * 20_000_000})
    assert len(bomb) < 100_000
    with pytest.raises(TooLarge, match="unpacks to more than"):
        scan(bomb)


def test_too_many_files():
    files = {f"f{i}": "x" for i in range(101)}
    with pytest.raises(TooLarge, match="more than 100 files"):
        scan(make_package({"package.json": {"main": "f1"}, **files}))


def test_links_inside_the_tree_are_fine(tmp_path):
    body = tar_with([member("lib/real.js", data=b"x"), member("alias.js", tarfile.SYMTYPE, link="lib/real.js"),
                     member("hard.js", tarfile.LNKTYPE, link="lib/real.js")])
    packages.scan(io.BytesIO(body), LIMITS, dest=tmp_path)
    assert (tmp_path / "alias.js").read_bytes() == b"x" and (tmp_path / "hard.js").read_bytes() == b"x"
