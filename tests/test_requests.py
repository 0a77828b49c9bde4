"""Key requests sent by e-mail (issue 15, item 4): recorded, followed up, closed by ``add``.

Real CLI, real SQLite file (migration 4), real encrypted file store; the clock is fixed.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from cfakey.metadata import MIGRATIONS, SCHEMA_VERSION, Metadata, _split_sql
from cfakey.paths import Paths
from tests.test_import_hardening import database_text
from tests.test_keys_cli import KEY_2, SIRET, cfa, run_cli

__all__ = ["cfa"]


def requests_json() -> list[dict[str, object]]:
    result = run_cli("request", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


@pytest.mark.usefixtures("cfa")
def test_a_request_is_listed_with_its_follow_up_then_closed_by_add() -> None:
    recorded = run_cli(
        "request", "add", "constructys", "--le", "20/11/2026", "--a", "cles@constructys.fr"
    )
    listing = run_cli("list")
    pending = requests_json()

    received = run_cli("add", "constructys", "--interactive", input=f"o\n{KEY_2}\n")
    journal = run_cli("journal", "--csv")

    assert recorded.exit_code == 0, recorded.stderr
    assert "envoyée le 20/11/2026) ; à relancer le 30/11/2026" in recorded.stderr
    assert "Constructys : demandée le 20/11/2026, relance le 30/11/2026" in listing.stderr
    assert pending == [
        {
            "cfa": SIRET,
            "cfa_name": "CFA Test",
            "opco": "constructys",
            "opco_name": pending[0]["opco_name"],
            "sent_on": "2026-11-20",
            "sent_to": "cles@constructys.fr",
            "follow_up_on": "2026-11-30",
            "status": "waiting",
            "status_label": "demandée",
        }
    ]
    assert received.exit_code == 0, received.stderr
    assert requests_json() == []
    assert "requested" in journal.stdout
    assert "request_closed" in journal.stdout
    assert KEY_2 not in database_text()


@pytest.mark.usefixtures("cfa")
def test_a_key_row_shows_its_renewal_request_in_the_status_cell(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(f"SIRET;OPCO;Clé\n{SIRET};opco2i;{KEY_2}\n", encoding="utf-8")
    assert run_cli("import", str(path)).exit_code == 0
    assert run_cli("config", "set", "request.follow_up_days", "3").exit_code == 0

    assert run_cli("request", "add", "opco2i", "--le", "10/11/2026").exit_code == 0
    listing = run_cli("list")

    assert "demandée le 10/11/2026, à relancer" in listing.stdout
    assert requests_json()[0]["status"] == "follow_up"


@pytest.mark.usefixtures("cfa")
@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (("atlas",), "La clé Atlas ne s'obtient pas sur demande par e-mail", ExitCode.USAGE),
        (("constructys", "--le", "30/12/2026"), "Date d'envoi dans le futur", ExitCode.USAGE),
        (("constructys", "--le", "lundi"), "Date illisible", ExitCode.USAGE),
        (("constructys", "--a", "pas une adresse"), "Adresse e-mail invalide", ExitCode.USAGE),
    ],
)
def test_a_bad_request_is_refused_and_nothing_recorded(
    args: tuple[str, ...], message: str, code: int
) -> None:
    result = run_cli("request", "add", *args)

    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert requests_json() == []
    assert "requested" not in run_cli("journal", "--csv").stdout


def test_a_bad_follow_up_setting_is_refused() -> None:
    result = run_cli("config", "set", "request.follow_up_days", "trois")

    assert result.exit_code == ExitCode.USAGE
    assert "Paramètre « request.follow_up_days » invalide" in result.stderr


@pytest.mark.usefixtures("cfa")
def test_cancel_forgets_the_request_and_journals_it() -> None:
    assert run_cli("request", "add", "opco2i").exit_code == 0

    cancelled = run_cli("request", "cancel", "opco2i")
    again = run_cli("request", "cancel", "opco2i")

    assert cancelled.exit_code == 0, cancelled.stderr
    assert requests_json() == []
    assert "request_cancelled" in run_cli("journal", "--csv").stdout
    assert again.exit_code == ExitCode.NOT_FOUND
    assert "Aucune demande en cours" in again.stderr


def test_the_walkthrough_offers_to_note_the_request(cfa: str) -> None:
    result = run_cli("add", "constructys", "--interactive", input="n\nn\n")

    assert "cfakey request add constructys" in result.stderr


def test_a_database_of_schema_2_gains_the_request_table(tmp_path: Path) -> None:
    """Migration 4 on a file written by the previous cfakey: keys kept, requests possible."""
    path = Paths.from_env().metadata_db
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        for number in (1, 2):
            for statement in _split_sql(MIGRATIONS[number]):
                db.execute(statement)
        db.execute("PRAGMA user_version = 2")
        db.execute(
            "INSERT INTO cfa VALUES (?, 'CFA Ancien', NULL, 1, '2026-01-01T00:00:00+00:00')",
            (SIRET,),
        )
    del tmp_path

    with Metadata.open(Paths.from_env()) as metadata:
        assert [record.siret for record in metadata.list_cfas()] == [SIRET]
        assert metadata.list_requests() == []
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION == 5  # migrations 4 (requests) and 5 (team cache)
