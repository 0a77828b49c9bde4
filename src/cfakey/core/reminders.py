"""Reminders that reach people: Prometheus metrics (``metrics``) and iCalendar events
(``calendar``), built from the overview of ``list`` and ``check`` (metadata only).

Neither carries a key nor a fingerprint: only who (SIRET, CFA name, OPCO) and when.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from cfakey.core.codes import EXPIRY_UPDATED, JournalAction, KeyStatus, VerifyOutcome
from cfakey.core.peak import PEAK_LABEL
from cfakey.expiry import in_date_range, local_date, local_midnight
from cfakey.stores.kinds import STORE_KINDS

if TYPE_CHECKING:
    from cfakey.core.keys import KeyRow, Overview, Window
    from cfakey.core.requests import RequestRow
    from cfakey.metadata import Metadata
    from cfakey.registry.model import Opco, Registry

#: The file node_exporter's textfile collector reads in ``--textfile DIR``.
TEXTFILE_NAME = "cfakey.prom"

_METRIC_HELP = {
    "cfakey_key_expiry_timestamp_seconds": (
        "Échéance de la clé, en secondes Unix (comme x509_cert_not_after)."
    ),
    "cfakey_key_last_verification_timestamp_seconds": (
        "Dernière vérification de la clé auprès de l'OPCO, en secondes Unix."
    ),
    "cfakey_key_last_verification_refused": (
        "1 si l'OPCO a refusé la clé à sa dernière vérification, 0 sinon."
    ),
    "cfakey_key_peak_renewal_timestamp_seconds": (
        "Date à partir de laquelle renouveler la clé avant la rentrée (pic des contrats), "
        "en secondes Unix ; absente si la rentrée n'est pas en jeu."
    ),
    "cfakey_keys": "Nombre de clés par statut.",
    "cfakey_metrics_generated_timestamp_seconds": "Heure d'écriture de ces métriques.",
}


def escape_label(value: str) -> str:
    """A label value in the text exposition format: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def dated(row: KeyRow) -> bool:
    """Whether ``row`` has an expiry inside the range cfakey accepts (others are left out)."""
    return row.expires_at is not None and in_date_range(local_date(row.expires_at))


def _labels(row: KeyRow) -> str:
    pairs = (("siret", row.siret), ("cfa", row.cfa_name), ("opco", row.opco_id))
    return ",".join(f'{name}="{escape_label(value)}"' for name, value in pairs)


def _samples(view: Overview) -> dict[str, list[tuple[str, int]]]:
    """Each metric's samples, as (labels, value)."""
    samples: dict[str, list[tuple[str, int]]] = {name: [] for name in _METRIC_HELP}
    for row in view.rows:
        labels = _labels(row)
        if dated(row) and row.expires_at is not None:
            samples["cfakey_key_expiry_timestamp_seconds"].append(
                (labels, int(row.expires_at.timestamp()))
            )
        if row.verification is not None:
            refused = row.verification.outcome == VerifyOutcome.KEY_REFUSED.id
            samples["cfakey_key_last_verification_timestamp_seconds"].append(
                (labels, int(row.verification.at.timestamp()))
            )
            samples["cfakey_key_last_verification_refused"].append((labels, int(refused)))
        if row.peak is not None and in_date_range(row.peak.remind_on):
            samples["cfakey_key_peak_renewal_timestamp_seconds"].append(
                (labels, int(local_midnight(row.peak.remind_on).timestamp()))
            )
    counts = dict.fromkeys(KeyStatus, 0)
    for row in view.rows:
        counts[row.status] += 1
    samples["cfakey_keys"] = [(f'status="{s.id}"', n) for s, n in counts.items()]
    return samples


def metrics_text(view: Overview, *, now: datetime) -> str:
    """The Prometheus text exposition format (0.0.4) of ``view``, no sample timestamps."""
    samples = _samples(view)
    samples["cfakey_metrics_generated_timestamp_seconds"] = [("", int(now.timestamp()))]
    lines: list[str] = []
    for name, help_text in _METRIC_HELP.items():
        lines.append(f"# HELP {name} {_escape_help(help_text)}")
        lines.append(f"# TYPE {name} gauge")
        lines.extend(
            f"{name}{{{labels}}} {value}" if labels else f"{name} {value}"
            for labels, value in samples[name]
        )
    return "\n".join(lines) + "\n"


