"""The OS keyring store on a real Secret Service (gnome-keyring), and every way keyring fails."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from keyring import backend as keyring_backend
from keyring.backend import KeyringBackend
from keyring.backends import SecretService
from keyring.compat.properties import classproperty

from cfakey.core import keys
from cfakey.core.storage import store_key
from cfakey.errors import ExitCode, StoreUnavailableError
from cfakey.metadata import KeyRecord, Metadata
from cfakey.paths import Paths
from cfakey.registry.loader import load_registry
from cfakey.stores.base import SERVICE_NAME, entry_name, fingerprint
from cfakey.stores.keyring_store import (
    CHAINER_BACKEND,
    FAIL_BACKEND,
    NAMESPACE_FILE,
    SECRET_SERVICE_BACKEND,
    KeyringStore,
    home_service,
    keyring_reason,
    probe_keyring,
)
from tests.conftest import CliResult, run_cli
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


#: Words of keyring's own English reasons, which must never reach the operator.
ENGLISH_REASONS = ("required", "Failed", "Prompt", "not installed", "Requires", "unavailable",
                   "No module", "Can't", " the ")  # fmt: skip


def assert_french_reason(text: str) -> None:
    assert not [word for word in ENGLISH_REASONS if word in text], text


def test_a_secret_service_with_no_collection_is_a_french_error(
    own_secret_service: Callable[..., SecretServiceDaemon],
) -> None:
    own_secret_service(unlock=False)
    with pytest.raises(StoreUnavailableError) as caught:
        KeyringStore().put(entry_name(SIRET_A, "atlas"), KEY)
    assert "la collection du trousseau n'a pas pu être créée" in caught.value.message
    assert SECRET_SERVICE_BACKEND in caught.value.message  # the backend is still named
    assert_french_reason(caught.value.message)


def test_every_reason_keyring_gives_is_shown_in_french(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'pas-de-bus'}")
    probe = probe_keyring()
    reasons = {candidate.name: candidate.reason or "" for candidate in probe.rejected}
    assert "keyrings.alt.Gnome.Keyring" in reasons  # "GnomeKeyring module required" in English
    for reason in reasons.values():
        assert_french_reason(reason)
    result = run_cli("doctor")
    assert "libsecret" in result.stdout  # the reason is there, in French
    assert_french_reason(result.stdout.replace(" the ", ""))


@pytest.mark.parametrize(
    ("error", "french"),
    [
        (RuntimeError("libsecret required"), "la bibliothèque libsecret n'est pas installée"),
        (RuntimeError("pycryptodome/x required"), "le module pycryptodome n'est pas installé"),
        (RuntimeError("GnomeKeyring module required"), "le module GnomeKeyring n'est pas installé"),
        (RuntimeError("SecretStorage 3.2 or newer required"), "SecretStorage 3.2 ou plus récent"),
        (RuntimeError("Requires Windows and pywin32"), "ne fonctionne que sous Windows"),
        (RuntimeError("Requires gdata"), "le module gdata n'est pas installé"),
        (ModuleNotFoundError("No module named 'dbus'", name="dbus"), "le module dbus n'est pas"),
        (
            RuntimeError("Failed to create the collection: Prompt dismissed."),
            "la collection du trousseau n'a pas pu être créée (invite refusée)",
        ),
        # Issue 15: neither the English sentence nor the exception's type reaches people.
        (RuntimeError("An English sentence keyring may add one day"), "ne sait pas traduire"),
        (ValueError(""), "ne sait pas traduire"),
    ],
)
def test_keyring_reasons_are_translated_or_named_by_type(error: Exception, french: str) -> None:
    reason = keyring_reason(error)
    assert french in reason
    assert_french_reason(reason)


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
    with pytest.raises(StoreUnavailableError, match="aucun trousseau utilisable"):
        store.get(entry_name(SIRET_A, "atlas"))
    probe = probe_keyring()
    assert (probe.backend, probe.chosen_by) == (FAIL_BACKEND, "variable PYTHON_KEYRING_BACKEND")


def test_the_null_backend_that_stores_nothing_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    with pytest.raises(StoreUnavailableError, match="trousseau vide"):
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


# -- plain text behind keyring's chainer (keyrings.alt) ---------------------------------

CANARY = "Canari-chainer-0123456789abcdefABCDEF"


@pytest.fixture
def plaintext_file() -> Path:
    """Where keyrings.alt's PlaintextKeyring would write (base64), under the test's XDG dirs."""
    alt_file = pytest.importorskip("keyrings.alt.file")
    return Path(alt_file.PlaintextKeyring().file_path)


def _nothing_readable_in(path: Path) -> bool:
    if not path.exists():
        return True
    text = path.read_text()
    encoded = base64.b64encode(CANARY.encode()).decode()
    return CANARY not in text and encoded not in text and SERVICE_NAME not in text


def _add_with_keyring() -> CliResult:
    assert run_cli("--store", "file", "cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    return run_cli("--store", "keyring", "add", "atlas", "--cfa", SIRET_A, "--yes", input=CANARY)


def test_a_chain_holding_a_plain_text_backend_is_refused(
    plaintext_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # In fresh processes, as users run it: keyring caches its list of backends per process.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", CHAINER_BACKEND)
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'pas-de-bus'}")

    def cfakey(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cfakey", *args],
            input=CANARY,
            capture_output=True,
            text=True,
            check=False,
        )

    assert cfakey("--store", "file", "cfa", "add", SIRET_A, "--nom", "CFA").returncode == 0
    result = cfakey("--store", "keyring", "add", "atlas", "--yes")
    assert result.returncode == ExitCode.STORE_UNAVAILABLE, result.stderr
    assert "« PlaintextKeyring » (keyrings.alt)" in result.stderr
    assert "en clair ou en base64" in result.stderr
    assert CANARY not in result.stdout + result.stderr
    assert _nothing_readable_in(plaintext_file)
    assert "atlas" not in cfakey("--store", "file", "list").stdout  # no metadata either
    report = json.loads(cfakey("doctor", "--json").stdout)
    assert report["keyring_usable"] is False
    assert "PlaintextKeyring" in report["keyring_reason"]


def test_a_chain_is_refused_even_when_its_first_member_is_safe(
    plaintext_file: Path, secret_service: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The chainer writes to the Secret Service while it answers, and to the plain-text file
    # the day it does not: the whole chain is refused.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", CHAINER_BACKEND)
    probe = probe_keyring()
    assert probe.chained[0] == SECRET_SERVICE_BACKEND
    assert "keyrings.alt.file.PlaintextKeyring" in probe.chained
    assert not probe.usable
    result = _add_with_keyring()
    assert result.exit_code == ExitCode.STORE_UNAVAILABLE
    assert secret_service.items(SERVICE_NAME) == {}
    assert _nothing_readable_in(plaintext_file)


def test_detection_skips_the_plain_text_backend_and_takes_the_secret_service(
    plaintext_file: Path, secret_service: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CFAKEY_STORE")
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    result = run_cli("add", "atlas", "--yes", input=CANARY)
    assert result.exit_code == 0, result.stderr
    own = home_service(Paths.from_env().data_dir)  # this home's own service (see below)
    assert secret_service.items(own) == {entry_name(SIRET_A, "atlas"): CANARY}
    assert _nothing_readable_in(plaintext_file)
    report = json.loads(run_cli("doctor", "--json").stdout)
    assert report["keyring_backend"] == SECRET_SERVICE_BACKEND
    rejected = {item["name"]: item["reason"] for item in report["keyring_rejected"]}
    assert "en clair" in rejected["keyrings.alt.file.PlaintextKeyring"]


def test_detection_without_secret_service_never_falls_to_plain_text(
    plaintext_file: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    monkeypatch.delenv("CFAKEY_STORE")
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", f"unix:path={tmp_path / 'pas-de-bus'}")
    probe = probe_keyring()
    assert not probe.usable
    assert probe.backend == FAIL_BACKEND
    result = _add_with_keyring()
    assert result.exit_code == ExitCode.STORE_UNAVAILABLE
    assert _nothing_readable_in(plaintext_file)


def test_an_unknown_backend_is_refused_by_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    # keyring's own test backend: works, but cfakey cannot know that it encrypts anything.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", f"{__name__}.MemoryKeyring")
    probe = probe_keyring()
    assert not probe.usable
    assert "n'est pas un des trousseaux chiffrés" in (probe.reason or "")


class MemoryKeyring:
    """A working backend cfakey does not know (not a KeyringBackend subclass, so that it
    stays out of keyring's registry and of the other tests' detection)."""

    priority = 1

    def __init__(self) -> None:
        self.written: dict[str, str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.written.get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        self.written[username] = password

    def delete_password(self, service: str, username: str) -> None:
        self.written.pop(username, None)


# -- one detection per command ----------------------------------------------------------


@pytest.fixture
def secret_service_checks(
    secret_service: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Counts each time a backend asks D-Bus whether the Secret Service is there."""
    keyring_backend.get_all_keyring()  # keyring's own once-per-process list, out of the count
    original = SecretService.Keyring.__dict__["priority"]
    calls: list[str] = []

    def counted(cls: type) -> float:
        calls.append("priority")
        value: float = original.__get__(None, cls)
        return value

    monkeypatch.setattr(SecretService.Keyring, "priority", classproperty(counted))
    return calls


