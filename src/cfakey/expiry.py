"""Expiry dates from the registry's typed rules, from JWT ``exp`` claims, and in words."""

from __future__ import annotations

import base64
import calendar
import json
from datetime import UTC, date, datetime, timedelta

from cfakey.errors import UsageError, quote_input
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


def jwt_expiry(key: str) -> datetime | None:
    """The ``exp`` claim of a key that is a JWT, else ``None``. The signature is not checked:
    only the OPCO can, and the date is only used to warn before it passes."""
    parts = key.split(".")
    if len(parts) != 3 or not parts[0].startswith("eyJ"):
        return None
    try:
        payload = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        if isinstance(exp, bool) or not isinstance(exp, int | float):
            return None
        return datetime.fromtimestamp(exp, tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


def parse_date(text: str) -> datetime:
    """A date typed by the operator: ``JJ/MM/AAAA`` or ISO, optionally with ``HH:MM``.

    Returns a naive local datetime (midnight when no time was given).
    """
    cleaned = " ".join(text.strip().replace("T", " ").split())
    formats = ("%d/%m/%Y %H:%M", "%d/%m/%Y", "%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d")
    for fmt in formats:
        try:
            return datetime.strptime(cleaned, fmt)  # noqa: DTZ007 - a local wall-clock date
        except ValueError:
            continue
    raise UsageError(
        f"Date illisible : {quote_input(text)}. Formats acceptés : JJ/MM/AAAA, AAAA-MM-JJ, "
        "avec éventuellement HH:MM."
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
