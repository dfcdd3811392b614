"""``si seq pack``: a directory's contents as a tar.gz package, checked by the hub's own rules."""

from __future__ import annotations

import contextlib
import fnmatch
import functools
import os
import queue
import re
import shutil
import subprocess
import tarfile
import tempfile
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, cast

from . import protocol
from .errors import SiError
from .protocol import manifest as manifest_rules

# The CLI's progress bar: progress(total, label[, unit]) gives a context manager yielding advance(n).
Progress = Callable[..., contextlib.AbstractContextManager[Callable[[int], None] | None]]

DIRECT_UPLOAD_LIMIT = protocol.DIRECT_UPLOAD_BYTES  # larger packages go through S3
_SECRET_NAMES = (".env", ".env.*", "*.pem", "*.key", "id_rsa", "id_ed25519", ".npmrc", ".pypirc",
                 "credentials", ".aws", "*.p12")


@dataclass
class PackResult:
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Entry:
    rel: str      # path inside the package
    path: str     # path on disk
    kind: str     # "file", "dir" (only a link to one), "link" or "other"


def _ignore_patterns(root: Path) -> list[str]:
    path = root / ".siignore"
    if not path.exists():
        return []
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def _ignored(rel: str, is_dir: bool, patterns: list[str]) -> bool:
    name = rel.rsplit("/", 1)[-1]
    for pattern in patterns:
        dir_only = pattern.endswith("/")
        pat = pattern.strip("/")
        if dir_only and not is_dir:
            continue
        target = rel if "/" in pat else name
        if fnmatch.fnmatchcase(target, pat) or fnmatch.fnmatchcase(rel, pat):
            return True
    return False


def collect(root: Path, exclude: Path | None = None) -> list[Entry]:
    """What to pack, in a stable order, honouring ``.siignore``. One scandir per directory and
    no stat per file (the directory entry already says what each one is)."""
    patterns = _ignore_patterns(root)
    skip = str(exclude) if exclude is not None else None
    out: list[Entry] = []

    def walk(folder: str, prefix: str) -> None:
        with os.scandir(folder) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                rel = prefix + entry.name
                is_link = entry.is_symlink()
                is_dir = not is_link and entry.is_dir(follow_symlinks=False)
                if entry.path == skip or (patterns and _ignored(rel, is_dir, patterns)):
                    continue
                if is_dir:
                    walk(entry.path, rel + "/")
                elif is_link:
                    out.append(Entry(rel, entry.path, "link"))
                else:
                    out.append(Entry(rel, entry.path, "file" if entry.is_file(follow_symlinks=False) else "other"))

    walk(str(root), "")
    return out


_SECRETS = re.compile("|".join(fnmatch.translate(p) for p in _SECRET_NAMES))


def check(root: Path, entries: list[Entry]) -> list[str]:
    """Run the package rules on the tree before packing; return warnings."""
    manifest_path = root / manifest_rules.MANIFEST
    if not manifest_path.is_file():
        raise SiError(f"{manifest_path} not found: a sequence directory needs a package.json with \"main\"")
    try:
        manifest = manifest_rules.parse(manifest_path.read_bytes())
    except manifest_rules.InvalidManifest as exc:
        raise SiError(f"{manifest_path}: {exc}") from None
    names = {e.rel for e in entries}
    if not any(c in names for c in manifest_rules.entrypoint_candidates(manifest)):
        raise SiError(f"{manifest_rules.invalid_main_message(manifest)} (no such file in {root})")
    real_root = root.resolve()
    for entry in entries:
        if entry.kind == "link" and not Path(entry.path).resolve().is_relative_to(real_root):
            raise SiError(f"{entry.rel} is a link to {os.readlink(entry.path)}, outside the package; "
                          "copy the file in or add the link to .siignore")
        if entry.kind == "other":
            raise SiError(f"{entry.rel} is not a regular file (device, fifo or socket); add it to .siignore")
    secrets = [e.rel for e in entries if _SECRETS.match(e.rel.rsplit("/", 1)[-1])]
    if secrets:
        return [f"the package holds files that look like secrets: {', '.join(secrets[:5])} "
                "(add them to .siignore if they should stay private)"]
    return []


