"""``si hub``: ask a hub about itself, or run the embedded hub (``si hub start``, which comes with
the server: the client finds it through the ``sequence_hub.cli`` entry point)."""

from __future__ import annotations

import click

from .. import output
from ..context import Ctx, pass_ctx
from ..errors import SiError

PLUGINS = "sequence_hub.cli"  # entry points the server adds to si: "hub.start"


class HubGroup(click.Group):
    """``start`` is the server's command when the server is installed, else one that says how to get it."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), "start"])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name != "start":
            return super().get_command(ctx, cmd_name)
        from importlib.metadata import entry_points

        for entry in entry_points(group=PLUGINS, name="hub.start"):
            command: click.Command = entry.load()
            return command
        return _start_missing


@click.command("start", add_help_option=False, context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
def _start_missing() -> None:
    """Run the whole hub on this machine (comes with the server, which is not installed)."""
    raise SiError("the embedded hub comes with the server: in a checkout of Sequence Hub, `make demo` "
                  "or `pip install -e './si' -e '.[local]'` installs it")


@click.group("hub", cls=HubGroup)
def hub() -> None:
    """Run the embedded hub, or ask a hub about itself.  Example: si hub start"""


@hub.command("version")
@pass_ctx
def hub_version(ctx: Ctx) -> None:
    """Show the hub's service name and version.  Example: si hub version"""
    found = ctx.client.version()
    output.data(found, pretty=f"{found['service']} {found['version']} ({ctx.client.api_url})")
