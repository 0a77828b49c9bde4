"""``cfakey journal``: which entries, in which order, and the forms they are written in.

The journal is the audit register (never a key: fingerprints only). People read it as a
table, scripts as ``--json`` (identifiers with their French labels), auditors as CSV, and
office staff open it in a French Excel (``--excel``: ``;``, a BOM, JJ/MM/AAAA dates).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cfakey.core.codes import JournalAction, detail_label
from cfakey.errors import UsageError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from cfakey.metadata import CfaRecord, JournalEntry, Metadata

#: The columns of ``journal --csv`` (identifiers, for scripts and audits).
CSV_HEADERS = (
    "date",
    "utilisateur",
    "cfa",
    "opco",
    "action",
    "ancienne_empreinte",
    "nouvelle_empreinte",
    "detail",
)
#: The columns of ``journal --excel`` (what people read in a spreadsheet).
EXCEL_HEADERS = (
    "Date",
    "Heure",
    "Utilisateur",
    "SIRET",
    "OPCO",
    "Action",
    "Ancienne empreinte",
    "Nouvelle empreinte",
    "Détail",
)
# Characters a spreadsheet reads as the start of a formula (CSV injection).
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class JournalQuery:
    """What ``cfakey journal`` asks for: filters, how many, in which order."""

    cfa: CfaRecord | None = None
    opco_id: str | None = None
    since: str | None = None
    action: str | None = None
    limit: int | None = None
    newest_first: bool = True


def read_journal(
    metadata: Metadata, query: JournalQuery, *, team: bool = False
) -> list[JournalEntry]:
    """The entries ``query`` asks for; ``limit`` keeps the most recent ones.

    ``team``: the team engine's journal, as cached (``team_sync.sync_journal``).

    An unknown action or a limit below 1 is refused, saying what is expected (the value
    typed is not quoted: it may be a key typed in the wrong place).
    """
    from datetime import UTC

    from cfakey.expiry import parse_date

    if query.action is not None and query.action not in JournalAction._value2member_map_:
        raise UsageError(
            "Action inconnue pour --action.",
            hint="Actions : " + ", ".join(action.id for action in JournalAction) + ".",
        )
    if query.limit is not None and query.limit < 1:
        raise UsageError("--limit : un nombre entier d'au moins 1 est attendu.")
    return metadata.journal(
        siret=query.cfa.siret if query.cfa else None,
        opco_id=query.opco_id,
        since=parse_date(query.since).astimezone().astimezone(UTC) if query.since else None,
        action=query.action,
        limit=query.limit,
        newest_first=query.newest_first,
        team=team,
    )


def entry_json(entry: JournalEntry) -> dict[str, Any]:
    """The ``journal --json`` object: a contract for scripts."""
    return {
        "id": entry.id,
        "at": entry.at.isoformat(),
        "user": entry.user,
        "cfa": entry.siret,
        "opco": entry.opco_id,
        "action": entry.action,
        "action_label": JournalAction.label_of(entry.action),
        "old_fingerprint": entry.old_fingerprint,
        "new_fingerprint": entry.new_fingerprint,
        "detail": entry.detail,
    }


def _cell(text: str) -> str:
    """A value a spreadsheet shows as text, never runs as a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def excel_csv(entries: list[JournalEntry], opco_names: Mapping[str, str]) -> str:
    """The entries as a CSV a French Excel opens as is: ``;``, BOM, JJ/MM/AAAA, CRLF; the
    OPCO by its name and the detail in French (people read it, not scripts)."""
    import csv
    import io

    from cfakey.expiry import local_time

    buffer = io.StringIO(newline="")
    buffer.write("\ufeff")
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(EXCEL_HEADERS)
    for entry in entries:
        moment = local_time(entry.at)
        writer.writerow(
            (
                f"{moment:%d/%m/%Y}",
                f"{moment:%H:%M:%S}",
                _cell(entry.user),
                entry.siret or "",
                opco_names.get(entry.opco_id, entry.opco_id) if entry.opco_id else "",
                JournalAction.label_of(entry.action),
                entry.old_fingerprint or "",
                entry.new_fingerprint or "",
                _cell(detail_label(entry.detail)),
            )
        )
    return buffer.getvalue()
