"""The ``si`` executable's entry point.

A help text of ``si`` or of one of its static groups is said from ``si/help_texts.py`` (click's own
rendering, written by ``make si-help`` and checked against click by tests/test_si_startup.py)
without importing click: click's import alone takes longer than a whole bare Python start. Anything
else, or a terminal too narrow for the texts' width, runs the command line.
"""

from __future__ import annotations

import os
import sys

# click wraps help to min(columns, 80) - 2; the texts are written for a terminal at least this wide.
HELP_COLUMNS = 80
HELP_FLAGS = ("--help", "-h")


def main() -> None:
    text = ready_help(sys.argv[1:])
    if text is None:
        from .cli import main as run

        run()
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # the reader left (si --help | head -1)
        os._exit(1)
    os._exit(0)  # as si.cli leaves: nothing else runs in this process


def ready_help(argv: list[str]) -> str | None:
    """The help ``si ARGV`` would print, when it is a written one click would render the same."""
    if not argv or argv[-1] not in HELP_FLAGS or terminal_columns() < HELP_COLUMNS:
        return None
    from .help_texts import TEXTS

    return TEXTS.get(" ".join(argv[:-1]))


def terminal_columns() -> int:
    """``shutil.get_terminal_size().columns`` (what click measures), without importing shutil."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or 80
