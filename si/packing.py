"""``si seq pack``: a directory's contents as a tar.gz package, checked by the hub's own rules."""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from chalicelib import packages
from chalicelib.errors import HubError

from .errors import SiError

DIRECT_UPLOAD_LIMIT = 4_500_000
_SECRET_NAMES = (".env", ".env.*", "*.pem", "*.key", "id_rsa", "id_ed25519", ".npmrc", ".pypirc",
                 "credentials", ".aws", "*.p12")


@dataclass
class PackResult:
    files: list[str] = field(default_factory=list)
    size: int = 0
    warnings: list[str] = field(default_factory=list)


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


def collect(root: Path, exclude: Path | None = None) -> list[str]:
    """Relative paths to pack, in a stable order, honouring ``.siignore``."""
    patterns = _ignore_patterns(root)
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        rel_dir = base.relative_to(root).as_posix()
        keep = []
        for d in sorted(dirnames):
            rel = f"{rel_dir}/{d}" if rel_dir != "." else d
            if _ignored(rel, True, patterns):
                continue
            if (base / d).is_symlink():
                out.append(rel)
            else:
                keep.append(d)
        dirnames[:] = keep
        for f in sorted(filenames):
            rel = f"{rel_dir}/{f}" if rel_dir != "." else f
            if exclude is not None and (base / f).resolve() == exclude:
                continue
            if not _ignored(rel, False, patterns):
                out.append(rel)
    return sorted(out)


def check(root: Path, names: list[str]) -> list[str]:
    """Run the package rules on the tree before packing; return warnings."""
    manifest_path = root / packages.MANIFEST
    if not manifest_path.is_file():
        raise SiError(f"{manifest_path} not found: a sequence directory needs a package.json with \"main\"")
    try:
        manifest = packages.parse_manifest(manifest_path.read_bytes())
    except HubError as exc:
        raise SiError(f"{manifest_path}: {exc.message}") from None
    if not any(c in names for c in packages.entrypoint_candidates(manifest)):
        raise SiError(f"{packages.invalid_main_message(manifest)} (no such file in {root})")
    for rel in names:
        target = root / rel
        if target.is_symlink():
            resolved = target.resolve()
            if not resolved.is_relative_to(root.resolve()):
                raise SiError(f"{rel} is a link to {os.readlink(target)}, outside the package; "
                              "copy the file in or add the link to .siignore")
        elif not (target.is_file() or target.is_dir()):
            raise SiError(f"{rel} is not a regular file (device, fifo or socket); add it to .siignore")
    warnings = []
    secrets = [n for n in names if any(fnmatch.fnmatchcase(n.rsplit("/", 1)[-1], p) for p in _SECRET_NAMES)]
    if secrets:
        warnings.append(f"the package holds files that look like secrets: {', '.join(secrets[:5])} "
                        "(add them to .siignore if they should stay private)")
    return warnings


def pack(source: Path, out: IO[bytes], exclude: Path | None = None, progress=None) -> PackResult:
    """Write ``source``'s contents (entries at the archive root) as tar.gz to ``out``.

    ``progress(total, label, unit)`` may give a context manager yielding ``advance(n)`` (the CLI's bar).
    """
    root = source.resolve()
    if not root.is_dir():
        raise SiError(f"{source} is not a directory")
    names = collect(root, exclude)
    result = PackResult(files=names)
    result.warnings = check(root, names)
    bar = progress(len(names), f"packing {source.name}", "files") if progress else contextlib.nullcontext(None)
    # Level 6 (gzip's default): level 9 costs much more time for a few percent of size.
    with bar as advance, tarfile.open(fileobj=out, mode="w:gz", compresslevel=6, format=tarfile.PAX_FORMAT) as tar:
        for rel in names:
            tar.add(root / rel, arcname=rel, recursive=False)
            if advance:
                advance(1)
    return result


def manifest_name(source: Path) -> str:
    try:
        return json.loads((source / packages.MANIFEST).read_text()).get("name") or source.name
    except (OSError, ValueError):
        return source.name
