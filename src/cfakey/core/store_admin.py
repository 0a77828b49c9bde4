"""Administering the key store: which kind is used (``store use``), its password.

Both read the store table (``stores/kinds.py``) and the capabilities a store declares;
neither names a kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfakey.core.codes import JournalAction
from cfakey.errors import UsageError
from cfakey.stores.kinds import STORE_KINDS, StoreKind, store_kind

if TYPE_CHECKING:
    from collections.abc import Iterable

    from cfakey.config import Config
    from cfakey.metadata import Metadata
    from cfakey.stores.base import KeyStore


@dataclass(frozen=True)
class PasswordChanged:
    """``store password``: how many entries were re-encrypted, and where they are."""

    kind: StoreKind
    entries: int
    location: str


def checked_options(
    config: Config, name: str, options: Mapping[str, str | None] | None = None
) -> tuple[StoreKind, dict[str, str]]:
    """The kind ``name`` and its settings: those recorded, overridden by ``options``, checked.

    ``options``: the kind's settings given on the command line (``url``, ``mount``…;
    ``None`` when not given); a kind that takes none refuses them. Nothing is written.
    """
    choice = name.strip().lower()
    if choice not in STORE_KINDS:
        config.set("store", choice)  # refuses an unknown kind, naming the choices
    kind = STORE_KINDS[choice]
    store_class = kind.store_class()
    given = {key: value for key, value in (options or {}).items() if value is not None}
    foreign = [key for key in given if key not in store_class.setting_names]
    if foreign:
        flags = ", ".join(f"--{key.replace('_', '-')}" for key in foreign)
        raise UsageError(f"Option {flags} : elle ne s'applique pas à {kind.label}.")
    return kind, store_class.checked_settings({**_recorded(config, kind), **given})


def _recorded(config: Config, kind: StoreKind) -> dict[str, str]:
    return {
        key: str(value)
        for key in kind.store_class().setting_names
        if (value := config.get(f"{kind.name}.{key}")) not in (None, "")
    }


def use_store(
    config: Config, name: str, options: Mapping[str, str | None] | None = None
) -> StoreKind:
    """Record ``name`` as the store to use from now on (keys already stored do not move).

    ``options``: see :func:`checked_options`; they are checked with those already
    recorded before anything is written, then recorded as ``<kind>.<name>``.
    """
    kind, checked = checked_options(config, name, options)
    recorded = _recorded(config, kind)
    for key, value in checked.items():
        if recorded.get(key) != value:
            config.set(f"{kind.name}.{key}", value)
    config.set("store", kind.name)
    return kind


def require_password(kind_name: str | None) -> None:
    """Refuse, before anything is opened or asked, a kind that has no password of its own."""
    if kind_name is None:
        return  # nothing works yet: opening offers the fallback, which has one
    kind = STORE_KINDS[kind_name]
    if kind.store_class().can_change_password:
        return
    with_password = [k for k in STORE_KINDS.values() if k.store_class().can_change_password]
    usable = " ; ".join(
        f"{k.label[:1].upper()}{k.label[1:]} s'utilise avec --store {k.name} "
        f"ou CFAKEY_STORE={k.name}."
        for k in with_password
    )
    raise UsageError(
        f"Le magasin en service est {kind.label} : il n'a pas de mot de passe propre à cfakey.",
        hint=usable or None,
    )


def change_store_password(
    store: KeyStore, metadata: Metadata, new_password: Callable[[], str]
) -> PasswordChanged:
    """Check the current password, ask the new one, re-encrypt everything, journal it.

    ``new_password`` is asked only once the current one has been checked.
    """
    kind = store_kind(store.kind)
    if not store.can_change_password:
        require_password(store.kind)
    count = len(store.unlock())
    store.change_password(new_password())
    metadata.log(JournalAction.STORE_PASSWORD_CHANGED.id, detail=store.location())
    return PasswordChanged(kind, count, store.location())


def described_entries(
    metadata: Metadata, opco_ids: Iterable[str], *, kind: str | None = None
) -> dict[str, str | None]:
    """Every entry this home describes, with its fingerprint (``None`` for OAuth secrets).

    ``kind``: only the keys recorded in that store kind. OAuth client secrets have no
    metadata: one entry per OPCO of ``opco_ids`` is named, found or not.
    """
    from cfakey.stores.base import entry_name, oauth_entry_name

    described: dict[str, str | None] = {
        entry_name(record.siret, record.opco_id): record.fingerprint
        for record in metadata.list_keys()
        if kind is None or record.store == kind
    }
    described.update({oauth_entry_name(opco_id): None for opco_id in opco_ids})
    return described


def settle_store(store: KeyStore, metadata: Metadata, opco_ids: Iterable[str]) -> list[str]:
    """Before first use, the store's one-time upkeep (the keyring's per-home names), journalled.

    Done under the data lock, so that two commands starting at once do it once.
    """
    if not store.needs_settling:
        return []
    with metadata.lock():
        if not store.needs_settling:
            return []
        moved = store.settle(described_entries(metadata, opco_ids, kind=store.kind))
        if moved:
            metadata.log(
                JournalAction.STORE_SETTLED.id, detail=f"{len(moved)} entrée(s) de {store.kind}"
            )
    return moved
