"""Which store is used: explicit choices first, then detection; never a silent fallback."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cfakey.context import AppContext
from cfakey.errors import StoreUnavailableError, UsageError
from cfakey.stores import keyring_store
from cfakey.stores.base import entry_name
from cfakey.stores.file_store import EncryptedFileStore
from cfakey.stores.keyring_store import KeyringProbe, KeyringStore
from cfakey.stores.selection import decide_store
from tests.secret_service import SecretServiceDaemon

SIRET = "13002526500013"


def probe(usable: bool) -> Callable[[], KeyringProbe]:
    reason = None if usable else "keyring n'a trouvé aucun trousseau utilisable (magasin « fail »)"
    return lambda: KeyringProbe("x.Keyring", 1.0, "test", usable, reason, ())


def never_probe() -> KeyringProbe:
    raise AssertionError("the keyring was probed although a store was chosen")


@pytest.mark.parametrize(
    ("option", "env_value", "config_value", "expected"),
    [
        ("file", "keyring", "keyring", ("file", "option")),
        (None, "file", "keyring", ("file", "env")),
        (None, None, "file", ("file", "config")),
        (None, "KEYRING", None, ("keyring", "env")),
    ],
)
def test_an_explicit_choice_wins_in_order_and_skips_detection(
    option: str | None, env_value: str | None, config_value: str | None, expected: tuple[str, str]
) -> None:
    decision = decide_store(
        option=option, env_value=env_value, config_value=config_value, probe=never_probe
    )
    assert (decision.kind, decision.origin) == expected
    assert not decision.needs_confirmation


def test_detection_takes_the_keyring_when_it_works() -> None:
    decision = decide_store(option=None, env_value=None, config_value=None, probe=probe(True))
    assert (decision.kind, decision.origin) == ("keyring", "auto")


def test_detection_says_why_the_keyring_does_not_work_and_chooses_nothing() -> None:
    decision = decide_store(option=None, env_value=None, config_value=None, probe=probe(False))
    assert decision.kind is None
    assert decision.needs_confirmation
    assert "aucun trousseau utilisable" in decision.reason


@pytest.mark.parametrize(
    ("option", "env_value", "named"),
    [("coffre", None, "option --store"), (None, "clair", "variable CFAKEY_STORE")],
)
def test_an_unknown_store_is_refused_in_french(
    option: str | None, env_value: str | None, named: str
) -> None:
    with pytest.raises(UsageError, match=named):
        decide_store(option=option, env_value=env_value, config_value=None, probe=never_probe)


# -- through the application context ---------------------------------------------------


def context(**kwargs: object) -> AppContext:
    env = {key: value for key, value in os.environ.items() if key != "CFAKEY_STORE"}
    return AppContext(env=env, **kwargs)  # type: ignore[arg-type]


def saved_store(isolated_home: Path) -> str | None:
    config = isolated_home / "config.json"
    if not config.exists():
        return None
    value = json.loads(config.read_text())["store"]
    return str(value)


def test_no_keyring_and_no_one_to_ask_is_an_error_not_a_fallback(isolated_home: Path) -> None:
    with pytest.raises(StoreUnavailableError, match="Trousseau du système indisponible") as caught:
        context().key_store()
    assert "--store file" in (caught.value.hint or "")
    assert "CFAKEY_STORE=file" in (caught.value.hint or "")
    assert saved_store(isolated_home) is None
    assert not (isolated_home / "keys.enc").exists()


def test_no_keyring_and_the_operator_declines(isolated_home: Path) -> None:
    asked: list[str] = []

    def decline(reason: str) -> bool:
        asked.append(reason)
        return False

    with pytest.raises(StoreUnavailableError):
        context(confirm_file_store=decline).key_store()
    assert len(asked) == 1
    assert "aucun trousseau utilisable" in asked[0]
    assert saved_store(isolated_home) is None


def test_no_keyring_and_the_operator_accepts_the_file_which_is_remembered(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = context(confirm_file_store=lambda reason: True).key_store()
    assert isinstance(store, EncryptedFileStore)
    assert saved_store(isolated_home) == "file"
    store.put(entry_name(SIRET, "atlas"), "cle-atlas")
    # Remembered: the next run neither probes the keyring nor asks again.
    monkeypatch.setattr(keyring_store, "probe_keyring", never_probe)
    again = context().key_store()
    assert isinstance(again, EncryptedFileStore)
    assert again.get(entry_name(SIRET, "atlas")) == "cle-atlas"


def test_a_working_keyring_is_chosen_and_remembered(
    isolated_home: Path, secret_service: SecretServiceDaemon
) -> None:
    store = context().key_store()
    assert isinstance(store, KeyringStore)
    assert saved_store(isolated_home) == "keyring"
    assert context().store_decision().origin == "config"


def test_a_remembered_keyring_that_stops_working_is_an_error_not_a_fallback(
    isolated_home: Path,
) -> None:
    (isolated_home).mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.json").write_text('{"store": "keyring"}')
    store = context(confirm_file_store=lambda reason: True).key_store()
    with pytest.raises(StoreUnavailableError, match="aucun trousseau utilisable"):
        store.put(entry_name(SIRET, "atlas"), "cle-atlas")
    assert saved_store(isolated_home) == "keyring"
    assert not (isolated_home / "keys.enc").exists()


def test_the_store_option_overrides_the_remembered_choice(isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.json").write_text('{"store": "keyring"}')
    decision = context(store_option="file").store_decision()
    assert (decision.kind, decision.origin) == ("file", "option")
    assert isinstance(context(store_option="file").key_store(), EncryptedFileStore)
    assert saved_store(isolated_home) == "keyring"  # a one-off option is not remembered
