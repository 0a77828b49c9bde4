"""Which key store to use: explicit (option, environment, config) or detected, never silent.

The OS keyring is used when it works. When it does not, cfakey says why and does not fall
back on its own: the operator confirms the encrypted file (in a terminal) or asks for it
(``--store file``, ``CFAKEY_STORE=file``), and the choice is remembered in the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfakey.config import STORE_CHOICES
from cfakey.errors import UsageError

if TYPE_CHECKING:
    from cfakey.paths import Paths
    from cfakey.stores.base import KeyStore
    from cfakey.stores.file_store import PasswordSource
    from cfakey.stores.keyring_store import KeyringProbe

#: Where a choice came from, in the order it is looked for.
ORIGINS = {
    "option": "option --store",
    "env": "variable CFAKEY_STORE",
    "config": "fichier de configuration",
    "auto": "détection automatique",
}


@dataclass(frozen=True)
class StoreDecision:
    """The store to use (``None``: the keyring does not work and nothing else was chosen)."""

    kind: str | None
    origin: str
    reason: str
    keyring: KeyringProbe | None = None

    @property
    def needs_confirmation(self) -> bool:
        """The keyring failed and the operator has not chosen the encrypted file yet."""
        return self.kind is None


#: How to correct an unknown store name, by where it came from.
FIXES = {
    "option": "--store keyring ou --store file",
    "env": "export CFAKEY_STORE=keyring (ou file), ou unset CFAKEY_STORE",
    "config": "cfakey store use keyring (ou file)",
}


def _checked(kind: str, origin: str) -> str:
    if kind not in STORE_CHOICES:
        raise UsageError(
            f"Magasin de clés inconnu ({ORIGINS[origin]}) : choix possibles : "
            f"{', '.join(STORE_CHOICES)}.",
            hint=FIXES[origin],
        )
    return kind


def decide_store(
    *,
    option: str | None,
    env_value: str | None,
    config_value: str | None,
    probe: Callable[[], KeyringProbe],
) -> StoreDecision:
    """The store to use and why: option, then ``CFAKEY_STORE``, then config, then detection."""
    for origin, value in (("option", option), ("env", env_value), ("config", config_value)):
        if value:
            kind = _checked(str(value).strip().lower(), origin)
            label = "trousseau du système" if kind == "keyring" else "fichier chiffré"
            return StoreDecision(kind, origin, f"{label}, choisi par {ORIGINS[origin]}")
    status = probe()
    if status.usable:
        return StoreDecision(
            "keyring", "auto", f"trousseau du système disponible ({status.backend})", keyring=status
        )
    return StoreDecision(
        None, "auto", f"trousseau du système indisponible : {status.reason}", keyring=status
    )


def open_store(
    kind: str,
    paths: Paths,
    password_source: PasswordSource,
    keyring_probe: Callable[[], KeyringProbe] | None = None,
) -> KeyStore:
    """Build the store of this kind (``keyring`` or ``file``); nothing is unlocked yet.

    ``keyring_probe``: the command's keyring detection, reused rather than done again.
    """
    if kind == "keyring":
        from cfakey.stores.keyring_store import KeyringStore  # noqa: PLC0415

        return KeyringStore(probe=keyring_probe)
    if kind == "file":
        from cfakey.stores.file_store import EncryptedFileStore  # noqa: PLC0415

        return EncryptedFileStore(paths.encrypted_store, password_source)
    raise UsageError(f"Magasin de clés inconnu : choix possibles : {', '.join(STORE_CHOICES)}.")
