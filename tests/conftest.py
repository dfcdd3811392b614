"""Fixtures: in-process moto provisioned from infra/template.yaml, the app's settings, the API client."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from moto import mock_aws

from chalicelib import aws, config
from si import localhub

from .helpers import ROOT


@pytest.fixture
def hub_env(monkeypatch):
    """moto in this process, the template's resources, and the hub's settings (inline runner)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)  # mock_aws ignores custom endpoints
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": localhub.REGION, "AWS_REGION": localhub.REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws(config={"lambda": {"use_docker": False}}):  # no Docker here: moto only records invokes
        aws.reset()
        env = localhub.hub_environment(localhub.provision("test"), retention=60, stage="test")
        env["RUNNER_INVOKE_MODE"] = "inline"
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        yield env
    aws.reset()


@pytest.fixture
def settings(hub_env) -> config.Settings:
    return config.load()


def api_client(env: dict) -> SimpleNamespace:
    """Chalice's test HTTP client on the real app and its real config, with ``env`` on top
    (it sets the stage's environment per request, which would otherwise replace ours)."""
    from chalice.config import Config
    from chalice.test import TestHTTPClient

    import app as hub_app

    config = Config.create(chalice_stage="local", app_name="sequence-hub", project_dir=str(ROOT),
                           config_from_disk=json.loads((ROOT / ".chalice" / "config.json").read_text()),
                           environment_variables=dict(env))
    return SimpleNamespace(http=TestHTTPClient(hub_app.app, config))


@pytest.fixture
def api(hub_env):
    return api_client(hub_env)
