"""``si hub start``: the embedded hub's command. It comes with the server, and the client finds it
through the ``sequence_hub.cli`` entry point, so installing the client alone installs none of this."""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import socket
import sys

import click

from .hub import CannotStart, LocalHub

# scheme://host[:port], as browsers send Origin: no wildcard, path or trailing slash.
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:]+\](:[0-9]{1,5})?")


@click.command("start")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--retention", default=3600, show_default=True, type=click.IntRange(min=0),
              help="Seconds an ended instance stays readable.")
@click.option("--no-sandbox", is_flag=True,
              help="Run instances without isolation: each runs as you, with the network, and can read and "
                   "change your files and the hub's storage. Only for sequences you trust. Loopback only.")
@click.option("--allow-origin", "allow_origins", multiple=True, metavar="ORIGIN",
              help="Let web pages of this origin (e.g. http://localhost:3000) use the hub; repeatable. "
                   "Every other page is refused.")
def start(host: str, port: int, retention: int, no_sandbox: bool, allow_origins: tuple[str, ...]) -> None:
    """Run the whole hub on this machine (moto, the API, local runners) until Ctrl-C.  Example: si hub start --port 8000"""
    for origin in allow_origins:
        if not _ORIGIN.fullmatch(origin):
            raise click.BadParameter(f"{origin!r} is not an origin like http://localhost:3000 (no '*', no path)",
                                     param_hint="--allow-origin")
    # A prefix: a token that began with "-" would read as an option to `si config set token`.
    token = "" if _is_loopback(host) else "shub_" + secrets.token_urlsafe(24)
    hub = LocalHub(host=host, port=port, retention=retention, token=token, sandbox=not no_sandbox,
                   allow_origins=allow_origins)

    def announce(url: str) -> None:
        click.echo(f"Sequence Hub is running at {url} (retention {retention}s). Ctrl-C to stop.", err=True)
        if hub.not_isolated:
            click.echo(f"Warning: instances are not isolated from each other or from this hub "
                       f"({hub.not_isolated}). Run only sequences you trust.", err=True)
        if token:
            # Printed once: anyone who can reach this address needs it.
            click.echo(f"Listening beyond this machine: clients need this token (si config set token …):\n{token}", err=True)

    try:
        hub.run_forever(announce)
    except CannotStart as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Stopped: runners ended, moto gone. A request thread still inside a long poll would hold the
    # interpreter's exit (concurrent.futures joins its workers) for as long as that poll lasts, and
    # nothing it could still do matters: leave now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False