@pytest.mark.parametrize(
    "command",
    [
        ("add", "atlas", "--yes"),
        ("--store", "keyring", "add", "atlas", "--yes"),
        ("doctor",),
        ("--store", "keyring", "doctor"),
    ],
)
def test_the_keyring_is_detected_once_per_command(
    secret_service_checks: list[str], monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    monkeypatch.delenv("CFAKEY_STORE")
    assert run_cli("--store", "file", "cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    secret_service_checks.clear()
    result = run_cli(*command, input=KEY)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert secret_service_checks == ["priority"]


# -- Windows Credential Manager's size limit ---------------------------------------------


class FakeWindowsVault(MemoryKeyring):
    """Windows Credential Manager's identity only (it cannot run here); keeps what it gets."""


FakeWindowsVault.__module__ = "keyring.backends.Windows"
FakeWindowsVault.__qualname__ = "WinVaultKeyring"


def test_a_key_too_long_for_windows_is_refused_before_anything_is_written(
    isolated_home: Path,
) -> None:
    vault = FakeWindowsVault()
    store = KeyringStore(vault)  # type: ignore[arg-type]  # only the identity is faked
    assert store.backend_name == "keyring.backends.Windows.WinVaultKeyring"
    metadata = Metadata.open(Paths.from_env())
    metadata.add_cfa(SIRET_A, "CFA", None)
    long_key = "k" * 1281  # 2,562 bytes in UTF-16, the encoding keyring hands Windows
    record = KeyRecord(
        SIRET_A,
        "atlas",
        date(2026, 11, 1),
        datetime(2026, 11, 1, tzinfo=UTC),
        None,
        "none",
        fingerprint(long_key),
        "tester",
        "keyring",
    )
    with pytest.raises(StoreUnavailableError, match="2560") as caught:
        store_key(store, metadata, record, long_key, action="added")
    assert caught.value.exit_code == ExitCode.STORE_UNAVAILABLE
    assert "Gestionnaire d'identification de Windows" in caught.value.message
    assert "--store file" in (caught.value.hint or "")
    assert long_key not in caught.value.message
    assert vault.written == {}
    assert metadata.list_keys() == []
    assert [entry.action for entry in metadata.journal()] == ["cfa_added"]
    store_key(store, metadata, record, "k" * 1280, action="added")  # exactly 2,560 bytes
    assert vault.written == {entry_name(SIRET_A, "atlas"): "k" * 1280}


def test_other_keyrings_have_no_such_limit(secret_service: SecretServiceDaemon) -> None:
    long_key = "k" * 4000
    KeyringStore().put(entry_name(SIRET_A, "atlas"), long_key)
    assert secret_service.items(SERVICE_NAME) == {entry_name(SIRET_A, "atlas"): long_key}


def test_an_import_with_one_key_too_long_for_windows_writes_nothing(
    isolated_home: Path, tmp_path: Path
) -> None:
    vault = FakeWindowsVault()
    store = KeyringStore(vault)  # type: ignore[arg-type]  # only the identity is faked
    registry = load_registry(None, tmp_path / "cache")[0]
    csv = tmp_path / "cles.csv"
    csv.write_text(
        "cfa,opco,key,expires,obtained,cfa_name\n"
        f"{SIRET_A},akto,{'a' * 40},,,CFA A\n"
        f"{SIRET_B},akto,{'b' * 1300},,,CFA B\n",
        encoding="utf-8",
    )
    with Metadata.open(Paths.from_env()) as metadata:
        plan = keys.plan_import(
            keys.read_import_file(csv),
            metadata,
            registry,
            now=datetime(2026, 11, 22, tzinfo=UTC),
            replace=False,
        )
        with pytest.raises(StoreUnavailableError, match="Windows"):
            keys.run_import(store, metadata, plan, now=datetime(2026, 11, 22, tzinfo=UTC))
        assert vault.written == {}  # not even the first, shorter key
        assert metadata.list_keys() == []
        assert metadata.list_cfas() == []


# Item 6 of issue 12: one keyring entry per cfakey home -----------------------------------

KEY_OF_A = "CFA-KEY-home-A-0123456789abcdef"
KEY_OF_B = "CFA-KEY-home-B-fedcba9876543210"
EXPORT = ("export", "--opco", "atlas", "--format", "env")


def _in_home(home: Path, monkeypatch: pytest.MonkeyPatch, *args: str, key: str = "") -> CliResult:
    monkeypatch.setenv("CFAKEY_HOME", str(home))
    return run_cli("--store", "keyring", *args, input=key or None)


def _fingerprint_shown(home: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    shown = json.loads(_in_home(home, monkeypatch, "show", "atlas", "--json").stdout)
    return str(shown["fingerprint"])


def test_two_homes_on_one_keyring_never_see_each_other_s_key(
    secret_service: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    homes = {tmp_path / "home-a": KEY_OF_A, tmp_path / "home-b": KEY_OF_B}
    for home, key in homes.items():
        assert _in_home(home, monkeypatch, "cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
        added = _in_home(home, monkeypatch, "add", "atlas", "--yes", key=key)
        assert added.exit_code == 0, added.stderr
    for home, key in homes.items():
        # Before: B's add replaced A's entry, and A exported B's key under A's fingerprint.
        exported = _in_home(home, monkeypatch, *EXPORT)
        assert exported.exit_code == 0, exported.stderr
        assert key in exported.stdout
        assert _fingerprint_shown(home, monkeypatch) == fingerprint(key)
        assert secret_service.items(home_service(home)) == {entry_name(SIRET_A, "atlas"): key}
        assert "problème" not in _in_home(home, monkeypatch, "doctor").stdout.lower()
    assert secret_service.items(SERVICE_NAME) == {}  # nothing under the shared name
    assert home_service(tmp_path / "home-a") != home_service(tmp_path / "home-b")


def _legacy_home(home: Path, monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    """A home as an earlier version left it: its key under the shared service ``cfakey``."""
    assert _in_home(home, monkeypatch, "cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert _in_home(home, monkeypatch, "add", "atlas", "--yes", key=key).exit_code == 0
    store = KeyringStore()  # the shared service, as before
    store.put(entry_name(SIRET_A, "atlas"), key)
    own = KeyringStore(home=home)
    assert own.delete(entry_name(SIRET_A, "atlas"))
    (home / NAMESPACE_FILE).write_text(own.service.split("/")[1] + "\n")  # not settled


def test_an_entry_of_the_shared_service_moves_to_its_home_on_first_use(
    secret_service: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home-a"
    _legacy_home(home, monkeypatch, KEY_OF_A)
    assert secret_service.items(home_service(home)) == {}
    exported = _in_home(home, monkeypatch, *EXPORT)
    assert exported.exit_code == 0, exported.stderr
    assert KEY_OF_A in exported.stdout
    assert secret_service.items(home_service(home)) == {entry_name(SIRET_A, "atlas"): KEY_OF_A}
    assert secret_service.items(SERVICE_NAME) == {}  # moved, not copied
    assert "settled" in (home / NAMESPACE_FILE).read_text()
    journal = Metadata.open(Paths.from_env()).journal()
    assert "store_settled" in [entry.action for entry in journal]
    assert KEY_OF_A not in (home / "cfakey.sqlite3").read_bytes().decode("latin-1")


def test_a_shared_entry_holding_another_home_s_key_is_left_to_that_home(
    secret_service: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # B overwrote A's shared entry under the old naming: the entry is B's, A's key is lost.
    home_a, home_b = tmp_path / "home-a", tmp_path / "home-b"
    _legacy_home(home_a, monkeypatch, KEY_OF_A)
    _legacy_home(home_b, monkeypatch, KEY_OF_B)
    result = _in_home(home_a, monkeypatch, *EXPORT)
    assert result.exit_code != 0
    assert KEY_OF_B not in result.stdout + result.stderr  # never B's key under A's name
    assert secret_service.items(SERVICE_NAME) == {entry_name(SIRET_A, "atlas"): KEY_OF_B}
    doctor = _in_home(home_a, monkeypatch, "doctor")
    assert "plus dans le magasin" in doctor.stdout
    assert _in_home(home_b, monkeypatch, *EXPORT).exit_code == 0
    assert secret_service.items(home_service(home_b)) == {entry_name(SIRET_A, "atlas"): KEY_OF_B}
    assert secret_service.items(SERVICE_NAME) == {}


def test_an_interrupted_move_leaves_the_key_in_one_place_or_both_and_a_rerun_ends_it(
    secret_service: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    home = tmp_path / "home-a"
    _legacy_home(home, monkeypatch, KEY_OF_A)
    # Interrupted after the copy, before the shared entry was deleted and the mark written.
    KeyringStore(home=home).put(entry_name(SIRET_A, "atlas"), KEY_OF_A)
    assert secret_service.items(SERVICE_NAME) == {entry_name(SIRET_A, "atlas"): KEY_OF_A}
    exported = _in_home(home, monkeypatch, *EXPORT)
    assert exported.exit_code == 0, exported.stderr
    assert KEY_OF_A in exported.stdout
    assert secret_service.items(SERVICE_NAME) == {}
    assert secret_service.items(home_service(home)) == {entry_name(SIRET_A, "atlas"): KEY_OF_A}


def test_doctor_compares_the_keys_recorded_in_the_keyring_while_the_file_is_in_service(
    secret_service: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert run_cli("--store", "keyring", "add", "atlas", "--yes", input=KEY_OF_A).exit_code == 0
    assert run_cli("--store", "keyring", "add", "akto", "--yes", input=KEY_OF_B).exit_code == 0
    keyring = KeyringStore(home=isolated_home)
    keyring.put(entry_name(SIRET_A, "atlas"), "une-autre-cle-remplacee-a-cote")
    assert keyring.delete(entry_name(SIRET_A, "akto"))
    report = json.loads(run_cli("doctor", "--json").stdout)  # the file is in service
    assert report["store"] == "file"
    assert report["elsewhere"] == [entry_name(SIRET_A, "akto"), entry_name(SIRET_A, "atlas")]
    assert report["mismatched"] == [entry_name(SIRET_A, "atlas")]
    assert report["missing_secrets"] == [entry_name(SIRET_A, "akto")]
    text = run_cli("doctor").stdout
    assert "plus dans le trousseau du système" in text
    for secret in (KEY_OF_A, KEY_OF_B, "une-autre-cle-remplacee-a-cote"):
        assert secret not in text
