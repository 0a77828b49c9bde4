"""The shape of the code under ``src/``, held by tests rather than by review.

- No function body is over 60 lines (issue 11, "Must hold").
- Only ``cli/terminal.py`` writes to the terminal (issue 11, item 6).
- Every journal action written is a ``JournalAction`` identifier (one table per code).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfakey.core.codes import JournalAction

SRC = Path(__file__).resolve().parent.parent / "src" / "cfakey"
MAX_BODY_LINES = 60

#: Ways of reaching the terminal that bypass ``cli/terminal.py``.
TERMINAL_WRITES = re.compile(
    r"(?<![\w.])print\(|typer\.(echo|secho|prompt|confirm)\b|sys\.(stdout|stderr)\.write\b"
    r"|getpass\.getpass\b|(?<![\w.])input\(|(?<![\w.])Console\("
)
#: (file under src/cfakey, line text) allowed to write directly, with the reason.
TERMINAL_EXCEPTIONS = {
    # --version must cost no more than typer: it does not import the terminal module.
    ("cli/app.py", 'sys.stdout.write(f"cfakey {__version__}\\n")'),
}


def sources() -> Iterator[Path]:
    yield from sorted(SRC.rglob("*.py"))


def functions(tree: ast.AST) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield node


def test_no_function_body_is_over_60_lines() -> None:
    too_long = []
    for path in sources():
        for function in functions(ast.parse(path.read_text(encoding="utf-8"))):
            assert function.end_lineno is not None
            length = function.end_lineno - function.body[0].lineno + 1
            if length > MAX_BODY_LINES:
                too_long.append(
                    f"{path.relative_to(SRC)}:{function.lineno} {function.name} {length}"
                )
    assert too_long == []


def test_the_shape_check_sees_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{n} = {n}" for n in range(MAX_BODY_LINES + 1))
    (function,) = functions(ast.parse(f"def long() -> None:\n{body}\n"))
    assert function.end_lineno is not None
    assert function.end_lineno - function.body[0].lineno + 1 > MAX_BODY_LINES


def test_only_the_terminal_module_writes_to_the_terminal() -> None:
    found = []
    for path in sources():
        name = path.relative_to(SRC).as_posix()
        if name == "cli/terminal.py":
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            code = line.split("#", 1)[0]
            if TERMINAL_WRITES.search(code) and (name, line.strip()) not in TERMINAL_EXCEPTIONS:
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == []


@pytest.mark.parametrize(
    "line", ["print(x)", "sys.stderr.write(x)", "typer.echo(x)", "Console()", "input()"]
)
def test_the_terminal_check_sees_a_direct_write(line: str) -> None:
    assert TERMINAL_WRITES.search(line)


def test_the_terminal_check_lets_the_terminal_s_own_objects_through() -> None:
    """A rich console made by ``terminal.console()`` prints; ``getuser`` writes nothing."""
    assert not TERMINAL_WRITES.search("out.print(text)")
    assert not TERMINAL_WRITES.search("getpass.getuser()")


def logged_actions(tree: ast.AST) -> Iterator[str]:
    """The string literals passed first to a ``.log(...)`` call (a journal entry)."""
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "log"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.args[0].value


def test_every_journal_action_written_is_in_the_table() -> None:
    written = {
        action for path in sources() for action in logged_actions(ast.parse(path.read_text()))
    }
    assert written <= {action.id for action in JournalAction}
    assert set(logged_actions(ast.parse('metadata.log("added", siret=s)'))) == {"added"}
