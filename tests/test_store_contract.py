"""The store table and the capabilities each store declares, held by the shared contract."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from cfakey.stores.base import KeyStore, entry_name
from cfakey.stores.kinds import STORE_KINDS
from tests.conftest import CHEAP_KDF, run_cli
from tests.store_contract import SIRET_A, KeyStoreContract, MemoryStore


class TestMemoryStoreContract(KeyStoreContract):
    """The tests' in-memory store behaves like a real one, under its own kind."""

    @pytest.fixture
    def store(self) -> KeyStore:
        return MemoryStore()

    @pytest.fixture
    def reopen(self, store: MemoryStore) -> Callable[[], KeyStore]:
        return lambda: MemoryStore(shared_with=store)


class SilentStore(MemoryStore):
    """Declares it can list, yet says nothing: what the contract must catch."""

    def entries(self) -> list[str] | None:  # type: ignore[override]
        return None


def test_the_contract_fails_a_store_that_declares_a_listing_it_does_not_give() -> None:
    contract = KeyStoreContract()
    with pytest.raises(AssertionError, match="declares can_list"):
        contract.test_entries_lists_exactly_what_is_stored(SilentStore())


@pytest.mark.parametrize("name", list(STORE_KINDS))
def test_every_table_line_opens_a_store_of_its_kind(name: str) -> None:
    kind = STORE_KINDS[name]
    store_class = kind.store_class()
    assert store_class.kind == name
    assert kind.label.startswith(("le ", "la ", "l'"))
    assert isinstance(store_class.can_list, bool)
    assert isinstance(store_class.can_change_password, bool)
    assert isinstance(store_class.shared, bool)


def test_a_store_object_is_not_needed_to_read_a_capability() -> None:
    assert STORE_KINDS["file"].store_class().can_change_password
    assert not STORE_KINDS["keyring"].store_class().can_change_password
    store = MemoryStore()
    store.put(entry_name(SIRET_A, "atlas"), "x")
    assert store.entries() == [entry_name(SIRET_A, "atlas")]


def test_the_harness_gives_every_test_a_cheap_file_store(isolated_home: Path) -> None:
    """A command run by a test creates the real encrypted file, with cheap scrypt costs."""
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA Test").exit_code == 0
    added = run_cli("add", "atlas", "--yes", input="Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+=")
    assert added.exit_code == 0, added.stderr
    header = json.loads((isolated_home / "keys.enc").read_bytes().partition(b"\n")[0])
    assert (header["kdf"]["n"], header["kdf"]["r"]) == (CHEAP_KDF.n, CHEAP_KDF.r)
