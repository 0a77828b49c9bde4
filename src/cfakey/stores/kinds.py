"""The store kinds cfakey knows, in one table: name, French label, settings, how to open one.

Selection, help texts, ``doctor``, ``store use`` and ``store password`` read this table;
none of them names a kind. A kind's capabilities (can list its entries, can change a
password, is shared) are declared by its :class:`~cfakey.stores.base.KeyStore` class, and
read through :meth:`StoreKind.store_class`. Adding a store is: one module under
``stores/`` whose class implements ``KeyStore`` (with ``from_settings``), one line in
:data:`STORE_KINDS`, and a test class running ``tests/store_contract.py`` against it.

This module imports no store: a class is imported only when a command opens its kind.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from cfakey.errors import UsageError

if TYPE_CHECKING:
    from cfakey.errors import CfakeyError
    from cfakey.paths import Paths
    from cfakey.stores.base import KeyStore
    from cfakey.stores.file_store import PasswordSource
    from cfakey.stores.keyring_store import KeyringProbe


class SecretPrompt(Protocol):
    """Asks a secret without echo in a terminal; without one, raises ``on_end()``."""

    def __call__(self, question: str, *, on_end: Callable[[], CfakeyError]) -> str: ...


@dataclass(frozen=True)
class StoreSettings:
    """What opening a store may need; each kind takes only its own part."""

    paths: Paths
    env: Mapping[str, str]
    password_source: PasswordSource
    #: The command's keyring detection, reused rather than done again.
    keyring_probe: Callable[[], KeyringProbe] | None = None
    #: A setting of ``config.json`` by name (a remote store's URL), read only when asked.
    setting: Callable[[str], object] = lambda _name: None
    #: Asks a remote store's login secret (an AppRole secret_id); ``None``: never prompt.
    secret_prompt: SecretPrompt | None = None


@dataclass(frozen=True)
class StoreKind:
    """One line of the table."""

    #: Identifier for ``--store``, ``CFAKEY_STORE``, the config and each key's metadata row.
    name: str
    #: French noun phrase with its article: « le fichier chiffré ».
    label: str
    #: Where its class lives: ``"module:Class"``, imported on first use.
    implementation: str
    #: French descriptions of what the kind reads (variables, settings), for help and docs.
    settings: tuple[str, ...] = ()
    #: Its class's ``shared``, known without importing it: every command that reads the
    #: metadata asks (the team cache), and the other stores' modules cost start-up time.
    #: A test holds it equal to the class's.
    shared: bool = False

    @property
    def noun(self) -> str:
        """The label without its article: « fichier chiffré »."""
        return self.label.split(" ", 1)[1]

    def store_class(self) -> type[KeyStore]:
        """The class implementing this kind (its module is imported now)."""
        module_name, _, class_name = self.implementation.partition(":")
        store_class: type[KeyStore] = getattr(importlib.import_module(module_name), class_name)
        return store_class

    def open(self, settings: StoreSettings) -> KeyStore:
        """A store of this kind; nothing is unlocked yet."""
        return self.store_class().from_settings(settings)


STORE_KINDS: dict[str, StoreKind] = {
    kind.name: kind
    for kind in (
        StoreKind(
            "keyring",
            "le trousseau du système",
            "cfakey.stores.keyring_store:KeyringStore",
            ("PYTHON_KEYRING_BACKEND ou keyringrc.cfg : trousseau imposé à keyring",),
        ),
        StoreKind(
            "file",
            "le fichier chiffré",
            "cfakey.stores.file_store:EncryptedFileStore",
            (
                "CFAKEY_FILE_PASSWORD : mot de passe (sinon demandé dans un terminal)",
                "CFAKEY_NEW_FILE_PASSWORD : nouveau mot de passe pour cfakey store password",
            ),
        ),
        StoreKind(
            "openbao",
            "le coffre partagé OpenBao / Vault",
            "cfakey.stores.openbao_store:OpenBaoStore",
            (
                "openbao.url (ou BAO_ADDR, VAULT_ADDR) : adresse du coffre",
                "openbao.mount (secret), openbao.prefix (cfakey) : où sont les clés",
                "openbao.ca_bundle : autorité de certification du coffre",
                "BAO_TOKEN, VAULT_TOKEN ou ~/.vault-token : jeton",
                "openbao.role_id et CFAKEY_BAO_SECRET_ID : connexion AppRole",
            ),
            shared=True,
        ),
    )
}

#: Taken when it works and nothing was chosen.
DETECTED_KIND = "keyring"
#: Offered to the operator when the detected kind does not work; never taken silently.
FALLBACK_KIND = "file"


def kind_names() -> tuple[str, ...]:
    """Every kind's identifier, in table order."""
    return tuple(STORE_KINDS)


def metavar() -> str:
    """``keyring|file``: the choices, for an argument's help."""
    return "|".join(STORE_KINDS)


def choices_text() -> str:
    """« keyring (trousseau du système) ou file (fichier chiffré) », for help texts."""
    parts = [f"{kind.name} ({kind.noun})" for kind in STORE_KINDS.values()]
    return ", ".join(parts[:-1]) + " ou " + parts[-1] if len(parts) > 1 else parts[0]


def store_kind(name: str) -> StoreKind:
    """The kind called ``name``, or a French error listing the choices."""
    try:
        return STORE_KINDS[name]
    except KeyError:
        raise UsageError(
            f"Magasin de clés inconnu : choix possibles : {', '.join(STORE_KINDS)}."
        ) from None


def label_of(name: str) -> str:
    """The French label of a kind recorded somewhere (metadata, intent); its name if unknown."""
    kind = STORE_KINDS.get(name)
    return kind.label if kind else f"le magasin {name}"
