"""The reminder commands: ``metrics`` (Prometheus) and ``calendar`` (iCalendar).

Like ``list`` and ``check`` they read the metadata database only, never the key store.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.options import CFA_OPTION, OPCO_FILTER_OPTION
from cfakey.cli.terminal import print_notice, write_bytes, write_text
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
    app.command("calendar")(calendar)


def _overview(
    context: AppContext, cfa_query: str | None, all_cfas: bool, opco_name: str | None
) -> Overview:
    """The keys of one CFA (``--cfa``) or of all of them, optionally of one OPCO; CFAs the
    team engine's policy hides from this token are said on stderr, as ``list`` says them."""
    from cfakey.cli.overview_cmds import _overview as overview
    from cfakey.cli.overview_cmds import warn_unreadable

    if cfa_query and all_cfas:
        raise UsageError("--cfa et --toutes-cfa s'excluent : choisissez l'une des deux.")
    view = overview(context, cfa_query, opco_name)
    warn_unreadable(view.unreadable)
    return view


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


def calendar(  # noqa: PLR0917 - typer passes one parameter per option
    ctx: typer.Context,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output", "-o", metavar="FICHIER", help="Écrit le calendrier dans ce fichier .ics."
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Remplace le fichier de sortie s'il existe.")
    ] = False,
    cfa: Annotated[str | None, CFA_OPTION] = None,
    all_cfas: AllCfasOption = False,
    opco_name: Annotated[str | None, OPCO_FILTER_OPTION] = None,
) -> None:
    """Échéances des clés en calendrier iCalendar (.ics) avec alarmes, sans clé."""
    from cfakey.cli.overview_cmds import _open_requests
    from cfakey.core.keys import window_for
    from cfakey.core.reminders import calendar_ics, change_times, reminders

    context: AppContext = ctx.obj
    if output is not None:
        from cfakey.core.export.handover import check_destination

        check_destination(output, force=force)
    view = _overview(context, cfa, all_cfas, opco_name)
    registry, settings = context.registry, context.config().values
    windows = dict(view.windows)  # every OPCO of the registry; others get the defaults
    for row in view.rows:
        if row.opco_id not in windows:
            windows[row.opco_id] = window_for(None, row.opco_id, settings)
    found = reminders(view, windows)
    requests = _open_requests(context, view, opco_name)
    changed = change_times(context.metadata())
    data = calendar_ics(found, registry, changed, now=context.now(), requests=requests)
    if output is None:
        write_bytes(data)
        return
    from cfakey.core.export.handover import write_output

    write_output(output, data.decode("utf-8"), force=force)
    print_notice(f"{data.count(b'BEGIN:VEVENT')} événement(s) écrit(s) dans {output}.")
