"""The ``--json`` outputs of list, check, show and cfa list: a contract scripts rely on.

Each test pins the exact key set of one output, and that every enumerated value is an
ASCII identifier with its French label beside it (``"status": "expiring"``,
``"status_label": "à renouveler"``). "Today" is fixed by the context's clock.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from typer.testing import CliRunner

from cfakey.cli.app import app
from cfakey.context import AppContext
from cfakey.core.codes import ExpirySource, JournalAction, KeyStatus, Level
from tests.conftest import CliResult

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SIRET = "18130002100373"
ATLAS_KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
MOBILITES_KEY = "Mb7+Nv/Cx5Za3Sd1Fg9Hj2Kl4Pq6Wt8Y"

ROW_KEYS = {
    "cfa",
    "cfa_name",
    "opco",
    "opco_name",
    "expires",
    "expires_at",
    "days_left",
    "status",
    "status_label",
    "fingerprint",
    "obtained",
    "expiry_source",
    "expiry_source_label",
    "rotation_due",
}


def run_at(now: datetime, *args: str, stdin: str | None = None) -> CliResult:
    """``cfakey ARGS`` with the clock stopped at ``now``."""
    context = AppContext(clock=lambda: now)
    result = CliRunner().invoke(app, list(args), input=stdin, obj=context, prog_name="cfakey")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def two_keys() -> None:
    """An Atlas key without date, and a Mobilités key 10 days from expiry (critical)."""
    assert run_at(NOW, "cfa", "add", SIRET, "--nom", "CFA Test").exit_code == 0
    added = run_at(NOW, "add", "atlas", "--no-interactive", stdin=ATLAS_KEY)
    assert added.exit_code == 0, added.stderr
    expires = (NOW + timedelta(days=10)).astimezone().strftime("%d/%m/%Y")
    added = run_at(
        NOW, "add", "mobilites", "--no-interactive", "--expires", expires, stdin=MOBILITES_KEY
    )
    assert added.exit_code == 0, added.stderr


def is_identifier(value: str) -> bool:
    return value.isascii() and value.replace("_", "").isalnum() and value.islower()


def check_codes(row: dict[str, Any]) -> None:
    assert is_identifier(row["status"])
    assert row["status_label"] == KeyStatus(row["status"]).label
    assert row["expiry_source_label"] == ExpirySource(row["expiry_source"]).label


@pytest.mark.usefixtures("two_keys")
def test_list_json_pins_its_keys_and_labels_every_status() -> None:
    result = run_at(NOW, "list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [set(row) for row in rows] == [ROW_KEYS, ROW_KEYS]
    for row in rows:
        check_codes(row)
    assert [(row["opco"], row["status"], row["status_label"]) for row in rows] == [
        ("mobilites", "expiring", "à renouveler"),
        ("atlas", "undated", "sans date"),
    ]
    assert (rows[0]["expiry_source"], rows[0]["expiry_source_label"]) == (
        "operator",
        "saisie",
    )


@pytest.mark.usefixtures("two_keys")
def test_check_json_pins_its_keys_and_labels_every_level() -> None:
    result = run_at(NOW, "check", "--json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert set(data) == {"status", "status_label", "exit_code", "checked", "problems"}
    assert (data["status"], data["status_label"], data["exit_code"], data["checked"]) == (
        "critical",
        "CRITIQUE",
        2,
        2,
    )
    (problem,) = data["problems"]
    assert set(problem) == ROW_KEYS | {"level", "level_label"}
    check_codes(problem)
    assert (problem["opco"], problem["level"], problem["level_label"]) == (
        "mobilites",
        "critical",
        "CRITIQUE",
    )


def test_check_json_with_nothing_stored_is_ok() -> None:
    data = json.loads(run_at(NOW, "check", "--json").stdout)
    assert data == {
        "status": "ok",
        "status_label": "OK",
        "exit_code": 0,
        "checked": 0,
        "problems": [],
    }


@pytest.mark.usefixtures("two_keys")
def test_show_json_pins_its_keys() -> None:
    result = run_at(NOW, "show", "atlas", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == ROW_KEYS | {"stored_at", "os_user", "store"}
    check_codes(data)
    assert (data["status"], data["status_label"], data["store"]) == ("undated", "sans date", "file")


@pytest.mark.usefixtures("two_keys")
def test_cfa_list_json_pins_its_keys() -> None:
    (row,) = json.loads(run_at(NOW, "cfa", "list", "--json").stdout)
    assert row == {
        "siret": SIRET,
        "siren": SIRET[:9],
        "name": "CFA Test",
        "uai": None,
        "default": True,
        "keys": 2,
    }


def test_every_code_is_an_ascii_identifier_with_a_french_label() -> None:
    for table in (KeyStatus, ExpirySource, JournalAction):
        for member in table:
            assert is_identifier(member.value), member
            assert member.label, member
            assert member.label != member.value, member
    assert [(level.id, level.label) for level in Level] == [
        ("ok", "OK"),
        ("warning", "ALERTE"),
        ("critical", "CRITIQUE"),
    ]
