"""``list`` people can read: critical as ``check`` says, what to do, 80 columns, SIREN sites.

Every table is checked at COLUMNS=80: only the CFA name is cut, never a date or a status.
"""

from __future__ import annotations

import json
import re

import pytest

from cfakey.errors import ExitCode
from cfakey.identifiers import with_check_digit
from tests.test_keys_cli import ATLAS_KEY, KEY_2, OTHER_SIRET, in_days, run_cli

SIRET = "18130002100373"
SITE_2 = with_check_digit("1813000210038")  # same SIREN as SIRET
LONG_NAME = "Centre de formation d'apprentis interprofessionnel de la Haute-Garonne"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def sites(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    for siret, name in ((SIRET, LONG_NAME), (SITE_2, "CFA Site Nord"), (OTHER_SIRET, "CFA Autre")):
        assert run_cli("cfa", "add", siret, "--nom", name).exit_code == 0
    for args, key in (
        (["atlas", "--expires", in_days(100)], ATLAS_KEY),
        (["mobilites", "--expires", in_days(3)], KEY_2),  # critical: 3 days, window 7
        (["afdas"], "A" * 64),
        (["atlas", "--cfa", OTHER_SIRET, "--expires", in_days(40)], "C" * 32),  # warning
        (["atlas", "--cfa", SITE_2, "--expires", in_days(200)], "D" * 32),
    ):
        added = run_cli("add", *args, input=key)
        assert added.exit_code == 0, added.stderr


def widest(text: str) -> int:
    return max(len(ANSI.sub("", line)) for line in text.splitlines())


def test_one_cfa_fits_80_columns_with_its_dates_and_statuses_whole(sites: None) -> None:
    result = run_cli("list", "--cfa", SIRET)
    assert result.exit_code == 0, result.stderr
    assert widest(result.stdout) <= 80
    lines = result.stdout.splitlines()
    assert lines[0].endswith(f"— SIRET {SIRET}")
    assert lines[0].startswith("Centre de formation")
    assert lines[1].split() == ["OPCO", "Échéance", "Jours", "Statut", "Empreinte"]
    mobilites = next(line for line in lines if line.startswith("OPCO Mobilités"))
    assert in_days(3) in mobilites
    assert mobilites.split()[-2] == "critique"  # as check counts it
    assert "valide" in next(line for line in lines if line.startswith("Atlas"))


def test_the_matrix_and_the_detail_fit_80_columns(sites: None) -> None:
    matrix = run_cli("list")
    assert matrix.exit_code == 0
    assert widest(matrix.stdout) <= 80
    assert len(matrix.stdout.splitlines()) == 4
    detail = run_cli("list", "--detail")
    assert widest(detail.stdout) <= 80
    rows = detail.stdout.splitlines()[1:]
    assert rows[0].startswith("Centre de form")  # the name is cut…
    assert "…" in rows[0]
    assert in_days(3) in rows[0]  # …never the date or the status
    assert rows[0].split()[-1] == "critique"
    assert rows[1].endswith("à renouveler")


def test_list_says_critical_as_check_does_and_what_to_do(sites: None) -> None:
    listed = run_cli("list")
    checked = run_cli("check", "--json")
    assert checked.exit_code == ExitCode.USAGE  # Nagios critical is 2
    problems = json.loads(checked.stdout)["problems"]
    assert [(p["opco"], p["level"]) for p in problems] == [
        ("mobilites", "critical"),
        ("atlas", "warning"),
    ]
    assert "1 critique, 1 à renouveler" in listed.stderr
    todo = listed.stderr.split("À faire :\n", 1)[1].splitlines()
    assert todo == [
        f"  OPCO Mobilités : cfakey rotate mobilites --cfa {SIRET}",
        f"  Atlas : cfakey rotate atlas --cfa {OTHER_SIRET}",
    ]


def test_critical_is_red_where_colour_is_shown(
    sites: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cfakey.cli import terminal

    monkeypatch.setattr(terminal, "use_colour", lambda stream: True)  # stdout a terminal
    lines = run_cli("list", "--cfa", SIRET).stdout.splitlines()
    assert next(line for line in lines if "OPCO Mobilités" in line).startswith("\x1b[31m")
    assert next(line for line in lines if "Atlas" in line).startswith("\x1b[32m")
    matrix = run_cli("list").stdout
    assert "\x1b[31m    3\x1b[0m" in matrix  # the 3-day cell, red like check's CRITIQUE
    assert "\x1b[33m   40\x1b[0m" in matrix  # the 40-day one, yellow: a warning


def test_an_undated_key_due_for_rotation_has_a_legend(sites: None) -> None:
    """OPCO EP advises a new key every 12 months: shown ``≈ date``, never « (rot. …) »."""
    assert run_cli("add", "opcoep", input="E" * 40).exit_code == 0
    result = run_cli("list", "--cfa", SIRET)
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("OPCO EP"))
    assert "≈ " in line
    assert "(rot." not in result.stdout
    assert "≈ : renouvellement conseillé à cette date" in result.stderr


@pytest.mark.parametrize("command", ["list", "check", "export"])
def test_a_siren_means_all_its_sites(sites: None, command: str) -> None:
    extra = ["--format", "json"] if command == "export" else ["--json"]
    result = run_cli(command, "--cfa", SIRET[:9], *extra)
    assert result.exit_code in {0, 2}, result.stderr
    document = json.loads(result.stdout)
    if command == "list":
        sirets = {row["cfa"] for row in document}
    elif command == "check":
        sirets = {row["cfa"] for row in document["problems"]} | {SITE_2}
        assert document["checked"] == 4
    else:
        sirets = {key["cfa"]["siret"] for key in document["keys"]}
    assert sirets == {SIRET, SITE_2}


def test_an_unknown_siren_is_still_a_french_error(sites: None) -> None:
    result = run_cli("list", "--cfa", "999999999")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "CFA inconnu" in result.stderr


def test_notices_wrap_at_80_columns_and_cut_names_stay_distinct(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The legend under the matrix wraps between words; two names cut alike get their
    SIRET's last five digits."""
    monkeypatch.setenv("COLUMNS", "80")
    for siret, name, key in (
        (SIRET, "CFA des Métiers de Marseille", "E" * 32),
        (OTHER_SIRET, "CFA des Métiers de Toulouse", "F" * 32),
    ):
        assert run_cli("cfa", "add", siret, "--nom", name).exit_code == 0
        added = run_cli("add", "atlas", "--cfa", siret, input=key)
        assert added.exit_code == 0, added.stderr

    result = run_cli("list")

    assert result.exit_code == 0, result.stderr
    assert widest(result.stdout) <= 80
    assert widest(result.stderr) <= 80
    names = [line[:14] for line in result.stdout.splitlines()[1:]]
    assert len(set(names)) == 2, names
    assert {name[-7:] for name in names} == {f"({SIRET[-5:]})", f"({OTHER_SIRET[-5:]})"}
    legend = " ".join(result.stderr.split())
    assert "s.d. = sans date, · = aucune clé ; en rouge : critique." in legend
