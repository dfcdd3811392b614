"""Client and server are two installable parts (#18): the client, built and installed alone into a
fresh environment, brings none of the server's dependencies, packs with the server's own manifest
rules, talks to a hub, and says where the embedded hub comes from."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from .helpers import EXAMPLES

ROOT = Path(__file__).resolve().parent.parent
SERVER_ONLY = {"chalice", "moto", "boto3", "botocore", "aws-lambda-powertools", "uvicorn", "h11",
               "scramjet-framework-py", "sequence-hub"}


def test_the_clients_protocol_is_the_servers():
    """One protocol package: the client's is the server's, not a copy that could drift."""
    assert (ROOT / "si" / "protocol").resolve() == (ROOT / "chalicelib" / "protocol").resolve()
    import chalicelib.protocol.manifest
    import si.protocol.manifest

    assert Path(si.protocol.manifest.__file__).resolve() == Path(chalicelib.protocol.manifest.__file__).resolve()


def test_the_protocol_imports_nothing_of_the_server():
    probe = ("import sys, si.protocol.manifest, si.protocol.strictjson, chalicelib.protocol.manifest\n"
             "print([m for m in sys.modules if m.split('.')[0] in "
             "('boto3', 'botocore', 'chalice', 'aws_lambda_powertools', 'requests', 'rich')"
             " or m.startswith('chalicelib.') and not m.startswith('chalicelib.protocol')])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.fixture(scope="module")
def client_alone(tmp_path_factory) -> Path:
    """The client's wheel, installed with pip (its dependencies from the package index) into a new venv."""
    tmp = tmp_path_factory.mktemp("client-alone")
    # Built from a copy, as from an sdist (pip builds in the source tree, which must stay clean); the
    # copy holds the protocol's files where the checkout has its link.
    source = shutil.copytree(ROOT / "si", tmp / "si", ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp / "dist"), str(source)],
                   check=True, capture_output=True)
    wheel = next((tmp / "dist").glob("sequence_hub_cli-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    # The link in the checkout is real files in the wheel.
    assert {"si/protocol/__init__.py", "si/protocol/manifest.py", "si/protocol/strictjson.py", "si/cli.py"} <= names
    assert not any(n.startswith(("chalicelib/", "app.py")) for n in names)
    venv.create(tmp / "venv", with_pip=True)
    subprocess.run([tmp / "venv" / "bin" / "pip", "install", "--quiet", str(wheel)], check=True, capture_output=True)
    return tmp / "venv" / "bin"


def test_installing_the_client_installs_no_server_dependency(client_alone):
    listed = subprocess.run([client_alone / "pip", "list", "--format", "json"], capture_output=True, text=True, check=True)
    installed = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert "sequence-hub-cli" in installed and {"click", "rich"} <= installed
    assert "requests" not in installed  # si speaks HTTP with the standard library (si/transport.py)
    assert not installed & SERVER_ONLY


def test_the_clients_aws_extra_signs_with_botocore_alone(client_alone, tmp_path):
    """For a hub on AWS the client signs its requests (SigV4); the extra brings botocore, not boto3."""
    wheel = next((client_alone.parent.parent / "dist").glob("sequence_hub_cli-*.whl"))
    subprocess.run([client_alone / "pip", "install", "--quiet", f"{wheel}[aws]"], check=True, capture_output=True)
    probe = ("from si.client import SigV4\n"
             "url = 'https://abc.execute-api.eu-west-1.amazonaws.com/api/api/v1/version'\n"
             "print(SigV4().sign('GET', url, b'', {})['Authorization'])")
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret", "PATH": "/usr/bin:/bin",
           "AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none")}
    signed = subprocess.run([client_alone / "python", "-c", probe], capture_output=True, text=True, env=env, check=True)
    assert signed.stdout.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/") and "/eu-west-1/execute-api/" in signed.stdout
    listed = subprocess.run([client_alone / "pip", "list", "--format", "json"], capture_output=True, text=True, check=True)
    assert "boto3" not in {p["name"].lower() for p in json.loads(listed.stdout)}


def test_the_client_alone_packs_talks_to_a_hub_and_points_to_the_embedded_hub(client_alone, hub, tmp_path):
    si = [str(client_alone / "si")]
    env = {"SI_CONFIG_PATH": str(tmp_path / "si-home"), "PATH": "/usr/bin:/bin"}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*si, *args], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60)
        assert not check or done.returncode == 0, done.stderr
        return done

    assert run("--version").stdout.strip() == "SI version: 0.1.0"
    run("seq", "pack", str(EXAMPLES / "counter-py"), "-o", str(tmp_path / "p.tar.gz"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "package.json").write_text(json.dumps({"main": "index", "engines": {"a": "1", "b": "2"}}))
    refused = run("seq", "pack", str(bad), check=False)
    assert refused.returncode == 1 and "'engines' field can't contain more than one element" in refused.stderr
    sent = json.loads(run("--api-url", hub["url"], "--format", "json", "seq", "send", str(tmp_path / "p.tar.gz")).stdout)
    listed = json.loads(run("--api-url", hub["url"], "--format", "json", "seq", "list").stdout)
    assert sent["id"] in {s["id"] for s in listed}
    missing = run("hub", "start", "--port", "1", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        "Error: the embedded hub comes with the server: in a checkout of Sequence Hub, `make demo` "
        "or `pip install -e './si' -e '.[local]'` installs it"]
