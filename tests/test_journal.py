"""``cfakey journal``: --limit, --action, --json, --excel, newest first (issue 15, item 7).

Real CLI and real SQLite file; the clock is fixed.
"""

from __future__ import annotations

import csv
import io
import json

import pytest

from cfakey.errors import ExitCode
from tests.test_keys_cli import ATLAS_KEY, KEY_2, SIRET, cfa, run_cli

__all__ = ["cfa"]


@pytest.fixture
def three_entries(cfa: str) -> None:
    """``cfa_added`` (a name a spreadsheet would run), then two ``added``."""
    del cfa
    assert run_cli("cfa", "add", "44100000000014", "--nom", "=HYPERLINK(1)").exit_code == 0
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    assert run_cli("add", "sante", input=KEY_2).exit_code == 0


def actions(*args: str) -> list[tuple[str, str | None]]:
    result = run_cli("journal", "--json", *args)
    assert result.exit_code == 0, result.stderr
    return [(entry["action"], entry["opco"]) for entry in json.loads(result.stdout)]


@pytest.mark.usefixtures("three_entries")
def test_newest_first_by_default_limit_and_action() -> None:
    assert actions() == [
        ("added", "sante"),
        ("added", "atlas"),
        ("cfa_added", None),
        ("cfa_added", None),
    ]
    assert actions("--limit", "2") == [("added", "sante"), ("added", "atlas")]
    assert actions("--limit", "2", "--chronologique") == [("added", "atlas"), ("added", "sante")]
    assert actions("--action", "cfa_added", "--limit", "1") == [("cfa_added", None)]
    table = run_cli("journal", "--limit", "1")
    assert "OPCO Santé" in table.stdout  # people read the OPCO's name, scripts its id
    assert "Atlas" not in table.stdout


@pytest.mark.usefixtures("three_entries")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--action", "ajoutée"), "Action inconnue pour --action."),
        (("--limit", "0"), "--limit : un nombre entier d'au moins 1 est attendu."),
        (("--json", "--excel"), "--csv, --excel et --json s'excluent"),
    ],
)
def test_bad_journal_options_are_french_errors(args: tuple[str, ...], message: str) -> None:
    result = run_cli("journal", *args)

    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert result.stdout == ""


@pytest.mark.usefixtures("three_entries")
def test_excel_csv_opens_in_a_french_excel() -> None:
    result = run_cli("journal", "--excel")

    assert result.exit_code == 0, result.stderr
    assert result.stdout.startswith("\ufeffDate;Heure;Utilisateur;SIRET;OPCO;Action;")
    rows = list(csv.reader(io.StringIO(result.stdout.removeprefix("\ufeff")), delimiter=";"))
    assert rows[1][0].count("/") == 2  # JJ/MM/AAAA
    assert rows[1][3:6] == [SIRET, "OPCO Santé", "ajoutée"]
    assert "'=HYPERLINK(1)" in [row[8] for row in rows]  # shown as text, never run
    assert ATLAS_KEY not in result.stdout
