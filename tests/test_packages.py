"""Package rules on archives built here: accepted intact or refused with a clear message."""

from __future__ import annotations

import io
import tarfile

import pytest

from chalicelib import packages
from chalicelib.errors import InvalidPackage, TooLarge

from .corpus import corpus, member, tar_with
from .helpers import make_package

LIMITS = packages.Limits(max_unpacked_bytes=10_000_000, max_files=100)


def scan(body: bytes, limits: packages.Limits = LIMITS) -> packages.PackageInfo:
    return packages.scan(io.BytesIO(body), limits)


def test_a_good_package_is_described():
    info = scan(make_package({"package.json": {"name": "n", "version": "1", "main": "main.py",
                                               "engines": {"python3": "3.12"}}, "main.py": "x"}))
    assert info.runtime == "python" and info.language == "py" and info.files == 2


def test_node_main_without_js_suffix_counts():
    assert scan(make_package({"package.json": {"main": "index"}, "index.js": "x"})).runtime == "node"


@pytest.mark.parametrize("name, body, message, status", corpus(), ids=[c[0] for c in corpus()])
def test_hostile_and_broken_packages_are_refused(name, body, message, status):
    with pytest.raises(InvalidPackage if status == 422 else TooLarge) as exc:
        packages.scan(io.BytesIO(body), packages.Limits())
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
