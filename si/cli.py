"""``si``: the Sequence Hub command line, shaped like Scramjet's ``si``.

Each command group lives in a module of its own (``si/commands``), imported only when a command of
it runs (or help lists it), so a command pays only for what it uses.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from typing import NoReturn

import click

from .errors import SiError

# name -> (module, attribute); "sequence" and "instance" are Scramjet's long names.
GROUPS = {"seq": ("seq", "seq"), "sequence": ("seq", "seq"), "inst": ("inst", "inst"),
          "instance": ("inst", "inst"), "topic": ("topic", "topic"), "hub": ("hub", "hub"),
          "config": ("config", "config")}
# What `si --help` lists for each group, so listing them imports none: each is the first sentence
# of the group's docstring (tests/test_si_startup.py checks they agree).
SUMMARIES = {"seq": "Pack, send, start and manage sequences.", "inst": "Inspect, read and control instances.",
             "topic": "Write to, read from and manage topics.",
             "hub": "Run the embedded hub, or ask a hub about itself.",
             "config": "Show and change the client configuration and profiles."}


class LazyGroup(click.Group):
    """click's lazily loading group (its documentation's pattern): subcommands by name, imported on use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *GROUPS])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUMMARIES[GROUPS[name][0]]) if name in GROUPS else
                (name, self.commands[name].get_short_help_str(formatter.width - 6 - len(name)))
                for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in GROUPS:
            module, attr = GROUPS[cmd_name]
            command: click.Command = getattr(importlib.import_module(f"si.commands.{module}"), attr)
            return command
        return super().get_command(ctx, cmd_name)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from .protocol import VERSION

        click.echo(f"SI version: {VERSION}")
        ctx.exit()


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--format", "fmt", type=click.Choice(["pretty", "json"]), default=None,
              help="Output format (default: the profile's, usually pretty).")
@click.option("--api-url", default=None, help="Hub API URL for this command (default: SI_API_URL, "
              "the profile's apiUrl, or http://127.0.0.1:8000/api/v1).")
@click.option("-v", "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the version and exit.")
@click.pass_context
def cli(ctx: click.Context, fmt: str | None, api_url: str | None) -> None:
    """Run Scramjet-style sequences on Sequence Hub.

    \b
    Example:
      si seq pack examples/counter-js && si seq send - && si seq start - 3000 10 && si inst output -
    """
    from . import output, profiles
    from .context import Ctx

    output.set_format(fmt or profiles.load().get("format", "pretty"))
    ctx.obj = Ctx(api_url)


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh"]))
def completion(shell: str) -> None:
    """Print the shell completion script.  Example: eval "$(si completion bash)" in ~/.bashrc"""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)
    assert completer is not None  # click has one for each choice above
    click.echo(completer(cli, {}, "si", "_SI_COMPLETE").source())


# The helps si/entry.py says without importing click: si's own and those of its groups whose
# commands are fixed (the hub group's come from whatever server is installed).
WRITTEN_HELP = ("", "seq", "sequence", "inst", "instance", "topic", "config")


def render_help(path: str) -> str:
    """What ``si PATH --help`` prints (``""`` for si's own) on a terminal as wide as si/entry.py expects."""
    from .entry import HELP_COLUMNS

    # click wraps to min(columns, 80) - 2 (its HelpFormatter); a context's terminal_width is that width.
    # (A context made as click's make_context makes it, short of parsing.)
    ctx = click.Context(cli, info_name="si", terminal_width=min(HELP_COLUMNS, 80) - 2, **cli.context_settings)
    for name in path.split():
        command = ctx.command.get_command(ctx, name)  # type: ignore[attr-defined]
        if command is None:
            raise ValueError(f"si has no command {path!r}")
        ctx = click.Context(command, info_name=name, parent=ctx, **command.context_settings)
    return ctx.get_help() + "\n"


def write_help_texts() -> None:
    """Write si/help_texts.py (``make si-help``): each written help, a line per source line; a
    group's long name (Scramjet's ``sequence``, ``instance``) as its short one's but for its usage."""
    entries: list[str] = []
    aliases: list[str] = []
    written: dict[str, str] = {}  # a help but for its usage line -> the path written with it
    for path in WRITTEN_HELP:
        text = render_help(path)
        usage, rest = text.split("\n", 1)
        if rest in written:
            aliases.append(f"TEXTS[{path!r}] = {usage + chr(10)!r} + TEXTS[{written[rest]!r}].split('\\n', 1)[1]\n")
            continue
        written[rest] = path
        lines = "\n".join(f"        {line!r}" for line in text.splitlines(keepends=True))
        entries.append(f"    {path!r}: (\n{lines}\n    ),\n")
    source = ('"""Help texts of ``si`` and its fixed groups as click renders them: written by ``make si-help``\n'
              'from si/cli.py, not by hand (tests/test_si_startup.py checks them against click)."""\n\n'
              f"TEXTS = {{\n{''.join(entries)}}}\n{''.join(aliases)}")
    with open(os.path.join(os.path.dirname(__file__), "help_texts.py"), "w", encoding="utf-8") as file:
        file.write(source)


def main() -> None:
    _leave(_run())


def _run() -> int:
    """Run the command line; its exit code (errors said in one line on stderr)."""
    try:
        cli.main(prog_name="si", standalone_mode=False)  # `python -m si` too: the command users type
    except SiError as exc:
        click.secho(f"Error: {exc.message}", err=True, fg="red")
        return 1
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.Abort:
        click.echo("Aborted.", err=True)
        return 1
    except click.ClickException as exc:
        click.secho(f"Error: {exc.format_message()}", err=True, fg="red")
        return 1
    except BrokenPipeError:
        return 1
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # a command's own exit code (the instance's, for si seq deploy --wait)
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        click.echo(exc.code, err=True)
        return 1
    return 0


def _leave(code: int) -> NoReturn:
    """Exit with ``code``; when nothing else runs in this process, without the interpreter's
    teardown. Freeing click's, http.client's and si's modules takes ~10 ms, an eighth of a
    ``si seq start``, and does nothing a flush does not: si has no exit handlers, and what it
    writes to files is closed by then."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader left (si inst output - | head)
        os._exit(code or 1)
    if threading.active_count() == 1:
        os._exit(code)
    sys.exit(code)