class _BackgroundGzip:
    """A write-only file that gzips on another thread (zlib releases the GIL), so reading files
    and building the tar overlap with compression: on two cores this is what beats `tar czf`."""

    def __init__(self, out: IO[bytes], level: int = 6):
        self._out = out
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        self._zip = zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: gzip framing
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="si-gzip", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while (data := self._queue.get()) is not None:
                self._out.write(self._zip.compress(data))
            self._out.write(self._zip.flush())
        except BaseException as exc:  # re-raised in the writer's thread
            self._error = exc
            while self._queue.get() is not None:
                pass

    def write(self, data: bytes) -> int:
        if self._error:
            raise self._error
        self._queue.put(bytes(data))
        return len(data)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        if self._error:
            raise self._error


def _tarinfo(entry: Entry) -> tarfile.TarInfo:
    """A member's header from one lstat: no user/group name lookups (they are slow, and a
    package should not carry the packer's account names)."""
    st = os.lstat(entry.path)
    info = tarfile.TarInfo(entry.rel)
    info.mtime = int(st.st_mtime)
    info.mode = 0o755 if st.st_mode & 0o111 else 0o644
    if entry.kind == "link":
        info.type, info.linkname = tarfile.SYMTYPE, os.readlink(entry.path)
    else:
        info.size = st.st_size
    return info


@functools.lru_cache(maxsize=1)
def _gnu_tar() -> str | None:
    """GNU tar, where there is one: it packs many small files several times faster than tarfile."""
    found = shutil.which("tar")
    if not found:
        return None
    try:
        version = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return found if "GNU tar" in version else None


def _pack_with_tar(tar: str, root: Path, entries: list[Entry], out: IO[bytes], progress: Progress | None, label: str) -> None:
    """Exactly ``entries`` (already checked), packed by GNU tar with neutral owners."""
    names = b"".join(e.rel.encode() + b"\0" for e in entries)
    argv = [tar, "--create", "--gzip", "--file=-", f"--directory={root}", "--no-recursion", "--null",
            "--verbatim-files-from", "--files-from=-", "--owner=0", "--group=0", "--numeric-owner",
            "--format=gnu"]
    with tempfile.TemporaryFile() as listing:
        listing.write(names)
        listing.seek(0)
        proc = subprocess.Popen(argv, stdin=listing, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None and proc.stderr is not None  # both are pipes
        stdout, stderr = proc.stdout, proc.stderr
        bar = progress(None, f"packing {label}") if progress else contextlib.nullcontext(None)
        with bar as advance:
            for chunk in iter(lambda: stdout.read(256 * 1024), b""):
                out.write(chunk)
                if advance:
                    advance(len(chunk))
        err = stderr.read().decode(errors="replace").strip()
        if proc.wait() != 0:
            raise SiError(f"packing failed: {err.splitlines()[-1] if err else 'tar exited ' + str(proc.returncode)}")


def pack(source: Path, out: IO[bytes], exclude: Path | None = None, progress: Progress | None = None) -> PackResult:
    """Write ``source``'s contents (entries at the archive root) as tar.gz to ``out``.

    ``progress(total, label, unit)`` may give a context manager yielding ``advance(n)`` (the CLI's bar).
    """
    root = source.resolve()
    if not root.is_dir():
        raise SiError(f"{source} is not a directory")
    entries = collect(root, exclude.resolve() if exclude is not None else None)
    result = PackResult(files=[e.rel for e in entries])
    result.warnings = check(root, entries)
    gnu_tar = _gnu_tar()
    if gnu_tar:
        _pack_with_tar(gnu_tar, root, entries, out, progress, source.name)
        return result
    bar = progress(len(entries), f"packing {source.name}", "files") if progress else contextlib.nullcontext(None)
    # Level 6 (gzip's default): level 9 costs much more time for a few percent of size.
    gz = _BackgroundGzip(out, level=6)
    try:
        # GNU format: long names without a PAX header per member (much cheaper to build).
        with bar as advance, tarfile.open(fileobj=cast(IO[bytes], gz), mode="w|", format=tarfile.GNU_FORMAT,
                                          bufsize=256 * 1024) as tar:
            for entry in entries:
                info = _tarinfo(entry)
                if info.isreg():
                    with open(entry.path, "rb") as fh:
                        tar.addfile(info, fh)
                else:
                    tar.addfile(info)
                if advance:
                    advance(1)
    finally:
        gz.close()
    return result
