"""The CFAs whose keys are kept: which one a command acts on, and the ``cfa`` use-cases.

``--cfa`` designates a CFA by SIRET, SIREN or name, else the default one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cfakey.errors import AlreadyExistsError, NotFoundError, UsageError
from cfakey.identifiers import clean_cfa_name, validate_siret, validate_uai
from cfakey.metadata import CfaRecord, Metadata
from cfakey.registry.names import normalize

if TYPE_CHECKING:
    from cfakey.stores.base import KeyStore
    from cfakey.stores.openbao_catalog import OpenBaoCatalog

ADD_HINT = 'Enregistrez le CFA : cfakey cfa add SIRET --nom "Nom du CFA".'


def resolve_cfa(metadata: Metadata, query: str | None) -> CfaRecord:
    """The CFA designated by ``query``, or the default (or only) CFA when it is ``None``.

    A CFA whose keys the team engine's policy does not let this token read is a clear
    French refusal (exit 4), never « no key »: its keys may well exist.
    """
    record = _find_cfa(metadata, query)
    if record.siret in metadata.team_denied:
        from cfakey.errors import StoreUnavailableError

        raise StoreUnavailableError(
            f"Le coffre partagé refuse à ce jeton l'accès aux clés du CFA {record.siret} "
            "(403) : sa politique ne couvre pas ce CFA.",
            hint="Demandez à l'administrateur du coffre un jeton dont la politique couvre "
            "ce SIRET (docs/team.md).",
        )
    return record


def _find_cfa(metadata: Metadata, query: str | None) -> CfaRecord:
    cfas = metadata.list_cfas()
    if not cfas:
        raise UsageError("Aucun CFA n'est enregistré.", hint=ADD_HINT)
    if query is None or not query.strip():
        defaults = [cfa for cfa in cfas if cfa.is_default]
        if defaults:
            return defaults[0]
        if len(cfas) == 1:
            return cfas[0]
        raise UsageError(
            "Plusieurs CFA sont enregistrés et aucun n'est celui par défaut : précisez --cfa.",
            hint="Choisir celui par défaut : cfakey cfa default SIRET.",
        )
    compact = "".join(query.split())
    if len(compact) == 14 and compact.isascii() and compact.isdigit():
        validate_siret(compact)  # a typo in a SIRET is said as such, not as « CFA inconnu »
    by_siret = [cfa for cfa in cfas if cfa.siret == compact]
    if by_siret:
        return by_siret[0]
    matches = [cfa for cfa in cfas if cfa.siren == compact] if len(compact) == 9 else []
    if not matches:
        wanted = normalize(query)
        matches = [cfa for cfa in cfas if normalize(cfa.name) == wanted]
        if not matches:
            matches = [cfa for cfa in cfas if wanted and wanted in normalize(cfa.name)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        sirets = ", ".join(cfa.siret for cfa in matches)
        raise UsageError(f"--cfa désigne plusieurs CFA ({sirets}) : précisez le SIRET.")
    # What was typed is not quoted back: a key pasted in the wrong place would land here.
    raise NotFoundError(
        "CFA inconnu : un SIRET, un SIREN ou un nom de CFA enregistré est attendu.",
        hint="Liste des CFA : cfakey cfa list.",
    )


def the_cfa(name: str) -> str:
    """« le CFA des Métiers » whether or not the name says CFA itself: never « CFA CFA »."""
    return f"le {name}" if normalize(name).startswith("cfa") else f"le CFA {name}"


def resolve_cfas(metadata: Metadata, query: str | None) -> tuple[CfaRecord, ...]:
    """The CFAs ``query`` designates: every site of a SIREN, else the one CFA it names."""
    compact = "".join((query or "").split())
    if len(compact) == 9 and compact.isascii() and compact.isdigit():
        sites = tuple(cfa for cfa in metadata.list_cfas() if cfa.siren == compact)
        if sites:
            return sites
    return (resolve_cfa(metadata, query),)


def add_cfa(
    metadata: Metadata,
    siret: str,
    name: str,
    uai: str | None,
    *,
    catalog: OpenBaoCatalog | None = None,
) -> CfaRecord:
    """Register a CFA after checking its SIRET, UAI and name; the first becomes the default.

    With a team store (``catalog``), its record goes to the engine in the same
    transaction: refused there, it is not registered here either. A CFA the engine
    already has (a teammate's) is taken as the engine records it, never overwritten.
    """
    valid_siret = validate_siret(siret)
    valid_uai = validate_uai(uai) if uai is not None else None
    shared = None if catalog is None else catalog.cfa(valid_siret)
    with metadata.transaction():
        if shared is not None:  # a teammate registered it: this home takes it as it is
            from cfakey.core.team_sync import cfa_record

            known = cfa_record(valid_siret, shared)
            record = metadata.add_cfa(valid_siret, known.name, known.uai)
            metadata.mark_cfa_shared(valid_siret)
            return record
        record = metadata.add_cfa(valid_siret, clean_cfa_name(name), valid_uai)
        if catalog is not None:
            _publish(catalog, metadata, "cfa_added", valid_siret, record.name)
    return record


def _publish(
    catalog: OpenBaoCatalog, metadata: Metadata, action: str, siret: str, detail: str = ""
) -> None:
    """The CFA's record (or its removal) and a journal entry, to the team engine."""
    from cfakey.core.team_sync import publish_cfa, publish_event

    if action == "cfa_removed":
        catalog.remove_cfa(siret)
    else:
        publish_cfa(catalog, metadata, siret, again=True)
    publish_event(catalog, metadata, action, siret, detail)


def edit_cfa(
    metadata: Metadata,
    query: str,
    *,
    name: str | None = None,
    uai: str | None = None,
    catalog: OpenBaoCatalog | None = None,
) -> CfaRecord:
    """Fix the name or set the UAI of the CFA ``query`` designates, checked as ``cfa add``."""
    if name is None and uai is None:
        raise UsageError(
            "Rien à modifier : précisez --nom ou --uai.",
            hint="Exemple : cfakey cfa edit 18130002100373 --uai 0133527N",
        )
    record = resolve_cfa(metadata, query)
    with metadata.transaction():
        edited = metadata.edit_cfa(
            record.siret,
            name=clean_cfa_name(name) if name is not None else None,
            uai=validate_uai(uai) if uai is not None else None,
        )
        if catalog is not None and edited != record:
            _publish(catalog, metadata, "cfa_edited", record.siret)
    return edited


@dataclass(frozen=True)
class CfaSummary:
    """One registered CFA and how many keys it has (``cfa list``)."""

    cfa: CfaRecord
    keys: int

    def as_json(self) -> dict[str, object]:
        """The ``cfa list --json`` object: a contract for scripts."""
        return {
            "siret": self.cfa.siret,
            "siren": self.cfa.siren,
            "name": self.cfa.name,
            "uai": self.cfa.uai,
            "default": self.cfa.is_default,
            "keys": self.keys,
        }


def list_cfas(metadata: Metadata) -> list[CfaSummary]:
    """Every registered CFA with its number of keys."""
    counts: dict[str, int] = {}
    for record in metadata.list_keys():
        counts[record.siret] = counts.get(record.siret, 0) + 1
    return [CfaSummary(cfa, counts.get(cfa.siret, 0)) for cfa in metadata.list_cfas()]


def set_default_cfa(metadata: Metadata, query: str) -> CfaRecord:
    """Make the CFA designated by ``query`` the one used when ``--cfa`` is not given."""
    record = resolve_cfa(metadata, query)
    metadata.set_default_cfa(record.siret)
    return record


@dataclass(frozen=True)
class RemovedCfa:
    """A CFA just removed, and how many of its keys went with it."""

    cfa: CfaRecord
    removed_keys: int


def remove_cfa(
    metadata: Metadata,
    query: str,
    *,
    open_store: Callable[[], KeyStore] | None,
    catalog: OpenBaoCatalog | None = None,
) -> RemovedCfa:
    """Remove a CFA; refused while it has keys unless ``open_store`` is given (``--force``).

    With ``--force``, every intent is recorded first, the store written once, then all
    metadata and the CFA at once: no secret is ever left without its metadata (nor
    metadata without its secret).
    """
    from cfakey.core.storage import remove_keys

    record = resolve_cfa(metadata, query)
    store = open_store() if open_store is not None else None

    def forget() -> None:
        metadata.remove_cfa(record.siret)
        if catalog is not None:
            _publish(catalog, metadata, "cfa_removed", record.siret)

    with metadata.lock():  # no key may be added to this CFA meanwhile
        keys = metadata.list_keys(siret=record.siret)
        if keys and store is None:
            opcos = ", ".join(key.opco_id for key in keys)
            raise AlreadyExistsError(
                f"Le CFA {record.siret} a encore {len(keys)} clé(s) ({opcos}) : "
                "rien n'a été supprimé.",
                hint=(
                    f"Supprimez-les d'abord (cfakey remove OPCO --cfa {record.siret}) "
                    "ou ajoutez --force."
                ),
            )
        if keys and store is not None:
            remove_keys(
                store,
                metadata,
                keys,
                detail="cfa remove --force",
                also=forget,
            )
        else:
            with metadata.transaction():
                forget()
    return RemovedCfa(record, len(keys))
