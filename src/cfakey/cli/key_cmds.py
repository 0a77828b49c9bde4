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
    decimal_text,
    print_json,
    print_notice,
    print_warning,
    text_table,
    write_lines,
)
from cfakey.errors import UsageError

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.core.imports import ImportResult
    from cfakey.core.keys import KeyRow
    from cfakey.metadata import CfaRecord, KeyRecord, Metadata
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


def show(  # noqa: PLR0917 - typer passes one parameter per option
    ctx: typer.Context,
    opco_name: Annotated[str, OPCO_ARG],
    cfa: Annotated[str | None, CFA_OPTION] = None,
    reveal: Annotated[
        bool,
        typer.Option("--reveal", help="Affiche la clé elle-même, seule, sur la sortie standard."),
    ] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
    history: Annotated[
        bool,
        typer.Option(
            "--historique",
            help="Les versions de la clé (date, empreinte, auteur), jamais la clé elle-même.",
        ),
    ] = False,
) -> None:
    """Métadonnées et empreinte d'une clé ; la clé elle-même seulement avec --reveal."""
    from cfakey.core import keys

    context: AppContext = ctx.obj
    opco, record_cfa, record = _stored_key(context, opco_name, cfa)
    if history:
        _show_history(context, record, as_json=as_json, reveal=reveal)
        return
    if reveal:
        secret = keys.reveal_key(context.key_store(), context.metadata(), record, now=context.now())
        write_lines([secret])
        return
    from cfakey.core.peak import configured_peak

    settings = context.config().values
    window = keys.window_for(opco, opco.id, settings)
    row = keys.classify(
        record,
        opco=opco,
        cfa_name=record_cfa.name,
        window=window,
        now=context.now(),
        peak=configured_peak(settings),
    )
    if as_json:
        print_json(keys.key_details(row, record))
        return
    write_lines(_show_lines(opco, record_cfa, record, row))


def _show_history(context: AppContext, record: KeyRecord, *, as_json: bool, reveal: bool) -> None:
    """``show --historique``: each version's date, fingerprint, author and state."""
    from cfakey.core.team_sync import HISTORY_STATES, key_history

    if reveal:
        raise UsageError("--historique et --reveal s'excluent : l'historique ne montre aucune clé.")
    store = context.key_store() if context.shared_store_in_use() else None
    source, lines = key_history(context.metadata(), store, record)
    if as_json:
        print_json(
            {
                "cfa": record.siret,
                "opco": record.opco_id,
                "source": source,
                "versions": [line.as_json() for line in lines],
            }
        )
        return
    rows = [
        (
            str(line.version),
            date_text(line.written_at, "%d/%m/%Y %H:%M") if line.written_at else "",
            line.fingerprint or "",
            line.user or "",
            HISTORY_STATES.get(line.state, line.state),
        )
        for line in lines
    ]
    write_lines(text_table(("Version", "Écrite le", "Empreinte", "Par", "État"), rows))
    where = (
        "les versions gardées par le coffre" if source == "openbao" else "le journal de ce poste"
    )
    print_notice(f"{len(lines)} version(s), d'après {where} ; jamais la clé elle-même.")


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
    lines.insert(4, f"Vérification  : {_verification_text(row)}")
    return lines


def _verification_text(row: KeyRow) -> str:
    """The last verification by the OPCO (``verify``), or why there is none."""
    from cfakey.core.codes import VerifyOutcome

    last = row.verification
    due = " ; à refaire : cfakey verify " + row.opco_id if row.verification_due else ""
    if last is None:
        return "jamais vérifiée auprès de l'OPCO" + due
    parts = [
        date_text(last.at, "%d/%m/%Y %H:%M"),
        VerifyOutcome.label_of(last.outcome),
    ]
    if last.http_status is not None:
        parts.append(f"HTTP {last.http_status}")
    if last.opco_expiry is not None:
        parts.append(f"fin de validité annoncée le {last.opco_expiry:%d/%m/%Y}")
    return " ; ".join(parts) + due


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


