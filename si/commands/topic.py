"""``si topic``: write to, read from and manage topics."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import cast

import click

from .. import output, protocol
from ..context import Ctx, F, pass_ctx

# text/plain first: the default of Scramjet's CLI (0.26) for `topic send`, and right for any text.
TOPIC_TYPES = list(protocol.CONTENT_TYPES)
TOPIC_PIECE_BYTES = protocol.MAX_WRITE_BYTES  # one write to a topic: what the hub takes per request


@click.group("topic")
def topic() -> None:
    """Write to, read from and manage topics.  Example: si topic get names"""


def _content_type_option(func: F) -> F:
    return click.option("-t", "--content-type", default=TOPIC_TYPES[0], show_default=True,
                        type=click.Choice(TOPIC_TYPES), help="The topic's type (fixed by its first writer).")(func)


@topic.command("send")
@click.argument("name")
@click.argument("file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_content_type_option
@pass_ctx
def topic_send(ctx: Ctx, name: str, file: Path | None, content_type: str) -> None:
    """Send a file, or stdin as it comes, to a topic.  Example: si topic send names names.txt -t text/plain"""
    # stdin's binary side is a BufferedReader too, whatever typeshed calls it.
    source = file.open("rb") if file is not None else cast(io.BufferedReader, sys.stdin.buffer)
    sent = False
    with source:
        # read1: what is there now, so a pipe (tail -f) reaches the topic as it flows.
        while piece := source.read1(TOPIC_PIECE_BYTES):
            ctx.client.send_topic(name, piece, content_type)
            sent = True
    if not sent:  # nothing to send still makes the topic, with its type
        ctx.client.send_topic(name, b"", content_type)


@topic.command("get")
@click.argument("name")
@click.option("--follow/--no-follow", default=True, help="Keep reading new data (default) or stop at the end.")
@click.option("-t", "--content-type", type=click.Choice(TOPIC_TYPES), hidden=True)  # as Scramjet's CLI takes it
@pass_ctx
def topic_get(ctx: Ctx, name: str, follow: bool, content_type: str | None) -> None:
    """Print a topic from where its retained data begins, following new data.  Example: si topic get names"""
    output.copy(ctx.client.follow_topic(name, follow=follow), sys.stdout.buffer)


@topic.command("ls")
@pass_ctx
def topic_ls(ctx: Ctx) -> None:
    """List the topics.  Example: si topic ls"""
    found = ctx.client.topics()
    output.table([{"name": t["topicName"], "type": t["contentType"]} for t in found],
                 [("NAME", "name"), ("CONTENT TYPE", "type")], found)


topic.add_command(topic_ls, "list")


@topic.command("create")
@click.argument("name")
@_content_type_option
@pass_ctx
def topic_create(ctx: Ctx, name: str, content_type: str) -> None:
    """Create an empty topic of a type.  Example: si topic create names -t text/plain"""
    output.data(ctx.client.create_topic(name, content_type), pretty=f"topic {name} created")


@topic.command("rm")
@click.argument("name")
@pass_ctx
def topic_rm(ctx: Ctx, name: str) -> None:
    """Remove a topic and its data.  Example: si topic rm names"""
    output.data(ctx.client.delete_topic(name), pretty=f"topic {name} removed")


topic.add_command(topic_rm, "delete")
