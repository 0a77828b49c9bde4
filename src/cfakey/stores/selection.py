"""Which key store to use: explicit (option, environment, config) or detected, never silent.

The detected kind (the OS keyring) is used when it works. When it does not, cfakey says
why and does not fall back on its own: the operator confirms the fallback kind (the
encrypted file, in a terminal) or asks for it (``--store file``, ``CFAKEY_STORE=file``),
and the choice is remembered in the config. The kinds themselves are in ``kinds.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfakey.errors import UsageError
from cfakey.stores.kinds import DETECTED_KIND, STORE_KINDS, StoreSettings, store_kind

if TYPE_CHECKING:
    from cfakey.stores.base import KeyStore
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


def _fix(origin: str) -> str:
    """How to correct an unknown store name, by where it came from."""
    first, *others = STORE_KINDS
    if origin == "option":
        return " ou ".join(f"--store {name}" for name in STORE_KINDS)
    if origin == "env":
        return f"export CFAKEY_STORE={first} (ou {', '.join(others)}), ou unset CFAKEY_STORE"
    return f"cfakey store use {first} (ou {', '.join(others)})"


def _checked(kind: str, origin: str) -> str:
    if kind not in STORE_KINDS:
        raise UsageError(
            f"Magasin de clés inconnu ({ORIGINS[origin]}) : choix possibles : "
            f"{', '.join(STORE_KINDS)}.",
            hint=_fix(origin),
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
            noun = STORE_KINDS[kind].noun
            return StoreDecision(kind, origin, f"{noun}, choisi par {ORIGINS[origin]}")
    status = probe()
    noun = STORE_KINDS[DETECTED_KIND].noun
    if status.usable:
        return StoreDecision(
            DETECTED_KIND, "auto", f"{noun} disponible ({status.backend})", keyring=status
        )
    return StoreDecision(None, "auto", f"{noun} indisponible : {status.reason}", keyring=status)


def open_store(kind: str, settings: StoreSettings) -> KeyStore:
    """Build the store of this kind (see ``kinds.py``); nothing is unlocked yet."""
    return store_kind(kind).open(settings)
