"""The metadata database's troubles, each named for what it is: damage, disk, or another cfakey.

Disk full and read-only are real: a small tmpfs mounted for the test (root only; skipped
elsewhere), since chmod does not stop root.
"""

from __future__ import annotations

import gc
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from cfakey.errors import BusyError, CfakeyError, ExitCode
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from cfakey.stores.file_store import EncryptedFileStore, holds_entries
from tests.conftest import TEST_FILE_PASSWORD, run_cli

SIRET = "18130002100373"
OTHER_SIRET = "35600000000048"
KEY = "Canari+metadata/0123456789abcdef="
DAMAGED = "endommagée"


@pytest.fixture
def one_key(isolated_home: Path) -> Path:
    """A CFA and one key in the encrypted file; returns the database's path."""
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA Métadonnées").exit_code == 0
    added = run_cli("add", "atlas", "--yes", input=KEY)
    assert added.exit_code == 0, added.stderr
    return isolated_home / "cfakey.sqlite3"


def test_a_new_database_is_never_an_empty_file(isolated_home: Path) -> None:
    Metadata.open(Paths.from_env()).close()
    db = isolated_home / "cfakey.sqlite3"
    assert db.stat().st_size > 0
    tables = {row[0] for row in sqlite3.connect(db).execute("SELECT name FROM sqlite_master")}
    assert {"cfa", "key", "journal"} <= tables
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [path.name for path in isolated_home.glob(".*tmp")] == []


def test_an_empty_database_while_the_store_holds_keys_is_damage_not_a_fresh_start(
    one_key: Path, isolated_home: Path
) -> None:
    store_before = (isolated_home / "keys.enc").read_bytes()
    one_key.write_bytes(b"")  # truncated: the keys' descriptions are gone
    for command in (("check",), ("list",), ("add", "sante", "--yes")):
        result = run_cli(*command, input=KEY)
        # check is a monitoring plugin: no verdict is UNKNOWN (3), not 5 (issue 14)
        expected = 3 if command == ("check",) else ExitCode.DATA_CORRUPTED
        assert result.exit_code == expected, (command, result.stdout)
        assert "vide (0 octet)" in result.stderr
        assert "Restaurez une sauvegarde" in result.stderr
        assert "aucune clé" not in result.stdout
    assert one_key.read_bytes() == b""  # not silently re-created
    assert (isolated_home / "keys.enc").read_bytes() == store_before


def _damage_table(db: Path, table: str) -> None:
    """Overwrite the root page of ``table`` with garbage, leaving the header readable."""
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        root = connection.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)
        ).fetchone()[0]
    connection.close()
    with db.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xa5" * page_size)


@pytest.mark.parametrize(
    ("table", "command"),
    [("key", ("check",)), ("key", ("list",)), ("journal", ("journal",)), ("cfa", ("cfa", "list"))],
)
def test_damage_found_after_opening_is_exit_5_in_french(
    one_key: Path, table: str, command: tuple[str, ...]
) -> None:
    _damage_table(one_key, table)
    result = run_cli(*command)
    expected = 3 if command == ("check",) else ExitCode.DATA_CORRUPTED  # Nagios UNKNOWN
    assert result.exit_code == expected, result.stdout + result.stderr
    assert DAMAGED in result.stderr
    assert "Restaurez une sauvegarde" in result.stderr
    assert "inattendue" not in result.stderr


