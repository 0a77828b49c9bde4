"""Which CFA a command acts on: ``--cfa`` by SIRET, SIREN or name, else the default one."""

from __future__ import annotations

from cfakey.errors import NotFoundError, UsageError
from cfakey.identifiers import validate_siret
from cfakey.metadata import CfaRecord, Metadata
from cfakey.registry.names import normalize

ADD_HINT = 'Enregistrez le CFA : cfakey cfa add SIRET --nom "Nom du CFA".'


def resolve_cfa(metadata: Metadata, query: str | None) -> CfaRecord:
    """The CFA designated by ``query``, or the default (or only) CFA when it is ``None``."""
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
    if len(compact) == 14 and compact.isdigit():
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
