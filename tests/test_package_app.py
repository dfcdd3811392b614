"""`chalice package` (what `chalice deploy` builds) for the dev stage: the Lambda runtime, the
per-function least-privilege roles, and a deployment zip without development dependencies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from .helpers import ROOT


def test_chalice_package_builds_the_stage(tmp_path):
    from infra import policies

    policies.write("dev")  # what `make deploy`'s env step generates (with the stack's exact names)
    env = {**os.environ, "AWS_DEFAULT_REGION": "us-east-1"}
    result = subprocess.run([str(Path(sys.executable).parent / "chalice"), "package", "--stage", "dev", str(tmp_path)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    template = json.loads((tmp_path / "sam.json").read_text())
    functions = {k: v["Properties"] for k, v in template["Resources"].items() if v["Type"] == "AWS::Serverless::Function"}
    assert set(functions) == {"APIHandler", "Runner", "Cleanup", "Sweeper", "Wiring"}
    assert {f["Runtime"] for f in functions.values()} == {"python3.12"}
    assert functions["Runner"]["Timeout"] == 900
    for name, policy_file in (("Runner", "policy-dev-runner.json"), ("Cleanup", "policy-dev-cleanup.json"),
                              ("Sweeper", "policy-dev-sweeper.json"), ("Wiring", "policy-dev-wiring.json"),
                              ("APIHandler", "policy-dev.json")):
        role = functions[name]["Role"]["Fn::GetAtt"][0]
        document = template["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"]
        assert document == json.loads((ROOT / ".chalice" / policy_file).read_text())
    with zipfile.ZipFile(tmp_path / "deployment.zip") as zf:
        names = zf.namelist()
    assert "chalicelib/runner/hosts/node_host.js" in names and "chalicelib/console/app.js" in names
    assert any(n.startswith("scramjet/") for n in names) and any(n.startswith("aws_lambda_powertools/") for n in names)
    assert not [n for n in names if n.split("/")[0] in ("moto", "click", "rich", "pytest", "si", "tests", "infra")]
