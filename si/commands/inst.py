"""``si inst``: inspect, read and control instances."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

import click

from .. import output, protocol, session
from ..context import Ctx, pass_ctx


@click.group("inst")
def inst() -> None:
    """Inspect, read and control instances.  Example: si inst output -"""




def _inst_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": i["id"], "status": i["status"], "sequence": i["sequence"].get("name") or i["sequence"]["id"],
             "args": json.dumps(i.get("args", [])), "created": output.age(i.get("created")),
             "exit": (i.get("terminated") or {}).get("exitcode", "")} for i in items]


@inst.command("list")
@click.option("--limit", type=click.IntRange(1, 200), default=100, show_default=True, help="Instances to show (newest first).")
@click.option("--all", "every", is_flag=True, help="Every retained instance, page after page.")
@click.option("--sequence", "sequence_id", help="Only this sequence's instances ('-': the last sequence).")
@click.option("--status", type=click.Choice(list(protocol.ACTIVE + protocol.FINAL)), help="Only instances in this status.")
@click.option("--live", is_flag=True, help="Only instances starting or running.")
@pass_ctx
def inst_list(ctx: Ctx, limit: int, every: bool, sequence_id: str | None, status: str | None, live: bool) -> None:
    """List instances, newest first (ended ones until they expire).  Example: si inst list --live"""
    sequence = session.resolve("sequence", sequence_id) if sequence_id else None
    items, more = ctx.client.listing("instances", {"limit": 200 if every else limit, "sequence": sequence,
                                                   "status": status, "live": "true" if live else None}, every)
    output.table(_inst_rows(items), [("ID", "id"), ("STATUS", "status"), ("SEQUENCE", "sequence"),
                                     ("ARGS", "args"), ("CREATED", "created"), ("EXIT", "exit")], items)
    if more:
        output.message("older instances are not shown: si inst list --all")


inst.add_command(inst_list, "ls")


@inst.command("info")
@click.argument("inst_id")
@pass_ctx
def inst_info(ctx: Ctx, inst_id: str) -> None:
    """Show an instance: status, args, appConfig, times, exit code and reason.  Example: si inst info -"""
    output.data(ctx.client.instance(session.resolve("instance", inst_id)))


@inst.command("use")
@click.argument("inst_id")
@pass_ctx
def inst_use(ctx: Ctx, inst_id: str) -> None:
    """Make an instance the session's '-'.  Example: si inst use 9c1e…"""
    session.remember("instance", ctx.client.instance(inst_id)["id"])


def _channel_command(channel: str, follow_default: bool, summary: str) -> click.Command:
    @click.argument("inst_id")
    @click.option("--follow/--no-follow", default=follow_default,
                  help=f"Keep reading until the {channel} ends (default: {'on' if follow_default else 'off'}).")
    @pass_ctx
    def command(ctx: Ctx, inst_id: str, follow: bool) -> None:
        output.copy(ctx.client.follow(session.resolve("instance", inst_id), channel, follow=follow), sys.stdout.buffer)

    command.__doc__ = summary
    return inst.command(channel)(command)


_channel_command("output", True, "Print an instance's output, following until it ends.  Example: si inst output -")
_channel_command("stdout", False, "Print an instance's stdout (--follow to keep reading).  Example: si inst stdout - --follow")
_channel_command("stderr", False, "Print an instance's stderr (--follow to keep reading).  Example: si inst stderr -")
_channel_command("log", False, "Print an instance's log, JSON lines (--follow to keep reading).  Example: si inst log -")


def _stream_until_end(ctx: Ctx, inst_id: str, channels: list[tuple[str, Any]],
                      errors: list[BaseException] | None = None) -> None:
    """Follow several channels at once, each into its sink, until all have ended or one of them
    (or whatever else reports into ``errors``) fails."""
    failed: list[BaseException] = errors if errors is not None else []

    def pump(channel: str, sink: IO[bytes]) -> None:
        try:
            output.copy(ctx.client.follow(inst_id, channel), sink)
        except BaseException as exc:  # reported below, in the main thread
            failed.append(exc)

    threads = [threading.Thread(target=pump, args=pair, daemon=True) for pair in channels]
    for t in threads:
        t.start()
    while not failed and (running := [t for t in threads if t.is_alive()]):
        running[0].join(0.1)  # a short wait: an error elsewhere is noticed at once
    if failed:
        raise failed[0]


FINAL = protocol.FINAL


def _wait_for_end(ctx: Ctx, inst_id: str) -> dict[str, Any]:
    """The instance's info once it has ended (its channels can end before its status does)."""
    info = ctx.client.instance(inst_id)
    while info["status"] not in FINAL:
        time.sleep(0.5)
        info = ctx.client.instance(inst_id)
    return info


def attach_until_end(ctx: Ctx, inst_id: str) -> int:
    """Stream output to stdout and stderr to stderr until both end; return the instance's exit code."""
    _stream_until_end(ctx, inst_id, [("output", sys.stdout.buffer), ("stderr", sys.stderr.buffer)])
    info = _wait_for_end(ctx, inst_id)
    terminated = info.get("terminated") or {}
    code = terminated.get("exitcode")
    if info["status"] == "errored":
        output.message(f"instance {inst_id} errored: {terminated.get('reason')}")
        return code if isinstance(code, int) and 0 < code < 256 else 1
    return 0 if code in (0, None) else (code if 0 < code < 256 else 1)


