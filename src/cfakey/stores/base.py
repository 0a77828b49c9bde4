"""The key-store interface every backend implements, and how entries are named.

A store holds secrets only. Everything else about a key (dates, fingerprint, journal)
lives in the metadata database, so the overview never has to unlock the store.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Self

if TYPE_CHECKING:
    from cfakey.stores.kinds import StoreSettings
    from cfakey.stores.openbao_catalog import OpenBaoCatalog

SERVICE_NAME = "cfakey"


def entry_name(siret: str, opco_id: str) -> str:
    """The store entry of the key of one CFA at one OPCO: ``"<SIRET>/<opco id>"``."""
    return f"{siret}/{opco_id}"


def oauth_entry_name(opco_id: str) -> str:
    """The store entry of a software vendor's OAuth client secret for one OPCO."""
    return f"oauth-client/{opco_id}"


def fingerprint(secret: str) -> str:
    """First 12 hex digits of SHA-256: enough to compare two keys, useless to an attacker."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()[:12]


class KeyStore(ABC):
    """A place to put, get and delete secrets by entry name.

    Implementations raise :class:`cfakey.errors.StoreUnavailableError` (locked, no
    backend, wrong password) or :class:`cfakey.errors.DataCorruptedError`, never a
    backend's own exception, and never put a secret into an error message.
    """

    #: Short identifier saved in the metadata and the config: a key of ``STORE_KINDS``.
    kind: str
    #: Capabilities, declared (never discovered by ``isinstance``); the contract test holds
    #: each store to what it declares.
    #: ``entries()`` returns every entry name (``False``: it returns ``None``).
    can_list: ClassVar[bool] = False
    #: Has a password of its own: ``unlock()`` and ``change_password()`` work.
    can_change_password: ClassVar[bool] = False
    #: Several people or machines read and write the same secrets.
    shared: ClassVar[bool] = False
    #: Environment variables that unlock every key of this store (a token): when it is in
    #: service, ``cfakey exec``'s child never receives them.
    unlocking_variables: ClassVar[tuple[str, ...]] = ()
    #: The settings ``store use`` records for this kind (``--url`` → ``<kind>.url``).
    setting_names: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def checked_settings(cls, values: Mapping[str, str]) -> dict[str, str]:
        """``store use``: ``values`` (recorded, then given) normalised, or a French usage error.

        Nothing is contacted; only the names of :attr:`setting_names` are ever passed.
        """
        return dict(values)

    @classmethod
    def checked_setting(cls, name: str, value: str) -> str:
        """One of :attr:`setting_names` (``config set <kind>.<name>``), normalised or refused."""
        return value.strip()

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Self:
        """The store of this kind for this home and environment (see ``stores/kinds.py``)."""
        raise NotImplementedError(cls.__name__)

    def location(self) -> str:
        """Where the secrets are, for messages and the journal (never a secret)."""
        return self.kind

    @abstractmethod
    def describe(self) -> str:
        """A French description for ``doctor`` (e.g. the keyring backend's name)."""

    @abstractmethod
    def put(self, entry: str, secret: str) -> None:
        """Store ``secret`` under ``entry``, replacing any previous one."""

    @abstractmethod
    def get(self, entry: str) -> str | None:
        """The secret stored under ``entry``, or ``None``."""

    @abstractmethod
    def delete(self, entry: str) -> bool:
        """Remove ``entry``; ``False`` if there was nothing to remove."""

    def catalog(self) -> OpenBaoCatalog | None:
        """With ``shared``: where the team keeps the keys' metadata, the CFAs and the
        journal (``cfakey.core.team_sync``); ``None``: this home's database is the truth."""
        return None

    def version_of(self, entry: str) -> int | None:
        """With ``shared``: the engine version of ``entry`` last read or written here."""
        return None

    def check_secret(self, secret: str) -> None:  # noqa: B027 - optional hook
        """Refuse, before anything is written, a secret this store could not hold."""

    def prepare(self) -> None:  # noqa: B027 - optional hook, most stores need nothing
        """Ask now for what the store needs (a password), before a long interactive procedure."""

    @property
    def needs_settling(self) -> bool:
        """One-time upkeep is due before first use (see :meth:`settle`)."""
        return False

    def settle(self, expected: Mapping[str, str | None]) -> list[str]:
        """Bring entries left by an earlier version to where this one looks; the moved ones.

        ``expected``: each entry the metadata describes, with its fingerprint (``None``:
        none recorded). Called under the data lock, once :attr:`needs_settling`.
        """
        return []

    def entries(self) -> list[str] | None:
        """Every entry name when ``can_list``, else ``None`` (OS keyrings cannot enumerate)."""
        return None

    def unlock(self) -> list[str]:
        """With ``can_change_password``: check the password now; the names of the entries."""
        raise NotImplementedError(type(self).__name__)

    def change_password(self, new_password: str) -> None:
        """With ``can_change_password``: re-encrypt every entry under ``new_password``."""
        raise NotImplementedError(type(self).__name__)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Group many operations into one session (one decryption, one write)."""
        yield

    def close(self) -> None:  # noqa: B027 - optional hook, most stores hold nothing open
        """Release what the store holds (derived key, file lock)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
