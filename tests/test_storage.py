"""No half states: a secret never outlives its metadata, nor metadata its secret."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cfakey import paths
from cfakey.core.storage import read_key, remove_key, store_key
from cfakey.errors import NotFoundError, StoreUnavailableError
from cfakey.metadata import KeyRecord, Metadata
from cfakey.paths import Paths
from cfakey.stores.base import KeyStore, entry_name, fingerprint
from cfakey.stores.file_store import EncryptedFileStore
from tests.conftest import TEST_FILE_PASSWORD, run_cli

SIRET = "18130002100373"
OLD_KEY = "ancienne+clé/AAAA="
NEW_KEY = "nouvelle+clé/BBBB="


class MemoryStore(KeyStore):
    """A dict-backed store whose writes can be made to fail, to inject faults."""

    kind = "memory"

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.fail_on_put = False
        self.fail_on_delete = False

    def describe(self) -> str:
        return "mémoire (tests)"

    def put(self, entry: str, secret: str) -> None:
        if self.fail_on_put:
            raise StoreUnavailableError("magasin verrouillé")
        self.secrets[entry] = secret

    def get(self, entry: str) -> str | None:
        return self.secrets.get(entry)

    def delete(self, entry: str) -> bool:
        if self.fail_on_delete:
            raise StoreUnavailableError("magasin verrouillé")
        return self.secrets.pop(entry, None) is not None


def make_record(secret: str) -> KeyRecord:
    return KeyRecord(
        SIRET,
        "atlas",
        date(2026, 11, 1),
        datetime(2026, 11, 1, tzinfo=UTC),
        None,
        "none",
        fingerprint(secret),
        "tester",
        "memory",
    )


@pytest.fixture
def metadata(isolated_home: Path) -> Metadata:
    opened = Metadata.open(Paths.from_env())
    opened.add_cfa(SIRET, "CFA", None)
    return opened


def test_store_then_read_and_remove(metadata: Metadata) -> None:
    store = MemoryStore()
    store_key(store, metadata, make_record(NEW_KEY), NEW_KEY, action="added")
    assert read_key(store, SIRET, "atlas") == NEW_KEY
    assert [entry.action for entry in metadata.journal(opco_id="atlas")] == ["added"]
    remove_key(store, metadata, SIRET, "atlas")
    assert store.secrets == {}
    assert metadata.list_keys() == []
    with pytest.raises(NotFoundError):
        read_key(store, SIRET, "atlas")


def test_metadata_failure_restores_the_previous_secret(
    metadata: Metadata, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()
    store_key(store, metadata, make_record(OLD_KEY), OLD_KEY, action="added")

    def broken_log(*args: object, **kwargs: object) -> None:
        raise OSError("disque plein")

    monkeypatch.setattr(metadata, "log", broken_log)
    with pytest.raises(OSError, match="disque plein"):
        store_key(store, metadata, make_record(NEW_KEY), NEW_KEY, action="rotated")
    assert store.secrets == {entry_name(SIRET, "atlas"): OLD_KEY}
    kept = metadata.get_key(SIRET, "atlas")
    assert kept is not None
    assert kept.fingerprint == fingerprint(OLD_KEY)


def test_metadata_failure_deletes_a_new_secret(
    metadata: Metadata, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = MemoryStore()

    def broken_put_key(record: KeyRecord) -> None:
        raise OSError("disque plein")

    monkeypatch.setattr(metadata, "put_key", broken_put_key)
    with pytest.raises(OSError, match="disque plein"):
        store_key(store, metadata, make_record(NEW_KEY), NEW_KEY, action="added")
    assert store.secrets == {}
    assert metadata.journal(opco_id="atlas") == []


def test_store_failure_leaves_no_metadata(metadata: Metadata) -> None:
    store = MemoryStore()
    store.fail_on_put = True
    with pytest.raises(StoreUnavailableError):
        store_key(store, metadata, make_record(NEW_KEY), NEW_KEY, action="added")
    assert metadata.list_keys() == []
    assert metadata.journal(opco_id="atlas") == []


def test_store_failure_on_remove_keeps_metadata(metadata: Metadata) -> None:
    store = MemoryStore()
    store_key(store, metadata, make_record(OLD_KEY), OLD_KEY, action="added")
    store.fail_on_delete = True
    with pytest.raises(StoreUnavailableError):
        remove_key(store, metadata, SIRET, "atlas")
    assert metadata.get_key(SIRET, "atlas") is not None
    assert store.secrets == {entry_name(SIRET, "atlas"): OLD_KEY}
    assert "removed" not in [entry.action for entry in metadata.journal()]


# -- a directory sync failing after a good rename ------------------------------------------


def test_a_directory_sync_failure_after_the_rename_is_a_successful_write(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rename is the commit point: what follows cannot turn a done write into a failure.

    A directory fsync fails only on a failing disk (EIO), so it is injected at the OS call.
    Before, ``store password`` reported « l'ancien fichier est intact » over the new file
    and went on with the old password in memory.
    """
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA").exit_code == 0
    assert run_cli("add", "atlas", "--cfa", SIRET, input=NEW_KEY + "\n").exit_code == 0

    def failing_sync(directory: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(paths, "_fsync_dir", failing_sync)
    monkeypatch.setenv("CFAKEY_NEW_FILE_PASSWORD", "un-nouveau-mot-de-passe")
    result = run_cli("store", "password")
    assert result.exit_code == 0, result.stderr
    assert "intact" not in result.stderr
    assert "Mot de passe du fichier chiffré changé" in result.stderr
    monkeypatch.undo()
    reopened = EncryptedFileStore(
        isolated_home / "keys.enc", lambda *, new: "un-nouveau-mot-de-passe"
    )
    assert reopened.get(entry_name(SIRET, "atlas")) == NEW_KEY
    with pytest.raises(StoreUnavailableError):
        EncryptedFileStore(isolated_home / "keys.enc", lambda *, new: TEST_FILE_PASSWORD).get(
            entry_name(SIRET, "atlas")
        )
