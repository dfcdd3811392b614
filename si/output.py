"""How results are shown: data on stdout (a table or JSON), messages on stderr."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

import click

if TYPE_CHECKING:  # rich is imported only when something is drawn
    from rich.console import Console

_state = {"format": "pretty"}


def set_format(fmt: str) -> None:
    _state["format"] = fmt


def is_json() -> bool:
    return _state["format"] == "json"


def message(text: str) -> None:
    click.echo(text, err=True)


def data(obj: Any, pretty: str | None = None) -> None:
    """Print a result: one JSON document in json format, else ``pretty`` (or indented JSON)."""
    if is_json():
        click.echo(json.dumps(obj, separators=(",", ":")))
    elif pretty is not None:
        click.echo(pretty)
    else:
        click.echo(json.dumps(obj, indent=2))


def copy(chunks: Iterable[bytes], sink: IO[bytes]) -> None:
    """Write a stream (a channel, a topic) as it comes, each piece flushed so a pipe sees it at once."""
    for chunk in chunks:
        sink.write(chunk)
        sink.flush()


def age(iso: str | None) -> str:
    if not iso:
        return ""
    then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    seconds = int(time.time() - then.timestamp())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def table(rows: list[dict[str, Any]], columns: Sequence[tuple[str, str]], raw: Any) -> None:
    """A table of ``rows`` (``columns`` = (header, key)); JSON of ``raw`` in json format."""
    if is_json():
        data(raw)
        return
    from rich.console import Console
    from rich.table import Table

    if not rows:
        message("(none)")
        return
    tbl = Table(box=None, pad_edge=False, header_style="bold")
    for header, _ in columns:
        tbl.add_column(header, no_wrap=True)
    for row in rows:
        tbl.add_row(*[str(row.get(key, "") if row.get(key) is not None else "") for _, key in columns])
    # On a pipe there is no width to fit: never cut an id in two.
    width = None if sys.stdout.isatty() else 1000
    Console(file=sys.stdout, width=width).print(tbl)


@contextlib.contextmanager
def progress(total: int | None, label: str, unit: str = "bytes") -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal (nothing on a pipe); yields ``advance(n)``. No total: a pulse."""
    if not sys.stderr.isatty():
        yield lambda _n: None
        return
    from rich.progress import BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TransferSpeedColumn

    columns = [DownloadColumn(), TransferSpeedColumn()] if unit == "bytes" else [MofNCompleteColumn()]
    with Progress("[progress.description]{task.description}", BarColumn(), *columns,
                  transient=True, console=_stderr_console()) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


def _stderr_console() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr)


class ProgressReader:
    """A file wrapper that reports how much of it has been read."""

    def __init__(self, fh: IO[bytes], total: int, advance: Callable[[int], None]):
        self._fh = fh
        self._total = total
        self._advance = advance

    def read(self, size: int = -1) -> bytes:
        data = self._fh.read(size)
        self._advance(len(data))
        return data

    def __len__(self) -> int:  # the upload sends a Content-Length, never chunks
        return self._total
