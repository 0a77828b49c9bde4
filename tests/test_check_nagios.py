"""``check`` as a Nagios / Icinga / Centreon plugin (issue 14, item 3): 0/1/2 are key
statuses only, anything else is UNKNOWN (3) with its status line first on stdout;
performance data after ``|``; one line per problem saying what to do."""

from __future__ import annotations

import datetime as dt
import gc
import json
import re
import sqlite3
from pathlib import Path

import pytest

from cfakey.context import AppContext
from tests.conftest import CliResult, run_cli

NOW = dt.datetime(2026, 3, 2, 12, 0, tzinfo=dt.UTC)
SIRET = "18130002100373"
KEY_ATLAS = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
KEY_SANTE = "Mb7+Nv/Cx5Za3Sd1Fg9Hj2Kl4Pq6Wt8Y"
UNKNOWN = 3
#: The plugin guidelines' performance data: 'label'=value[UOM];[warn];[crit];[min];[max],
#: thresholds in their range format ([@][start:]end, ~ for minus infinity).
_RANGE = r"(@?(~|-?\d+)?:?-?\d+)?"
PERFDATA = re.compile(rf"^[a-z_]+=-?\d+;{_RANGE};{_RANGE}(;-?\d*)?(;-?\d*)?$")


def at(*args: str, stdin: str | None = None) -> CliResult:
    return run_cli(*args, input=stdin, context=AppContext(clock=lambda: NOW))


@pytest.fixture
def keys(isolated_home: Path) -> Path:
    """Atlas expiring in 12 days (critical), OPCO Santé in 40 (warning)."""
    assert at("cfa", "add", SIRET, "--nom", "CFA Test").exit_code == 0
    added = at("add", "atlas", "--expires", "14/03/2026", "--yes", stdin=KEY_ATLAS)
    assert added.exit_code == 0, added.stderr
    added = at("add", "sante", "--expires", "11/04/2026", "--yes", stdin=KEY_SANTE)
    assert added.exit_code == 0, added.stderr
    return isolated_home / "cfakey.sqlite3"


def test_first_line_carries_the_performance_data_contract(keys: Path) -> None:
    result = at("check")
    assert result.exit_code == 2
    first, *rest = result.stdout.splitlines()
    status, perf = first.split(" | ")
    assert status == "CRITIQUE : 1 critique(s), 1 en alerte, sur 2 clé(s)."
    assert perf == (
        "cles_ok=0;;;0 cles_alerte=1;;;0 cles_critiques=1;;;0 jours_avant_echeance=12;@~:45;@~:14"
    )
    assert all(PERFDATA.match(part) for part in perf.split(" "))
    assert perf.isascii()
    # one line per problem, saying what to do
    assert len(rest) == 2
    assert rest[0].endswith(f"; à faire : cfakey rotate atlas --cfa {SIRET}")
    assert rest[1].endswith(f"; à faire : cfakey rotate sante --cfa {SIRET}")
    assert KEY_ATLAS not in result.stdout + result.stderr


def test_perfdata_follows_explicit_thresholds_and_an_empty_store(isolated_home: Path) -> None:
    empty = at("check")
    assert (empty.exit_code, empty.stdout) == (
        0,
        "OK : aucune clé enregistrée. | cles_ok=0;;;0 cles_alerte=0;;;0 cles_critiques=0;;;0\n",
    )


def test_explicit_windows_are_the_thresholds(keys: Path) -> None:
    result = at("check", "--warn-days", "60", "--crit-days", "5")
    assert result.exit_code == 1
    assert result.stdout.splitlines()[0].endswith(
        "| cles_ok=0;;;0 cles_alerte=2;;;0 cles_critiques=0;;;0 jours_avant_echeance=12;@~:60;@~:5"
    )


def test_warn_days_inside_the_critical_window_is_unknown(keys: Path) -> None:
    result = at("check", "--warn-days", "10")
    assert result.exit_code == UNKNOWN
    # Only the OPCOs of the checked keys are named: never Afdas, which has none here.
    message = (
        "--warn-days 10 est plus court que la fenêtre critique pour Atlas, OPCO Santé (14 jours)"
    )
    assert result.stdout.startswith(f"INCONNU : {message}")
    assert message in result.stderr
    assert "l'alerte ne serait jamais atteinte" in result.stderr
    assert at("check", "--warn-days", "10", "--crit-days", "3").exit_code == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--bogus",), "option inconnue : --bogus"),
        (("--warn-days", "x"), "valeur invalide pour '--warn-days'"),
        (("--warn-days", "3", "--crit-days", "5"), "--crit-days ne peut pas dépasser"),
    ],
)
def test_a_bad_option_is_unknown(isolated_home: Path, args: tuple[str, ...], words: str) -> None:
    result = at("check", *args)
    assert result.exit_code == UNKNOWN
    assert result.stdout.startswith("INCONNU : ")
    assert words in result.stdout.splitlines()[0]


def test_a_damaged_database_is_unknown_and_left_as_it_is(keys: Path) -> None:
    with sqlite3.connect(keys) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    data = bytearray(keys.read_bytes())
    data[100:] = b"\xa5" * (len(data) - 100)  # header kept, every page garbage
    keys.write_bytes(bytes(data))
    result = at("check")
    assert result.exit_code == UNKNOWN
    assert result.stdout.startswith("INCONNU : La base de métadonnées")
    assert "endommagée" in result.stdout.splitlines()[0]
    assert keys.read_bytes() == bytes(data)
    assert json.loads(at("check", "--json").stdout or "null") is None  # JSON stays clean


