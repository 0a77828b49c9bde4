"""The overview commands: ``list`` (deadlines), ``check`` (cron, Nagios) and ``journal``.

They read the metadata database only, never the key store, and write plain text without
rich: they must stay quick with a thousand keys, and they run from cron.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.options import CFA_OPTION, JSON_OPTION, OPCO_FILTER_OPTION
from cfakey.cli.terminal import (
    date_text,
    paint,
    print_json,
    print_notice,
    text_table,
    write_lines,
    write_text,
)
from cfakey.core.codes import KeyStatus, Level, action_label, detail_label
from cfakey.core.requests import request_cell
from cfakey.errors import UsageError

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.core.keys import CheckResult, KeyRow, Overview
    from cfakey.core.peak import PeakRenewal
    from cfakey.core.requests import RequestRow
    from cfakey.metadata import JournalEntry


def register(app: typer.Typer) -> None:
    """Add ``list``, ``check`` and ``journal`` to ``app``."""
    app.command("list")(list_keys)
    app.command("check")(check)
    app.command("journal")(journal)


def _overview(
    context: AppContext,
    cfa_query: str | None,
    opco_name: str | None,
    warn_days: int | None = None,
    crit_days: int | None = None,
) -> Overview:
    from cfakey.core import keys
    from cfakey.core.cfas import resolve_cfas

    keys.check_window_args(warn_days, crit_days)
    opco_id = context.resolve_opco(opco_name).id if opco_name else None
    cfas = resolve_cfas(context.metadata(), cfa_query) if cfa_query else None
    return keys.overview(
        context.metadata(),
        context.registry,
        context.config().values,
        now=context.now(),
        cfas=cfas,
        opco_id=opco_id,
        warn_days=warn_days,
        crit_days=crit_days,
    )


def list_keys(
    ctx: typer.Context,
    cfa: Annotated[str | None, CFA_OPTION] = None,
    opco_name: Annotated[str | None, OPCO_FILTER_OPTION] = None,
    as_json: Annotated[bool, JSON_OPTION] = False,
    detail: Annotated[
        bool, typer.Option("--detail", help="Une ligne par clé, même pour plusieurs CFA.")
    ] = False,
) -> None:
    """Échéances des clés, les plus urgentes d'abord (sans ouvrir le magasin de clés)."""
    context: AppContext = ctx.obj
    view = _overview(context, cfa, opco_name)
    _warn_interrupted(view)
    warn_unreadable(view.unreadable)
    if as_json:
        print_json([row.as_json() for row in view.rows])
        return
    requests = _open_requests(context, view, opco_name)
    if not view.rows:
        _print_requests(requests, ())
        if not requests:
            _empty_hint(view)
        return
    several = len({row.siret for row in view.rows}) > 1
    if several and not detail and opco_name is None:
        write_lines(_matrix(context, view))
        print_notice(
            "Jours restants avant échéance ; ref = refusée par l'OPCO, exp = expirée, "
            "s.d. = sans date, · = aucune clé ; en rouge : critique."
        )
        print_notice(
            "Détail d'un CFA : cfakey list --cfa SIRET ; une ligne par clé : cfakey list --detail"
        )
    else:
        requested = {(r.siret, r.opco_id): request_cell(r) for r in requests}
        write_lines(_table(view.rows, requested, one_cfa=not several))
        if any(row.rotation_due and not row.expires_at for row in view.rows):
            print_notice(
                "≈ : renouvellement conseillé à cette date (l'OPCO ne fixe pas d'échéance)."
            )
    _summary(view)
    _print_peak(view)
    _print_requests(requests, view.rows)
    _advice(context, view)


def _print_peak(view: Overview) -> None:
    """The keys to renew before the contract peak, with the date to do it (core/peak.py)."""
    flagged = [(row, row.peak) for row in view.rows if row.peak is not None]
    if not flagged:
        return
    print_notice(f"Clés à renouveler avant la rentrée ({flagged[0][1].season}, pic des contrats) :")
    for row, peak in flagged:
        print_notice(
            f"  {row.cfa_name} ({row.siret}), {row.opco_name} : expire le "
            f"{date_text(row.expires_at)} ; renouvelez-la à partir du "
            f"{peak.remind_on:%d/%m/%Y}, avant le {peak.starts:%d/%m/%Y}"
        )


