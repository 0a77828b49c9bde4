"""Reminders that reach people: Prometheus metrics (``metrics``) and iCalendar events
(``calendar``), built from the overview of ``list`` and ``check`` (metadata only).

Neither carries a key nor a fingerprint: only who (SIRET, CFA name, OPCO) and when.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from cfakey.core.codes import KeyStatus, VerifyOutcome
from cfakey.core.peak import PEAK_LABEL
from cfakey.expiry import in_date_range, local_date, local_midnight

if TYPE_CHECKING:
    from cfakey.core.keys import KeyRow, Overview, Window
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


#: ``SEQUENCE`` counts minutes from here to when the key was stored (see :func:`sequence`).
_SEQUENCE_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


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


def sequence(stored_at: datetime | None) -> int:
    """``SEQUENCE``: minutes from 2000 to when the key was stored.

    A new date only ever comes with a newly stored key (add, rotate, import), so it rises
    whenever a date changes, whichever way the date moves, with no state kept between
    runs; minutes keep it far below the 2^31 ceiling calendars accept.
    """
    if stored_at is None:
        return 0
    return max(0, int((stored_at - _SEQUENCE_EPOCH).total_seconds()) // 60)


def reminders(view: Overview, windows: Mapping[str, Window]) -> list[Reminder]:
    """The events of ``view``: dates outside the accepted range never appear."""
    found: list[Reminder] = []
    for row in view.rows:
        window = windows[row.opco_id]
        if dated(row) and row.expires_at is not None:
            found.append(Reminder(row, "expiry", local_date(row.expires_at), window))
        if row.rotation_due is not None and in_date_range(row.rotation_due):
            found.append(Reminder(row, "rotation", row.rotation_due, window))
        if row.peak is not None and in_date_range(row.peak.remind_on):
            found.append(Reminder(row, "peak", row.peak.remind_on, window))
    return found


def _what_to_do(reminder: Reminder, opco: Opco | None) -> str:
    row = reminder.row
    when = f"{reminder.day:%d/%m/%Y}"
    lines = [
        f"La clé API {row.opco_name} du CFA {row.cfa_name} (SIRET {row.siret}) "
        + (f"expire le {when}." if reminder.kind == "expiry" else f"est à renouveler le {when}."),
        *_peak_lines(reminder),
        f"À faire : obtenez une nouvelle clé, puis : cfakey rotate {row.opco_id} --cfa {row.siret}",
    ]
    if opco is not None and opco.portal_url:
        lines.append(f"Portail : {opco.portal_url}")
    if opco is not None:
        support = opco.support
        contacts = [*support.emails, *support.phones, *(link.url for link in support.web)]
        if contacts:
            lines.append(f"Assistance : {', '.join(contacts)}")
    return "\n".join(lines)


def _peak_lines(reminder: Reminder) -> list[str]:
    """Why a key is to be renewed before the contract peak, on its ``peak`` event."""
    peak = reminder.row.peak
    if reminder.kind != "peak" or peak is None or reminder.row.expires_at is None:
        return []
    return [
        (
            f"Elle expire le {local_date(reminder.row.expires_at):%d/%m/%Y}, pendant la "
            f"rentrée ({peak.season}, le pic des contrats d'apprentissage) ou juste avant : "
            f"renouvelez-la avant le {peak.starts:%d/%m/%Y}."
        )
    ]


def _summary(reminder: Reminder) -> str:
    row = reminder.row
    what = {
        "expiry": "échéance",
        "rotation": "renouvellement conseillé",
        "peak": PEAK_LABEL,
    }.get(reminder.kind, reminder.kind)
    return f"Clé API {row.opco_name} – {row.cfa_name} : {what}"


def calendar_ics(
    found: Iterable[Reminder],
    registry: Registry,
    stored: Mapping[tuple[str, str], datetime],
    *,
    now: datetime,
) -> bytes:
    """An RFC 5545 calendar of ``found``: all-day events with display alarms."""
    from icalendar import Alarm, Calendar, Event

    calendar = Calendar()
    calendar.add("prodid", "-//cfakey//Échéances des clés API CFA//FR")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", "Clés API des CFA")
    opcos = {opco.id: opco for opco in registry.opcos}
    for reminder in found:
        row = reminder.row
        description = _what_to_do(reminder, opcos.get(row.opco_id))
        event = Event()
        event.add("uid", reminder.uid)
        event.add("sequence", sequence(stored.get((row.siret, row.opco_id))))
        event.add("dtstamp", now)
        event.add("dtstart", reminder.day)
        event.add("dtend", reminder.day + timedelta(days=1))
        event.add("summary", _summary(reminder))
        event.add("description", description)
        event.add("transp", "TRANSPARENT")
        days = {reminder.window.warn_days} if reminder.kind != "peak" else {0}  # peak: that day
        if reminder.kind == "expiry":  # a rotation reminder is advice, never critical
            days.add(reminder.window.crit_days)
        for before in sorted(days, reverse=True):
            alarm = Alarm()
            alarm.add("action", "DISPLAY")
            alarm.add("trigger", timedelta(days=-before))
            when = f"Dans {before} jours" if before else "Aujourd'hui"
            alarm.add("description", f"{when} : {_summary(reminder)}")
            event.add_component(alarm)
        calendar.add_component(event)
    return bytes(calendar.to_ical())