#: ``SEQUENCE`` counts seconds from here (2020-01-01, Unix seconds) to when the event
#: last changed (:func:`sequence`): below the 2^31 calendars accept until 2088.
_SEQUENCE_EPOCH = 1_577_836_800


@dataclass(frozen=True)
class Reminder:
    """One all-day event: a key's expiry, or the date its OPCO advises renewing it."""

    row: KeyRow
    kind: str  # "expiry", "rotation" or "peak" (renew before the contract peak)
    day: date
    window: Window

    @property
    def uid(self) -> str:
        """Stable per CFA × OPCO × kind: importing again updates the event."""
        return f"{self.row.siret}-{self.row.opco_id}-{self.kind}@cfakey"


def sequence(changed: int | None) -> int:
    """``SEQUENCE``: seconds from 2020 to when the event's date or text last changed
    (``changed``, Unix seconds).

    Computed from what the database records (:func:`change_times`), with no state kept
    between runs: the same data gives the same number, and any later change a higher one,
    whichever way the date moves, even several changes within a minute. Numbers from
    cfakey's earlier minute count (since 2000) are all lower: calendars update still.
    """
    if changed is None:
        return 0
    return max(0, changed - _SEQUENCE_EPOCH)


def change_times(metadata: Metadata) -> dict[tuple[str, str | None], int]:
    """When each key's events last changed, in Unix seconds: the key stored (add, rotate,
    import), a ``verify`` that replaced its date with the OPCO's, or its CFA's name
    edited; by (SIRET, OPCO). An open request's follow-up is under (SIRET, « OPCO-request »):
    the request recorded, or its CFA's name edited."""
    verified = metadata.latest_entries(JournalAction.VERIFIED.id, EXPIRY_UPDATED)
    edited = metadata.latest_entries(JournalAction.CFA_EDITED.id)
    found: dict[tuple[str, str | None], int] = {}
    shared = [kind.name for kind in STORE_KINDS.values() if kind.shared]
    for slot, stored_at in metadata.stored_times(verified_in=shared).items():
        found[slot] = max(stored_at, verified.get(slot, 0), edited.get((slot[0], None), 0))
    for request in metadata.list_requests():
        recorded = int(request.recorded_at.timestamp())
        found[(request.siret, f"{request.opco_id}-request")] = max(
            recorded, edited.get((request.siret, None), 0)
        )
    return found


def reminders(view: Overview, windows: Mapping[str, Window]) -> list[Reminder]:
    """The events of ``view``: dates outside the accepted range never appear."""
    found: list[Reminder] = []
    for row in view.rows:
        window = windows[row.opco_id]
        day = None if row.expires_at is None else local_date(row.expires_at)
        if day is not None and in_date_range(day):
            found.append(Reminder(row, "expiry", day, window))
        if row.rotation_due is not None and in_date_range(row.rotation_due):
            found.append(Reminder(row, "rotation", row.rotation_due, window))
        if row.peak is not None and in_date_range(row.peak.remind_on):
            found.append(Reminder(row, "peak", row.peak.remind_on, window))
    return found


def _contacts(opco: Opco | None) -> list[str]:
    """The portal and support lines of an event's description."""
    lines = []
    if opco is not None and opco.portal_url:
        lines.append(f"Portail : {opco.portal_url}")
    if opco is not None:
        support = opco.support
        contacts = [*support.emails, *support.phones, *(link.url for link in support.web)]
        if contacts:
            lines.append(f"Assistance : {', '.join(contacts)}")
    return lines


def _text_lines(lines: Iterable[str]) -> str:
    """Lines of text as one escaped TEXT value (:func:`ics_text`)."""
    return "\\n".join(map(ics_text, lines))


class _Escaped(dict[str, str]):
    """Each name escaped once (:func:`ics_text`): a CFA's name is in eleven events."""

    def __missing__(self, text: str) -> str:
        self[text] = escaped = ics_text(text)
        return escaped


def _peak_line(reminder: Reminder) -> str:
    """Why a key is to be renewed before the contract peak, on its ``peak`` event (escaped)."""
    peak = reminder.row.peak
    if reminder.kind != "peak" or peak is None or reminder.row.expires_at is None:
        return ""
    return "\\n" + ics_text(
        f"Elle expire le {local_date(reminder.row.expires_at):%d/%m/%Y}, pendant la "
        f"rentrée ({peak.season}, le pic des contrats d'apprentissage) ou juste avant : "
        f"renouvelez-la avant le {peak.starts:%d/%m/%Y}."
    )


