"""The commands on stored keys: ``show`` (and ``--reveal``), ``remove`` and ``import``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.options import CFA_OPTION, JSON_OPTION, OPCO_ARG, YES_OPTION
from cfakey.cli.terminal import (
    Dialogue,
    date_text,
    print_json,
    print_notice,
    print_warning,
    write_lines,
)
from cfakey.errors import UsageError

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.core.keys import KeyRow
    from cfakey.metadata import CfaRecord, KeyRecord
    from cfakey.registry.model import Opco


def register(app: typer.Typer) -> None:
    """Add ``show``, ``remove`` and ``import`` to ``app``."""
    app.command("show")(show)
    app.command("remove")(remove)
    app.command("import")(import_keys)


def _stored_key(
    context: AppContext, opco_name: str, cfa: str | None
) -> tuple[Opco, CfaRecord, KeyRecord]:
    """The OPCO, the CFA and the metadata of the key asked for, or a French "not found"."""
    from cfakey.core.cfas import resolve_cfa
    from cfakey.core.keys import stored_key

    opco = context.resolve_opco(opco_name)
    record_cfa = resolve_cfa(context.metadata(), cfa)
    return opco, record_cfa, stored_key(context.metadata(), opco, record_cfa)


def show(
    ctx: typer.Context,
    opco_name: Annotated[str, OPCO_ARG],
    cfa: Annotated[str | None, CFA_OPTION] = None,
    reveal: Annotated[
        bool,
        typer.Option("--reveal", help="Affiche la clé elle-même, seule, sur la sortie standard."),
    ] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Métadonnées et empreinte d'une clé ; la clé elle-même seulement avec --reveal."""
    from cfakey.core import keys

    context: AppContext = ctx.obj
    opco, record_cfa, record = _stored_key(context, opco_name, cfa)
    if reveal:
        secret = keys.reveal_key(context.key_store(), context.metadata(), record, now=context.now())
        write_lines([secret])
        return
    window = keys.window_for(opco, opco.id, context.config().values)
    row = keys.classify(
        record, opco=opco, cfa_name=record_cfa.name, window=window, now=context.now()
    )
    if as_json:
        print_json(keys.key_details(row, record))
        return
    write_lines(_show_lines(opco, record_cfa, record, row))


def _show_lines(opco: Opco, cfa: CfaRecord, record: KeyRecord, row: KeyRow) -> list[str]:
    from cfakey.core.codes import source_label
    from cfakey.core.keys import status_text
    from cfakey.stores.kinds import STORE_KINDS

    days = "" if row.days_left is None else f" ({row.days_left} jours)"
    kind = STORE_KINDS.get(record.store)
    lines = [
        f"CFA           : {cfa.name} ({record.siret})",
        f"OPCO          : {opco.name} ({opco.id})",
        f"Statut        : {status_text(row)}",
        (
            f"Échéance      : {date_text(record.expires_at)}{days} ; "
            f"source : {source_label(record.expiry_source)}"
        ),
        f"Obtenue le    : {record.obtained_on:%d/%m/%Y}",
        f"Enregistrée le: {date_text(record.stored_at, '%d/%m/%Y %H:%M')} par {record.os_user}",
        f"Magasin       : {kind.noun if kind else record.store}",
        f"Empreinte     : {record.fingerprint}",
    ]
    if row.rotation_due is not None:
        lines.insert(4, f"Rotation      : conseillée le {row.rotation_due:%d/%m/%Y}")
    return lines


def remove(
    ctx: typer.Context,
    opco_name: Annotated[str, OPCO_ARG],
    cfa: Annotated[str | None, CFA_OPTION] = None,
    yes: Annotated[bool, YES_OPTION] = False,
) -> None:
    """Supprime une clé : le secret et ses métadonnées ensemble, inscrit au journal."""
    from cfakey.core.storage import remove_key

    context: AppContext = ctx.obj
    context.settled_metadata()  # the key to remove is read after recovery
    opco, record_cfa, record = _stored_key(context, opco_name, cfa)
    dialogue = Dialogue(None, assume_yes=yes)
    question = (
        f"Supprimer la clé {opco.name} de {record_cfa.name} (empreinte {record.fingerprint}) ?"
    )
    if not dialogue.tty and not yes:
        raise UsageError(
            "Pas de terminal pour confirmer la suppression : rien n'a été supprimé.",
            hint="Ajoutez --yes.",
        )
    if not dialogue.confirm(question):
        print_notice("Abandon : rien n'a été supprimé.")
        raise typer.Exit(1)
    remove_key(context.key_store(), context.metadata(), record_cfa.siret, opco.id)
    print_notice(
        f"Clé {opco.name} de {record_cfa.name} supprimée (empreinte {record.fingerprint})."
    )
    print_notice("Pensez à la révoquer aussi sur le portail de l'OPCO si elle ne doit plus servir.")


def import_keys(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FICHIER",
            help="CSV (, ou ;) ou JSON : cfa, opco, key [, expires, obtained, cfa_name].",
        ),
    ],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remplace les clés déjà enregistrées.")
    ] = False,
) -> None:
    """Importe des clés depuis un tableur : tout ou rien, chaque ligne vérifiée d'abord."""
    from cfakey.core.imports import import_file

    context: AppContext = ctx.obj
    started = time.monotonic()
    result = import_file(
        file,
        context.key_store,
        context.settled_metadata(),
        context.registry,
        now=context.now(),
        replace=yes,
    )
    print_notice(
        f"{result.imported} clé(s) importée(s) en {time.monotonic() - started:.1f} s"
        f" ; {result.new_cfas} CFA ajouté(s), {result.replaced} clé(s) remplacée(s)."
    )
    for warning in result.warnings:
        print_warning(warning[:1].upper() + warning[1:] + ".")
    if result.unusual:
        print_warning(
            f"{result.unusual} clé(s) de forme inhabituelle : vérifiez-les (cfakey verify)."
        )
    print_notice("Échéances : cfakey list")
