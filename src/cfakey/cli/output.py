"""Output helpers: the JSON writer, rich consoles and progress bars created on demand.

Data goes to stdout, messages to stderr. ``NO_COLOR`` and a non-terminal stream turn
colour off. rich is imported only by commands that draw tables or panels.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

# The message and table helpers live in the terminal module; these names stay importable.
from cfakey.cli.terminal import print_error, print_notice, text_table, use_colour

__all__ = [
    "console",
    "print_error",
    "print_json",
    "print_notice",
    "progress_bar",
    "text_table",
    "to_jsonable",
    "use_colour",
]

if TYPE_CHECKING:
    from rich.console import Console


_SCALARS = frozenset({str, int, float, bool})


def to_jsonable(value: Any) -> Any:
    """Dataclasses, tuples and dates turned into what ``json`` writes."""
    if value is None or type(value) in _SCALARS:  # most values: answered first, for speed
        return value
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
    """UTF-8 JSON on stdout: the one writer of every ``--json`` output (a contract).

    An object or a list is written one member per line, each member on one line, except
    that a list inside the top object gets one element per line: readable, and written by
    the C encoder (``indent`` switches json to its pure-Python encoder, 50 ms for 1,100 keys).
    """
    sys.stdout.write(_json_text(to_jsonable(value), top=True) + "\n")


def _json_text(value: Any, *, top: bool) -> str:
    if isinstance(value, list) and value:
        return "[\n" + ",\n".join(_one_line(item) for item in value) + "\n]"
    if top and isinstance(value, dict) and value:
        members = [
            f"{_one_line(key)}: {_json_text(item, top=False)}" for key, item in value.items()
        ]
        return "{\n  " + ",\n  ".join(members) + "\n}"
    return _one_line(value)


def _one_line(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


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
