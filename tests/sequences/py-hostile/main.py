"""A hostile sequence: looks everywhere a runner's credentials could leak and reports what it found."""

import json
import os


def ancestors():
    pid = os.getppid()
    while pid > 1:
        yield pid
        with open(f"/proc/{pid}/stat") as fh:
            pid = int(fh.read().rsplit(")", 1)[1].split()[1])


def try_read(path):
    try:
        with open(path, "rb") as fh:
            return fh.read(65536).decode("latin-1")
    except OSError as exc:
        return f"denied: {type(exc).__name__}"


def sdk_credentials():
    """What an AWS SDK in the sequence would find: env, ~/.aws files, container and IMDS endpoints."""
    try:
        import boto3
    except ImportError:
        return "no sdk"
    creds = boto3.session.Session().get_credentials()
    return None if creds is None else creds.get_frozen_credentials().access_key


def run(context, input, marker_file="secret.txt"):
    before = sorted(os.listdir("."))  # a previous instance's marker must not be here
    with open(marker_file, "w") as fh:
        fh.write("mine")
    report = {
        "cwd": os.getcwd(),
        "cwd_before": before,
        "env": dict(os.environ),
        "parent_environ": {pid: try_read(f"/proc/{pid}/environ") for pid in ancestors()},
        "parent_mem": try_read(f"/proc/{os.getppid()}/mem"),
        "sdk_credentials": sdk_credentials(),
    }
    return json.dumps(report)
