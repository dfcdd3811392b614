"""A corpus of hostile and broken packages, built here (no committed binaries).

Each entry: (name, archive bytes, the message a user sees, HTTP status through the API).
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import tarfile

from .helpers import make_package

MANIFEST = json.dumps({"name": "x", "main": "index.js"}).encode()


def tar_with(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A valid package (package.json + index.js) plus ``members``."""
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


class _Zeros(io.RawIOBase):
    def __init__(self, size: int):
        self.left = size

    def readinto(self, buf) -> int:
        n = min(len(buf), self.left)
        buf[:n] = bytes(n)
        self.left -= n
        return n


def gzip_bomb(size: int = 500_000_000) -> bytes:
    """A small archive (~500 KB) that unpacks to ``size`` bytes of zeros, past the 400 MB default limit."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", compresslevel=9) as tar:
        for name, data in (("package.json", MANIFEST), ("index.js", b"x")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        info = tarfile.TarInfo("zeros")
        info.size = size
        tar.addfile(info, _Zeros(size))
    return buf.getvalue()


def make_link_main() -> bytes:
    """A package whose "main" is a symbolic link (to a file inside it): main must be a regular file."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for info, data in (member("package.json", data=b'{"main": "main.js"}'), member("real.js", data=b"x"),
                           member("main.js", tarfile.SYMTYPE, link="real.js")):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


@functools.lru_cache(maxsize=1)
def corpus() -> list[tuple[str, bytes, str, int]]:
    bomb = gzip_bomb()
    many = make_package({"package.json": {"main": "f1"}, **{f"f{i}": "x" for i in range(50_001)}})
    return [
        ("not-gzip", b"plain text", "not a gzip file", 422),
        ("gzip-not-tar", gzip.compress(b"this is not a tar archive" * 40), "not a tar archive", 422),
        ("truncated", make_package({"package.json": {"main": "a.js"}, "a.js": os.urandom(5000)})[:-200],
         "truncated", 422),
        ("no-package-json", make_package({"index.js": "x"}), "package.json not found", 422),
        ("invalid-json", make_package({"package.json": "{oops", "index.js": "x"}), "not valid JSON", 422),
        ("not-an-object", make_package({"package.json": "[1, 2]", "index.js": "x"}), "must be a JSON object", 422),
        ("main-missing", make_package({"package.json": {"name": "x"}, "index.js": "x"}), 'has no "main"', 422),
        ("main-not-string", make_package({"package.json": {"main": 3}, "index.js": "x"}),
         '"main" must be a non-empty string', 422),
        ("main-absent", make_package({"package.json": {"main": "app.js"}, "index.js": "x"}),
         "Sequence entrypoint path app.js is invalid", 422),
        ("two-engines", make_package({"package.json": {"main": "index.js", "engines": {"node": "1", "python3": "2"}},
                                      "index.js": "x"}), "'engines' field can't contain more than one element", 422),
        ("path-traversal", tar_with([member("../escape.txt", data=b"x")]), "points outside the package", 422),
        ("absolute-path", tar_with([member("/etc/evil", data=b"x")]), "absolute path", 422),
        ("symlink-escape", tar_with([member("link", tarfile.SYMTYPE, link="../../etc/passwd")]),
         "links outside the package", 422),
        ("symlink-absolute", tar_with([member("link", tarfile.SYMTYPE, link="/etc/passwd")]),
         "links outside the package", 422),
        ("hardlink-escape", tar_with([member("hard", tarfile.LNKTYPE, link="../../etc/passwd")]),
         "hard-links outside", 422),
        ("device", tar_with([member("dev", tarfile.CHRTYPE)]), "device or fifo", 422),
        ("fifo", tar_with([member("fifo", tarfile.FIFOTYPE)]), "device or fifo", 422),
        ("dot-slash-absolute", tar_with([member(".//tmp/seqhub-escape", data=b"x")]), "absolute path", 422),
        ("duplicate-member", tar_with([member("index.js", data=b"y")]), "appears twice", 422),
        ("behind-a-symlink", tar_with([member("d", tarfile.SYMTYPE, link="."), member("d/x", data=b"x")]),
         "lies behind a link", 422),
        ("manifest-through-a-link", tar_with([member("node_modules", tarfile.SYMTYPE, link="."),
                                              member("node_modules/package.json", data=b"{}")]),
         "lies behind a link", 422),
        ("main-absolute", make_package({"package.json": {"main": "/tmp/outside.py", "engines": {"python3": "3"}},
                                        "x.py": ""}), '"main" must be a path inside the package', 422),
        ("main-parent", make_package({"package.json": {"main": "../x.js"}, "x.js": ""}),
         '"main" must be a path inside the package', 422),
        ("main-is-a-link", make_link_main(),
         "Sequence entrypoint path main.js is invalid", 422),
        ("gzip-bomb", bomb, "unpacks to more than", 413),
        ("too-many-files", many, "more than 50000 files", 413),
    ]