def test_an_unreadable_config_is_unknown(isolated_home: Path) -> None:
    config = isolated_home / "config.json"
    isolated_home.mkdir(parents=True, exist_ok=True)
    config.write_text("{pas du json")
    config.chmod(0o600)
    result = at("check")
    assert result.exit_code == UNKNOWN
    assert result.stdout.startswith("INCONNU : ")
    assert config.read_text() == "{pas du json"


def test_other_commands_keep_their_exit_codes(isolated_home: Path) -> None:
    assert at("list", "--bogus").exit_code == 2
    assert at("list", "--bogus").stdout == ""


def test_another_cfakey_writing_does_not_stop_check(keys: Path) -> None:
    """check only reads (WAL): a writer holding the database leaves it a verdict."""
    gc.collect()  # the connections of the commands run in this process
    holder = sqlite3.connect(keys, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = at("check")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 2, result.stdout + result.stderr
    assert result.stdout.startswith("CRITIQUE : ")


def alerts(value: float, threshold: str) -> bool:
    """Whether ``value`` raises an alert against a range, as the plugin guidelines define
    it: ``[@]start:end``, ``~`` for minus infinity; without ``@``, outside the range."""
    inside = threshold.startswith("@")
    start_text, _, end_text = threshold.removeprefix("@").rpartition(":")
    start = float("-inf") if start_text == "~" else float(start_text or 0)
    end = float(end_text) if end_text else float("inf")
    within = start <= value <= end
    return within if inside else not within


def perf_fields(line: str) -> dict[str, list[str]]:
    perf = line.split(" | ")[1]
    return {
        label: fields.split(";")
        for label, _, fields in (part.partition("=") for part in perf.split(" "))
    }


@pytest.mark.parametrize(
    ("days", "level"), [(60, 0), (46, 0), (45, 1), (15, 1), (14, 2), (1, 2), (-3, 2)]
)
def test_the_days_thresholds_alert_exactly_where_check_does(
    isolated_home: Path, days: int, level: int
) -> None:
    assert at("cfa", "add", SIRET, "--nom", "CFA Test").exit_code == 0
    expires = NOW + dt.timedelta(days=100)
    added = at("add", "atlas", "--expires", f"{expires:%d/%m/%Y}", "--yes", stdin=KEY_ATLAS)
    assert added.exit_code == 0, added.stderr
    later = AppContext(clock=lambda: NOW + dt.timedelta(days=100 - days))
    result = run_cli("check", context=later)
    assert result.exit_code == level, result.stdout
    first = result.stdout.splitlines()[0]
    assert all(PERFDATA.match(part) for part in first.split(" | ")[1].split(" "))
    value, warn, crit = perf_fields(first)["jours_avant_echeance"]
    assert (int(value), warn, crit) == (days, "@~:45", "@~:14")
    parsed = 2 if alerts(days, crit) else 1 if alerts(days, warn) else 0
    assert parsed == level


def test_crit_days_beyond_the_warning_window_is_unknown(keys: Path) -> None:
    """The mirror of --warn-days: a critical window wider than the warning one leaves the
    alert level unreachable."""
    result = at("check", "--crit-days", "50")
    assert result.exit_code == UNKNOWN
    message = (
        "--crit-days 50 dépasse la fenêtre d'alerte pour Atlas, OPCO Santé (45 jours) : "
        "l'alerte ne serait jamais atteinte ; donnez aussi --warn-days (au moins 50)."
    )
    assert result.stdout.splitlines()[0] == f"INCONNU : {message}"
    assert message in result.stderr
    assert at("check", "--crit-days", "50", "--warn-days", "60").exit_code == 2
    assert at("check", "--crit-days", "20").exit_code == 2  # Atlas at 12 days: critical


@pytest.mark.parametrize(
    ("option", "message", "accepted"),
    [
        (
            ("--warn-days", "10"),
            (
                "--warn-days 10 est plus court que la fenêtre critique des OPCO "
                "(jusqu'à 14 jours) : l'alerte ne serait jamais atteinte ; donnez aussi "
                "--crit-days (au plus 10)."
            ),
            ("--warn-days", "14"),
        ),
        (
            ("--crit-days", "40"),
            (
                "--crit-days 40 dépasse la fenêtre d'alerte des OPCO (la plus courte : 30 jours) : "
                "l'alerte ne serait jamais atteinte ; donnez aussi --warn-days (au moins 40)."
            ),
            ("--crit-days", "14"),
        ),
    ],
)
def test_a_window_with_no_key_states_the_rule_without_naming_an_opco(
    isolated_home: Path, option: tuple[str, str], message: str, accepted: tuple[str, str]
) -> None:
    result = at("check", *option)
    assert result.exit_code == UNKNOWN
    assert result.stdout.splitlines()[0] == f"INCONNU : {message}"
    assert message in result.stderr
    names = ("Afdas", "Atlas", "Akto", "Ocapiat", "Constructys", "Uniformation")
    assert not any(name in result.stdout + result.stderr for name in names)
    assert at("check", *accepted).exit_code == 0


def test_warn_days_reachable_for_every_checked_key_is_accepted(isolated_home: Path) -> None:
    """Ocapiat's critical window is 7 days: --warn-days 10 can alert for its keys."""
    assert at("cfa", "add", SIRET, "--nom", "CFA Test").exit_code == 0
    added = at("add", "ocapiat", "--lifetime-months", "6", "--yes", stdin=KEY_SANTE)
    assert added.exit_code == 0, added.stderr
    result = at("check", "--warn-days", "10")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0].endswith("jours_avant_echeance=184;@~:10;@~:7")
