"""The SQLite metadata: schema and migrations, permissions, journal, corruption, concurrency."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cfakey.errors import AlreadyExistsError, DataCorruptedError, ExitCode, NotFoundError
from cfakey.metadata import SCHEMA_VERSION, KeyRecord, Metadata
from cfakey.paths import Paths
from tests.conftest import run_cli

SIRET = "18130002100373"


def record(
    opco_id: str = "atlas", fingerprint: str = "0123456789ab", siret: str = SIRET
) -> KeyRecord:
    return KeyRecord(
        siret=siret,
        opco_id=opco_id,
        obtained_on=date(2026, 11, 1),
        stored_at=datetime(2026, 11, 1, 9, 30, tzinfo=UTC),
        expires_at=datetime(2027, 11, 1, tzinfo=UTC),
        expiry_source="registry",
        fingerprint=fingerprint,
        os_user="tester",
        store="file",
    )


@pytest.fixture
def metadata(isolated_home: Path) -> Metadata:
    return Metadata.open(Paths.from_env())


def test_new_database_is_private_and_versioned(metadata: Metadata, isolated_home: Path) -> None:
    db = isolated_home / "cfakey.sqlite3"
    assert db.stat().st_mode & 0o777 == 0o600
    assert isolated_home.stat().st_mode & 0o777 == 0o700
    version = sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION


def test_keys_round_trip_and_filters(metadata: Metadata) -> None:
    metadata.add_cfa(SIRET, "CFA", None)
    metadata.put_key(record("atlas"))
    metadata.put_key(record("sante", "ba9876543210"))
    assert metadata.get_key(SIRET, "atlas") == record("atlas")
    assert [key.opco_id for key in metadata.list_keys(opco_id="sante")] == ["sante"]
    assert metadata.keys_with_fingerprint("ba9876543210")[0].opco_id == "sante"
    metadata.set_expiry(SIRET, "atlas", None, "none")
    updated = metadata.get_key(SIRET, "atlas")
    assert updated is not None
    assert updated.expires_at is None
    assert updated.expiry_source == "none"
    assert metadata.delete_key(SIRET, "atlas")
    assert not metadata.delete_key(SIRET, "atlas")


def test_first_cfa_is_default_and_duplicates_refused(metadata: Metadata) -> None:
    first = metadata.add_cfa(SIRET, "Premier", None)
    second = metadata.add_cfa("35600000000048", "Second", None)
    assert first.is_default
    assert not second.is_default
    with pytest.raises(AlreadyExistsError):
        metadata.add_cfa(SIRET, "Encore", None)
    metadata.set_default_cfa("35600000000048")
    assert [cfa.siret for cfa in metadata.list_cfas() if cfa.is_default] == ["35600000000048"]
    metadata.remove_cfa("35600000000048")
    assert [cfa.siret for cfa in metadata.list_cfas() if cfa.is_default] == [SIRET]
    with pytest.raises(NotFoundError):
        metadata.remove_cfa("35600000000048")


def test_journal_is_append_only(metadata: Metadata) -> None:
    metadata.log(
        "added", siret=SIRET, opco_id="atlas", new_fingerprint="0123456789ab", detail="test"
    )
    entries = metadata.journal(opco_id="atlas")
    assert [(entry.action, entry.new_fingerprint) for entry in entries] == [
        ("added", "0123456789ab")
    ]
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        metadata._db.execute("DELETE FROM journal")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        metadata._db.execute("UPDATE journal SET detail = 'x'")
    assert metadata.journal(since=datetime(2999, 1, 1, tzinfo=UTC)) == []


def test_transaction_rolls_back_everything(metadata: Metadata) -> None:
    metadata.add_cfa(SIRET, "CFA", None)

    def write_then_fail() -> None:
        with metadata.transaction():
            metadata.put_key(record())
            metadata.log("added", siret=SIRET, opco_id="atlas")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        write_then_fail()
    assert metadata.list_keys() == []
    assert [entry.action for entry in metadata.journal()] == ["cfa_added"]


def test_newer_schema_is_refused_untouched(isolated_home: Path) -> None:
    Metadata.open(Paths.from_env()).close()
    db = isolated_home / "cfakey.sqlite3"
    sqlite3.connect(db).execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = db.read_bytes()
    with pytest.raises(DataCorruptedError, match="plus récente"):
        Metadata.open(Paths.from_env())
    assert db.read_bytes() == before
    result = run_cli("cfa", "list")
    assert result.exit_code == ExitCode.DATA_CORRUPTED
    assert "mettez cfakey à jour" in result.stderr
    assert "Traceback" not in result.stderr


def test_corrupted_database_is_a_clear_error(isolated_home: Path) -> None:
    isolated_home.mkdir(mode=0o700)
    db = isolated_home / "cfakey.sqlite3"
    db.write_bytes(b"this is not a database, only garbage" * 100)
    result = run_cli("cfa", "list")
    assert result.exit_code == ExitCode.DATA_CORRUPTED
    assert "endommagée" in result.stderr
    assert db.read_bytes() == b"this is not a database, only garbage" * 100


def test_data_directory_that_is_a_file(isolated_home: Path) -> None:
    isolated_home.write_text("not a directory")
    result = run_cli("cfa", "list")
    assert result.exit_code == ExitCode.ERROR
    assert "Impossible d'ouvrir les métadonnées" in result.stderr
    assert isolated_home.read_text() == "not a directory"


_WRITER = """
import sys
from datetime import UTC, date, datetime
from cfakey.metadata import KeyRecord, Metadata
from cfakey.paths import Paths
index = int(sys.argv[1])
with Metadata.open(Paths.from_env()) as metadata, metadata.transaction():
    record = KeyRecord("18130002100373", f"opco{index}", date(2026, 1, 1), datetime.now(UTC), None,
                       "none", f"{index:012x}", "tester", "file")
    metadata.put_key(record)
    metadata.log("added", siret=record.siret, opco_id=record.opco_id,
                 new_fingerprint=record.fingerprint)
"""


@pytest.mark.slow
def test_twenty_processes_write_at_once(isolated_home: Path) -> None:
    Metadata.open(Paths.from_env()).close()
    processes = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(index)], env=os.environ.copy())
        for index in range(20)
    ]
    assert [process.wait(timeout=120) for process in processes] == [0] * 20
    with Metadata.open(Paths.from_env()) as metadata:
        assert len(metadata.list_keys()) == 20
        assert len([entry for entry in metadata.journal() if entry.action == "added"]) == 20


def test_an_error_after_sqlite_rolled_back_by_itself_is_the_one_reported(
    metadata: Metadata,
) -> None:
    metadata.add_cfa(SIRET, "CFA", None)

    def failing_unit() -> None:
        with metadata.transaction():
            metadata.put_key(record("atlas"))
            metadata._db.execute("ROLLBACK")  # what SQLite does on its own after SQLITE_FULL
            raise RuntimeError("disque plein")

    with pytest.raises(RuntimeError, match="disque plein"):
        failing_unit()

    assert metadata.list_keys() == []
    with metadata.transaction():  # no transaction left open behind
        metadata.put_key(record("afdas"))
    assert [key.opco_id for key in metadata.list_keys()] == ["afdas"]
