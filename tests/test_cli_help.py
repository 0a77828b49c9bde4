"""The help screens and the process edges of the CLI, in a real process (as a user runs it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from cfakey.cli.app import COMMAND_MODULES
from cfakey.errors import ExitCode

LEAF_COMMANDS = (
    "opcos",
    "guide",
    "cfa add",
    "cfa list",
    "cfa default",
    "cfa remove",
    "add",
    "list",
    "show",
    "rotate",
    "remove",
    "check",
    "import",
    "journal",
    "export",
    "inject",
    "exec",
    "verify",
    "config set",
    "config get",
    "config unset",
    "config list",
    "store use",
    "store password",
    "doctor",
)
#: How typer names click types when a parameter has no metavar of its own.
TYPE_JARGON = re.compile(r"<(str|path|int|float|text|integer)[a-z ]*>")


def cfakey(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "cfakey", *args], env=env, text=True, check=False, **kwargs
    )


def test_every_command_is_in_the_help_list() -> None:
    assert {command.split()[0] for command in LEAF_COMMANDS} == set(COMMAND_MODULES)


@pytest.mark.parametrize("command", LEAF_COMMANDS)
def test_help_shows_french_names_not_type_jargon(command: str) -> None:
    shown = cfakey(*command.split(), "--help", capture_output=True)

    assert shown.returncode == 0, shown.stderr
    assert "Affiche cette aide et quitte." in shown.stdout
    assert TYPE_JARGON.search(shown.stdout) is None, shown.stdout


def test_help_options_say_what_they_take() -> None:
    shown = cfakey("verify", "--help", capture_output=True).stdout

    lines = {line.split()[1]: line for line in shown.splitlines() if line.startswith("│ --")}
    assert "CFA" in lines["--cfa"].split("CFA (")[0]
    assert " URL " in lines["--api-url"]
    assert " N [1<=x<=256]" in lines["--concurrency"]
    assert " SECONDES " in lines["--timeout"]
    assert " FICHIER " in lines["--ca-bundle"]


def test_closed_stdout_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before cfakey writes: like « | head -0 »
    try:
        result = cfakey("opcos", stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)

    assert result.returncode == ExitCode.ERROR
    assert result.stderr == ""
