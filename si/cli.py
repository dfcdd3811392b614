"""``si``: the Sequence Hub command line, shaped like Scramjet's ``si``."""

from __future__ import annotations

import io
import ipaddress
import json
import secrets
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import click

from . import __version__, output, profiles, session
from .client import Client
from .errors import SiError
from .packing import DIRECT_UPLOAD_LIMIT, pack


class Ctx:
    def __init__(self, api_url: str | None):
        self._api_url = api_url
        self._client: Client | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            profile = profiles.load()
            self._client = Client(self._api_url or profiles.api_url(), token=profile.get("token", ""),
                                  auth=profile.get("auth", ""), aws_profile=profile.get("awsProfile", ""),
                                  aws_region=profile.get("awsRegion", ""))
        return self._client


pass_ctx = click.make_pass_decorator(Ctx)


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


def _json_option(raw: str, what: str) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise SiError(f"{what} is not valid JSON: {exc}") from None


# -- root -----------------------------------------------------------------------------------------
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--format", "fmt", type=click.Choice(["pretty", "json"]), default=None,
              help="Output format (default: the profile's, usually pretty).")
@click.option("--api-url", default=None, help="Hub API URL for this command (default: SI_API_URL, "
              "the profile's apiUrl, or http://127.0.0.1:8000/api/v1).")
@click.version_option(__version__, "-v", "--version", message="SI version: %(version)s")
@click.pass_context
def cli(ctx: click.Context, fmt: str | None, api_url: str | None) -> None:
    """Run Scramjet-style sequences on Sequence Hub.

    \b
    Example:
      si seq pack examples/counter-js && si seq send - && si seq start - 3000 10 && si inst output -
    """
    output.set_format(fmt or profiles.load().get("format", "pretty"))
    ctx.obj = Ctx(api_url)


# -- sequences ------------------------------------------------------------------------------------
@cli.group("seq")
def seq() -> None:
    """Pack, send, start and manage sequences.  Example: si seq deploy examples/counter-py 1 3"""


cli.add_command(seq, "sequence")


def _pack_to(source: Path, out_path: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=out_path.parent, prefix=".si-pack-", delete=False) as tmp:
        try:
            result = pack(source, tmp, exclude=out_path.resolve(), progress=output.progress)
        except BaseException:
            Path(tmp.name).unlink(missing_ok=True)
            raise
    Path(tmp.name).replace(out_path)
    size = out_path.stat().st_size
    for warning in result.warnings:
        output.message(f"warning: {warning}")
    if size > DIRECT_UPLOAD_LIMIT:
        output.message(f"note: the package is {size} bytes, over the {DIRECT_UPLOAD_LIMIT}-byte direct "
                       "upload limit; si seq send will upload it through S3")
    output.message(f"packed {len(result.files)} files from {source} into {out_path} ({size} bytes)")


@seq.command("pack")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the package (default: <directory>.tar.gz beside it).")
@click.option("-c", "--stdout", "to_stdout", is_flag=True, help="Write the package to stdout.")
def seq_pack(directory: Path, out: Path | None, to_stdout: bool) -> None:
    """Pack a sequence directory into a tar.gz.  Example: si seq pack examples/counter-js"""
    if not directory.is_dir():
        raise SiError(f"{directory} is not a directory")
    if to_stdout:
        buf = io.BytesIO()
        result = pack(directory, buf)
        for warning in result.warnings:
            output.message(f"warning: {warning}")
        sys.stdout.buffer.write(buf.getvalue())
        return
    out_path = out or Path(str(directory.resolve()) + ".tar.gz")
    _pack_to(directory, out_path)
    session.remember("package", str(out_path.resolve()))
    output.data({"path": str(out_path)}, pretty=str(out_path))


def _send(ctx: Ctx, package: str) -> str:
    path = Path(session.resolve("package", package))
    if path.is_dir():
        out_path = Path(str(path.resolve()) + ".tar.gz")
        _pack_to(path, out_path)
        session.remember("package", str(out_path))
        path = out_path
    if not path.is_file():
        raise SiError(f"{path} not found: give a package (.tar.gz) or a sequence directory")
    size = path.stat().st_size
    with path.open("rb") as fh, output.progress(size, f"sending {path.name}") as advance:
        reader = output.ProgressReader(fh, size, advance)
        if size > DIRECT_UPLOAD_LIMIT:  # API Gateway + Lambda take ~4.5 MB: larger goes through S3
            result = ctx.client.send_large(reader, size)
        else:
            result = ctx.client.send_sequence(reader)
    session.remember("sequence", result["id"])
    return result["id"]


