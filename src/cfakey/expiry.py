"""Expiry dates from the registry's typed rules, from JWT ``exp`` claims, and in words."""

from __future__ import annotations

import base64
import calendar
import json
from datetime import UTC, date, datetime, time, timedelta

from cfakey.errors import UsageError
from cfakey.registry.model import ExpiryRule

#: Every date cfakey accepts, stores or shows lies in this range (docs/commands.md).
#: Keys live months, not centuries: a date outside it is a typo, a placeholder such as
#: .NET's "never" (9999-12-31) or a hostile value, and far dates overflow the platform's
#: time functions in some time zones.
EARLIEST_DATE = date(2000, 1, 1)
LATEST_DATE = date(2099, 12, 31)
DATE_RANGE_TEXT = "du 01/01/2000 au 31/12/2099"


def in_date_range(day: date) -> bool:
    """Whether ``day`` lies in the range cfakey accepts (:data:`EARLIEST_DATE` to
    :data:`LATEST_DATE`)."""
    return EARLIEST_DATE <= day <= LATEST_DATE


def moment_in_range(moment: datetime) -> bool:
    """Whether ``moment`` falls in the accepted range on the operator's calendar: the day
    that is shown is the one checked (31/12/2099 23:59 in Pago Pago is 2100 in UTC)."""
    return in_date_range(local_date(moment) if moment.tzinfo is not None else moment.date())


_LONGEST_DATE_TEXT = len("le 1er septembre 2099, a 23:59:59")
# A JWT payload is a few hundred bytes; a huge one is not decoded at all.
_MAX_JWT_PAYLOAD = 16_384
# Timestamps of 0001-01-02 and 9999-12-30 (UTC): representable in every time zone.
_SMALLEST_TIMESTAMP = -62_135_510_400
_LARGEST_TIMESTAMP = 253_402_128_000


def add_months(start: date, months: int) -> date:
    """``start`` plus whole calendar months, clamped to the month's last day (31/08 + 6 = 28/02)."""
    month_index = start.month - 1 + months
    year, month = start.year + month_index // 12, month_index % 12 + 1
    day = min(start.day, calendar.monthrange(year, month)[1])
    return date(year, month, day)


def fixed_expiry(rule: ExpiryRule, obtained: date) -> date:
    """The end of a ``fixed_duration`` key obtained on ``obtained``."""
    if rule.kind != "fixed_duration":
        raise ValueError(f"not a fixed duration: {rule.kind}")
    if rule.days is not None:
        return obtained + timedelta(days=rule.days)
    if rule.months is None:  # pragma: no cover - excluded by ExpiryRule validation
        raise ValueError("fixed duration without days or months")
    return add_months(obtained, rule.months)


def chosen_expiry(rule: ExpiryRule, obtained: date, lifetime_months: int) -> date:
    """The end of a ``chosen_duration`` key, refusing a lifetime the portal does not offer."""
    if rule.kind != "chosen_duration" or rule.max_months is None:
        raise ValueError(f"not a chosen duration: {rule.kind}")
    if not rule.lowest_months <= lifetime_months <= rule.max_months:
        raise UsageError(
            f"Durée de vie de {lifetime_months} mois impossible : le portail propose de "
            f"{rule.lowest_months} à {rule.max_months} mois."
        )
    return add_months(obtained, lifetime_months)


def parse_months(text: str) -> int:
    """A lifetime typed by a person: ``6``, ``6 mois``; never quotes the text."""
    words = text.casefold().split()
    number = words[0].removesuffix("mois") if words else ""
    if words[1:] in ([], ["mois"]) and number.isascii() and number.isdigit() and len(number) <= 3:
        return int(number)
    raise UsageError("Durée de vie illisible : un nombre de mois est attendu.")


def jwt_expiry(key: str) -> datetime | None:
    """The ``exp`` claim of a key that is a JWT, else ``None``. The signature is not checked:
    only the OPCO can, and the date is only used to warn before it passes.

    A claim outside :data:`EARLIEST_DATE`..:data:`LATEST_DATE` (.NET's "never",
    253402300799, is 9999-12-31) is no usable date: ``None`` too, see :func:`jwt_exp_ignored`.
    """
    moment = _jwt_exp_claim(key)
    return moment if moment is not None and moment_in_range(moment) else None


def jwt_exp_ignored(key: str) -> bool:
    """Whether the key is a JWT whose ``exp`` claim lies outside the accepted range."""
    moment = _jwt_exp_claim(key)
    return moment is not None and not moment_in_range(moment)


def _jwt_exp_claim(key: str) -> datetime | None:
    parts = key.split(".")
    if len(parts) != 3 or not parts[0].startswith("eyJ") or len(parts[1]) > _MAX_JWT_PAYLOAD:
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return None
        # Far outside any range, but representable: the caller decides it is unusable.
        exp = min(max(exp, _SMALLEST_TIMESTAMP), _LARGEST_TIMESTAMP)
        return datetime.fromtimestamp(exp, tz=UTC)
    except (ValueError, OverflowError, OSError, RecursionError):
        return None


