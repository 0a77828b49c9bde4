"""The e-mail flow's « come back » lines run as printed (issue 15, items 2 and 4)."""

from __future__ import annotations

import re
import shlex

from tests.test_keys_cli import KEY_2, SIRET, cfa, listed, run_cli

__all__ = ["cfa"]  # the fixture, used by name


def printed(text: str, after: str) -> list[str]:
    """The command printed after ``after`` (« revenez avec : », « Notez-la : »)."""
    match = re.search(re.escape(after) + r" (cfakey [^\n]+)", text)
    assert match, text
    return shlex.split(match.group(1))[1:]


def test_add_by_email_prints_commands_that_run_as_shown(cfa: str) -> None:
    result = run_cli("add", "opco2i", "--interactive", input="n\nn\n")
    assert result.exit_code == 0, result.stderr
    come_back = printed(result.stderr, "revenez avec :")
    note = printed(result.stderr, "Notez-la :")
    assert come_back == ["add", "opco2i", "--cfa", SIRET]
    assert note == ["request", "add", "opco2i", "--cfa", SIRET]
    assert run_cli(*note).exit_code == 0
    later = run_cli(*come_back, "--interactive", input=f"o\n{KEY_2}\n")
    assert later.exit_code == 0, later.stderr
    assert [row["opco"] for row in listed()] == ["opco2i"]


def test_rotate_by_email_says_rotate_with_the_cfa(cfa: str) -> None:
    assert run_cli("add", "opco2i", "--interactive", input=f"o\n{KEY_2}\n").exit_code == 0
    result = run_cli("rotate", "opco2i", "--interactive", input="n\nn\n")
    assert result.exit_code == 0, result.stderr
    assert printed(result.stderr, "revenez avec :") == ["rotate", "opco2i", "--cfa", SIRET]
    assert "cfakey add" not in result.stderr
