"""A Fargate task's entry point: the task definition runs this file's text with a stock AWS Lambda
Python 3.12 image's ``python3 -c``. It fetches the runner function's own code, layers and
environment (GetFunction: what ``chalice deploy`` last deployed, so never a second build out of step),
lays them out as Lambda does (/var/task, /opt), then runs ``chalicelib.runner --task <instance id>``
in this process: PID 1, which receives ECS's SIGTERM. Standard library and boto3 only (the image's):
the hub's code is not here yet. SEQHUB_CODE_DIR names a directory that already holds the code (an
image built with it; the tests' played container): then only the environment is fetched.
"""

from __future__ import annotations

import io
import os
import sys
import urllib.request
import zipfile
from typing import Any


def unzip(url: str, dest: str) -> None:
    """Extract the zip at ``url`` (a presigned S3 URL) into ``dest``: each file's mode kept, readable
    by the host's own uid and writable by no one but root."""
    with urllib.request.urlopen(url, timeout=300) as answer:
        archive = zipfile.ZipFile(io.BytesIO(answer.read()))
    for member in archive.infolist():
        path = archive.extract(member, dest)  # zipfile refuses paths outside dest
        os.chmod(path, 0o755 if member.is_dir() else ((member.external_attr >> 16) & 0o755) | 0o444)


def fetch(function: str, code: str | None = "/var/task", layers: str = "/opt", lam: Any = None) -> None:
    """The function's environment into ours, and (unless ``code`` is None) its code into ``code``
    and its layers into ``layers``."""
    if lam is None:
        import boto3

        lam = boto3.client("lambda")
    found = lam.get_function(FunctionName=function)
    if code is not None:
        unzip(found["Code"]["Location"], code)
        for layer in found["Configuration"].get("Layers", []):
            unzip(lam.get_layer_version_by_arn(Arn=layer["Arn"])["Content"]["Location"], layers)
    for name, value in found["Configuration"].get("Environment", {}).get("Variables", {}).items():
        os.environ.setdefault(name, value)


def main(argv: list[str]) -> int:
    code = os.environ.get("SEQHUB_CODE_DIR")
    fetch(os.environ["SEQHUB_RUNNER_FUNCTION"], None if code else "/var/task")
    sys.path.insert(0, code or "/var/task")
    from chalicelib.runner.__main__ import main as run

    status: int = run(argv)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