def import_keys(  # noqa: PLR0917 - typer passes one parameter per option
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FICHIER",
            help="CSV (; , ou tabulation) ou JSON : SIRET, OPCO, clé [, échéance, obtention, "
            "nom du CFA] ; en-têtes français ou anglais, comme ceux de cfakey export.",
        ),
    ],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remplace les clés déjà enregistrées.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            "--simulation",
            help="Montre ce qui serait importé, remplacé ou écarté, sans rien enregistrer.",
        ),
    ] = False,
    skip_invalid: Annotated[
        bool,
        typer.Option(
            "--ignorer-invalides",
            help="Importe les lignes valides et liste les autres (sinon : tout ou rien).",
        ),
    ] = False,
    encoding: Annotated[
        str | None,
        typer.Option(
            "--encodage",
            metavar="ENCODAGE",
            help="Encodage du fichier (utf-8, cp1252…) ; reconnu seul par défaut.",
        ),
    ] = None,
) -> None:
    """Importe des clés depuis un tableur : tout ou rien, chaque ligne vérifiée d'abord."""
    from cfakey.core.imports import ImportOptions, import_file

    context: AppContext = ctx.obj
    started = time.monotonic()
    result = import_file(
        file,
        context.key_store,
        _import_metadata(context, dry_run=dry_run),
        context.registry,
        now=context.now(),
        options=ImportOptions(
            replace=yes, encoding=encoding, skip_invalid=skip_invalid, dry_run=dry_run
        ),
    )
    if dry_run:
        _print_simulation(result)
        return
    print_notice(
        f"{result.imported} clé(s) importée(s) en {decimal_text(time.monotonic() - started)} s"
        f" ; {result.new_cfas} CFA ajouté(s), {result.replaced} clé(s) remplacée(s),"
        f" {result.unchanged} inchangée(s)."
    )
    _print_import_warnings(result)
    print_notice("Échéances : cfakey list")


def _import_metadata(context: AppContext, *, dry_run: bool) -> Metadata:
    """The database to import into; for a simulation in a new home, an empty one in memory
    (a simulation creates nothing)."""
    if dry_run and not context.paths.metadata_db.exists():
        from cfakey.metadata import Metadata

        return Metadata.empty()
    return context.settled_metadata()


def _print_import_warnings(result: ImportResult) -> None:
    for warning in result.warnings:
        print_warning(warning[:1].upper() + warning[1:] + ".")
    if result.skipped:
        print_warning(f"{len(result.skipped)} erreur(s) : ligne(s) écartée(s), non importée(s) :")
        for problem in result.skipped:
            print_warning(f"  {problem}")
    if result.unusual:
        print_warning(
            f"{result.unusual} clé(s) de forme inhabituelle : vérifiez-les (cfakey verify)."
        )


def _print_simulation(result: ImportResult) -> None:
    """What ``import`` would do, row by row, on stdout; nothing was written."""
    plan = result.plan
    assert plan is not None  # noqa: S101 - import_file always returns its plan
    replaced = set(plan.replaced)
    lines = ["Simulation : rien n'a été enregistré."]
    for row in plan.rows:
        what = "remplacée" if (row.siret, row.opco.id) in replaced else "importée"
        lines.append(f"  ligne {row.number} : {row.siret} {row.opco.id} : serait {what}")
    lines += [f"  {siret} {opco_id} : inchangée (même clé)" for siret, opco_id in plan.unchanged]
    lines += [f"  {problem} : écartée" for problem in plan.skipped]
    lines.append(
        f"{result.imported - result.replaced} à importer, {result.replaced} à remplacer, "
        f"{result.unchanged} inchangée(s), {len(result.skipped)} écartée(s) ; "
        f"{result.new_cfas} CFA à ajouter."
    )
    write_lines(lines)
    for warning in result.warnings:
        print_warning(warning[:1].upper() + warning[1:] + ".")
