"""What every ``si`` command shares: the hub client (made on first use) and argument parsing."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from . import profiles
from .errors import SiError

if TYPE_CHECKING:
    from .client import Client


class Ctx:
    def __init__(self, api_url: str | None):
        self._api_url = api_url
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            from .client import Client  # requests and its imports: only for commands that talk to a hub

            profile = profiles.load()
            self._client = Client(self._api_url or profiles.api_url(), token=profile.get("token", ""),
                                  auth=profile.get("auth", ""), aws_profile=profile.get("awsProfile", ""),
                                  aws_region=profile.get("awsRegion", ""))
        return self._client


pass_ctx = click.make_pass_decorator(Ctx)
# A command's function, as decorators that add options take and give it.
F = TypeVar("F", bound=Callable[..., Any])


def parse_positional(values: tuple[str, ...]) -> list[Any]:
    """Positional start arguments: JSON numbers, booleans and null become values, all else strings."""
    out: list[Any] = []
    for raw in values:
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        out.append(value if value is None or isinstance(value, (bool, int, float)) else raw)
    return out


def json_option(raw: str, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise SiError(f"{what} is not valid JSON: {exc}") from None
