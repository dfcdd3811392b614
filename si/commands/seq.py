"""``si seq``: pack, send, start and manage sequences."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

import click

from .. import output, protocol, session
from ..context import Ctx, F, json_option, parse_positional, pass_ctx
from ..errors import SiError
from .inst import attach_until_end


@click.group("seq")
def seq() -> None:
    """Pack, send, start and manage sequences.  Example: si seq deploy examples/counter-py 1 3"""




def _pack_to(source: Path, out_path: Path) -> None:
    import tempfile  # (shutil and random with it: ~5 ms of every other seq command)

    from ..packing import pack  # tarfile and the package rules: only when packing

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
    if size > protocol.DIRECT_UPLOAD_BYTES:
        output.message(f"note: the package is {size} bytes, over the {protocol.DIRECT_UPLOAD_BYTES}-byte direct "
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
        from ..packing import pack

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
        if size > protocol.DIRECT_UPLOAD_BYTES:  # API Gateway + Lambda take ~4.5 MB: larger goes through S3
            result = ctx.client.send_large(reader, size)
        else:
            result = ctx.client.send_sequence(reader)
    seq_id: str = result["id"]
    session.remember("sequence", seq_id)
    return seq_id


@seq.command("send")
@click.argument("package")
@pass_ctx
def seq_send(ctx: Ctx, package: str) -> None:
    """Upload a package (or a directory, packed first); '-' is the last packed.  Example: si seq send -"""
    seq_id = _send(ctx, package)
    output.data({"_id": seq_id, "id": seq_id, "sequenceURL": f"sequence/{seq_id}"}, pretty=seq_id)


def _seq_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": s["id"], "name": s.get("name") or "", "version": s["config"].get("version") or "",
             "runtime": s["config"].get("language"), "size": s.get("size"),
             "instances": len(s.get("instances", [])), "created": output.age(s.get("created"))}
            for s in items]


@seq.command("list")
@click.option("-n", "--name", help="Only sequences with this package name.")
@click.option("--limit", type=click.IntRange(1, 200), default=100, show_default=True, help="Sequences to show (newest first).")
@click.option("--all", "every", is_flag=True, help="Every sequence, page after page.")
@pass_ctx
def seq_list(ctx: Ctx, name: str | None, limit: int, every: bool) -> None:
    """List sequences, newest first, with their running instances.  Example: si seq list -n counter-js"""
    every = every or name is not None  # a name is looked for in all of them
    items, more = ctx.client.listing("sequences", {"limit": 200 if every else limit}, every)
    if name is not None:
        items = [s for s in items if s.get("name") == name]
        if not items:
            raise SiError(f"No results found for sequence name {name}")
    output.table(_seq_rows(items), [("ID", "id"), ("NAME", "name"), ("VERSION", "version"),
                                    ("LANG", "runtime"), ("SIZE", "size"), ("RUNNING", "instances"),
                                    ("CREATED", "created")], items)
    if more:
        output.message("older sequences are not shown: si seq list --all")


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
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_ctx
def seq_prune(ctx: Ctx, force: bool, yes: bool) -> None:
    """Delete every sequence (asks first).  Example: si seq prune --force --yes"""
    found = ctx.client.sequences()
    if found and not yes:
        running = " and kill their running instances" if force else ""
        click.confirm(f"Delete all {len(found)} sequences{running}?", abort=True, err=True)
    failed = []
    for item in found:
        try:
            ctx.client.delete_sequence(item["id"], force)
        except SiError as exc:
            failed.append(f"{item['id']}: {exc.message}")
    session.forget("sequence")
    session.forget("instance")
    if failed:
        raise SiError("Some Sequences may have not been deleted: " + "; ".join(failed))


def _start_options(func: F) -> F:
    options = [
        click.option("--args", "args_json", help="Arguments as a JSON array, passed exactly."),
        click.option("-s", "--config-string", help="appConfig as a JSON object."),
        click.option("-f", "--config-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     help="appConfig from a JSON file."),
        click.option("--inst-id", help="Choose the instance id."),
        click.option("--output-topic", help="Also send the output to this topic."),
        click.option("--input-topic", help="Read the input from this topic (not from si inst input)."),
        click.option("--engine", type=click.Choice(protocol.ENGINES),
                     help="What runs it: lambda (15 minutes at most) or fargate (hours). Default: its "
                          "package.json's, else fargate for a topic consumer, else lambda."),
        click.option("--wait", is_flag=True, help="Stream output and stderr, exit with the instance's exit code."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _start(ctx: Ctx, seq_id: str, args: tuple[str, ...], args_json: str | None, config_string: str | None,
           config_file: Path | None, inst_id: str | None, output_topic: str | None, input_topic: str | None,
           engine: str | None, wait: bool) -> None:
    if args_json is not None:
        if args:
            raise SiError("give arguments either positionally or with --args, not both")
        start_args = json_option(args_json, "--args")
        if not isinstance(start_args, list):
            raise SiError("Arguments must be in array")
    else:
        start_args = parse_positional(args)
    app_config = None
    if config_file is not None:
        app_config = json_option(config_file.read_text(), str(config_file))
    if config_string is not None:
        app_config = json_option(config_string, "--config-string")
    if app_config is not None and not isinstance(app_config, dict):
        raise SiError("appConfig must be a JSON object")
    result = ctx.client.start(session.resolve("sequence", seq_id), start_args, app_config, inst_id,
                              output_topic, input_topic, engine)
    session.remember("instance", result["id"])
    if wait:
        sys.exit(attach_until_end(ctx, result["id"]))
    output.data({"_id": result["id"], "id": result["id"], "instanceURL": f"instance/{result['id']}"},
                pretty=result["id"])


@seq.command("start", context_settings={"ignore_unknown_options": True})
@click.argument("seq_id")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_start_options
@pass_ctx
def seq_start(ctx: Ctx, /, seq_id: str, args: tuple[str, ...], **opts: Any) -> None:
    """Start an instance of a sequence with arguments.  Example: si seq start - 3000 10"""
    _start(ctx, seq_id, args, **opts)


@seq.command("deploy", context_settings={"ignore_unknown_options": True})
@click.argument("package")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_start_options
@pass_ctx
def seq_deploy(ctx: Ctx, /, package: str, args: tuple[str, ...], **opts: Any) -> None:
    """Pack (if a directory), send and start in one step.  Example: si seq deploy examples/counter-js 1 5 --wait"""
    seq_id = _send(ctx, package)
    output.message(f"sequence {seq_id}")
    _start(ctx, seq_id, args, **opts)


seq.add_command(seq_deploy, "run")