def _advice(context: AppContext, view: Overview) -> None:
    """One line per key ``check`` reports: the command (or the place) that renews it."""
    from cfakey.core.keys import advice

    lines = [
        f"  {row.opco_name} : {todo}"
        for row in view.rows
        if (todo := advice(row, context.registry)) is not None
    ]
    if lines:
        print_notice("À faire :")
        for line in lines:
            print_notice(line)


def _open_requests(context: AppContext, view: Overview, opco_name: str | None) -> list[RequestRow]:
    """The open e-mail requests of the CFAs and OPCO ``list`` shows."""
    from cfakey.core.requests import open_requests

    shown = {cfa.siret for cfa in view.cfas}
    opco_id = context.resolve_opco(opco_name).id if opco_name else None
    every = open_requests(
        context.metadata(),
        context.registry,
        context.config().values,
        now=context.now(),
        opco_id=opco_id,
    )
    return [row for row in every if row.siret in shown]


def _print_requests(requests: Sequence[RequestRow], rows: Sequence[KeyRow]) -> None:
    """The requests of slots without a key yet, under the table (in it, they have a key)."""
    keyed = {(row.siret, row.opco_id) for row in rows}
    waiting = [r for r in requests if (r.siret, r.opco_id) not in keyed]
    if waiting:
        print_notice("Clés demandées par e-mail, en attente :")
    for request in waiting:
        print_notice(
            f"  {request.cfa_name} ({request.siret}), {request.opco_name} : {request_cell(request)}"
        )


def unreadable_text(sirets: Sequence[str]) -> str:
    """What a token limited by the team engine's policy does not show, and why."""
    return (
        f"{len(sirets)} CFA connu(s) que ce jeton ne peut pas lire ({', '.join(sirets)}) : "
        "la politique du coffre partagé ne les lui ouvre pas ; ce n'est pas une erreur, "
        "et rien d'autre n'est caché."
    )


def warn_unreadable(sirets: Sequence[str]) -> None:
    """Say, on stderr, which known CFAs the engine's policy hides from this token."""
    if sirets:
        print_notice(unreadable_text(sirets))


def _warn_interrupted(view: Overview) -> None:
    """Say which rows an interrupted operation may make wrong (resolved by ``doctor``)."""
    if view.interrupted:
        from cfakey.core.recovery import unresolved_warning

        for intent in view.interrupted:
            print_notice(unresolved_warning(intent))


def _empty_hint(view: Overview) -> None:
    if view.filtered:
        print_notice("Aucune clé ne correspond à ces critères.")
    elif not view.cfas:
        print_notice(
            "Aucune clé enregistrée. Commencez par déclarer votre CFA : "
            'cfakey cfa add SIRET --nom "Nom du CFA"'
        )
        print_notice("puis ajoutez une clé : cfakey add OPCO (la liste des OPCO : cfakey opcos).")
    else:
        print_notice(
            "Aucune clé enregistrée pour l'instant. "
            "Ajoutez-en une : cfakey add OPCO (liste : cfakey opcos)."
        )


#: The colour of each status in the tables (ANSI codes).
_COLOURS = {
    KeyStatus.REFUSED: "31",
    KeyStatus.EXPIRED: "31",
    KeyStatus.EXPIRING: "33",
    KeyStatus.VALID: "32",
    KeyStatus.UNDATED: "2",
}
#: Red for a key ``check`` calls critical, whatever its status.
_CRITICAL_COLOUR = "31"
#: The columns of the table that are never cut: OPCO, expiry, days, status, fingerprint.
_FINGERPRINT = 12
_SIRET = 14
_NAME_FLOOR = 12


def _colour(row: KeyRow) -> str:
    return _CRITICAL_COLOUR if row.level is Level.CRITICAL else _COLOURS[row.status]


