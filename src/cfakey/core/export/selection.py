"""Which keys an export hands out: selection, variable names, expiry flags, reading secrets."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cfakey.core.codes import KeyStatus
from cfakey.errors import CfakeyError, NotFoundError, UsageError

if TYPE_CHECKING:
    from cfakey.metadata import CfaRecord, KeyRecord, Metadata
    from cfakey.registry.model import Registry
    from cfakey.stores.base import KeyStore

VARIABLE_PREFIX = "CFA_KEY"

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class ExportedKey:
    """One key on its way out, with what an integrator needs to use it."""

    siret: str
    cfa_name: str
    opco_id: str
    opco_name: str
    expires_at: datetime | None
    fingerprint: str
    oauth_client_required: bool
    secret: str = field(repr=False)

    @property
    def siren(self) -> str:
        """The legal unit of the CFA."""
        return self.siret[:9]


@dataclass(frozen=True)
class ExpiryFlag:
    """A key that has expired, or is « à renouveler » as ``cfakey list`` says."""

    siret: str
    cfa_name: str
    opco_id: str
    opco_name: str
    expires_at: datetime
    expired: bool

    def message(self) -> str:
        """One French line for stderr."""
        from cfakey.expiry import local_time  # never overflows

        when = local_time(self.expires_at).strftime("%d/%m/%Y")
        verb = "a expiré" if self.expired else "expire"
        key = f"la clé {self.opco_name} de « {self.cfa_name} » ({self.siret})"
        return f"Attention : {key} {verb} le {when}."


@dataclass(frozen=True)
class PlannedKey:
    """A key chosen for export, before its secret is read from the store."""

    cfa: CfaRecord
    record: KeyRecord
    opco_name: str
    oauth_client_required: bool


@dataclass(frozen=True)
class KeyPlan:
    """The keys a selection designates, and whether names must carry the SIRET."""

    keys: tuple[PlannedKey, ...]
    qualified: bool


class StrictExpiryError(CfakeyError):
    """``--strict`` and an expired or soon-expiring key in the selection."""


# Names ---------------------------------------------------------------------------------


def variable_name(opco_id: str, siret: str | None = None) -> str:
    """``CFA_KEY_<OPCO>`` for one CFA, ``CFA_KEY_<SIRET>_<OPCO>`` when several are exported."""
    opco_part = re.sub(r"[^A-Z0-9]", "_", opco_id.upper())
    if siret is None:
        return f"{VARIABLE_PREFIX}_{opco_part}"
    return f"{VARIABLE_PREFIX}_{siret}_{opco_part}"


def key_variable(key: ExportedKey, *, qualified: bool) -> str:
    """The variable that carries ``key`` in ``env``, ``dotenv`` and ``exec``."""
    return variable_name(key.opco_id, key.siret if qualified else None)


# Selection -----------------------------------------------------------------------------


def plan_export(
    metadata: Metadata,
    registry: Registry,
    *,
    cfa_query: str | None,
    all_cfas: bool,
    opco_ids: Sequence[str] = (),
) -> KeyPlan:
    """The keys of the chosen CFA(s) and OPCO(s), in registry order, or a French error."""
    from cfakey.core.cfas import resolve_cfas
    from cfakey.registry.names import resolve

    if all_cfas and cfa_query is not None:
        raise UsageError("--cfa et --toutes-cfa s'excluent : choisissez l'un ou l'autre.")
    wanted = [resolve(registry, name).id for name in opco_ids]
    if all_cfas:
        cfas = metadata.list_cfas()
        if not cfas:
            from cfakey.core.cfas import ADD_HINT

            raise UsageError("Aucun CFA n'est enregistré.", hint=ADD_HINT)
    else:
        cfas = list(resolve_cfas(metadata, cfa_query))  # a SIREN: all its sites
    order = {opco.id: index for index, opco in enumerate(registry.opcos)}
    planned: list[PlannedKey] = []
    for cfa in sorted(cfas, key=lambda item: item.siret):
        records = [r for r in metadata.list_keys(cfa.siret) if not wanted or r.opco_id in wanted]
        for record in sorted(records, key=lambda r: (order.get(r.opco_id, len(order)), r.opco_id)):
            planned.append(planned_key(registry, cfa, record))
    if not planned:
        raise NotFoundError(
            _nothing_selected(cfas, all_cfas=all_cfas or len(cfas) > 1, opco_ids=wanted),
            hint="Voir : cfakey list.",
        )
    return KeyPlan(keys=tuple(planned), qualified=all_cfas or len(cfas) > 1)


def planned_key(registry: Registry, cfa: CfaRecord, record: KeyRecord) -> PlannedKey:
    """``record`` of ``cfa`` with what the registry says of its OPCO (if it still knows it)."""
    try:
        opco = registry.get(record.opco_id)
    except KeyError:
        return PlannedKey(cfa, record, record.opco_id, oauth_client_required=False)
    return PlannedKey(cfa, record, opco.name, oauth_client_required=opco.api.oauth_client_required)


def _nothing_selected(cfas: Sequence[CfaRecord], *, all_cfas: bool, opco_ids: Sequence[str]) -> str:
    from cfakey.core.cfas import the_cfa

    where = (
        "aucun CFA" if not cfas else ("les CFA enregistrés" if all_cfas else the_cfa(cfas[0].name))
    )
    if opco_ids:
        return f"Aucune clé ne correspond à la sélection ({', '.join(opco_ids)}) pour {where}."
    return f"Aucune clé n'est enregistrée pour {where}."


def read_planned(
    store: KeyStore,
    plan: KeyPlan,
    *,
    on_progress: ProgressCallback | None = None,
) -> list[ExportedKey]:
    """Read every planned secret in one store session (one unlock, one decryption).

    Each key's fingerprint is computed from the secret read, not taken from the plan:
    exports and the journal name the key actually handed out, even if it was replaced
    since the plan was made.
    """
    from cfakey.core.storage import read_key
    from cfakey.stores.base import fingerprint

    keys: list[ExportedKey] = []
    total = len(plan.keys)
    with store.batch():
        for done, item in enumerate(plan.keys, start=1):
            secret = read_key(
                store, item.cfa.siret, item.record.opco_id, recorded_in=item.record.store
            )
            keys.append(
                ExportedKey(
                    siret=item.cfa.siret,
                    cfa_name=item.cfa.name,
                    opco_id=item.record.opco_id,
                    opco_name=item.opco_name,
                    expires_at=item.record.expires_at,
                    fingerprint=fingerprint(secret),
                    oauth_client_required=item.oauth_client_required,
                    secret=secret,
                )
            )
            if on_progress is not None:
                on_progress(done, total)
    return keys


# Expiry --------------------------------------------------------------------------------


def expiry_flags(
    keys: Iterable[PlannedKey], registry: Registry, settings: Mapping[str, Any], now: datetime
) -> list[ExpiryFlag]:
    """Dated keys that ``cfakey list`` shows « expirée » or « à renouveler » at ``now``.

    The very classification of ``list``, ``check`` and ``show`` (:func:`keys.classify`
    with :func:`keys.window_for`): calendar days on the operator's clock and each OPCO's
    window, so that every command agrees on the same key at the same instant. An undated
    key whose rotation is merely advised has no « échéance » and is never flagged.
    """
    from cfakey.core.keys import classify, window_for

    opcos = {opco.id: opco for opco in registry.opcos}
    flags: list[ExpiryFlag] = []
    for key in keys:
        record = key.record
        opco = opcos.get(record.opco_id)
        row = classify(
            record,
            opco=opco,
            cfa_name=key.cfa.name,
            window=window_for(opco, record.opco_id, settings),
            now=now,
        )
        expiry = row.expiry_status
        if record.expires_at is not None and expiry in (KeyStatus.EXPIRED, KeyStatus.EXPIRING):
            flags.append(
                ExpiryFlag(
                    key.cfa.siret,
                    key.cfa.name,
                    record.opco_id,
                    key.opco_name,
                    record.expires_at,
                    expired=expiry is KeyStatus.EXPIRED,
                )
            )
    return flags


def refuse_if_strict(flags: Sequence[ExpiryFlag]) -> None:
    """``--strict``: any flagged key stops the export before anything is written."""
    if flags:
        names = ", ".join(f"{flag.opco_name} ({flag.siret})" for flag in flags)
        raise StrictExpiryError(
            f"Export refusé (--strict) : clé(s) expirée(s) ou proche(s) de l'échéance : {names}.",
            hint="Renouvelez ces clés (cfakey guide OPCO) ou exportez sans --strict.",
        )
