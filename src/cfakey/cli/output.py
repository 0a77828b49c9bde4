"""Output helpers: error lines on stderr, JSON on stdout, rich consoles created on demand.

Data goes to stdout, messages to stderr. ``NO_COLOR`` and a non-terminal stream turn
colour off. rich is imported only by commands that draw tables or panels.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
    return "NO_COLOR" not in os.environ and stream.isatty()


def print_error(message: str, *, hint: str | None = None) -> None:
    """One French sentence on stderr, and an optional hint line, without a traceback."""
    prefix = "\x1b[1;31mErreur :\x1b[0m" if use_colour(sys.stderr) else "Erreur :"
    sys.stderr.write(f"{prefix} {message}\n")
    if hint:
        sys.stderr.write(f"{hint}\n")
    sys.stderr.flush()


def print_notice(message: str) -> None:
    """A status line for the operator on stderr (never data)."""
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


def to_jsonable(value: Any) -> Any:
    """Dataclasses, tuples and dates turned into what ``json`` writes."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def print_json(value: Any) -> None:
    """Pretty, UTF-8 JSON on stdout: the contract scripts rely on."""
    sys.stdout.write(json.dumps(to_jsonable(value), ensure_ascii=False, indent=2) + "\n")


def text_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], *, width: int | None = None
) -> list[str]:
    """Rows aligned in columns, the widest columns wrapped until the table fits ``width``.

    Plain text on purpose: importing and laying out a rich table costs more than the rest
    of a command like ``opcos``, and this output pipes cleanly into other tools.
    """
    import shutil  # noqa: PLC0415
    import textwrap  # noqa: PLC0415

    limit = width or shutil.get_terminal_size((100, 24)).columns
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in enumerate(headers)]
    # A column never gets narrower than its longest word, so words are never split.
    floor = [
        max(len(word) for text in (header, *(row[i] for row in rows)) for word in text.split())
        for i, header in enumerate(headers)
    ]
    while sum(widths) + 2 * (len(widths) - 1) > limit:
        widest = max(range(len(widths)), key=lambda i: widths[i] - floor[i])
        if widths[widest] <= floor[widest]:
            break
        widths[widest] -= 1

    def render(cells: Sequence[str]) -> list[str]:
        wrapped = [textwrap.wrap(cell, w) or [""] for cell, w in zip(cells, widths, strict=True)]
        return [
            "  ".join(
                (cell[depth] if depth < len(cell) else "").ljust(w)
                for cell, w in zip(wrapped, widths, strict=True)
            ).rstrip()
            for depth in range(max(len(cell) for cell in wrapped))
        ]

    lines = [*render(headers), "  ".join("─" * w for w in widths)]
    for row in rows:
        lines.extend(render(row))
    return lines


@contextmanager
def progress_bar(
    label: str, total: int, *, elapsed: bool = False
) -> Iterator[Callable[..., None] | None]:
    """A transient progress bar on stderr when it is a terminal; ``None`` otherwise.

    Yields rich's ``Progress.update`` bound to the bar: ``update(completed=n)`` or
    ``update(advance=1)``. It takes a lock, so worker threads may call it.
    """
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    columns: list[ProgressColumn] = [TextColumn(label), BarColumn(), MofNCompleteColumn()]
    if elapsed:
        columns.append(TimeElapsedColumn())
    with Progress(*columns, console=console(stderr=True), transient=True) as progress:
        yield functools.partial(progress.update, progress.add_task(label, total=total))


def console(*, stderr: bool = False) -> Console:
    """A rich console for stdout (data) or stderr (messages, progress)."""
    from rich.console import Console  # noqa: PLC0415

    stream = sys.stderr if stderr else sys.stdout
    colour = use_colour(stream)
    return Console(
        file=stream,
        no_color=not colour,
        highlight=False,
        emoji=False,
        force_terminal=colour or None,
        soft_wrap=False,
    )