def _table(
    rows: tuple[KeyRow, ...], requested: Mapping[tuple[str, str], str], *, one_cfa: bool
) -> list[str]:
    """One line per key, within the terminal's width: only the CFA name is ever cut.

    For one CFA, its name and SIRET head the table instead of filling two columns; the
    fingerprint column goes first when the width cannot hold it with a readable name.
    """
    from cfakey.core.keys import status_text

    fixed: list[tuple[str, ...]] = [
        (
            row.opco_name,
            date_text(row.expires_at)
            if row.expires_at
            else (f"≈ {row.rotation_due:%d/%m/%Y}" if row.rotation_due else "—"),
            "—" if row.days_left is None else str(row.days_left),
            requested.get((row.siret, row.opco_id), status_text(row)),
            row.fingerprint,
        )
        for row in rows
    ]
    headers: tuple[str, ...] = ("OPCO", "Échéance", "Jours", "Statut", "Empreinte")
    limit = shutil.get_terminal_size((100, 24)).columns
    used = sum(
        max(len(header), *(len(cells[i]) for cells in fixed)) + 2
        for i, header in enumerate(headers)
    )
    lines: list[str] = []
    if one_cfa:
        heading = f" — SIRET {rows[0].siret}"
        lines.append(_cut(rows[0].cfa_name, limit - len(heading)) + heading)
    else:
        used += _SIRET + 2
        if limit - used < _NAME_FLOOR:
            used -= _FINGERPRINT + 2
            headers, fixed = headers[:-1], [cells[:-1] for cells in fixed]
        name_width = max(_NAME_FLOOR, limit - used)
        headers = ("CFA", "SIRET", *headers)
        fixed = [
            (_cut(row.cfa_name, name_width), row.siret, *cells)
            for row, cells in zip(rows, fixed, strict=True)
        ]
    right = frozenset({headers.index("Jours")})
    colours = [_colour(row) for row in rows]
    table = text_table(headers, fixed, rule=False, fit=False, right=right, colours=colours)
    return lines + table


def _cut(name: str, width: int) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


def _distinct_labels(names: Mapping[str, str], width: int) -> dict[str, str]:
    """Each CFA's name cut to ``width``; names cut to the same text end with the last five
    digits of their SIRET, « CFA des Métiers… (00373) », so that no two lines look alike."""
    cut = {siret: _cut(name, width) for siret, name in names.items()}
    seen: dict[str, int] = {}
    for label in cut.values():
        seen[label] = seen.get(label, 0) + 1
    return {
        siret: label if seen[label] == 1 else f"{_cut(names[siret], width - 8)} ({siret[-5:]})"
        for siret, label in cut.items()
    }


def _matrix(context: AppContext, view: Overview) -> list[str]:
    """One line per CFA, one column per OPCO, days left in each cell, most urgent CFA first."""
    opcos = context.registry.opcos
    opco_ids = [opco.id for opco in opcos]
    by_cfa: dict[str, dict[str, KeyRow]] = {}
    order: list[str] = []
    for row in view.rows:  # already sorted by urgency: first seen = most urgent CFA
        if row.siret not in by_cfa:
            by_cfa[row.siret] = {}
            order.append(row.siret)
        by_cfa[row.siret][row.opco_id] = row
    cell_width = 5
    width = shutil.get_terminal_size((100, 24)).columns
    name_width = max(14, min(40, width - (cell_width + 1) * len(opco_ids) - 1))
    header = "CFA".ljust(name_width) + "".join(
        " " + opco.column_label.rjust(cell_width) for opco in opcos
    )
    lines = [header]
    labels = _distinct_labels({row.siret: row.cfa_name for row in view.rows}, name_width)
    for siret in order:
        label = labels[siret].ljust(name_width)
        cells = []
        for opco_id in opco_ids:
            cell = by_cfa[siret].get(opco_id)
            if cell is None:
                cells.append(" " + "·".rjust(cell_width))
                continue
            if cell.status is KeyStatus.REFUSED:
                text = "ref"
            elif cell.status is KeyStatus.EXPIRED:
                text = "exp"
            elif cell.days_left is None:
                text = "s.d."
            else:
                text = str(cell.days_left)
            cells.append(" " + paint(text.rjust(cell_width), _colour(cell), sys.stdout))
        lines.append(label + "".join(cells))
    return lines


def _summary(view: Overview) -> None:
    """« 6 clé(s) : 1 critique, 2 à renouveler… », counted as the table shows them."""
    from cfakey.core.keys import status_text

    counts: dict[str, int] = {}
    for row in sorted(view.rows, key=lambda row: (list(KeyStatus).index(row.status), -row.level)):
        label = status_text(row)
        counts[label] = counts.get(label, 0) + 1
    parts = [
        f"{count} {label}s"
        if count > 1 and " " not in label and label.endswith("e")
        else f"{count} {label}"
        for label, count in counts.items()
    ]
    print_notice(f"{len(view.rows)} clé(s) : " + ", ".join(parts) + ".")


WARN_DAYS_OPTION = typer.Option(
    "--warn-days", metavar="N", help="Alerte à N jours de l'échéance (tous les OPCO)."
)
CRIT_DAYS_OPTION = typer.Option(
    "--crit-days", metavar="M", help="Critique à M jours de l'échéance (tous les OPCO)."
)


