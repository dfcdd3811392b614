"""Scramjet's published sample sequences, re-expressed (``tests/scramjet/``), built as their own builds
say and cached in ``.cache/scramjet-corpus``.

The samples come from Scramjet's hub's BDD data (``th-``), its reference apps (``ra-``), its
``create-sequence`` templates (``cs-``) and its platform samples (``ps-``): each does what the
original does, in code of our own (the originals are not ours to copy). Their builds: TypeScript
compiled with ``tsc`` to CommonJS next to ``package.json``, the npm packages a sample ships
(scramjet, JSONStream) in its ``node_modules``, a Python sample's ``requirements.txt`` installed with
pip into its ``__pypackages__``, as Scramjet's packaging scripts do. A data file named
``@random:<bytes>`` in the table below is made here (seeded, so the same every time).
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

from .helpers import ROOT

SOURCES = Path(__file__).resolve().parent / "scramjet"
CACHE = ROOT / ".cache" / "scramjet-corpus"
RANDOM_FILES = {"th-bin-out-seq": {"random.bin": 600_000}, "ra-binary-output": {"random.bin": 300_000}}


def samples() -> list[str]:
    return sorted(p.name for p in SOURCES.iterdir() if (p / "package.json").is_file())


def random_bytes(sample: str, name: str) -> bytes:
    return random.Random(f"{sample}/{name}").randbytes(RANDOM_FILES[sample][name])


def _fingerprint() -> str:
    digest = hashlib.sha256()
    for path in sorted(SOURCES.rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(SOURCES)).encode())
            digest.update(path.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()[:16]


def build() -> Path:
    """Every sample built into a directory of its own (made once per version of the sources)."""
    done = CACHE / _fingerprint()
    if (done / ".built").exists():
        return done
    if done.exists():
        shutil.rmtree(done)
    deps = done / "deps"
    deps.mkdir(parents=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copy(SOURCES / name, deps / name)
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=deps, check=True, timeout=600)
    for sample in samples():
        _build_one(SOURCES / sample, done / sample, deps / "node_modules", done / "pip")
    (done / ".built").write_text("")
    for old in CACHE.iterdir():  # earlier versions of the corpus
        if old != done and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    return done


def _build_one(source: Path, out: Path, modules: Path, pip_cache: Path) -> None:
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("src"))
    if (source / "src").is_dir():  # TypeScript: compiled next to package.json, as the samples ship it
        config = out.parent / f"{source.name}.tsconfig.json"
        config.write_text(json.dumps({
            "extends": str(SOURCES / "tsconfig.json"), "include": [str(source / "src")],
            "compilerOptions": {"rootDir": str(source / "src"), "outDir": str(out), "typeRoots": [str(modules / "@types")],
                                "baseUrl": str(modules.parent), "paths": {"*": [str(modules / "*")]}}}))
        compiled = subprocess.run([str(modules / ".bin" / "tsc"), "-p", str(config)], capture_output=True, text=True,
                                  timeout=300)
        if not (out / "index.js").is_file():
            raise RuntimeError(f"{source.name} did not compile: {compiled.stdout[-2000:]}")
    for name in RANDOM_FILES.get(source.name, {}):
        (out / name).write_bytes(random_bytes(source.name, name))
    manifest = json.loads((source / "package.json").read_text())
    for dep in _closure(manifest.get("dependencies", {}), modules):
        shutil.copytree(modules / dep, out / "node_modules" / dep)
    requirements = source / "requirements.txt"
    if requirements.is_file():  # pip install -t __pypackages__, once for each list of requirements
        installed = pip_cache / hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
        if not installed.exists():
            subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                            "--target", str(installed), "-r", str(requirements)], check=True, timeout=600,
                           capture_output=True)
        shutil.copytree(installed, out / "__pypackages__")


def _closure(wanted: dict[str, str], modules: Path) -> list[str]:
    """The packages ``wanted`` needs at run time, theirs included (npm installs them flat)."""
    found: list[str] = []
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.append(name)
        todo += json.loads((modules / name / "package.json").read_text()).get("dependencies", {})
    return sorted(found)