def test_a_database_held_by_another_cfakey_is_named(isolated_home: Path) -> None:
    Metadata.open(Paths.from_env()).close()
    holder = sqlite3.connect(isolated_home / "cfakey.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with Metadata.open(Paths.from_env(), busy_timeout=0.1) as metadata:
            with pytest.raises(BusyError, match="tenue par un autre cfakey") as caught:
                metadata.add_cfa(SIRET, "CFA", None)
            assert caught.value.exit_code == ExitCode.BUSY == 7
            assert "0.1 s" in caught.value.message
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with Metadata.open(Paths.from_env()) as metadata:
        assert metadata.list_cfas() == []


@pytest.mark.slow
def test_a_command_waits_30_seconds_then_names_the_other_cfakey(isolated_home: Path) -> None:
    Metadata.open(Paths.from_env()).close()
    holder = sqlite3.connect(isolated_home / "cfakey.sqlite3", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = run_cli("cfa", "add", SIRET, "--nom", "CFA")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == ExitCode.BUSY
    assert "tenue par un autre cfakey depuis plus de 30 s" in result.stderr
    assert "inattendue" not in result.stderr


# -- real full and read-only disks -----------------------------------------------------


@pytest.fixture
def small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """CFAKEY_HOME on a 2 MiB tmpfs of its own."""
    if getattr(os, "geteuid", lambda: -1)() != 0 or shutil.which("mount") is None:
        pytest.skip("monter un tmpfs demande d'être root")
    mount_point = tmp_path / "petit-disque"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"tmpfs impossible à monter ici : {mounted.stderr.decode().strip()}")
    home = mount_point / "cfakey"
    monkeypatch.setenv("CFAKEY_HOME", str(home))
    try:
        yield home
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "remplissage"
    with suppress(OSError), filler.open("wb") as handle:  # closing may fail too: still full
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    return filler


def test_a_full_disk_is_not_called_a_damaged_database(small_disk: Path) -> None:
    assert run_cli("cfa", "add", SIRET, "--nom", "Premier").exit_code == 0
    filler = _fill(small_disk)
    result = run_cli("cfa", "add", OTHER_SIRET, "--nom", "Second")
    assert result.exit_code == ExitCode.ERROR, result.stderr
    assert "plus de place sur le disque" in result.stderr
    assert DAMAGED not in result.stderr
    assert "Restaurez" not in result.stderr
    for command in (("cfa", "list"), ("check",), ("journal",)):  # reading: works, or says why
        result = run_cli(*command)
        assert result.exit_code in (0, ExitCode.ERROR), result.stderr
        assert DAMAGED not in result.stderr
    filler.unlink()
    listed = run_cli("cfa", "list")
    assert listed.exit_code == 0
    assert "Premier" in listed.stdout
    assert "Second" not in listed.stdout


def test_a_read_only_home_is_not_called_a_damaged_database(small_disk: Path) -> None:
    with Metadata.open(Paths.from_env()) as metadata:  # closed: a file open for writing
        metadata.add_cfa(SIRET, "Premier", None)  # would keep the remount from happening
    gc.collect()  # the connections of earlier in-process commands, too
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk.parent)], check=True)
    for command in (("cfa", "add", OTHER_SIRET, "--nom", "Second"), ("cfa", "list")):
        result = run_cli(*command)
        if result.exit_code == 0:  # reading may work; writing may not
            assert "Premier" in result.stdout
            continue
        assert result.exit_code == ExitCode.ERROR, result.stderr
        assert "lecture seule" in result.stderr
        assert DAMAGED not in result.stderr
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk.parent)], check=True)
    assert "Premier" in run_cli("cfa", "list").stdout


def test_a_full_disk_before_the_database_exists_says_so(small_disk: Path) -> None:
    small_disk.mkdir(mode=0o700)
    _fill(small_disk)
    result = run_cli("cfa", "list")
    assert result.exit_code == ExitCode.ERROR
    assert "plus de place sur le disque" in result.stderr
    assert "Libérez de la place" in result.stderr
    assert not (small_disk / "cfakey.sqlite3").exists()  # no empty file left behind


