"""Shell completion of OPCO identifiers and registered CFAs (bash, zsh, fish, PowerShell).

typer offers ``--install-completion`` and ``--show-completion``; the shell then asks
``cfakey`` itself for candidates through the ``_CFAKEY_COMPLETE`` variable. These
functions answer for the values only cfakey knows. A completion never fails aloud and
never writes: no registry, no database, or a damaged one, completes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Completion must not print a traceback into the operator's prompt, whatever happens.
_QUIET = (Exception,)


def complete_opco(incomplete: str) -> list[tuple[str, str]]:
    """OPCO identifiers starting with what was typed (accents and case ignored), with names."""
    try:
        from cfakey.paths import Paths
        from cfakey.registry.loader import load_registry
        from cfakey.registry.names import normalize

        overlay = os.environ.get("CFAKEY_REGISTRY")
        registry, _ = load_registry(Path(overlay) if overlay else None, Paths.from_env().cache_dir)
        typed = normalize(incomplete)
        return [
            (opco.id, opco.name)
            for opco in registry.opcos
            if normalize(opco.id).startswith(typed) or normalize(opco.name).startswith(typed)
        ]
    except _QUIET:
        return []


def complete_cfa(incomplete: str) -> list[tuple[str, str]]:
    """Registered CFAs whose SIRET starts with what was typed, with their names."""
    try:
        from cfakey.metadata import Metadata
        from cfakey.paths import Paths

        paths = Paths.from_env()
        if not paths.metadata_db.exists():  # nothing registered: never create the database
            return []
        with Metadata.open(paths) as metadata:
            cfas = metadata.list_cfas()
        typed = incomplete.strip()
        return [(cfa.siret, cfa.name) for cfa in cfas if cfa.siret.startswith(typed)]
    except _QUIET:
        return []
