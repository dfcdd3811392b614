"""Package archives, checked by the upload API and the runner (``protocol.manifest`` has the rules
for ``package.json`` that ``si seq pack`` shares).

A package is a gzip'd tar whose root holds ``package.json`` and the program. Archives are read as a
stream, so a gzip bomb or an oversize tree is stopped while it is being read, not after.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

from .errors import InvalidPackage, TooLarge
from .protocol.manifest import MANIFEST, MAX_MANIFEST_BYTES, InvalidManifest, entrypoint_candidates, invalid_main_message, runtime_of
from .protocol.manifest import normalise as _normalise
from .protocol.manifest import parse as _parse_manifest


@dataclass(frozen=True)
class Limits:
    max_unpacked_bytes: int = 400 * 1024 * 1024
    max_files: int = 50_000


@dataclass
class PackageInfo:
    manifest: dict[str, Any]
    files: int = 0
    unpacked_bytes: int = 0
    names: set[str] = field(default_factory=set)
    links: set[str] = field(default_factory=set)  # symbolic and hard links: nothing may lie behind one
    regular: set[str] = field(default_factory=set)  # regular files, where "main" must be

    @property
    def runtime(self) -> str:
        return runtime_of(self.manifest)

    @property
    def language(self) -> str:
        engines = self.manifest.get("engines") or {}
        if "python3" in engines:
            return "py"
        if "node" in engines:
            return "js"
        suffix = posixpath.splitext(self.manifest.get("main", ""))[1].lstrip(".")
        return suffix or "unknown"


MAX_NAME_BYTES = 1024  # a member's path; Linux allows 4096 for the whole path, our directory included
MAX_DEPTH = 64  # directories deep (node_modules nest, but not this far)


def _check_member(member: tarfile.TarInfo, info: PackageInfo, limits: Limits) -> str:
    name = member.name
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_BYTES or name.count("/") > MAX_DEPTH:
        raise InvalidPackage(f"archive member {name[:80]!r}… is over {MAX_NAME_BYTES} bytes or "
                             f"{MAX_DEPTH} directories deep")
    norm = _normalise(name)  # every check below is on the path the member really names
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":"):
        raise InvalidPackage(f"archive member {name!r} has an absolute path")
    parts = norm.split("/")
    if norm in info.names:
        raise InvalidPackage(f"archive member {norm!r} appears twice; packages name each file once")
    if any("/".join(parts[:i]) in info.links for i in range(1, len(parts))):
        raise InvalidPackage(f"archive member {name!r} lies behind a link; packages hold real directories")
    if ".." in parts:
        raise InvalidPackage(f"archive member {name!r} points outside the package (..)")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise InvalidPackage(f"archive member {name!r} is a device or fifo; packages hold files only")
    if member.issym():
        target = posixpath.normpath(posixpath.join(posixpath.dirname(norm), member.linkname))
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise InvalidPackage(f"archive member {name!r} links outside the package ({member.linkname})")
    if member.issym() or member.islnk():
        info.links.add(norm)
    if member.islnk():
        target = _normalise(member.linkname)
        if member.linkname.startswith("/") or ".." in target.split("/") or target not in info.names:
            raise InvalidPackage(f"archive member {name!r} hard-links outside the package ({member.linkname})")
    info.files += 1
    info.unpacked_bytes += max(member.size, 0)
    if info.files > limits.max_files:
        raise TooLarge(f"package has more than {limits.max_files} files")
    if info.unpacked_bytes > limits.max_unpacked_bytes:
        raise TooLarge(f"package unpacks to more than {limits.max_unpacked_bytes} bytes")
    info.names.add(norm)
    if member.isreg():
        info.regular.add(norm)
    return norm


_PADDING_BYTES = 64 * 1024  # tar pads its end with zero blocks (a 10 KiB record by default)


class _Gunzip:
    """The package's tar bytes, decompressed from a raw gzip stream read once (an S3 body, a file).

    Doing the gzip layer here, not in tarfile, lets ``finish`` refuse anything after the archive:
    junk appended to a small valid package would otherwise be stored, and downloaded by every start.
    """

    def __init__(self, raw: Any, head: bytes = b""):
        self.raw = raw
        self.inflate = zlib.decompressobj(wbits=31)  # gzip framing
        self.tail = head  # compressed input not yet consumed: bytes already peeked, or a bounded read's rest
        self.pending = b""
        self.total = 0  # bytes handed to tarfile so far
        self.window = b""  # the last of them: tarfile reads ahead of the archive's end

    def read(self, n: int = -1) -> bytes:
        want = n if n and n > 0 else 1 << 20
        while len(self.pending) < want and not self.inflate.eof:
            data = self.tail or self.raw.read(64 * 1024)
            if not data:
                break
            # Bounded: a gzip bomb never inflates more than one read's worth at a time.
            self.pending += self.inflate.decompress(data, want - len(self.pending))
            self.tail = self.inflate.unconsumed_tail
        data, self.pending = self.pending[:want], self.pending[want:]
        self.total += len(data)
        self.window = (self.window + data)[-_PADDING_BYTES:]
        return data

    def finish(self, archive_end: int) -> None:
        """After the archive's end marker (at ``archive_end``) only zero padding may follow, then the
        end of the gzip stream."""
        ahead = self.total - archive_end  # what tarfile read past the marker
        if ahead > len(self.window) or self.window[len(self.window) - ahead:].strip(b"\0"):
            raise InvalidPackage("package has data after the end of the archive")
        rest = b""
        while True:
            data = self.read(64 * 1024)
            if not data:
                break
            rest += data
            if len(rest) > _PADDING_BYTES or rest.strip(b"\0"):
                raise InvalidPackage("package has data after the end of the archive")
        if not self.inflate.eof:
            raise InvalidPackage("package archive is truncated")
        if self.inflate.unused_data or self.raw.read(1):
            raise InvalidPackage("package has data after the end of the gzip stream")


def _open(fileobj: Any) -> tuple[tarfile.TarFile, _Gunzip]:
    """Open a package as a stream: any object with ``read`` will do (an S3 body, a file)."""
    head = fileobj.read(2)
    if head != b"\x1f\x8b":
        raise InvalidPackage("package is not a gzip file: make it with `si seq pack <dir>`")
    gz = _Gunzip(fileobj, head)
    # A stream ("r|") reads its file object with read() only, which _Gunzip has.
    return tarfile.open(fileobj=cast(IO[bytes], gz), mode="r|"), gz


def scan(fileobj: Any, limits: Limits, dest: Path | None = None) -> PackageInfo:
    """Read a package once, checking every member; extract into ``dest`` when given.

    Raises ``InvalidPackage`` (or ``TooLarge``) naming the first problem found.
    """
    info = PackageInfo(manifest={})
    manifest_raw: bytes | None = None
    try:
        tar, gz = _open(fileobj)
        with tar:
            for member in tar:
                norm = _check_member(member, info, limits)
                if norm == MANIFEST and member.isfile():
                    handle = tar.extractfile(member)
                    manifest_raw = handle.read(MAX_MANIFEST_BYTES + 1) if handle else b""
                    if dest is not None:  # a new file in a fresh directory, never through a link
                        fd = os.open(dest / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                        with os.fdopen(fd, "wb") as out:
                            out.write(manifest_raw)
                    continue
                if dest is not None and norm:
                    tar.extract(member, dest, filter="data")
        gz.finish(tar.offset)
    except (InvalidPackage, TooLarge):
        raise
    except tarfile.ReadError as exc:
        text = str(exc)
        if "unexpected end" in text or "truncated" in text.lower():
            raise InvalidPackage("package archive is truncated") from None
        if "invalid header" in text or "bad checksum" in text or "empty file" in text:
            raise InvalidPackage("package is gzip but not a tar archive") from None
        raise InvalidPackage(f"package is not a valid tar.gz archive ({text})") from None
    except (EOFError, zlib.error, OSError) as exc:
        if isinstance(exc, EOFError) or "end-of-stream" in str(exc) or "truncated" in str(exc):
            raise InvalidPackage("package archive is truncated") from None
        raise InvalidPackage(f"package is not a valid gzip file ({exc})") from None
    except tarfile.TarError as exc:
        raise InvalidPackage(f"package archive is unsafe or broken: {exc}") from None
    if manifest_raw is None:
        raise InvalidPackage("package.json not found at the root of the package")
    try:
        info.manifest = _parse_manifest(manifest_raw)
    except InvalidManifest as exc:
        raise InvalidPackage(str(exc)) from None
    if not any(c in info.regular for c in entrypoint_candidates(info.manifest)):
        raise InvalidPackage(invalid_main_message(info.manifest))
    return info