def test_a_missing_database_beside_a_store_with_keys_is_not_silently_recreated(
    one_key: Path, isolated_home: Path
) -> None:
    store_before = (isolated_home / "keys.enc").read_bytes()
    for leftover in isolated_home.glob("cfakey.sqlite3*"):
        leftover.unlink()  # deleted: the description of the stored keys is gone

    for command in (("check",), ("list",), ("add", "sante", "--yes")):
        result = run_cli(*command, input=KEY)
        # check is a monitoring plugin: no verdict is UNKNOWN (3), not 5 (issue 14)
        expected = 3 if command == ("check",) else ExitCode.DATA_CORRUPTED
        assert result.exit_code == expected, (command, result.stdout)
        assert f"La base de métadonnées {one_key} a disparu" in result.stderr
        assert "Restaurez-la" in result.stderr
        assert "cfakey doctor" in result.stderr
        assert "aucune clé" not in result.stdout
        assert not one_key.exists()
    assert (isolated_home / "keys.enc").read_bytes() == store_before

    # doctor is the way to start a new database: it names the store's undescribed key.
    doctor = run_cli("doctor")
    assert "clé sans métadonnées (18130002100373/atlas)" in doctor.stdout
    assert one_key.exists()
    assert run_cli("check").exit_code == 0


def test_a_fresh_home_still_gets_a_new_database(isolated_home: Path) -> None:
    assert run_cli("check").exit_code == 0
    for leftover in isolated_home.glob("cfakey.sqlite3*"):
        leftover.unlink()  # no key was ever stored here
    result = run_cli("list")
    assert result.exit_code == 0, result.stderr


def _filled_store(small_disk: Path) -> tuple[EncryptedFileStore, bytes]:
    """An encrypted file with one key on the small disk, as it stood before the failure."""
    small_disk.mkdir(mode=0o700)
    store = EncryptedFileStore(small_disk / "keys.enc", lambda **_: TEST_FILE_PASSWORD)
    store.put(f"{SIRET}/atlas", KEY)
    return store, (small_disk / "keys.enc").read_bytes()


def test_a_full_disk_while_writing_the_encrypted_file_is_exit_1(small_disk: Path) -> None:
    store, before = _filled_store(small_disk)
    _fill(small_disk)

    with pytest.raises(CfakeyError) as raised:
        store.put(f"{SIRET}/sante", "Autre+cle/0123456789abcdef=")

    assert raised.value.exit_code == ExitCode.ERROR
    assert "plus de place sur le disque" in raised.value.message
    assert "l'ancien fichier est intact" in raised.value.message
    assert "Libérez de la place" in (raised.value.hint or "")
    assert (small_disk / "keys.enc").read_bytes() == before
    assert [p.name for p in small_disk.glob(".keys.enc*")] == []


def test_a_read_only_disk_while_writing_the_encrypted_file_is_exit_1(small_disk: Path) -> None:
    store, before = _filled_store(small_disk)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk.parent)], check=True)
    try:
        with pytest.raises(CfakeyError) as raised:
            store.put(f"{SIRET}/sante", "Autre+cle/0123456789abcdef=")
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk.parent)], check=True)

    assert raised.value.exit_code == ExitCode.ERROR, raised.value.message
    assert "lecture seule" in raised.value.message
    assert (small_disk / "keys.enc").read_bytes() == before


def test_an_encrypted_file_without_entries_is_a_fresh_start(isolated_home: Path) -> None:
    isolated_home.mkdir(mode=0o700, exist_ok=True)
    store = EncryptedFileStore(isolated_home / "keys.enc", lambda **_: TEST_FILE_PASSWORD)
    store.put(f"{SIRET}/atlas", KEY)
    assert holds_entries(isolated_home / "keys.enc")  # told without the password
    store.delete(f"{SIRET}/atlas")
    assert not holds_entries(isolated_home / "keys.enc")
    assert run_cli("list").exit_code == 0  # no key anywhere: a new database, silently
    (isolated_home / "cfakey.sqlite3").unlink()
    (isolated_home / "keys.enc").write_bytes(b"garbage\n")
    assert holds_entries(isolated_home / "keys.enc")  # damaged: never deemed empty
    assert run_cli("list").exit_code == ExitCode.DATA_CORRUPTED