@seq.command("send")
@click.argument("package")
@pass_ctx
def seq_send(ctx: Ctx, package: str) -> None:
    """Upload a package (or a directory, packed first); '-' is the last packed.  Example: si seq send -"""
    seq_id = _send(ctx, package)
    output.data({"_id": seq_id, "id": seq_id, "sequenceURL": f"sequence/{seq_id}"}, pretty=seq_id)


def _seq_rows(items: list[dict]) -> list[dict]:
    return [{"id": s["id"], "name": s.get("name") or "", "version": s["config"].get("version") or "",
             "runtime": s["config"].get("language"), "size": s.get("size"),
             "instances": len(s.get("instances", [])), "created": output.age(s.get("created"))}
            for s in items]


@seq.command("list")
@click.option("-n", "--name", help="Only sequences with this package name.")
@pass_ctx
def seq_list(ctx: Ctx, name: str | None) -> None:
    """List sequences.  Example: si seq list -n counter-js"""
    items = ctx.client.sequences()
    if name is not None:
        items = [s for s in items if s.get("name") == name]
        if not items:
            raise SiError(f"No results found for sequence name {name}")
    output.table(_seq_rows(items), [("ID", "id"), ("NAME", "name"), ("VERSION", "version"),
                                    ("LANG", "runtime"), ("SIZE", "size"), ("INSTANCES", "instances"),
                                    ("CREATED", "created")], items)


seq.add_command(seq_list, "ls")


@seq.command("info")
@click.argument("seq_id")
@pass_ctx
def seq_info(ctx: Ctx, seq_id: str) -> None:
    """Show a sequence (package size and sha256 included).  Example: si seq info -"""
    output.data(ctx.client.sequence(session.resolve("sequence", seq_id)))


@seq.command("use")
@click.argument("seq_id")
@pass_ctx
def seq_use(ctx: Ctx, seq_id: str) -> None:
    """Make a sequence the session's '-'.  Example: si seq use 3f2a…"""
    found = ctx.client.sequence(seq_id)
    session.remember("sequence", found["id"])


@seq.command("rm")
@click.argument("seq_id")
@click.option("-f", "--force", is_flag=True, help="Kill its running instances first.")
@pass_ctx
def seq_rm(ctx: Ctx, seq_id: str, force: bool) -> None:
    """Delete a sequence and its package.  Example: si seq rm - --force"""
    seq_id = session.resolve("sequence", seq_id)
    result = ctx.client.delete_sequence(seq_id, force)
    session.forget("sequence", seq_id)
    output.data(result, pretty=f"deleted {seq_id}")


seq.add_command(seq_rm, "delete")


@seq.command("prune")
@click.option("-f", "--force", is_flag=True, help="Kill running instances first.")
@pass_ctx
def seq_prune(ctx: Ctx, force: bool) -> None:
    """Delete every sequence.  Example: si seq prune --force"""
    failed = []
    for item in ctx.client.sequences():
        try:
            ctx.client.delete_sequence(item["id"], force)
        except SiError as exc:
            failed.append(f"{item['id']}: {exc.message}")
    session.forget("sequence")
    session.forget("instance")
    if failed:
        raise SiError("Some Sequences may have not been deleted: " + "; ".join(failed))


