"""The reminder commands: ``metrics`` (Prometheus) and ``calendar`` (iCalendar).

Like ``list`` and ``check`` they read the metadata database only, never the key store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.options import CFA_OPTION, OPCO_FILTER_OPTION
from cfakey.cli.terminal import print_notice, write_text
from cfakey.errors import CfakeyError, UsageError, os_reason

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.core.keys import Overview

AllCfasOption = Annotated[
    bool,
    typer.Option("--toutes-cfa", help="Tous les CFA enregistrés (le défaut sans --cfa)."),
]


def register(app: typer.Typer) -> None:
    """Add ``metrics`` and ``calendar`` to ``app``."""
    app.command("metrics")(metrics)


def _overview(
    context: AppContext, cfa_query: str | None, all_cfas: bool, opco_name: str | None
) -> Overview:
    """The keys of one CFA (``--cfa``) or of all of them, optionally of one OPCO."""
    from cfakey.core import keys
    from cfakey.core.cfas import resolve_cfas

    if cfa_query and all_cfas:
        raise UsageError("--cfa et --toutes-cfa s'excluent : choisissez l'une des deux.")
    opco_id = context.resolve_opco(opco_name).id if opco_name else None
    cfas = resolve_cfas(context.metadata(), cfa_query) if cfa_query else None
    return keys.overview(
        context.metadata(),
        context.registry,
        context.config().values,
        now=context.now(),
        cfas=cfas,
        opco_id=opco_id,
    )


def metrics(
    ctx: typer.Context,
    textfile: Annotated[
        Path | None,
        typer.Option(
            "--textfile",
            metavar="DOSSIER",
            help="Écrit DOSSIER/cfakey.prom (collecteur textfile de node_exporter).",
        ),
    ] = None,
    cfa: Annotated[str | None, CFA_OPTION] = None,
    all_cfas: AllCfasOption = False,
    opco_name: Annotated[str | None, OPCO_FILTER_OPTION] = None,
) -> None:
    """Échéances des clés au format texte de Prometheus (sans clé ni empreinte)."""
    from cfakey.core.reminders import metrics_text

    context: AppContext = ctx.obj
    view = _overview(context, cfa, all_cfas, opco_name)
    text = metrics_text(view, now=context.now())
    if textfile is None:
        write_text(text)
        return
    path = _write_textfile(textfile, text)
    print_notice(f"Métriques écrites dans {path}.")


def _write_textfile(directory: Path, text: str) -> Path:
    """``directory/cfakey.prom``, replaced atomically (0644: it holds no secret)."""
    from cfakey.core.reminders import TEXTFILE_NAME
    from cfakey.paths import atomic_write

    if directory.exists() and not directory.is_dir():
        raise CfakeyError(f"{directory} n'est pas un dossier : rien n'a été écrit.")
    if not directory.is_dir():
        raise CfakeyError(
            f"Le dossier {directory} n'existe pas : rien n'a été écrit.",
            hint="Créez-le, ou indiquez le dossier du collecteur textfile de node_exporter.",
        )
    path = directory / TEXTFILE_NAME
    try:
        atomic_write(path, text.encode("utf-8"), mode=0o644)
    except OSError as error:
        raise CfakeyError(
            f"Impossible d'écrire dans {directory} ({os_reason(error)}) : rien n'a été écrit.",
            hint="Vérifiez les droits du dossier ou choisissez-en un autre.",
        ) from None
    return path
