"""The terminal: messages on stderr, prompts, tables, the JSON writer, closed stdout.

Every command talks to the operator through this module, so that one rule holds
everywhere: data on stdout, messages on stderr, colour only on a terminal without
``NO_COLOR``, and a prompt that meets the end of its input, or no terminal at all, raises
the caller's French error instead of waiting or guessing (nothing is saved then).
Standard library only at import: it is imported by ``list`` and ``check``, which must start
quickly; rich is imported only by the commands that draw panels or progress bars.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import shutil
import sys
import textwrap
from collections.abc import Callable, Iterator, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

from cfakey.errors import CfakeyError, UsageError
from cfakey.userfiles import read_bounded_text

if TYPE_CHECKING:
    from rich.console import Console

#: What the caller raises when a prompt has no answer to read (end of input, no terminal).
OnEnd = Callable[[], CfakeyError]
YES = frozenset({"o", "oui", "y", "yes"})
NO = frozenset({"n", "non", "no"})
#: How many answers a question takes before the command gives up (nothing saved then).
ANSWER_TRIES = 3
Answer = TypeVar("Answer")


# Messages -------------------------------------------------------------------------------


def use_colour(stream: TextIO) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (no-color.org)."""
    return "NO_COLOR" not in os.environ and stream.isatty()


def paint(text: str, code: str, stream: TextIO | None = None) -> str:
    """``text`` in the ANSI colour ``code`` when ``stream`` (stderr by default) shows colour."""
    return f"\x1b[{code}m{text}\x1b[0m" if use_colour(stream or sys.stderr) else text


def bold(text: str) -> str:
    """A heading on stderr, bold on a terminal."""
    return paint(text, "1")


def print_notice(message: str = "") -> None:
    """A status line for the operator on stderr (never data), wrapped at the terminal's
    width on word boundaries."""
    sys.stderr.write("\n".join(_wrapped(message)) + "\n")
    sys.stderr.flush()


def _wrapped(message: str) -> list[str]:
    """``message``'s lines cut between words at the width of the terminal (``COLUMNS``, or
    stderr's terminal), each continuation indented as its line; as is when no width is known."""
    known = "COLUMNS" in os.environ or sys.stderr.isatty()
    width = shutil.get_terminal_size((0, 0)).columns if known else 0
    lines = message.split("\n")
    if width < 20 or all(len(line) <= width for line in lines):
        return lines
    wrapped: list[str] = []
    for line in lines:
        indent = line[: len(line) - len(line.lstrip(" "))]
        pieces = textwrap.wrap(
            line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False
        )
        wrapped += pieces or [""]
    return wrapped


def print_warning(message: str) -> None:
    """A warning on stderr, marked ⚠ and yellow on a terminal."""
    for line in _wrapped(f"⚠ {message}"):
        sys.stderr.write(paint(line, "33") + "\n")
    sys.stderr.flush()


def print_error(message: str, *, hint: str | None = None) -> None:
    """One French sentence on stderr, and an optional hint line, without a traceback."""
    sys.stderr.write(f"{paint('Erreur :', '1;31')} {message}\n" + (f"{hint}\n" if hint else ""))
    sys.stderr.flush()


def write_lines(lines: Sequence[str]) -> None:
    """Data lines on stdout."""
    write_text("\n".join(lines) + "\n")


def write_bytes(data: bytes) -> None:
    """Data on stdout byte for byte (an .ics keeps its CRLF line ends, even on Windows)."""
    sys.stdout.flush()
    buffer = getattr(sys.stdout, "buffer", None)
    if buffer is None:  # a text-only stream (tests' capture): the same characters
        sys.stdout.write(data.decode("utf-8"))
        return
    buffer.write(data)
    buffer.flush()


def write_text(text: str, *, flush: bool = False) -> None:
    """Data on stdout, as it is (no line end added); ``flush`` to meet a closed pipe now."""
    sys.stdout.write(text)
    if flush:
        sys.stdout.flush()


def stdout_closed() -> None:
    """The reader of stdout went away (``cfakey list | head -3``): point stdout at nothing.

    Python would otherwise fail again when flushing at exit; the caller decides what the
    exit code says.
    """
    with contextlib.suppress(OSError, ValueError):  # no descriptor: nothing left to flush
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


# Prompts ----------------------------------------------------------------------------------


def stdout_is_terminal() -> bool:
    """Whether stdout is shown to a person (not a pipe or a file)."""
    return sys.stdout.isatty()


