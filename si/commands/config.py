"""``si config``: the client's settings and profiles."""

from __future__ import annotations

import click

from .. import output, profiles
from ..errors import SiError


@click.group("config")
def config() -> None:
    """Show and change the client configuration and profiles.  Example: si config set apiUrl http://127.0.0.1:8000/api/v1"""


@config.command("print")
def config_print() -> None:
    """Show the current profile's settings.  Example: si config print"""
    data = profiles.load()
    data["profile"] = profiles.current_name()
    data["effectiveApiUrl"] = profiles.api_url()
    output.data(data)


@config.command("set")
@click.argument("key", type=click.Choice(["apiUrl", "token", "format", "auth", "awsProfile", "awsRegion"]))
@click.argument("value")
def config_set(key: str, value: str) -> None:
    """Set one setting of the current profile.  Example: si config set format json"""
    if key == "apiUrl" and not value.startswith(("http://", "https://")):
        raise SiError("apiUrl must be an http(s) URL, e.g. http://127.0.0.1:8000/api/v1")
    if key == "format" and value not in ("pretty", "json"):
        raise SiError("format must be pretty or json")
    if key == "auth" and value not in ("", "iam", "token"):
        raise SiError("auth must be iam (AWS SigV4), token, or empty (SigV4 for AWS URLs, else the token)")
    data = profiles.load()
    data[key] = value
    profiles.save(data)


@config.command("reset")
@click.argument("key", required=False, default="all")
def config_reset(key: str) -> None:
    """Reset one setting (or all) of the current profile to its default.  Example: si config reset apiUrl"""
    data = profiles.load()
    if key == "all":
        data = dict(profiles.DEFAULTS)
    elif key in profiles.DEFAULTS:
        data[key] = profiles.DEFAULTS[key]
    else:
        raise SiError(f"unknown setting {key}; settings: {', '.join(profiles.DEFAULTS)}")
    profiles.save(data)


@config.group("profile")
def profile() -> None:
    """Manage configuration profiles.  Example: si config profile create aws-prod"""


@profile.command("list")
def profile_list() -> None:
    """List profiles; * marks the current one.  Example: si config profile list"""
    current = profiles.current_name()
    names = profiles.names()
    output.data({"current": current, "profiles": names},
                pretty="\n".join(("* " if n == current else "  ") + n for n in names))


@profile.command("create")
@click.argument("name")
def profile_create(name: str) -> None:
    """Create a profile with default settings.  Example: si config profile create staging"""
    profiles.create(name)


@profile.command("use")
@click.argument("name")
def profile_use(name: str) -> None:
    """Switch to a profile.  Example: si config profile use staging"""
    profiles.use(name)


@profile.command("remove")
@click.argument("name")
def profile_remove(name: str) -> None:
    """Remove a profile.  Example: si config profile remove staging"""
    profiles.remove(name)