def _what_to_do(reminder: Reminder, escaped: _Escaped) -> str:
    """The escaped description of a key's event, before its OPCO's contacts."""
    row, day = reminder.row, reminder.day
    when = f"{day.day:02d}/{day.month:02d}/{day.year}"  # strftime is slower, 1,000 times
    what = f"expire le {when}." if reminder.kind == "expiry" else f"est à renouveler le {when}."
    command = f"cfakey rotate {escaped[row.opco_id]} --cfa {row.siret}"
    return (
        f"La clé API {escaped[row.opco_name]} du CFA {escaped[row.cfa_name]} "
        f"(SIRET {row.siret}) {what}{_peak_line(reminder)}"
        f"\\nÀ faire : obtenez une nouvelle clé\\, puis : {command}"
    )


#: What each kind of event is about, in its summary.
_SUMMARY_WHAT = {
    "expiry": "échéance",
    "rotation": "renouvellement conseillé",
    "peak": PEAK_LABEL,
}


def _summary(reminder: Reminder, escaped: _Escaped) -> str:
    """The escaped summary of a key's event: OPCO, CFA, what happens."""
    row = reminder.row
    what = escaped[_SUMMARY_WHAT[reminder.kind]]
    return f"Clé API {escaped[row.opco_name]} – {escaped[row.cfa_name]} : {what}"


def _request_event(request: RequestRow, opco: Opco | None) -> tuple[str, str, str]:
    """The UID, and the escaped summary and description, of an open request's follow-up."""
    to = f" à {request.sent_to}" if request.sent_to else ""
    sent = (
        f"La clé API {request.opco_name} du CFA {request.cfa_name} (SIRET {request.siret}) "
        f"a été demandée le {request.sent_on:%d/%m/%Y}{to} et n'est pas encore arrivée."
    )
    arrives = (
        "Quand la clé arrive, enregistrez-la (la demande est alors close) : "
        f"cfakey add {request.opco_id} --cfa {request.siret}"
    )
    todo = f"À faire : relancez {request.opco_name}" + (
        f" (écrivez à {request.sent_to})." if request.sent_to else "."
    )
    uid = f"{request.siret}-{request.opco_id}-request@cfakey"
    summary = f"Clé API {request.opco_name} – {request.cfa_name} : relancer la demande"
    return uid, ics_text(summary), _text_lines([sent, todo, *_contacts(opco), arrives])


def calendar_ics(
    found: Iterable[Reminder],
    registry: Registry,
    changed: Mapping[tuple[str, str | None], int],
    *,
    now: datetime,
    requests: Iterable[RequestRow] = (),
) -> bytes:
    """An RFC 5545 calendar of ``found`` and of the follow-ups of open ``requests``:
    all-day events with display alarms.

    Written here rather than with the ``icalendar`` library, whose import and per-line
    work cost more than the whole ``list`` of 1,100 keys (bench/reminders.py); the tests
    read the result back with that library.
    """
    ics = IcsWriter(now)
    escaped = _Escaped()
    opcos = {opco.id: opco for opco in registry.opcos}
    contacts = {
        opco.id: "".join(f"\\n{ics_text(line)}" for line in _contacts(opco))
        for opco in registry.opcos
    }
    alarms: dict[tuple[int, int, str], list[tuple[int, str]]] = {}
    for reminder in found:
        row, window = reminder.row, reminder.window
        kind = (window.warn_days, window.crit_days, reminder.kind)
        if kind not in alarms:
            days = {0} if reminder.kind == "peak" else {window.warn_days}  # peak: on the day
            if reminder.kind == "expiry":  # a rotation reminder is advice, never critical
                days.add(window.crit_days)
            alarms[kind] = [
                (d, f"Dans {d} jours" if d else "Aujourd'hui") for d in sorted(days, reverse=True)
            ]
        ics.event(
            uid=reminder.uid,
            sequence=sequence(changed.get((row.siret, row.opco_id))),
            day=reminder.day,
            summary=_summary(reminder, escaped),
            description=_what_to_do(reminder, escaped) + contacts.get(row.opco_id, ""),
            alarms=alarms[kind],
        )
    for request in requests:
        if not in_date_range(request.follow_up_on):
            continue
        uid, summary, description = _request_event(request, opcos.get(request.opco_id))
        ics.event(
            uid=uid,
            sequence=sequence(changed.get((request.siret, f"{request.opco_id}-request"))),
            day=request.follow_up_on,
            summary=summary,
            description=description,
            alarms=[(0, "Aujourd'hui")],
        )
    return ics.finish()


