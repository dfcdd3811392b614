"""infra/template.yaml deployed into moto: every resource there, configured as ops expect."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from chalicelib import aws

from .helpers import ROOT


def test_template_passes_cfn_lint():
    result = subprocess.run([str(Path(sys.executable).parent / "cfn-lint"), str(ROOT / "infra" / "template.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_template_resources_in_moto(hub_env):
    bucket = hub_env["SEQHUB_BUCKET"]
    s3 = aws.client("s3")
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    # moto's CloudFormation does not apply a bucket's public access block: check the template says so…
    from cfnlint.decode import cfn_yaml

    template = cfn_yaml.load(str(ROOT / "infra" / "template.yaml"))
    block = template["Resources"]["Bucket"]["Properties"]["PublicAccessBlockConfiguration"]
    assert set(block) == {"BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"}
    assert all(block.values())
    # …nor its lifecycle rules (and moto never expires objects anyway).
    lifecycle = {r["Id"]: r for r in template["Resources"]["Bucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert lifecycle["expire-uncommitted-uploads"]["Prefix"] == "uploads/"
    assert lifecycle["expire-input-chunks"]["Prefix"] == "inputs/"

    ddb = aws.client("dynamodb")
    table = ddb.describe_table(TableName=hub_env["SEQHUB_TABLE"])["Table"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "KEYS_ONLY"}
    assert [k["AttributeName"] for k in table["KeySchema"]] == ["pk", "sk"]
    indexes = {i["IndexName"]: i for i in table["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"listing"}
    assert all(i["Projection"]["ProjectionType"] == "KEYS_ONLY" for i in indexes.values())
    ttl = ddb.describe_time_to_live(TableName=hub_env["SEQHUB_TABLE"])["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    table_props = template["Resources"]["Table"]["Properties"]  # moto ignores PITR in templates
    assert table_props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}

    groups = aws.client("logs").describe_log_groups(logGroupNamePrefix=hub_env["SEQHUB_LOG_GROUP"])["logGroups"]
    assert groups[0]["logGroupName"] == "/sequence-hub/test/instances" and groups[0]["retentionInDays"] == 1
