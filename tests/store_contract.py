"""The contract every key store passes: subclass :class:`KeyStoreContract` and give two fixtures.

``store`` is the store under test, empty; ``reopen`` builds another store object over the
same secrets, as another process would see them. The OS keyring, the encrypted file, the
in-memory store of the tests (:class:`MemoryStore`) and, later, a remote secret engine all
run this same class; each is held to the capabilities its class declares.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from cfakey.errors import StoreUnavailableError
from cfakey.stores.base import KeyStore, entry_name, fingerprint, oauth_entry_name
from cfakey.stores.kinds import STORE_KINDS

SIRET_A = "13002526500013"
SIRET_B = "11000201100044"
JWT_LIKE = (
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."
    + "eyJzdWIiOiJjZmEiLCJleHAiOjE3OTk5OTk5OTl9" * 60
    + ".c2lnbmF0dXJl"
)
ODD_SECRETS = (
    "clé-avec-accents-éàü",
    "  espaces autour  ",
    'guillemets " et \\ barre',
    "ligne1\nligne2",
    "€" * 300,
    JWT_LIKE,
)


class KeyStoreContract:
    """Behaviour shared by every :class:`KeyStore` implementation."""

    @pytest.fixture
    def store(self) -> KeyStore:
        raise NotImplementedError

    @pytest.fixture
    def reopen(self) -> Callable[[], KeyStore]:
        raise NotImplementedError

    def test_kind_and_description(self, store: KeyStore) -> None:
        assert store.kind.isidentifier()
        if store.kind in STORE_KINDS:  # a production store is (a test variant of) its line's
            listed = STORE_KINDS[store.kind].store_class()
            assert isinstance(store, listed) or issubclass(listed, type(store))
        description = store.describe()
        assert description
        assert description == description.strip()

    def test_a_missing_entry_reads_as_none(self, store: KeyStore) -> None:
        assert store.get(entry_name(SIRET_A, "atlas")) is None

    def test_put_then_get(self, store: KeyStore) -> None:
        store.put(entry_name(SIRET_A, "atlas"), "cle-atlas-1")
        assert store.get(entry_name(SIRET_A, "atlas")) == "cle-atlas-1"

    def test_put_replaces_the_previous_secret(self, store: KeyStore) -> None:
        entry = entry_name(SIRET_A, "akto")
        store.put(entry, "ancienne")
        store.put(entry, "nouvelle")
        assert store.get(entry) == "nouvelle"

    def test_delete_says_whether_there_was_something(self, store: KeyStore) -> None:
        entry = entry_name(SIRET_A, "afdas")
        store.put(entry, "cle-afdas")
        assert store.delete(entry) is True
        assert store.get(entry) is None
        assert store.delete(entry) is False

    def test_deleting_what_never_existed_is_false(self, store: KeyStore) -> None:
        assert store.delete(entry_name(SIRET_B, "ocapiat")) is False

    def test_entries_are_independent(self, store: KeyStore) -> None:
        names = {
            entry_name(SIRET_A, "atlas"): "a-atlas",
            entry_name(SIRET_A, "opco2i"): "a-2i",
            entry_name(SIRET_B, "atlas"): "b-atlas",
            oauth_entry_name("atlas"): "client-secret",
        }
        for name, secret in names.items():
            store.put(name, secret)
        store.delete(entry_name(SIRET_A, "opco2i"))
        assert store.get(entry_name(SIRET_A, "atlas")) == "a-atlas"
        assert store.get(entry_name(SIRET_B, "atlas")) == "b-atlas"
        assert store.get(oauth_entry_name("atlas")) == "client-secret"
        assert store.get(entry_name(SIRET_A, "opco2i")) is None

    @pytest.mark.parametrize("secret", ODD_SECRETS, ids=fingerprint)
    def test_secrets_come_back_exactly(self, store: KeyStore, secret: str) -> None:
        store.put(entry_name(SIRET_A, "opcoep"), secret)
        assert store.get(entry_name(SIRET_A, "opcoep")) == secret

    def test_another_store_object_sees_the_same_secrets(
        self, store: KeyStore, reopen: Callable[[], KeyStore]
    ) -> None:
        store.put(entry_name(SIRET_A, "sante"), "cle-sante")
        with reopen() as other:
            assert other.get(entry_name(SIRET_A, "sante")) == "cle-sante"
            other.put(entry_name(SIRET_B, "sante"), "cle-b")
            assert other.delete(entry_name(SIRET_A, "sante")) is True
        assert store.get(entry_name(SIRET_B, "sante")) == "cle-b"
        assert store.get(entry_name(SIRET_A, "sante")) is None

    def test_entries_lists_exactly_what_is_stored(self, store: KeyStore) -> None:
        """A store that declares it can list must list; another may, and then exactly."""
        store.put(entry_name(SIRET_A, "atlas"), "x1")
        store.put(entry_name(SIRET_B, "akto"), "x2")
        store.put(entry_name(SIRET_B, "akto"), "x3")
        store.put(entry_name(SIRET_B, "afdas"), "x4")
        store.delete(entry_name(SIRET_B, "afdas"))
        listed = store.entries()
        if store.can_list:
            assert listed is not None, f"{store.kind} declares can_list but returned None"
        if listed is not None:
            assert sorted(listed) == sorted(
                [entry_name(SIRET_A, "atlas"), entry_name(SIRET_B, "akto")]
            )

    def test_an_empty_store_lists_nothing(self, store: KeyStore) -> None:
        listed = store.entries()
        assert listed == [] if store.can_list else listed in (None, [])

    def test_a_password_is_changed_only_where_declared(
        self, store: KeyStore, reopen: Callable[[], KeyStore]
    ) -> None:
        if not store.can_change_password:
            pytest.skip(f"{store.kind} has no password of its own")
        store.put(entry_name(SIRET_A, "atlas"), "cle-atlas")
        assert store.unlock() == [entry_name(SIRET_A, "atlas")]
        store.change_password("un-nouveau-mot-de-passe-assez-long")
        assert store.get(entry_name(SIRET_A, "atlas")) == "cle-atlas"

    def test_a_batch_reads_its_own_writes_and_keeps_them(
        self, store: KeyStore, reopen: Callable[[], KeyStore]
    ) -> None:
        with store.batch():
            for number in range(5):
                store.put(entry_name(SIRET_A, f"opco{number}"), f"cle-{number}")
            assert store.get(entry_name(SIRET_A, "opco3")) == "cle-3"
            assert store.delete(entry_name(SIRET_A, "opco4")) is True
        with reopen() as other:
            assert [other.get(entry_name(SIRET_A, f"opco{n}")) for n in range(5)] == [
                "cle-0",
                "cle-1",
                "cle-2",
                "cle-3",
                None,
            ]

    def test_closing_keeps_the_secrets(
        self, store: KeyStore, reopen: Callable[[], KeyStore]
    ) -> None:
        with store:
            store.put(entry_name(SIRET_A, "mobilites"), "cle-mobilites")
        with reopen() as other:
            assert other.get(entry_name(SIRET_A, "mobilites")) == "cle-mobilites"

    def test_the_description_never_shows_a_secret(self, store: KeyStore) -> None:
        store.put(entry_name(SIRET_A, "atlas"), "secret-qui-ne-doit-pas-sortir")
        assert "secret-qui-ne-doit-pas-sortir" not in store.describe()


class MemoryStore(KeyStore):
    """Secrets in a dictionary, for tests of what surrounds a store (not of a store).

    Its kind is its own (``memory``), never one of the production kinds, and it is held to
    the contract like them (``tests/test_store_contract.py``). ``shared_with`` gives two
    objects the same secrets, as two processes see one store. Faults can be injected.
    """

    kind = "memory"
    can_list = True

    def __init__(self, shared_with: MemoryStore | None = None) -> None:
        self.secrets: dict[str, str] = shared_with.secrets if shared_with else {}
        self.fail_on_put = False
        self.fail_on_delete = False
        self.batches = 0

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

    def entries(self) -> list[str]:
        return sorted(self.secrets)

    @contextmanager
    def batch(self) -> Iterator[None]:
        self.batches += 1
        yield
