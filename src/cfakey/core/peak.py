"""The contract peak (« la rentrée »): which keys to renew before it, and when.

Every CFA sends its new apprenticeship contracts in the same few weeks (September and
October by default, the ``peak.months`` setting): a key that dies then blocks them at the
worst moment, and its renewal competes with the rush. A key is flagged when its expiry
falls in the peak, or within its OPCO's warning window before the peak starts (its
renewal would otherwise fall due in the rush). Its reminder date is the peak's first day
minus that same window: renewing then leaves the OPCO's usual margin before the peak.
"""

from __future__ import annotations

import calendar
import functools
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from cfakey.errors import UsageError

if TYPE_CHECKING:
    from cfakey.registry.model import Opco

PEAK_SETTING = "peak.months"
DEFAULT_PEAK_MONTHS = (9, 10)
#: A peak is a season, not the year: beyond six months every key would be flagged.
MAX_PEAK_MONTHS = 6
#: The flag, as people read it (list, check, calendar).
PEAK_LABEL = "à renouveler avant la rentrée"
MONTH_NAMES = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


@dataclass(frozen=True)
class Peak:
    """Consecutive months of the contract peak, in calendar order (``(11, 12, 1)`` wraps)."""

    months: tuple[int, ...] = DEFAULT_PEAK_MONTHS

    @property
    def label(self) -> str:
        """« septembre–octobre », « août », « novembre–janvier »."""
        first, last = MONTH_NAMES[self.months[0] - 1], MONTH_NAMES[self.months[-1] - 1]
        return first if len(self.months) == 1 else f"{first}–{last}"

    def occurrence(self, year: int) -> tuple[date, date]:
        """The first and last day of the peak that starts in ``year``."""
        first, last = self.months[0], self.months[-1]
        end_year = year + 1 if last < first else year
        return date(year, first, 1), date(end_year, last, calendar.monthrange(end_year, last)[1])


@dataclass(frozen=True)
class PeakRenewal:
    """A key flagged « à renouveler avant la rentrée »: when to renew it, which peak."""

    remind_on: date
    starts: date
    ends: date
    season: str

    def as_json(self, *, due: bool) -> dict[str, Any]:
        """The ``peak_renewal`` object of ``list --json``: a contract for scripts."""
        return {
            "remind_on": self.remind_on.isoformat(),
            "peak_start": self.starts.isoformat(),
            "peak_end": self.ends.isoformat(),
            "due": due,
            "label": PEAK_LABEL,
        }


def _invalid() -> UsageError:
    # The value typed is never quoted: it may be a key pasted in the wrong place.
    return UsageError(
        f"Paramètre « {PEAK_SETTING} » invalide : de 1 à {MAX_PEAK_MONTHS} mois consécutifs "
        "(numéros de 1 à 12 séparés par des virgules, par exemple 9,10 ou 11,12,1) sont attendus.",
        hint=f"Corrigez-le : cfakey config set {PEAK_SETTING} 9,10 "
        f"(ou config unset {PEAK_SETTING}).",
    )


def parse_peak_months(value: object) -> tuple[int, ...]:
    """The peak months from the setting (``"9,10"``, or a list in a hand-edited file).

    Refused: anything but 1 to :data:`MAX_PEAK_MONTHS` distinct months, each following the
    previous one in the calendar (December may be followed by January).
    """
    items: list[object]
    if isinstance(value, str) and len(value) <= 64:
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, list) and len(value) <= MAX_PEAK_MONTHS:
        items = list(value)
    else:
        raise _invalid()
    months: list[int] = []
    for item in items:
        if isinstance(item, int) and not isinstance(item, bool):
            months.append(item)
        elif isinstance(item, str) and item.isascii() and item.isdigit() and len(item) <= 2:
            months.append(int(item))
        else:
            raise _invalid()
    consecutive = all(after == before % 12 + 1 for before, after in itertools.pairwise(months))
    if not 1 <= len(months) <= MAX_PEAK_MONTHS or not all(1 <= m <= 12 for m in months):
        raise _invalid()
    if not consecutive:
        raise _invalid()
    return tuple(months)


def peak_setting_text(value: object) -> str:
    """The value ``config set peak.months`` writes: checked, normalised (``"9,10"``)."""
    return ",".join(str(month) for month in parse_peak_months(value))


def configured_peak(settings: Mapping[str, Any]) -> Peak:
    """The peak of the settings, September–October when unset."""
    value = settings.get(PEAK_SETTING)
    return Peak() if value is None else Peak(parse_peak_months(value))