@inst.command("attach")
@click.argument("inst_id")
@pass_ctx
def inst_attach(ctx: Ctx, inst_id: str) -> None:
    """Connect your terminal to the instance: stdin to its stdin, its stdout and stderr to yours.  Example: si inst attach -"""
    inst_id = session.resolve("instance", inst_id)

    errors: list[BaseException] = []

    def feed() -> None:
        try:
            for line in iter(sys.stdin.buffer.readline, b""):
                ctx.client.send_input(inst_id, "stdin", line, "application/octet-stream", end=False)
            ctx.client.send_input(inst_id, "stdin", b"", "application/octet-stream", end=True)
        except BaseException as exc:  # a refused stdin ends the attach with the hub's answer
            errors.append(exc)

    threading.Thread(target=feed, daemon=True).start()
    _stream_until_end(ctx, inst_id, [("stdout", sys.stdout.buffer), ("stderr", sys.stderr.buffer)], errors)


@inst.command("restart")
@click.argument("inst_id")
@pass_ctx
def inst_restart(ctx: Ctx, inst_id: str) -> None:
    """Kill an instance and start its sequence again with the same arguments, appConfig and topics.  Example: si inst restart -"""
    old = ctx.client.instance(session.resolve("instance", inst_id))
    if old["status"] not in FINAL:
        ctx.client.kill(old["id"])
        _wait_for_end(ctx, old["id"])
    result = ctx.client.start(old["sequence"]["id"], old.get("args", []), old.get("appConfig") or None,
                              output_topic=old.get("provides"), input_topic=old.get("requires"), engine=old.get("engine"))
    session.remember("instance", result["id"])
    output.data({"killed": old["id"], "_id": result["id"], "id": result["id"]}, pretty=result["id"])


@inst.command("kill")
@click.argument("inst_id")
@pass_ctx
def inst_kill(ctx: Ctx, inst_id: str) -> None:
    """Kill an instance at once.  Example: si inst kill -"""
    inst_id = session.resolve("instance", inst_id)
    result = ctx.client.kill(inst_id)
    session.forget("instance", inst_id)
    output.data(result, pretty=f"{inst_id} {result['status']}")


@inst.command("stop")
@click.argument("inst_id")
@click.argument("timeout", type=int)
@click.option("--keep-alive/--no-keep-alive", "can_keep_alive", default=True, show_default=True,
              help="Whether the sequence may keep itself running by calling keepAlive in its stop handler "
                   "(Scramjet's canCallKeepalive; its si always allows it).")
@pass_ctx
def inst_stop(ctx: Ctx, inst_id: str, timeout: int, can_keep_alive: bool) -> None:
    """Ask an instance to stop: its stop handlers run, then it ends after TIMEOUT ms unless it called
    keepAlive (ask again to stop it then).  Example: si inst stop - 5000 --no-keep-alive"""
    result = ctx.client.stop(session.resolve("instance", inst_id), timeout, can_keep_alive)
    output.data(result, pretty=f"{result['id']} {result['status']}")


@inst.command("health")
@click.argument("inst_id")
@pass_ctx
def inst_health(ctx: Ctx, inst_id: str) -> None:
    """Show the sequence's health check result.  Example: si inst health -"""
    output.data(ctx.client.health(session.resolve("instance", inst_id)))


def _read_source(file: Path | None) -> bytes:
    return file.read_bytes() if file is not None else sys.stdin.buffer.read()


@inst.command("input")
@click.argument("inst_id")
@click.argument("file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-t", "--content-type", default="text/plain",
              type=click.Choice(protocol.CONTENT_TYPES))
@click.option("-e", "--end", is_flag=True, help="End the input after this data.")
@pass_ctx
def inst_input(ctx: Ctx, inst_id: str, file: Path | None, content_type: str, end: bool) -> None:
    """Send data (a file, or stdin) to an instance's input.  Example: echo Alice | si inst input - --end"""
    ctx.client.send_input(session.resolve("instance", inst_id), "input", _read_source(file), content_type, end)


@inst.command("stdin")
@click.argument("inst_id")
@click.argument("file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("-e/-E", "--end/--no-end", default=True, help="End stdin after this data (default: end).")
@pass_ctx
def inst_stdin(ctx: Ctx, inst_id: str, file: Path | None, end: bool) -> None:
    """Send data (a file, or stdin) to an instance's process stdin.  Example: si inst stdin - notes.txt"""
    ctx.client.send_input(session.resolve("instance", inst_id), "stdin", _read_source(file),
                          "application/octet-stream", end)


@inst.group("event")
def inst_event() -> None:
    """Send events to an instance and read the events it emits.  Example: si inst event emit - ping hi"""


@inst_event.command("emit")
@click.argument("inst_id")
@click.argument("name")
@click.argument("payload", required=False, default="")
@pass_ctx
def event_emit(ctx: Ctx, inst_id: str, name: str, payload: str) -> None:
    """Send event NAME with PAYLOAD (a string) to an instance.  Example: si inst event emit - test-event foo"""
    output.data(ctx.client.emit(session.resolve("instance", inst_id), name, payload), pretty="sent")


@inst_event.command("on")
@click.argument("inst_id")
@click.argument("name")
@click.option("-n", "--next", "next_only", is_flag=True, help="Wait for the next event, not the last one.")
@pass_ctx
def event_on(ctx: Ctx, inst_id: str, name: str, next_only: bool) -> None:
    """Print the last NAME event the instance emitted (waiting for one).  Example: si inst event on - test-response"""
    output.data(ctx.client.event(session.resolve("instance", inst_id), name, next_only=next_only))
