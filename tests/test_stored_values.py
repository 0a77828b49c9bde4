"""Decoding a stored row is total: a damaged value is « sans date » or exit 5, never a crash.

The rule, field by field (docs/exit-codes.md):

- ``key.expires_at`` is only a warning date: a value that cannot be read (garbage, an
  impossible date, no time zone, a wrong type) is no usable date, as one outside the
  accepted range already is. The key stays listed « sans date »; ``doctor`` finds it.
- Every other column (SIRET, OPCO, fingerprint, ``obtained_on``, ``stored_at``, the
  journal's ``at``...) names or dates what the key *is*: a bad value there means the file
  was edited or damaged, and no placeholder would be true. The command stops with exit 5,
  naming the database and ``cfakey doctor``.
"""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from cfakey.metadata import KeyRecord, Metadata
from cfakey.paths import Paths
from tests.conftest import run_cli

SIRET = "18130002100373"
KEY = "Canari+valeurs/0123456789abcdef="


@pytest.fixture
def one_key(isolated_home: Path) -> Path:
    """A CFA and one key in the encrypted file; returns the database's path."""
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA Valeurs").exit_code == 0
    added = run_cli("add", "atlas", "--yes", input=KEY)
    assert added.exit_code == 0, added.stderr
    return isolated_home / "cfakey.sqlite3"


def _update(db: Path, sql: str, *parameters: object) -> None:
    with sqlite3.connect(db) as connection:
        connection.execute(sql, parameters)
    connection.close()


@pytest.mark.parametrize(
    "stored",
    [
        "garbage",
        "2026-13-45T00:00:00+00:00",
        "2026-06-01T00:00:00",  # no time zone: cfakey never writes one
        12345,
        b"\x00\xff",
        "9999-12-31T23:59:59+00:00",
    ],
)
def test_an_unreadable_expiry_is_no_date_and_the_key_stays_listed(
    one_key: Path, stored: object
) -> None:
    _update(one_key, "UPDATE key SET expires_at = ?", stored)

    for command in (("list",), ("check",), ("show", "atlas"), ("export", "--format", "env")):
        result = run_cli(*command)
        assert result.exit_code == 0, (command, result.stdout, result.stderr)
        assert "inattendue" not in result.stderr
    listed = run_cli("list", "--json")
    assert '"atlas"' in listed.stdout
    assert '"expires_at": null' in listed.stdout


@pytest.mark.parametrize(
    ("column", "stored"),
    [
        ("obtained_on", "garbage"),
        ("obtained_on", "2026-02-30"),
        ("stored_at", "2026-13-45T00:00:00+00:00"),
        ("stored_at", 7),
        # TEXT columns turn numbers into text; a blob keeps its type, as damage gives.
        ("fingerprint", b"\x00"),
        ("os_user", b"\x01\x02"),
        ("expiry_source", b""),
        # The kept verification (issue 13): an unknown class or status is no verdict.
        ("verify_outcome", "zzz"),
        ("verify_http_status", 42),
        ("verify_http_status", 600),
        ("verify_http_status", "quatre cents"),
    ],
)
def test_an_unreadable_key_column_is_exit_5_naming_the_database_and_doctor(
    one_key: Path, column: str, stored: object
) -> None:
    if column.startswith("verify_"):  # a kept verification, readable but for ``column``
        _update(
            one_key,
            "UPDATE key SET verified_at = '2026-01-01T00:00:00+00:00', "
            "verify_outcome = 'cle_refusee', verify_http_status = 403",
        )
    _update(one_key, f"UPDATE key SET {column} = ?", stored)  # noqa: S608 - test's own names

    commands = [("list",), ("check",), ("show", "atlas"), ("export", "--format", "env")]
    for command in [*commands, ("verify", "--all")]:
        result = run_cli(*command)
        expected = 3 if command == ("check",) else ExitCode.DATA_CORRUPTED  # Nagios UNKNOWN
        assert result.exit_code == expected, (command, result.stderr)
        assert str(one_key) in result.stderr
        assert "cfakey doctor" in result.stderr
        assert "valeur illisible" in result.stderr
        assert f"colonne {column}" in result.stderr
        assert "inattendue" not in result.stderr
        assert KEY not in result.stdout + result.stderr
    doctor = run_cli("doctor")
    assert "inattendue" not in doctor.stderr
    assert "valeur illisible" in doctor.stdout + doctor.stderr


