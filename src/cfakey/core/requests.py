"""Key requests sent by e-mail: recorded when sent, followed up, closed when the key arrives.

Constructys, OPCO 2i (and any OPCO whose registry entry says ``obtain: on_request``) send
the key by e-mail days after a form is filled in. ``request add`` records the day it was
sent and to whom, ``list`` shows it with a follow-up date, and storing the key (``add``,
``import``) closes it: :meth:`cfakey.metadata.Metadata.put_key` does so in the same
transaction. Nothing here is a secret: dates and an e-mail address.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from cfakey.core.codes import JournalAction, RequestStatus
from cfakey.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from cfakey.metadata import CfaRecord, Metadata, RequestRecord
    from cfakey.registry.model import Opco, Registry

#: The setting that says after how many days a request is to be followed up.
FOLLOW_UP_SETTING = "request.follow_up_days"
FOLLOW_UP_DEFAULT = 10
_ADDRESS = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s.]{2,63}")


def follow_up_days(settings: Mapping[str, Any]) -> int:
    """``request.follow_up_days`` (checked like every window of days), else 10."""
    from cfakey.config import window_days

    value = settings.get(FOLLOW_UP_SETTING)
    return FOLLOW_UP_DEFAULT if value is None else window_days(FOLLOW_UP_SETTING, value)


def check_address(text: str | None) -> str | None:
    """The address the request went to, checked (one e-mail address), or ``None``."""
    if text is None or not text.strip():
        return None
    address = text.strip()
    if not _ADDRESS.fullmatch(address) or not address.isprintable():
        raise UsageError(
            "Adresse e-mail invalide pour --a : rien n'a été enregistré.",
            hint="Exemple : --a cles-api@constructys.fr",
        )
    return address


def request_opco(opco: Opco) -> None:
    """Refuse an OPCO whose key is not sent by e-mail on request."""
    if opco.obtain != "on_request":
        raise UsageError(
            f"La clé {opco.name} ne s'obtient pas sur demande par e-mail : "
            "rien n'a été enregistré.",
            hint=f"Obtenez-la et enregistrez-la : cfakey add {opco.id}",
        )


def record_request(
    metadata: Metadata,
    opco: Opco,
    cfa: CfaRecord,
    *,
    sent_on: date,
    sent_to: str | None,
    now: datetime,
) -> RequestRecord:
    """Record that the request of ``opco``'s key for ``cfa`` was sent (journalled)."""
    from cfakey.metadata import RequestRecord, current_user

    request_opco(opco)
    if sent_on > now.astimezone().date():
        raise UsageError("Date d'envoi dans le futur : rien n'a été enregistré.")
    record = RequestRecord(
        siret=cfa.siret,
        opco_id=opco.id,
        sent_on=sent_on,
        sent_to=check_address(sent_to),
        recorded_at=now.replace(microsecond=0),
        os_user=current_user(),
    )
    metadata.put_request(record)
    return record


def cancel_request(metadata: Metadata, opco: Opco, cfa: CfaRecord) -> RequestRecord:
    """Forget the open request of ``opco`` for ``cfa`` (journalled); an error if none."""
    found = metadata.close_request(cfa.siret, opco.id, action=JournalAction.REQUEST_CANCELLED.id)
    if found is None:
        raise NotFoundError(
            f"Aucune demande en cours pour {opco.name} et le CFA {cfa.siret}.",
            hint="Demandes en cours : cfakey request list",
        )
    return found


@dataclass(frozen=True)
class RequestRow:
    """One open request as ``list`` and ``request list`` show it."""

    siret: str
    cfa_name: str
    opco_id: str
    opco_name: str
    sent_on: date
    sent_to: str | None
    follow_up_on: date
    status: RequestStatus

    def as_json(self) -> dict[str, Any]:
        """The ``request list --json`` object: a contract for scripts."""
        return {
            "cfa": self.siret,
            "cfa_name": self.cfa_name,
            "opco": self.opco_id,
            "opco_name": self.opco_name,
            "sent_on": self.sent_on.isoformat(),
            "sent_to": self.sent_to,
            "follow_up_on": self.follow_up_on.isoformat(),
            "status": self.status.id,
            "status_label": self.status.label,
        }


def open_requests(
    metadata: Metadata,
    registry: Registry,
    settings: Mapping[str, Any],
    *,
    now: datetime,
    siret: str | None = None,
    opco_id: str | None = None,
) -> list[RequestRow]:
    """The open requests, to follow up first; never opens the key store."""
    delay = timedelta(days=follow_up_days(settings))
    today = now.astimezone().date()
    names = {record.siret: record.name for record in metadata.list_cfas()}
    opco_names = {opco.id: opco.name for opco in registry.opcos}
    rows = []
    for record in metadata.list_requests(siret, opco_id):
        follow_up_on = record.sent_on + delay
        rows.append(
            RequestRow(
                siret=record.siret,
                cfa_name=names.get(record.siret, record.siret),
                opco_id=record.opco_id,
                opco_name=opco_names.get(record.opco_id, record.opco_id),
                sent_on=record.sent_on,
                sent_to=record.sent_to,
                follow_up_on=follow_up_on,
                status=RequestStatus.FOLLOW_UP if follow_up_on <= today else RequestStatus.WAITING,
            )
        )
    rows.sort(key=lambda row: (row.follow_up_on, row.siret, row.opco_id))
    return rows


def request_cell(row: RequestRow) -> str:
    """The French text of a request in a table: « demandée le … », and when to follow up."""
    sent = f"demandée le {row.sent_on:%d/%m/%Y}"
    if row.status is RequestStatus.FOLLOW_UP:
        return f"{sent}, à relancer"
    return f"{sent}, relance le {row.follow_up_on:%d/%m/%Y}"
