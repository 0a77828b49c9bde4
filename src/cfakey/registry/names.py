"""Resolve what an operator types ("L'Opcommerce", "opco-ep", "Santé") to an OPCO id."""

from __future__ import annotations

import unicodedata

from cfakey.errors import UnknownOpcoError
from cfakey.registry.model import Opco, Registry

_IGNORED = str.maketrans("", "", " '’‘`-_.\t")


def normalize(name: str) -> str:
    """Fold case and accents, drop spaces, apostrophes, hyphens, dots and underscores."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    return bare.translate(_IGNORED)


def name_index(registry: Registry) -> dict[str, str]:
    """Every normalised id, name and alias mapped to its OPCO id.

    Raises ``ValueError`` when one spelling would lead to two OPCOs: the registry test
    suite calls this to keep aliases unambiguous.
    """
    index: dict[str, str] = {}
    for opco in registry.opcos:
        for spelling in (opco.id, opco.name, *opco.aliases):
            key = normalize(spelling)
            owner = index.setdefault(key, opco.id)
            if owner != opco.id:
                raise ValueError(f"« {spelling} » désigne à la fois {owner} et {opco.id}")
    return index


def resolve(registry: Registry, name: str) -> Opco:
    """The OPCO this name designates, or an error that suggests the closest ids."""
    key = normalize(name)
    index = name_index(registry)
    if key in index:
        return registry.get(index[key])
    import difflib  # only on a typo

    valid = ", ".join(opco.id for opco in registry.opcos)
    close = difflib.get_close_matches(key, list(index), n=3, cutoff=0.6) if key else []
    suggestions = list(dict.fromkeys(index[match] for match in close))
    # What was typed is not quoted back: a key pasted in the wrong place would land here.
    message = (
        "OPCO inconnu : un identifiant ou un nom d'OPCO est attendu."
        if key
        else "Aucun OPCO indiqué."
    )
    if suggestions:
        message += " Voulez-vous dire " + " ou ".join(f"« {s} »" for s in suggestions) + " ?"
    raise UnknownOpcoError(message, hint=f"OPCO reconnus : {valid}.")