def check(
    ctx: typer.Context,
    warn_days: Annotated[int | None, WARN_DAYS_OPTION] = None,
    crit_days: Annotated[int | None, CRIT_DAYS_OPTION] = None,
    cfa: Annotated[str | None, CFA_OPTION] = None,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Pour cron et la supervision (Nagios) : 0 tout va bien, 1 alerte, 2 critique, 3 inconnu."""
    from cfakey.core import keys

    context: AppContext = ctx.obj
    view = _overview(context, cfa, None, warn_days, crit_days)
    result = keys.check(view)
    if as_json:
        print_json(result.as_json())
    else:
        lines = [
            f"{_check_summary(result)} | {keys.perfdata(result)}",
            *_interrupted_lines(context, view),
            *([unreadable_text(view.unreadable)] if view.unreadable else []),
        ]
        for row in result.problems:
            todo = keys.advice(row, context.registry)
            lines.append(
                f"{row.level.label} {row.cfa_name} ({row.siret}) {row.opco_name} : {_problem(row)}"
                + (f" ; à faire : {todo}" if todo else "")
            )
        lines += [_peak_ahead_line(row, row.peak) for row in result.peak_ahead if row.peak]
        write_lines(lines)
    raise typer.Exit(int(result.level))


def _interrupted_lines(context: AppContext, view: Overview) -> list[str]:
    """One warning per operation a stopped command left unfinished (``doctor`` ends it)."""
    names = {record.siret: record.name for record in view.cfas}
    opcos = {opco.id: opco.name for opco in context.registry.opcos}
    return [
        f"{Level.WARNING.label} {names.get(p.siret, p.siret)} ({p.siret}) "
        f"{opcos.get(p.opco_id, p.opco_id)} : opération interrompue : lancez cfakey doctor"
        for p in view.interrupted
    ]


def _peak_ahead_line(row: KeyRow, peak: PeakRenewal) -> str:
    """A key to renew before the contract peak, its reminder still ahead (no alert yet)."""
    from cfakey.core.peak import PEAK_LABEL

    return (
        f"RENTRÉE {row.cfa_name} ({row.siret}) {row.opco_name} : expire le "
        f"{date_text(row.expires_at)}, pendant la rentrée ({peak.season}) ou juste avant ; "
        f"{PEAK_LABEL}, à partir du {peak.remind_on:%d/%m/%Y} (ALERTE à cette date)"
    )


def _check_summary(result: CheckResult) -> str:
    if result.checked == 0:
        return "OK : aucune clé enregistrée."
    if not result.problems and not result.interrupted:
        ahead = len(result.peak_ahead)
        later = f", dont {ahead} à renouveler avant la rentrée" * bool(ahead)
        return f"OK : {result.checked} clé(s) valide(s) ou sans date{later}."
    critical = sum(1 for row in result.problems if row.level is Level.CRITICAL)
    warning = len(result.problems) - critical
    interrupted = f", {len(result.interrupted)} opération(s) interrompue(s)" * bool(
        result.interrupted
    )
    return (
        f"{result.label} : {critical} critique(s), {warning} en alerte{interrupted}, "
        f"sur {result.checked} clé(s)."
    )


def _problem(row: KeyRow) -> str:
    if row.status is KeyStatus.REFUSED and row.verification is not None:
        return f"refusée par l'OPCO le {date_text(row.verification.at)} (cfakey verify)"
    if row.status is KeyStatus.EXPIRED:
        return f"expirée le {date_text(row.expires_at)}"
    if row.verification_due and row.status in (KeyStatus.VALID, KeyStatus.UNDATED):
        return verification_age(row) + _peak_text(row)
    if row.days_left is None and row.rotation_due is not None:
        return (
            f"renouvellement conseillé le {row.rotation_due:%d/%m/%Y} "
            f"(clé obtenue le {row.obtained_on:%d/%m/%Y})"
        )
    return f"expire le {date_text(row.expires_at)}, dans {row.days_left} jour(s)" + _peak_text(row)


def _peak_text(row: KeyRow) -> str:
    """Why a key expiring in (or just before) the contract peak is reported now."""
    if not row.peak_due or row.peak is None:
        return ""
    from cfakey.core.peak import PEAK_LABEL

    return (
        f", pendant la rentrée ({row.peak.season}) ou juste avant : {PEAK_LABEL} "
        f"(avant le {row.peak.starts:%d/%m/%Y})"
    )


def verification_age(row: KeyRow) -> str:
    """Why a key is due for ``verify``: never checked, or when it last was."""
    if row.verification is None:
        return f"jamais vérifiée auprès de l'OPCO (cfakey verify {row.opco_id})"
    return (
        f"dernière vérification auprès de l'OPCO le {date_text(row.verification.at)} "
        f"(cfakey verify {row.opco_id})"
    )


def journal(  # noqa: PLR0917 - typer passes one parameter per option
    ctx: typer.Context,
    cfa: Annotated[str | None, CFA_OPTION] = None,
    opco_name: Annotated[str | None, OPCO_FILTER_OPTION] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="DATE", help="Depuis cette date (JJ/MM/AAAA ou AAAA-MM-JJ)."
        ),
    ] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action", metavar="ACTION", help="Seulement cette action (added, exported…)."
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", metavar="N", help="Les N entrées les plus récentes."),
    ] = None,
    oldest_first: Annotated[
        bool, typer.Option("--chronologique", help="Les plus anciennes d'abord.")
    ] = False,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Sortie CSV (pour un script ou un audit).")
    ] = False,
    as_excel: Annotated[
        bool,
        typer.Option("--excel", help="CSV pour Excel en français (;, dates JJ/MM/AAAA)."),
    ] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Le registre d'audit : qui a ajouté, renouvelé, exporté ou supprimé quelle clé, et quand."""
    from cfakey.core.cfas import resolve_cfa
    from cfakey.core.journal import JournalQuery, read_journal

    if as_csv + as_excel + as_json > 1:
        raise UsageError("--csv, --excel et --json s'excluent : choisissez-en un.")
    context: AppContext = ctx.obj
    opco_id = context.resolve_opco(opco_name).id if opco_name else None
    record_cfa = resolve_cfa(context.metadata(), cfa) if cfa else None
    query = JournalQuery(record_cfa, opco_id, since, action, limit, not oldest_first)
    team = context.shared_store_in_use()
    if team:
        _sync_team_journal(context)
    entries = read_journal(context.metadata(), query, team=team)
    if as_json:
        from cfakey.core.journal import entry_json

        print_json([entry_json(entry) for entry in entries])
    elif as_excel:
        from cfakey.core.journal import excel_csv

        write_text(excel_csv(entries, _opco_names(context)))
    elif as_csv:
        _journal_csv(entries)
    elif not entries:
        print_notice("Journal vide pour ces critères.")
    else:
        _journal_table(entries, _opco_names(context))


def _sync_team_journal(context: AppContext) -> None:
    """A team store: its journal is the engine's (entries never change: new ones only)."""
    from cfakey.core.team_sync import sync_journal

    metadata = context.metadata()
    denied = sync_journal(metadata, context.key_store(), [c.siret for c in metadata.list_cfas()])
    if denied:
        print_notice(
            f"{len(denied)} CFA connu(s) dont ce jeton ne peut pas lire le journal (droits "
            "donnés par la politique du coffre, pas une erreur) : leurs entrées n'apparaissent pas."
        )


def _opco_names(context: AppContext) -> dict[str, str]:
    """Each OPCO's name by its id: what people read where scripts read the id."""
    return {opco.id: opco.name for opco in context.registry.opcos}


def _journal_rows(
    entries: Sequence[JournalEntry], opco_names: Mapping[str, str] | None = None
) -> list[tuple[str, ...]]:
    """The table's rows: French labels and OPCO names given ``opco_names``, else the ids."""
    labels = opco_names is not None
    return [
        (
            date_text(entry.at, "%d/%m/%Y %H:%M:%S" if labels else "%Y-%m-%d %H:%M:%S"),
            entry.user,
            entry.siret or "",
            (opco_names or {}).get(entry.opco_id, entry.opco_id) if entry.opco_id else "",
            action_label(entry.action) if labels else entry.action,
            entry.old_fingerprint or "",
            entry.new_fingerprint or "",
            detail_label(entry.detail) if labels else entry.detail,
        )
        for entry in entries
    ]


def _journal_csv(entries: Sequence[JournalEntry]) -> None:
    import csv

    from cfakey.core.journal import CSV_HEADERS

    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(CSV_HEADERS)
    writer.writerows(_journal_rows(entries))


def _journal_table(entries: Sequence[JournalEntry], opco_names: Mapping[str, str]) -> None:
    titles = ("Date", "Utilisateur", "CFA", "OPCO", "Action", "Ancienne", "Nouvelle", "Détail")
    write_lines(text_table(titles, _journal_rows(entries, opco_names), rule=False, fit=False))