def stdin_is_terminal() -> bool:
    """Whether a person can be asked: stdin is open and is a terminal."""
    stdin = sys.stdin
    return stdin is not None and not stdin.closed and stdin.isatty()


def no_answer(what: str) -> UsageError:
    """The default end-of-input error: nothing to read the answer to ``what`` from."""
    return UsageError(
        f"Pas de terminal ni d'entrée standard pour répondre ({what}) : rien n'a été enregistré.",
        hint="Lancez la commande dans un terminal, ou passez les réponses en options (--help).",
    )


def ask_line(question: str, *, on_end: OnEnd) -> str:
    """A visible answer, read from stdin (a terminal or a pipe), without its line end."""
    sys.stderr.write(question)
    sys.stderr.flush()
    stdin = sys.stdin
    line = "" if stdin is None or stdin.closed else read_bounded_text(stdin, whole=False)
    if not line:
        sys.stderr.write("\n")
        raise on_end()
    return line.rstrip("\r\n")


def tries_left(left: int) -> str:
    """« 2 essais restants », « 1 essai restant »."""
    plural = "s" if left > 1 else ""
    return f"{left} essai{plural} restant{plural}"


def ask_hidden(question: str, *, on_end: OnEnd) -> str:
    """A secret typed without echo on the terminal; without a terminal, ``on_end``."""
    if not stdin_is_terminal():
        raise on_end()
    import getpass

    try:
        return getpass.getpass(question, stream=sys.stderr)
    except EOFError:
        raise on_end() from None


def ask_secret(question: str, *, on_end: OnEnd, whole_input: bool = False) -> str:
    """A secret: hidden on a terminal, else read from stdin (one line, or all of it).

    Empty input is the end of input: ``on_end`` is raised, never an empty secret returned.
    """
    if stdin_is_terminal():
        return ask_hidden(question, on_end=on_end)
    stdin = sys.stdin
    if stdin is None or stdin.closed:
        raise on_end()
    text = read_bounded_text(stdin, whole=whole_input)
    if not text:
        raise on_end()
    return text


def yes_or_no(answer: str, *, default: bool) -> bool:
    """``o``/``oui`` or ``n``/``non`` (any case), empty for ``default``; else refused."""
    word = answer.strip().casefold()
    if not word:
        return default
    if word in YES or word in NO:
        return word in YES
    raise UsageError("Réponse non comprise.")


def ask_yes_no(question: str, *, default: bool, on_end: OnEnd) -> bool:
    """Yes or no, ``[O/n]`` or ``[o/N]``; an empty answer is ``default``."""
    choices = "[O/n]" if default else "[o/N]"
    answer = ask_line(f"{question} {choices} ", on_end=on_end).strip().casefold()
    return default if not answer else answer in YES


class Dialogue:
    """A command's questions on stderr, answers from stdin; never echoes a secret.

    ``interactive`` decides whether the command pauses and asks: by default when stdin
    is a terminal. Without it, every answer must come from an option, named in the error.
    """

    def __init__(self, interactive: bool | None = None, *, assume_yes: bool = False) -> None:
        self.tty = stdin_is_terminal()
        self.interactive = self.tty if interactive is None else interactive
        self.assume_yes = assume_yes

    def pause(self) -> None:
        """Wait for Enter between two steps."""
        if self.interactive:
            ask_line("  [Entrée pour continuer] ", on_end=lambda: no_answer("Entrée"))

    def ask(self, question: str, *, needed: str) -> str:
        """A visible answer; ``needed`` names the option that replaces it in scripts."""
        what = question.strip().rstrip(":").strip()
        if not self.interactive:
            raise UsageError(
                f"Pas de terminal pour demander : {what}.",
                hint=f"En mode script, indiquez {needed}.",
            )
        return ask_line(question, on_end=lambda: no_answer(what)).strip()

    def ask_until(
        self, question: str, read: Callable[[str], Answer], *, needed: str, expected: str
    ) -> Answer:
        """An answer ``read`` accepts, asked again on a refusal, at most :data:`ANSWER_TRIES`.

        ``read`` raises :class:`UsageError` on a bad answer; its sentence, then ``expected``,
        are shown before asking again. The last refusal is raised (exit 2, nothing saved).
        """
        for attempt in range(1, ANSWER_TRIES + 1):
            answer = self.ask(question, needed=needed)
            try:
                return read(answer)
            except UsageError as error:
                left = ANSWER_TRIES - attempt
                if not left:
                    raise UsageError(
                        f"{error.message} Trois réponses refusées : rien n'a été enregistré.",
                        hint=error.hint or f"Attendu : {expected}.",
                    ) from None
                print_warning(
                    f"{error.message} Attendu : {expected}. Réessayez ({tries_left(left)})."
                )
        raise AssertionError("unreachable")  # pragma: no cover

    def confirm(self, question: str, *, default: bool = False, needed: str = "--yes") -> bool:
        """Yes or no, asked again on another answer; ``--yes`` answers yes without asking."""
        if self.assume_yes:
            return True
        return self.ask_until(
            f"{question} {'[O/n]' if default else '[o/N]'} ",
            functools.partial(yes_or_no, default=default),
            needed=needed,
            expected="o (oui) ou n (non)",
        )

    def secret(self, question: str, *, on_empty: OnEnd) -> str:
        """A secret: hidden on a terminal; a line in a dialogue; else all of stdin.

        ``on_empty`` is raised when a script gave nothing on stdin.
        """
        if self.tty:
            return ask_hidden(question, on_end=lambda: no_answer("la clé"))
        if self.interactive:
            what = question.strip().rstrip(":").strip()
            return ask_line(question, on_end=lambda: no_answer(what))
        return ask_secret(question, on_end=on_empty, whole_input=True)


