"""No half states: a secret never outlives its metadata, nor metadata its secret."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cfakey import paths
from cfakey.core.recovery import recover
from cfakey.core.storage import read_key, remove_key, store_key
from cfakey.errors import NotFoundError, StoreUnavailableError
from cfakey.identifiers import with_check_digit
from cfakey.metadata import KeyRecord, Metadata
from cfakey.paths import Paths
from cfakey.stores.base import entry_name, fingerprint
from cfakey.stores.file_store import EncryptedFileStore, ScryptParams
from tests.conftest import TEST_FILE_PASSWORD, context_with_store, run_cli
from tests.store_contract import MemoryStore

FAST_KDF = ScryptParams(n=2**10)

SIRET = "18130002100373"
OLD_KEY = "ancienne+clé/AAAA="
NEW_KEY = "nouvelle+clé/BBBB="


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
    reopened = EncryptedFileStore(isolated_home / "keys.enc", lambda **_: "un-nouveau-mot-de-passe")
    assert reopened.get(entry_name(SIRET, "atlas")) == NEW_KEY
    with pytest.raises(StoreUnavailableError):
        EncryptedFileStore(isolated_home / "keys.enc", lambda **_: TEST_FILE_PASSWORD).get(
            entry_name(SIRET, "atlas")
        )


# -- interrupted or failing imports: rolled back and checked, or the truth is said -----------

IMPORT_OPCOS = ("atlas", "akto", "afdas", "constructys", "uniformation")


def import_key(opco_id: str) -> str:
    return f"cle-importee-{opco_id}-0123456789abcdef"


def write_import(tmp_path: Path, sirets: tuple[str, ...] = (SIRET,)) -> Path:
    lines = ["cfa,opco,key"] + [
        f"{siret},{opco},{import_key(opco)}{'' if siret == SIRET else siret}"
        for siret in sirets
        for opco in IMPORT_OPCOS
    ]
    path = tmp_path / "cles.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


class InterruptedStore(MemoryStore):
    """Per-entry writes like the OS keyring; Ctrl-C lands during the ``interrupt_at``-th put.

    With ``refuse_after_interrupt``, the store refuses every write after that, as a keyring
    locked meanwhile would: the import cannot be put back.
    """

    def __init__(self, interrupt_at: int, *, refuse_after_interrupt: bool = False) -> None:
        super().__init__()
        self.puts = 0
        self.interrupt_at = interrupt_at
        self.refuse_after_interrupt = refuse_after_interrupt

    def put(self, entry: str, secret: str) -> None:
        self.puts += 1
        if self.puts == self.interrupt_at:
            self.fail_on_put = self.fail_on_delete = self.refuse_after_interrupt
            raise KeyboardInterrupt
        super().put(entry, secret)


def test_ctrl_c_during_an_import_puts_every_key_back_and_checks_it(
    tmp_path: Path, metadata: Metadata
) -> None:
    store = InterruptedStore(interrupt_at=5)
    store_key(store, metadata, make_record(OLD_KEY), OLD_KEY, action="added")
    before_journal = metadata.journal()
    result = run_cli(
        "import", str(write_import(tmp_path)), "--yes", context=context_with_store(store)
    )
    assert result.exit_code == 130
    assert "Interrompu : rien n'a été enregistré." in result.stderr
    # Checked, not assumed: the replaced key is back, the three new ones are gone.
    assert store.secrets == {entry_name(SIRET, "atlas"): OLD_KEY}
    assert [(k.opco_id, k.fingerprint) for k in metadata.list_keys()] == [
        ("atlas", fingerprint(OLD_KEY))
    ]
    assert metadata.journal() == before_journal
    assert metadata.pending() == []


def test_ctrl_c_during_an_import_that_cannot_be_put_back_says_so(
    tmp_path: Path, metadata: Metadata
) -> None:
    store = InterruptedStore(interrupt_at=5, refuse_after_interrupt=True)
    store_key(store, metadata, make_record(OLD_KEY), OLD_KEY, action="added")
    result = run_cli(
        "import", str(write_import(tmp_path)), "--yes", context=context_with_store(store)
    )
    assert result.exit_code == 130
    assert "rien n'a été enregistré" not in result.stderr
    assert "Interrompu pendant l'enregistrement ; le magasin de clés n'a pas pu être remis" in (
        result.stderr
    )
    assert "3 clé(s)" in result.stderr
    assert not any(import_key(opco) in result.stderr for opco in IMPORT_OPCOS)

    # The intents left behind hold fingerprints, never a key (database and its WAL, raw).
    assert len(metadata.pending()) == 3
    raw = b"".join(path.read_bytes() for path in Path(metadata.path).parent.glob("cfakey.sqlite3*"))
    assert not any(import_key(opco).encode() in raw for opco in IMPORT_OPCOS)
    assert fingerprint(import_key("atlas")).encode() in raw

    # The next command that opens the store records what the store holds, and says so.
    store.fail_on_put = store.fail_on_delete = False
    report = recover(store, metadata)
    assert {p.opco_id for p in report.completed} == {"atlas", "akto", "afdas"}
    assert report.abandoned == ()  # the two never written were checked, their intents dropped
    assert any("reprise" in line for line in report.messages())
    assert_consistent(store, metadata)
    rotated = [e for e in metadata.journal() if e.action == "imported" and e.opco_id == "atlas"]
    assert rotated[-1].old_fingerprint == fingerprint(OLD_KEY)
    assert rotated[-1].new_fingerprint == fingerprint(import_key("atlas"))


def assert_consistent(store: MemoryStore, metadata: Metadata) -> None:
    """Every secret has its metadata with its fingerprint, and nothing is left pending."""
    assert metadata.pending() == []
    assert {entry_name(k.siret, k.opco_id): k.fingerprint for k in metadata.list_keys()} == {
        entry: fingerprint(secret) for entry, secret in store.secrets.items()
    }


class FillingDiskFileStore(EncryptedFileStore):
    """The real encrypted file on a disk that its first write fills up: that write lands,
    then the metadata database and any later write of the file find no room left."""

    def __init__(self, path: Path, metadata: Metadata) -> None:
        super().__init__(path, lambda **_: TEST_FILE_PASSWORD, new_file_kdf=FAST_KDF)
        self.metadata = metadata
        self.writes = 0

    def _write(self, entries: dict[str, str]) -> None:
        self.writes += 1
        if self.writes > 1:
            raise StoreUnavailableError(
                f"Impossible d'écrire le fichier chiffré {self.path} : plus de place sur le "
                "disque ; l'ancien fichier est intact."
            )
        super()._write(entries)
        # SQLite's own limit: every later write of this connection fails with SQLITE_FULL.
        pages = self.metadata._db.execute("PRAGMA page_count").fetchone()[0]
        self.metadata._db.execute(f"PRAGMA max_page_count = {pages}")


def test_a_full_disk_during_an_import_keeps_the_original_error_and_never_says_intact(
    tmp_path: Path, isolated_home: Path, metadata: Metadata
) -> None:
    store = FillingDiskFileStore(isolated_home / "keys.enc", metadata)
    context = context_with_store(store)
    context._metadata = metadata
    sirets = (SIRET, *(with_check_digit(f"77{n:011d}") for n in range(40)))
    result = run_cli("import", str(write_import(tmp_path, sirets)), context=context)
    assert result.exit_code == 1
    assert "intact" not in result.stderr
    assert "rien n'a été" not in result.stderr
    # The original cause comes first (SQLite's full disk, named as such), then the truth.
    assert result.stderr.startswith("Erreur : Impossible d'utiliser la base de métadonnées ")
    assert (
        "cfakey.sqlite3 : plus de place sur le disque ; le magasin de clés n'a pas pu être "
        "remis dans son état précédent : 205 clé(s)"
    ) in result.stderr
    # The disk has room again: the next command finds the five keys and records them.
    later = Metadata.open(Paths.from_env())
    reread = EncryptedFileStore(isolated_home / "keys.enc", lambda **_: TEST_FILE_PASSWORD)
    report = recover(reread, later)
    assert len(report.completed) == 205
    assert len(later.list_keys()) == 205
    assert len(later.list_cfas()) == 41
    assert later.pending() == []
    assert report.messages() == [report.messages()[0]]
    assert report.messages()[0].startswith("Opérations interrompues reprises : 205 clés (")


class FailingWriteFileStore(EncryptedFileStore):
    """The real encrypted file whose next write fails, as on a full disk."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, lambda **_: TEST_FILE_PASSWORD)
        self.fail = False

    def _write(self, entries: dict[str, str]) -> None:
        if self.fail:
            raise StoreUnavailableError(
                f"Impossible d'écrire le fichier chiffré {self.path} : plus de place sur le "
                "disque ; l'ancien fichier est intact."
            )
        super()._write(entries)


def test_cfa_remove_force_whose_store_write_fails_leaves_every_key_described(
    isolated_home: Path,
) -> None:
    """The file store writes once at the end of a batch: metadata must not go first."""
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA").exit_code == 0
    for opco, secret in (("atlas", OLD_KEY), ("akto", NEW_KEY)):
        assert run_cli("add", opco, "--cfa", SIRET, input=secret + "\n").exit_code == 0
    store = FailingWriteFileStore(isolated_home / "keys.enc")
    store.fail = True
    result = run_cli("cfa", "remove", SIRET, "--force", context=context_with_store(store))
    assert result.exit_code == 4
    assert "plus de place sur le disque" in result.stderr
    metadata = Metadata.open(Paths.from_env())
    assert metadata.get_cfa(SIRET) is not None
    assert {k.opco_id: k.fingerprint for k in metadata.list_keys()} == {
        "atlas": fingerprint(OLD_KEY),
        "akto": fingerprint(NEW_KEY),
    }
    assert metadata.pending() == []
    assert "removed" not in [entry.action for entry in metadata.journal()]
    store.fail = False
    assert store.get(entry_name(SIRET, "atlas")) == OLD_KEY
    assert store.get(entry_name(SIRET, "akto")) == NEW_KEY