def peak_renewal(expiry_day: date, peak: Peak, lead_days: int) -> PeakRenewal | None:
    """The flag of a key expiring on ``expiry_day``, ``None`` when the peak is not at stake.

    Flagged from ``lead_days`` (the OPCO's warning window) before a peak's first day to its
    last day, both included; the reminder falls ``lead_days`` before the first day.
    """
    for year in (expiry_day.year - 1, expiry_day.year, expiry_day.year + 1):
        renewal = _renewal(peak.months, year, lead_days)
        if renewal.remind_on <= expiry_day <= renewal.ends:
            return renewal
    return None


@functools.cache
def _renewal(months: tuple[int, ...], year: int, lead_days: int) -> PeakRenewal:
    """The flag of the peak starting in ``year`` (cached and shared, being frozen: ``list``
    asks the same few for a thousand keys)."""
    peak = Peak(months)
    starts, ends = peak.occurrence(year)
    return PeakRenewal(starts - timedelta(days=lead_days), starts, ends, peak.label)


def _at_stake(
    opco: Opco, expiry_day: date, *, obtained: date, peak: Peak, lead_days: int
) -> tuple[PeakRenewal, int | None] | None:
    """The flag of a key expiring on ``expiry_day`` and the lifetime that would avoid it;
    ``None`` when the peak is not at stake."""
    renewal = peak_renewal(expiry_day, peak, lead_days)
    if renewal is None:
        return None
    return renewal, avoiding_lifetime(opco, obtained=obtained, peak=peak, lead_days=lead_days)


def peak_warning(
    opco: Opco, expiry_day: date, *, obtained: date, peak: Peak, lead_days: int
) -> str | None:
    """What ``add`` and ``rotate`` say of a key that would expire in (or just before) the
    peak, with the lifetime that avoids it where the portal lets the CFA choose one (Ocapiat).

    A warning only: the date stays the one the portal gave.
    """
    from cfakey.expiry import add_months

    stake = _at_stake(opco, expiry_day, obtained=obtained, peak=peak, lead_days=lead_days)
    if stake is None:
        return None
    renewal, months = stake
    text = (
        f"Cette clé expire le {expiry_day:%d/%m/%Y}, pendant la rentrée ({renewal.season}) "
        "ou juste avant, quand tous les CFA envoient leurs contrats : renouvelez-la à partir "
        f"du {renewal.remind_on:%d/%m/%Y} (rappel dans list, check et calendar)."
    )
    if months is not None:
        text += (
            f" Une durée de {months} mois l'éviterait (échéance le "
            f"{add_months(obtained, months):%d/%m/%Y}) : choisissez-la sur le portail à la "
            "prochaine génération, ou gardez cette date."
        )
    return text


def _offered_lifetimes(opco: Opco) -> range:
    """The lifetimes the portal offers, longest first: none unless the CFA chooses (Ocapiat)."""
    rule = opco.expiry
    if rule.kind != "chosen_duration" or rule.max_months is None:
        return range(0)
    return range(rule.max_months, rule.lowest_months - 1, -1)


def avoiding_lifetime(opco: Opco, *, obtained: date, peak: Peak, lead_days: int) -> int | None:
    """The longest lifetime the portal offers (chosen durations only) that is not flagged."""
    from cfakey.expiry import add_months

    return next(
        (
            months
            for months in _offered_lifetimes(opco)
            if peak_renewal(add_months(obtained, months), peak, lead_days) is None
        ),
        None,
    )


def lifetime_hint(opco: Opco, *, obtained: date, peak: Peak, lead_days: int) -> str | None:
    """Before the portal's steps (Ocapiat): the lifetime to choose when the longest one
    would make the key expire in, or just before, the peak; ``None`` when it would not."""
    from cfakey.expiry import add_months

    offered = _offered_lifetimes(opco)
    longest = add_months(obtained, offered[0]) if offered else None
    stake = longest and _at_stake(opco, longest, obtained=obtained, peak=peak, lead_days=lead_days)
    if not stake or longest is None:
        return None
    renewal, months = stake
    said = (
        f"Rentrée ({renewal.season}) : une clé de {offered[0]} mois générée aujourd'hui "
        f"expirerait le {longest:%d/%m/%Y}, pendant la rentrée ou juste avant ; "
    )
    if months is None:
        return said + "aucune durée proposée ne l'évite : notez de la renouveler avant."
    return said + f"choisissez plutôt {months} mois sur le portail."