#: Control characters a TEXT value cannot hold (RFC 5545 3.3.11): they become spaces.
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def ics_text(value: str) -> str:
    """A TEXT value escaped per RFC 5545: backslash, semicolon, comma, line break."""
    printable = value.isprintable()
    if printable and "\\" not in value and ";" not in value and "," not in value:
        return value
    if not printable:
        value = _CONTROLS.sub(" ", value.replace("\r\n", "\n").replace("\r", "\n"))
    return value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def fold(line: str) -> str:
    """One content line folded at 75 octets of UTF-8 (RFC 5545 3.1), never inside a
    character: continuation lines begin with CRLF and one space."""
    if line.isascii():
        if len(line) <= 75:
            return line
        return "\r\n ".join([line[:75], *(line[at : at + 74] for at in range(75, len(line), 74))])
    data = line.encode("utf-8")
    if len(data) <= 75:
        return line
    parts: list[str] = []
    start, limit = 0, 75
    while len(data) - start > limit:
        end = start + limit
        while data[end] & 0xC0 == 0x80:  # a continuation byte: cut before its character
            end -= 1
        parts.append(data[start:end].decode("utf-8"))
        start, limit = end, 74  # continuation lines begin with one space
    parts.append(data[start:].decode("utf-8"))
    return "\r\n ".join(parts)


_DAY = timedelta(days=1)
#: A component for a calendar with no event (see :meth:`IcsWriter.finish`).
_PARIS = (
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\n"
    "BEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\n"
    "DTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\n"
    "BEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\n"
    "DTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\n"
    "END:VTIMEZONE\r\n"
)


class IcsWriter:
    """A VCALENDAR of all-day events with display alarms, written as text; only the
    lines that carry a text value can exceed 75 octets, and only they are folded."""

    def __init__(self, now: datetime) -> None:
        self._stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
        self._parts: list[str] = [
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n",
            "PRODID:-//cfakey//Échéances des clés API CFA//FR\r\n",
            "CALSCALE:GREGORIAN\r\nX-WR-CALNAME:Clés API des CFA\r\n",
        ]

    def event(
        self,
        *,
        uid: str,
        sequence: int,
        day: date,
        summary: str,
        description: str,
        alarms: Iterable[tuple[int, str]],
    ) -> None:
        """One all-day event on ``day``; for each (days, when) of ``alarms``, a display
        alarm that many days before, saying « when : summary ». ``summary``,
        ``description`` and each ``when`` are TEXT values already escaped
        (:func:`ics_text`, :func:`_text_lines`): their parts are shared by many events."""
        start, end = day.isoformat().replace("-", ""), (day + _DAY).isoformat().replace("-", "")
        self._parts.append(
            f"BEGIN:VEVENT\r\n{fold(f'UID:{ics_text(uid)}')}\r\nSEQUENCE:{sequence}\r\n"
            f"DTSTAMP:{self._stamp}\r\nDTSTART;VALUE=DATE:{start}\r\n"
            f"DTEND;VALUE=DATE:{end}\r\n{fold(f'SUMMARY:{summary}')}\r\n"
            f"{fold(f'DESCRIPTION:{description}')}\r\nTRANSP:TRANSPARENT\r\n"
        )
        for before, when in alarms:
            trigger = f"-P{before}D" if before else "PT0S"
            text = fold(f"DESCRIPTION:{when} : {summary}")
            self._parts.append(
                f"BEGIN:VALARM\r\nACTION:DISPLAY\r\nTRIGGER:{trigger}\r\n{text}\r\nEND:VALARM\r\n"
            )
        self._parts.append("END:VEVENT\r\n")

    def finish(self) -> bytes:
        """The whole calendar (once), in UTF-8, every line ended by CRLF.

        RFC 5545 wants at least one component: a calendar with no event gets the
        description of Paris's time zone, which adds nothing to an agenda.
        """
        if not any(part.startswith("BEGIN:VEVENT") for part in self._parts):
            self._parts.append(_PARIS)
        self._parts.append("END:VCALENDAR\r\n")
        return "".join(self._parts).encode("utf-8")