# Tables -------------------------------------------------------------------------------------


def text_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None = None,
    rule: bool = True,
    fit: bool = True,
    right: frozenset[int] = frozenset(),
    colours: Sequence[str | None] | None = None,
) -> list[str]:
    """Rows aligned in columns; with ``fit``, the widest wrapped until the table fits ``width``.

    ``rule`` draws a line under the headers; ``right`` lists right-aligned columns;
    ``colours`` gives each row an ANSI colour code, used when stdout shows colour.
    Plain text on purpose: a rich table costs more than the rest of ``opcos`` or ``list``,
    and this output pipes cleanly into other tools.
    """
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in enumerate(headers)]
    if fit:
        _fit(widths, headers, rows, width)
    lines = _render(headers, widths, right, wrap=fit)
    if rule:
        lines.append("  ".join("─" * w for w in widths))
    for index, row in enumerate(rows):
        code = colours[index] if colours is not None else None
        for line in _render(row, widths, right, wrap=fit):
            lines.append(paint(line, code, sys.stdout) if code else line)
    return lines


def _fit(
    widths: list[int], headers: Sequence[str], rows: Sequence[Sequence[str]], width: int | None
) -> None:
    """Narrow the widest columns, never below their longest word, until ``width`` is met."""
    limit = width or shutil.get_terminal_size((100, 24)).columns
    floor = [
        max(len(word) for text in (header, *(row[i] for row in rows)) for word in text.split())
        for i, header in enumerate(headers)
    ]
    while sum(widths) + 2 * (len(widths) - 1) > limit:
        widest = max(range(len(widths)), key=lambda i: widths[i] - floor[i])
        if widths[widest] <= floor[widest]:
            break
        widths[widest] -= 1


def _render(
    cells: Sequence[str], widths: Sequence[int], right: frozenset[int], *, wrap: bool
) -> list[str]:
    wrapped = [
        (textwrap.wrap(cell, w) if wrap else [cell]) or [""]
        for cell, w in zip(cells, widths, strict=True)
    ]
    return [
        "  ".join(
            _align(cell[depth] if depth < len(cell) else "", w, i in right)
            for i, (cell, w) in enumerate(zip(wrapped, widths, strict=True))
        ).rstrip()
        for depth in range(max(len(cell) for cell in wrapped))
    ]


def _align(text: str, width: int, right: bool) -> str:
    return text.rjust(width) if right else text.ljust(width)


def date_text(moment: datetime | None, form: str = "%d/%m/%Y") -> str:
    """A stored instant as people read it, on their clock; ``—`` when there is none."""
    from cfakey.expiry import local_time  # never overflows on a stored value

    return "—" if moment is None else local_time(moment).strftime(form)


def decimal_text(value: float, digits: int = 1) -> str:
    """A number as people read it in French: a decimal comma (« 0,3 »), never a point."""
    return f"{value:.{digits}f}".replace(".", ",")


# JSON and rich ------------------------------------------------------------------------

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


@contextlib.contextmanager
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
    from rich.progress import (
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
    from rich.console import Console

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
