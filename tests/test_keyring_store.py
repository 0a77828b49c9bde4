"""The OS keyring store on a real Secret Service (gnome-keyring), and every way keyring fails."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from keyring.backend import KeyringBackend

from cfakey.errors import ExitCode, StoreUnavailableError
from cfakey.stores.base import SERVICE_NAME, entry_name
from cfakey.stores.keyring_store import (
    FAIL_BACKEND,
    SECRET_SERVICE_BACKEND,
    KeyringStore,
    probe_keyring,
)
from tests.secret_service import SecretServiceDaemon
from tests.store_contract import SIRET_A, SIRET_B, KeyStoreContract

KEY = "CFA-KEY-gnome-keyring-9f8e7d6c5b4a"


class TestKeyringContract(KeyStoreContract):
    @pytest.fixture
    def store(self, secret_service: SecretServiceDaemon) -> KeyringStore:
        return KeyringStore()

    @pytest.fixture
    def reopen(self, secret_service: SecretServiceDaemon) -> Callable[[], KeyringStore]:
        return KeyringStore


def test_keyring_chose_its_secret_service_backend_and_the_secret_is_there(
    secret_service: SecretServiceDaemon,
) -> None:
    store = KeyringStore()
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    assert store.backend_name == SECRET_SERVICE_BACKEND
    assert store.chosen_by.startswith("priorité")  # keyring's own choice, not forced by us
    assert "SecretService" in store.describe()
    # Read back straight from gnome-keyring, not through cfakey or keyring.
    assert secret_service.items(SERVICE_NAME) == {entry_name(SIRET_A, "atlas"): KEY}
    probe = probe_keyring()
    assert probe.usable
    assert probe.backend == SECRET_SERVICE_BACKEND
    assert probe.chosen_by.startswith("priorité")


def test_the_secret_service_can_list_cfakey_entries_only(
    secret_service: SecretServiceDaemon,
) -> None:
    store = KeyringStore()
    store.backend.set_password("autre-logiciel", "quelqu-un", "pas-a-nous")
    store.put(entry_name(SIRET_B, "akto"), "cle-akto")
    assert store.entries() == [entry_name(SIRET_B, "akto")]


def test_a_locked_keyring_is_a_clear_error_without_fallback(
    own_secret_service: Callable[..., SecretServiceDaemon],
) -> None:
    daemon = own_secret_service()
    store = KeyringStore()
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    daemon.lock()
    for attempt in (
        lambda: store.get(entry_name(SIRET_A, "atlas")),
        lambda: store.put(entry_name(SIRET_A, "atlas"), "nouvelle-cle-secrete"),
    ):
        with pytest.raises(StoreUnavailableError, match="verrouillé") as caught:
            attempt()
        assert caught.value.exit_code == ExitCode.STORE_UNAVAILABLE
        assert "--store file" in (caught.value.hint or "")
        assert "nouvelle-cle-secrete" not in caught.value.message
    probe = probe_keyring()
    assert not probe.usable
    assert "verrouillé" in (probe.reason or "")


def test_a_secret_service_with_no_collection_is_a_clear_error(
    own_secret_service: Callable[..., SecretServiceDaemon],
) -> None:
    # Started with no password: keyring cannot create the default collection (InitError).
    own_secret_service(unlock=False)
    with pytest.raises(StoreUnavailableError, match="n'a pas pu être ouvert"):
        KeyringStore().put(entry_name(SIRET_A, "atlas"), KEY)


def test_no_secret_service_at_all(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'pas-de-bus'}")
    probe = probe_keyring()
    assert probe.backend == FAIL_BACKEND
    assert not probe.usable
    assert "aucun trousseau utilisable" in (probe.reason or "")
    rejected = {candidate.name: candidate.reason for candidate in probe.rejected}
    assert rejected[SECRET_SERVICE_BACKEND]  # with keyring's own reason, for doctor
    with pytest.raises(StoreUnavailableError, match="aucun trousseau utilisable"):
        KeyringStore().put(entry_name(SIRET_A, "atlas"), KEY)


def test_the_fail_backend_chosen_by_the_environment_is_refused() -> None:
    # The test isolation sets PYTHON_KEYRING_BACKEND to keyring's fail backend.
    store = KeyringStore()
    with pytest.raises(StoreUnavailableError, match="fail"):
        store.get(entry_name(SIRET_A, "atlas"))
    probe = probe_keyring()
    assert (probe.backend, probe.chosen_by) == (FAIL_BACKEND, "variable PYTHON_KEYRING_BACKEND")


def test_the_null_backend_that_stores_nothing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    with pytest.raises(StoreUnavailableError, match="null"):
        KeyringStore().put(entry_name(SIRET_A, "atlas"), KEY)


def test_keyring_s_own_configuration_file_is_respected(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    config = tmp_path / "xdg_config_home" / "python_keyring" / "keyringrc.cfg"
    config.parent.mkdir(parents=True)
    config.write_text("[backend]\ndefault-keyring=keyring.backends.null.Keyring\n")
    probe = probe_keyring()
    assert probe.backend == "keyring.backends.null.Keyring"
    assert str(config) in probe.chosen_by
    assert not probe.usable


def test_an_unknown_backend_in_the_environment_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.inexistant.Keyring")
    with pytest.raises(StoreUnavailableError, match="PYTHON_KEYRING_BACKEND"):
        KeyringStore().get(entry_name(SIRET_A, "atlas"))


class PlaintextKeyring(KeyringBackend):
    """Stands for keyrings.alt's plain-text file backend, which cfakey must never use."""

    priority = -10  # type: ignore[assignment]  # never chosen by detection in other tests

    def get_password(self, service: str, username: str) -> str | None:
        return None

    def set_password(self, service: str, username: str, password: str) -> None:
        raise AssertionError("a plain-text backend received a secret")


def test_a_plain_text_backend_is_refused() -> None:
    store = KeyringStore(PlaintextKeyring())
    with pytest.raises(StoreUnavailableError, match="en clair"):
        store.put(entry_name(SIRET_A, "atlas"), KEY)