def _start_options(func):
    options = [
        click.option("--args", "args_json", help="Arguments as a JSON array, passed exactly."),
        click.option("-s", "--config-string", help="appConfig as a JSON object."),
        click.option("-f", "--config-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     help="appConfig from a JSON file."),
        click.option("--inst-id", help="Choose the instance id."),
        click.option("--output-topic", help="Also send the output to this topic."),
        click.option("--input-topic", help="Read the input from this topic (not from si inst input)."),
        click.option("--wait", is_flag=True, help="Stream output and stderr, exit with the instance's exit code."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _start(ctx: Ctx, seq_id: str, args: tuple[str, ...], args_json: str | None, config_string: str | None,
           config_file: Path | None, inst_id: str | None, output_topic: str | None, input_topic: str | None,
           wait: bool) -> None:
    if args_json is not None:
        if args:
            raise SiError("give arguments either positionally or with --args, not both")
        start_args = _json_option(args_json, "--args")
        if not isinstance(start_args, list):
            raise SiError("Arguments must be in array")
    else:
        start_args = parse_positional(args)
    app_config = None
    if config_file is not None:
        app_config = _json_option(config_file.read_text(), str(config_file))
    if config_string is not None:
        app_config = _json_option(config_string, "--config-string")
    if app_config is not None and not isinstance(app_config, dict):
        raise SiError("appConfig must be a JSON object")
    result = ctx.client.start(session.resolve("sequence", seq_id), start_args, app_config, inst_id,
                              output_topic, input_topic)
    session.remember("instance", result["id"])
    if wait:
        sys.exit(_attach_until_end(ctx, result["id"]))
    output.data({"_id": result["id"], "id": result["id"], "instanceURL": f"instance/{result['id']}"},
                pretty=result["id"])


@seq.command("start", context_settings={"ignore_unknown_options": True})
@click.argument("seq_id")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_start_options
@pass_ctx
def seq_start(ctx: Ctx, seq_id: str, args: tuple[str, ...], **opts: Any) -> None:
    """Start an instance of a sequence with arguments.  Example: si seq start - 3000 10"""
    _start(ctx, seq_id, args, **opts)


@seq.command("deploy", context_settings={"ignore_unknown_options": True})
@click.argument("package")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_start_options
@pass_ctx
def seq_deploy(ctx: Ctx, package: str, args: tuple[str, ...], **opts: Any) -> None:
    """Pack (if a directory), send and start in one step.  Example: si seq deploy examples/counter-js 1 5 --wait"""
    seq_id = _send(ctx, package)
    output.message(f"sequence {seq_id}")
    _start(ctx, seq_id, args, **opts)


seq.add_command(seq_deploy, "run")


# -- instances ------------------------------------------------------------------------------------
@cli.group("inst")
def inst() -> None:
    """Inspect, read and control instances.  Example: si inst output -"""


cli.add_command(inst, "instance")


def _inst_rows(items: list[dict]) -> list[dict]:
    return [{"id": i["id"], "status": i["status"], "sequence": i["sequence"].get("name") or i["sequence"]["id"],
             "args": json.dumps(i.get("args", [])), "created": output.age(i.get("created")),
             "exit": (i.get("terminated") or {}).get("exitcode", "")} for i in items]


@inst.command("list")
@pass_ctx
def inst_list(ctx: Ctx) -> None:
    """List instances (ended ones until they expire).  Example: si inst list"""
    items = ctx.client.instances()
    output.table(_inst_rows(items), [("ID", "id"), ("STATUS", "status"), ("SEQUENCE", "sequence"),
                                     ("ARGS", "args"), ("CREATED", "created"), ("EXIT", "exit")], items)


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


def _copy_channel(ctx: Ctx, inst_id: str, channel: str, follow: bool, sink) -> None:
    for chunk in ctx.client.follow(inst_id, channel, follow=follow):
        sink.write(chunk)
        sink.flush()


def _channel_command(channel: str, follow_default: bool, summary: str):
    @click.argument("inst_id")
    @click.option("--follow/--no-follow", default=follow_default,
                  help=f"Keep reading until the {channel} ends (default: {'on' if follow_default else 'off'}).")
    @pass_ctx
    def command(ctx: Ctx, inst_id: str, follow: bool) -> None:
        _copy_channel(ctx, session.resolve("instance", inst_id), channel, follow, sys.stdout.buffer)

    command.__doc__ = summary
    return inst.command(channel)(command)


_channel_command("output", True, "Print an instance's output, following until it ends.  Example: si inst output -")
_channel_command("stdout", False, "Print an instance's stdout (--follow to keep reading).  Example: si inst stdout - --follow")
_channel_command("stderr", False, "Print an instance's stderr (--follow to keep reading).  Example: si inst stderr -")
_channel_command("log", False, "Print an instance's log, JSON lines (--follow to keep reading).  Example: si inst log -")


def _stream_until_end(ctx: Ctx, inst_id: str, channels: list[tuple[str, Any]]) -> None:
    """Follow several channels at once, each into its sink, until all have ended."""
    errors: list[BaseException] = []

    def pump(channel: str, sink) -> None:
        try:
            _copy_channel(ctx, inst_id, channel, True, sink)
        except BaseException as exc:  # reported below, in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=pump, args=pair, daemon=True) for pair in channels]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


FINAL = ("completed", "errored")


def _wait_for_end(ctx: Ctx, inst_id: str) -> dict:
    """The instance's info once it has ended (its channels can end before its status does)."""
    info = ctx.client.instance(inst_id)
    while info["status"] not in FINAL:
        time.sleep(0.5)
        info = ctx.client.instance(inst_id)
    return info


def _attach_until_end(ctx: Ctx, inst_id: str) -> int:
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

    def feed() -> None:
        for line in iter(sys.stdin.buffer.readline, b""):
            ctx.client.send_input(inst_id, "stdin", line, "application/octet-stream", end=False)
        ctx.client.send_input(inst_id, "stdin", b"", "application/octet-stream", end=True)

    threading.Thread(target=feed, daemon=True).start()
    _stream_until_end(ctx, inst_id, [("stdout", sys.stdout.buffer), ("stderr", sys.stderr.buffer)])


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
                              output_topic=old.get("provides"), input_topic=old.get("requires"))
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
@pass_ctx
def inst_stop(ctx: Ctx, inst_id: str, timeout: int) -> None:
    """Ask an instance to stop: its stop handlers run, then it ends after TIMEOUT ms.  Example: si inst stop - 5000"""
    result = ctx.client.stop(session.resolve("instance", inst_id), timeout)
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
              type=click.Choice(["text/plain", "application/octet-stream", "application/x-ndjson"]))
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


# -- topics -----------------------------------------------------------------------------------------
# text/plain first: the default of Scramjet's CLI (0.26) for `topic send`, and right for any text.
TOPIC_TYPES = ["text/plain", "application/x-ndjson", "text/x-ndjson", "application/octet-stream"]
TOPIC_PIECE_BYTES = 1024 * 1024  # one write to a topic: the hub takes up to 1 MiB per request


@cli.group("topic")
def topic() -> None:
    """Write to, read from and manage topics.  Example: si topic get names"""


def _content_type_option(func):
    return click.option("-t", "--content-type", default=TOPIC_TYPES[0], show_default=True,
                        type=click.Choice(TOPIC_TYPES), help="The topic's type (fixed by its first writer).")(func)


@topic.command("send")
@click.argument("name")
@click.argument("file", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@_content_type_option
@pass_ctx
def topic_send(ctx: Ctx, name: str, file: Path | None, content_type: str) -> None:
    """Send a file, or stdin as it comes, to a topic.  Example: si topic send names names.txt -t text/plain"""
    source = file.open("rb") if file is not None else sys.stdin.buffer
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
    for chunk in ctx.client.follow_topic(name, follow=follow):
        sys.stdout.buffer.write(chunk)
        sys.stdout.buffer.flush()


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


# -- hub --------------------------------------------------------------------------------------------
@cli.group("hub")
def hub() -> None:
    """Run the embedded hub, or ask a hub about itself.  Example: si hub start"""


@hub.command("start")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--retention", default=3600, show_default=True, type=click.IntRange(min=0),
              help="Seconds an ended instance stays readable.")
@click.option("--no-sandbox", is_flag=True,
              help="Run instances without isolation (for example, a sequence that needs the network). Loopback only.")
def hub_start(host: str, port: int, retention: int, no_sandbox: bool) -> None:
    """Run the whole hub on this machine (moto, the API, local runners) until Ctrl-C.  Example: si hub start --port 8000"""
    from .localhub import LocalHub, NotIsolated

    token = "" if _is_loopback(host) else secrets.token_urlsafe(24)
    hub_ = LocalHub(host=host, port=port, retention=retention, token=token, sandbox=not no_sandbox)

    def announce(url: str) -> None:
        output.message(f"Sequence Hub is running at {url} (retention {retention}s). Ctrl-C to stop.")
        if hub_.not_isolated:
            output.message(f"Warning: instances are not isolated from each other or from this hub "
                           f"({hub_.not_isolated}). Run only sequences you trust.")
        if token:
            # Printed once: anyone who can reach this address needs it.
            output.message(f"Listening beyond this machine: clients need this token (si config set token …):\n{token}")

    try:
        hub_.run_forever(announce)
    except NotIsolated as exc:
        raise SiError(str(exc)) from None
    except OSError as exc:
        raise SiError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    except (OSError, ValueError):
        return False


@hub.command("version")
@pass_ctx
def hub_version(ctx: Ctx) -> None:
    """Show the hub's service name and version.  Example: si hub version"""
    found = ctx.client.version()
    output.data(found, pretty=f"{found['service']} {found['version']} ({ctx.client.api_url})")


# -- config -----------------------------------------------------------------------------------------
@cli.group("config")
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


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh"]))
def completion(shell: str) -> None:
    """Print the shell completion script.  Example: eval "$(si completion bash)" in ~/.bashrc"""
    from click.shell_completion import get_completion_class

    click.echo(get_completion_class(shell)(cli, {}, "si", "_SI_COMPLETE").source())


def main() -> None:
    try:
        cli.main(standalone_mode=False)
    except SiError as exc:
        click.secho(f"Error: {exc.message}", err=True, fg="red")
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        click.secho(f"Error: {exc.format_message()}", err=True, fg="red")
        sys.exit(1)
    except BrokenPipeError:
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