@pytest.mark.parametrize("stored", ["garbage", "2026-13-45T00:00:00+00:00", 99, None])
def test_an_unreadable_journal_date_is_exit_5(one_key: Path, stored: object) -> None:
    with sqlite3.connect(one_key) as connection:
        # NOT NULL is checked on insert: a NULL can only come from a damaged page, which
        # an unchecked schema stands in for here.
        connection.execute("PRAGMA writable_schema = ON")
        connection.execute(
            "UPDATE sqlite_master SET sql = replace(sql, 'at TEXT NOT NULL', 'at TEXT') "
            "WHERE name = 'journal'"
        )
    connection.close()
    _update(one_key, "INSERT INTO journal (at, user, action) VALUES (?, 'x', 'cfa_added')", stored)

    result = run_cli("journal")

    assert result.exit_code == ExitCode.DATA_CORRUPTED, result.stdout + result.stderr
    assert f"La base de métadonnées {one_key} contient une valeur illisible" in result.stderr
    assert "cfakey doctor" in result.stderr
    assert "inattendue" not in result.stderr
    assert run_cli("list").exit_code == 0  # the keys themselves are still readable


def _many_keys(home: Path, count: int) -> Path:
    """``count`` key rows and journal lines written through the metadata API (fast)."""
    now, later = datetime(2026, 3, 1, tzinfo=UTC), datetime(2098, 1, 1, tzinfo=UTC)
    with Metadata.open(Paths.from_env()) as metadata, metadata.transaction():
        metadata.add_cfa(SIRET, "CFA Pages", None)
        for number in range(count):
            opco = f"opco{number:04d}"
            metadata.put_key(
                KeyRecord(
                    SIRET,
                    opco,
                    date(2026, 1, 1),
                    now,
                    later,
                    "operator",
                    f"{number:012x}",
                    "u",
                    "file",
                )
            )
            metadata.log("added", siret=SIRET, opco_id=opco, new_fingerprint=f"{number:012x}")
    db = home / "cfakey.sqlite3"
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return db


def test_zeroed_pages_never_give_an_unexpected_error(isolated_home: Path) -> None:
    db = _many_keys(isolated_home, 300)
    sound = isolated_home / "sain.sqlite3"
    shutil.copyfile(db, sound)
    pages = db.stat().st_size // 4096
    for page in range(2, pages + 1):
        shutil.copyfile(sound, db)
        with db.open("r+b") as handle:
            handle.seek((page - 1) * 4096 + 100)
            handle.write(b"\x00" * 2000)
        for command in (("check",), ("list",), ("journal",)):
            result = run_cli(*command)
            assert "inattendue" not in result.stderr, (page, command, result.stderr)
            damaged = 3 if command == ("check",) else ExitCode.DATA_CORRUPTED  # UNKNOWN
            assert result.exit_code in (0, damaged), (page, command)


@pytest.mark.parametrize("stored", ["garbage", "9999-12-31T23:59:59+00:00", 12345])
def test_doctor_reports_an_unreadable_expiry_with_its_fix(one_key: Path, stored: object) -> None:
    _update(one_key, "UPDATE key SET expires_at = ?", stored)

    doctor = run_cli("doctor")

    assert doctor.exit_code != 0, doctor.stdout
    assert "Tout va bien" not in doctor.stdout
    output = doctor.stdout + doctor.stderr
    assert f"La date d'échéance enregistrée de la clé atlas du CFA {SIRET} est illisible" in output
    assert f"cfakey rotate atlas --cfa {SIRET}" in output
    assert KEY not in output
    assert "sans date" in run_cli("list").stdout  # the key itself stays listed


def test_doctor_gives_the_remedy_of_an_unreadable_column_not_itself(one_key: Path) -> None:
    _update(
        one_key,
        "UPDATE key SET verify_outcome = 'zzz', verified_at = '2026-01-01T00:00:00+00:00'",
    )

    doctor = run_cli("doctor")

    output = doctor.stdout + doctor.stderr
    assert doctor.exit_code != 0
    assert "(table key, colonne verify_outcome)" in output
    assert "Vérifiez-la avec cfakey doctor" not in output
    assert "Restaurez une sauvegarde de ce fichier" in output
    shown = run_cli("show", "atlas")  # elsewhere, doctor is where to look
    assert shown.exit_code == ExitCode.DATA_CORRUPTED
    assert "cfakey doctor" in shown.stderr