def usable_moment(moment: datetime | None) -> datetime | None:
    """``moment`` if its date lies in the accepted range, else ``None`` (no usable date).

    Applied where stored dates are read back, so that a value written before the range
    existed (or by hand) can never overflow the time functions of a later command.
    """
    if moment is None:
        return None
    return moment if moment_in_range(moment) else None


def local_time(moment: datetime) -> datetime:
    """``moment`` on the operator's clock; unchanged when the local time would overflow
    (a stored year 1 or 9999 in an overseas time zone), so that display never crashes."""
    try:
        return moment.astimezone()
    except (OverflowError, ValueError):
        return moment


def local_midnight(day: date) -> datetime:
    """The start of ``day`` on the operator's clock, as an aware UTC datetime.

    The one rule for storing a day as an instant (registry durations, chosen lifetimes,
    an OPCO's end-of-validity date).
    """
    return datetime.combine(day, time()).astimezone().astimezone(UTC)


def local_date(moment: datetime) -> date:
    """The day ``moment`` falls on, on the operator's clock (see :func:`local_time`)."""
    return local_time(moment).date()


def parse_date(text: str) -> datetime:
    """A date typed by a person: ``JJ/MM/AAAA``, ``JJ/MM/AA``, ``21 mars 2027``,
    ``1er avril 2027`` or ISO, optionally with ``HH:MM[:SS]``.

    The one reader of every date a person types (options, prompts). A two-digit year is
    20AA. Returns a naive local datetime (midnight when no time was given), always within
    :data:`EARLIEST_DATE`..:data:`LATEST_DATE`. The error never quotes the text: a value in
    the wrong field may be a key.
    """
    cleaned = " ".join(text.split())
    moment = _read_date(cleaned) if len(cleaned) <= _LONGEST_DATE_TEXT else None
    if moment is None:
        raise UsageError(
            "Date illisible : formats acceptés JJ/MM/AAAA (ou JJ/MM/AA), « 21 mars 2027 » ou "
            f"AAAA-MM-JJ, avec éventuellement HH:MM (dates {DATE_RANGE_TEXT})."
        )
    if not in_date_range(moment.date()):
        raise UsageError(f"Date hors de la plage acceptée : les dates vont {DATE_RANGE_TEXT}.")
    return moment


def _read_date(cleaned: str) -> datetime | None:
    """The date in ``cleaned`` (spaces already folded), or ``None`` when it is not one."""
    import re
    import unicodedata

    decomposed = unicodedata.normalize("NFKD", cleaned.casefold())
    bare = "".join(char for char in decomposed if not unicodedata.combining(char))
    found = re.fullmatch(_DATE_PATTERN, bare)
    if found is None:
        return None
    day, number, word, year, hour, minute, second = found.group(
        "day", "num", "word", "year", "hour", "minute", "second"
    )
    if day is None:  # ISO: the year comes first
        day, number, year = found.group("iso_day", "iso_month", "iso_year")
    month = _MONTHS.get(word.rstrip(".")) if word else int(number)
    if month is None:
        return None
    try:
        return datetime(  # noqa: DTZ001 - a local wall-clock date
            int(year) + (2000 if len(year) == 2 else 0),
            month,
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
        )
    except ValueError:
        return None


#: French month names and their usual abbreviations, without accents.
_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("janvier", "janv", "jan"),
            ("fevrier", "fevr", "fev"),
            ("mars", "mar"),
            ("avril", "avr"),
            ("mai",),
            ("juin",),
            ("juillet", "juil"),
            ("aout",),
            ("septembre", "sept", "sep"),
            ("octobre", "oct"),
            ("novembre", "nov"),
            ("decembre", "dec"),
        ),
        start=1,
    )
    for name in names
}
_DATE_PATTERN = (
    r"(?:(?:le )?(?P<day>\d{1,2})(?:er)?(?:[/.-](?P<num>\d{1,2})[/.-]|"
    r" (?P<word>[a-z]+\.?) )(?P<year>\d{4}|\d{2})"
    r"|(?P<iso_year>\d{4})-(?P<iso_month>\d{1,2})-(?P<iso_day>\d{1,2}))"
    r"(?:(?:,? (?:a )?|t)(?P<hour>\d{1,2})[:h](?P<minute>\d{2})(?::(?P<second>\d{2}))?)?"
)


def describe(rule: ExpiryRule) -> str:
    """The rule in a few French words, for tables."""
    if rule.kind == "fixed_duration":
        if rule.days is not None:
            return f"{rule.days} jours"
        return f"{rule.months} mois"
    if rule.kind == "chosen_duration":
        return f"choisie, {rule.lowest_months} à {rule.max_months} mois"
    if rule.kind == "portal_date":
        return "date du jeton, sinon du portail" if rule.jwt_exp_precedence else "date du portail"
    if rule.kind == "none_stated":
        return "non précisée"
    return "inconnue"
