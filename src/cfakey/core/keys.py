"""Key lifecycle use-cases: validate, date, add, rotate, remove, list, check, import, journal.

Nothing here prints, prompts or exits: the CLI asks the questions, these functions
decide and return typed results or raise :class:`cfakey.errors.CfakeyError` subclasses.
No message built here ever contains a key: only fingerprints, row numbers and names.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from cfakey.core.codes import JournalAction, KeyStatus, Level, VerifyOutcome, source_label
from cfakey.errors import AlreadyExistsError, NotFoundError, UsageError
from cfakey.expiry import (
    DATE_RANGE_TEXT,
    add_months,
    chosen_expiry,
    fixed_expiry,
    in_date_range,
    jwt_exp_ignored,
    jwt_expiry,
    local_date,
    local_midnight,
    moment_in_range,
    parse_date,
)

if TYPE_CHECKING:
    from cfakey.core.peak import Peak, PeakRenewal
    from cfakey.metadata import (
        CfaRecord,
        JournalEntry,
        KeyRecord,
        LastVerification,
        Metadata,
        PendingWrite,
    )
    from cfakey.registry.model import Opco, Registry
    from cfakey.stores.base import KeyStore

# Lower sorts first: what needs the operator soonest comes first.
_STATUS_RANK: dict[KeyStatus, int] = {
    KeyStatus.REFUSED: -1,  # the OPCO refuses it now: above every expiry
    KeyStatus.EXPIRED: 0,
    KeyStatus.EXPIRING: 1,
    KeyStatus.VALID: 2,
    KeyStatus.UNDATED: 3,
}

# Used where the registry states no shape for the OPCO: warn on unusual characters.
_BASE64ISH = re.compile(r"[A-Za-z0-9+/=_-]+")
SHORT_KEY = 16
LONG_KEY = 4096


# Key text ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanKey:
    """A key as it will be stored, and what was noticed about what the operator gave."""

    value: str
    trimmed: bool
    warnings: tuple[str, ...] = ()


def clean_key(raw: str, opco: Opco | None = None) -> CleanKey:
    """Trim surrounding whitespace; refuse what cannot be a key; warn on unusual shapes.

    ``trimmed`` says whether anything besides one final line end was removed.

    Refused: empty, whitespace inside, non-printable characters. Everything else is
    accepted, since keys are opaque to the CFA and OPCOs change formats: a key that does
    not have the OPCO's ``key_shape`` (registry) is only warned about.
    """
    # The line end that ``echo`` and every text file add is not worth a remark.
    line = raw.removesuffix("\n").removesuffix("\r")
    value = line.strip()
    trimmed = value != line
    if not value:
        raise UsageError(
            "La clé est vide : rien n'a été enregistré.",
            hint="Collez la clé telle que le portail l'affiche.",
        )
    if any(char.isspace() for char in value):
        raise UsageError(
            "La clé contient un espace ou un saut de ligne en son milieu : c'est souvent "
            "un copier-coller incomplet ou deux clés collées ensemble. "
            "Rien n'a été enregistré.",
            hint="Recopiez la clé d'un seul tenant depuis le portail de l'OPCO.",
        )
    if not value.isprintable():
        raise UsageError(
            "La clé contient des caractères invisibles ou de contrôle : rien n'a été enregistré.",
            hint="Recopiez-la depuis le portail, sans passer par un traitement de texte.",
        )
    warnings: list[str] = []
    if len(value) < SHORT_KEY:
        warnings.append(
            f"Clé inhabituellement courte ({len(value)} caractères) : "
            "vérifiez qu'elle est complète."
        )
    elif len(value) > LONG_KEY:
        warnings.append(
            f"Clé inhabituellement longue ({len(value)} caractères) : "
            "vérifiez qu'il s'agit bien de la clé."
        )
    shape = opco.key_shape if opco is not None else None
    if shape is not None and not shape.matches(value):
        warnings.append(
            f"Forme inhabituelle pour cet OPCO, qui donne {shape.description} ; vérifiez la clé."
        )
    elif shape is None and not _BASE64ISH.fullmatch(value) and "." not in value:
        warnings.append(
            "La clé contient des caractères peu courants dans une clé d'API : vérifiez-la."
        )
    return CleanKey(value=value, trimmed=trimmed, warnings=tuple(warnings))


# Expiry --------------------------------------------------------------------------------

ExpiryQuestion = Literal["none", "lifetime", "date"]


@dataclass(frozen=True)
class Expiry:
    """The expiry chosen for a key, where it came from, and what to tell the operator."""

    expires_at: datetime | None
    source: str
    notes: tuple[str, ...] = ()


def expiry_question(opco: Opco, key: str | None = None) -> ExpiryQuestion:
    """What the walkthrough must ask to date this key (``none`` when it can tell alone)."""
    rule = opco.expiry
    if rule.kind == "chosen_duration":
        return "lifetime"
    if rule.kind == "portal_date":
        if key is not None and rule.jwt_exp_precedence and jwt_expiry(key) is not None:
            return "none"
        return "date"
    return "none"


def date_required(opco: Opco, key: str) -> bool:
    """Whether saving ``key`` needs the date its portal shows: ``add`` refuses to go on
    without it in a script, and ``import`` without an ``expires`` value.

    A rule where a JWT ``exp`` wins (OPCO EP) makes the date optional: without either,
    the key is saved without a date.
    """
    return expiry_question(opco, key) == "date" and not opco.expiry.jwt_exp_precedence


def _typed_date(text: str) -> datetime:
    return parse_date(text).astimezone().astimezone(UTC)


def resolve_expiry(
    opco: Opco,
    key: str,
    *,
    obtained: date,
    now: datetime,
    expires: str | None = None,
    lifetime_months: int | None = None,
) -> Expiry:
    """The expiry of a key from the registry rule, the key itself and what the operator said.

    Precedence: a JWT ``exp`` claim when the rule says it wins (OPCO EP); then an explicit
    date; then a chosen lifetime; then the registry's fixed duration; then a JWT ``exp``
    in any key; else no date. A date already past, or outside the accepted range, is refused.
    """
    rule = opco.expiry
    notes: list[str] = []
    jwt_exp = jwt_expiry(key)
    if jwt_exp is None and jwt_exp_ignored(key):
        notes.append(
            "La date « exp » du jeton est hors de la plage acceptée "
            f"({DATE_RANGE_TEXT}) : elle est ignorée."
        )
    result: Expiry
    if jwt_exp is not None and rule.jwt_exp_precedence:
        if expires is not None and parse_date(expires).date() != jwt_exp.astimezone().date():
            notes.append(
                "La date « exp » contenue dans le jeton fait foi ; la date saisie est ignorée."
            )
        result = Expiry(jwt_exp, "jwt")
    elif expires is not None:
        result = Expiry(
            _typed_date(expires), "portal" if rule.kind == "portal_date" else "operator"
        )
    elif lifetime_months is not None:
        result = _lifetime_expiry(opco, obtained, lifetime_months)
    elif rule.kind == "fixed_duration":
        result = Expiry(local_midnight(fixed_expiry(rule, obtained)), "registry")
    elif jwt_exp is not None:
        result = Expiry(jwt_exp, "jwt")
    else:
        if rule.kind == "chosen_duration":
            notes.append("Durée de vie non indiquée : la clé est enregistrée sans date d'échéance.")
        result = Expiry(None, "none")
    result = dataclasses.replace(result, notes=tuple(notes))
    if result.expires_at is not None and not moment_in_range(result.expires_at):
        raise UsageError(
            f"Date d'échéance hors de la plage acceptée ({DATE_RANGE_TEXT}) : "
            "rien n'a été enregistré."
        )
    if result.expires_at is not None and result.expires_at <= now:
        when = result.expires_at.astimezone().strftime("%d/%m/%Y %H:%M")
        raise UsageError(
            f"Date d'échéance déjà passée ({when}) : une clé expirée ne peut pas être enregistrée.",
            hint="Générez une nouvelle clé sur le portail, ou corrigez la date.",
        )
    return result


def _lifetime_expiry(opco: Opco, obtained: date, months: int) -> Expiry:
    rule = opco.expiry
    if rule.kind == "fixed_duration":
        raise UsageError(
            f"{opco.name} fixe elle-même la durée de vie de ses clés : "
            "--lifetime-months ne s'applique pas.",
            hint="Pour une date différente, utilisez --expires JJ/MM/AAAA.",
        )
    if rule.kind == "chosen_duration":
        return Expiry(local_midnight(chosen_expiry(rule, obtained, months)), "portal")
    if not 1 <= months <= 120:
        raise UsageError(f"Durée de vie de {months} mois impossible : de 1 à 120 mois.")
    return Expiry(local_midnight(add_months(obtained, months)), "operator")


# Warning windows -----------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """Days before expiry when a key becomes ``warning`` then ``critical``."""

    warn_days: int
    crit_days: int
    #: Days after which a key not verified is a warning; ``None``: no API address is
    #: known for the OPCO, so ``verify`` cannot check it and nothing is expected.
    verify_max_age: int | None = None


#: ``verify.max_age_days`` when unset.
DEFAULT_VERIFY_MAX_AGE = 30
SHORT_LIVED_WINDOW = Window(30, 7)
DEFAULT_WINDOW = Window(45, 14)


def default_window(opco: Opco | None) -> Window:
    """Per-OPCO defaults (see docs/commands.md for why).

    Keys of six months or less (Ocapiat) warn 30 days ahead, a sixth of their life;
    yearly and dated keys warn 45 days ahead, enough to get a portal access back or an
    answer from support, critical two weeks before.
    """
    if opco is None:
        return DEFAULT_WINDOW
    rule = opco.expiry
    if rule.kind == "chosen_duration" and (rule.max_months or 12) <= 6:
        return SHORT_LIVED_WINDOW
    if rule.kind == "fixed_duration" and ((rule.months or 12) <= 6 or (rule.days or 365) <= 186):
        return SHORT_LIVED_WINDOW
    return DEFAULT_WINDOW


def window_for(
    opco: Opco | None,
    opco_id: str,
    settings: Mapping[str, Any],
    *,
    warn_days: int | None = None,
    crit_days: int | None = None,
) -> Window:
    """The window for one OPCO: command-line values, else config, else defaults."""
    base = default_window(opco)
    warn = (
        warn_days if warn_days is not None else _int_setting(settings, f"opco.{opco_id}.warn_days")
    )
    crit = (
        crit_days if crit_days is not None else _int_setting(settings, f"opco.{opco_id}.crit_days")
    )
    return Window(
        base.warn_days if warn is None else warn,
        base.crit_days if crit is None else crit,
        _verify_max_age(opco, opco_id, settings),
    )


def _verify_max_age(opco: Opco | None, opco_id: str, settings: Mapping[str, Any]) -> int | None:
    """``verify.max_age_days`` (default 30) where an API address is known for the OPCO."""
    from cfakey.config import configured_api_url

    public = opco.api.base_url if opco is not None else None
    if not (configured_api_url(settings, opco_id, recette=False)[0] or public):
        return None
    age = _int_setting(settings, "verify.max_age_days")
    return DEFAULT_VERIFY_MAX_AGE if age is None else age


def _int_setting(settings: Mapping[str, Any], name: str) -> int | None:
    from cfakey.config import window_days

    value = settings.get(name)
    return None if value is None else window_days(name, value)


def check_window_args(warn_days: int | None, crit_days: int | None) -> None:
    """Refuse negative windows and a critical window wider than the warning one."""
    from cfakey.config import MAX_WINDOW_DAYS

    for name, value in (("--warn-days", warn_days), ("--crit-days", crit_days)):
        if value is not None and not 0 <= value <= MAX_WINDOW_DAYS:
            raise UsageError(f"{name} doit être un nombre de jours de 0 à {MAX_WINDOW_DAYS}.")
    if warn_days is not None and crit_days is not None and crit_days > warn_days:
        raise UsageError("--crit-days ne peut pas dépasser --warn-days.")


# Overview --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    """One stored key in the overview: dates, days left and status."""

    siret: str
    cfa_name: str
    opco_id: str
    opco_name: str
    expires_at: datetime | None
    days_left: int | None
    status: KeyStatus
    level: Level
    fingerprint: str
    obtained_on: date
    expiry_source: str
    rotation_due: date | None = None
    verification: LastVerification | None = None
    #: Never verified, or not for ``verify.max_age_days``, though its OPCO has an API.
    verification_due: bool = False
    #: Where the key stands against its expiry alone, whatever ``verify`` said (``status``
    #: says « refusée » above it): what ``export --strict`` and its warnings look at.
    expiry_status: KeyStatus | None = None
    #: Expires in the contract peak or just before (core/peak.py); ``None``: not at stake.
    peak: PeakRenewal | None = None
    #: Its reminder date has come: ``check`` warns (never before, never critical for it).
    peak_due: bool = False

    def as_json(self) -> dict[str, Any]:
        """The ``list --json`` object: a contract for scripts."""
        return {
            "cfa": self.siret,
            "cfa_name": self.cfa_name,
            "opco": self.opco_id,
            "opco_name": self.opco_name,
            "expires": local_date(self.expires_at).isoformat() if self.expires_at else None,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "days_left": self.days_left,
            "status": self.status.value,
            "status_label": self.status.label,
            "fingerprint": self.fingerprint,
            "obtained": self.obtained_on.isoformat(),
            "expiry_source": self.expiry_source,
            "expiry_source_label": source_label(self.expiry_source),
            "rotation_due": self.rotation_due.isoformat() if self.rotation_due else None,
            "verification": verification_json(self.verification),
            "verification_due": self.verification_due,
            "peak_renewal": self.peak.as_json(due=self.peak_due) if self.peak else None,
        }


def verification_json(verification: LastVerification | None) -> dict[str, Any] | None:
    """The last verification of a key in ``--json``: identifiers and French labels."""
    if verification is None:
        return None
    expiry = verification.opco_expiry
    return {
        "checked_at": verification.at.isoformat(),
        "outcome": verification.outcome,
        "outcome_label": VerifyOutcome.label_of(verification.outcome),
        "http_status": verification.http_status,
        "opco_expiry": expiry.isoformat() if expiry else None,
    }


def _verification_state(record: KeyRecord, window: Window, today: date) -> tuple[bool, bool]:
    """Whether the OPCO refused the key at its last verification, and whether one is due."""
    last = record.verification
    refused = last is not None and last.outcome == VerifyOutcome.KEY_REFUSED.id
    # An inconclusive result kept by an older cfakey never counts as "verified recently".
    recent = (
        last is not None
        and VerifyOutcome.is_conclusive(last.outcome)
        and (today - local_date(last.at)).days <= (window.verify_max_age or 0)
    )
    due = window.verify_max_age is not None and not recent
    return refused, due


def classify(
    record: KeyRecord,
    *,
    opco: Opco | None,
    cfa_name: str,
    window: Window,
    now: datetime,
    peak: Peak | None = None,
) -> KeyRow:
    """Status of one key at ``now`` within ``window``; flagged against ``peak`` if given."""
    today = local_date(now)
    rotation_due: date | None = None
    days_left: int | None = None
    expiry_day = None if record.expires_at is None else local_date(record.expires_at)
    if record.expires_at is not None and expiry_day is not None:
        days_left = (expiry_day - today).days
        if record.expires_at <= now:
            status, level = KeyStatus.EXPIRED, Level.CRITICAL
        elif days_left <= window.crit_days:
            status, level = KeyStatus.EXPIRING, Level.CRITICAL
        elif days_left <= window.warn_days:
            status, level = KeyStatus.EXPIRING, Level.WARNING
        else:
            status, level = KeyStatus.VALID, Level.OK
    else:
        status, level = KeyStatus.UNDATED, Level.OK
        months = opco.expiry.recommended_rotation_months if opco is not None else None
        if months and in_date_range(record.obtained_on):
            rotation_due = add_months(record.obtained_on, months)
            if (rotation_due - today).days <= window.warn_days:
                # Advice, not an outage: never critical.
                status, level = KeyStatus.EXPIRING, Level.WARNING
    expiry_status = status
    renewal = _peak_renewal(expiry_day, status, peak, window)
    peak_due = renewal is not None and renewal.remind_on <= today
    if peak_due:
        level = max(level, Level.WARNING)
    refused, due = _verification_state(record, window, today)
    if refused:
        status, level = KeyStatus.REFUSED, Level.CRITICAL
    elif due:
        level = max(level, Level.WARNING)
    return KeyRow(
        siret=record.siret,
        cfa_name=cfa_name,
        opco_id=record.opco_id,
        opco_name=opco.name if opco is not None else record.opco_id,
        expires_at=record.expires_at,
        days_left=days_left,
        status=status,
        level=level,
        fingerprint=record.fingerprint,
        obtained_on=record.obtained_on,
        expiry_source=record.expiry_source,
        rotation_due=rotation_due,
        verification=record.verification,
        verification_due=due,
        expiry_status=expiry_status,
        peak=renewal,
        peak_due=peak_due,
    )


def _peak_renewal(
    expiry_day: date | None, status: KeyStatus, peak: Peak | None, window: Window
) -> PeakRenewal | None:
    """The peak flag of a live, dated key (an expired one is already critical)."""
    if peak is None or expiry_day is None or status is KeyStatus.EXPIRED:
        return None
    from cfakey.core.peak import peak_renewal

    return peak_renewal(expiry_day, peak, window.warn_days)


def urgency(row: KeyRow) -> tuple[int, float, str, str]:
    """Sort key: expired first, then fewest days left, undated last."""
    days = float("inf") if row.days_left is None else float(row.days_left)
    return (
        _STATUS_RANK[row.status],
        days,
        row.cfa_name.casefold(),
        row.opco_id,
    )


@dataclass(frozen=True)
class Overview:
    """Every key matching the filters, most urgent first, with the CFAs they belong to."""

    rows: tuple[KeyRow, ...]
    cfas: tuple[CfaRecord, ...]
    filtered: bool
    #: Store changes a stopped command left unfinished: their rows may be wrong until a
    #: command that opens the store (or ``doctor``) resolves them; the overview never does.
    interrupted: tuple[PendingWrite, ...] = ()
    #: The alert windows in force, by OPCO identifier (``check``'s performance data).
    windows: Mapping[str, Window] = field(default_factory=dict)
    #: Known CFAs the team engine's policy does not let this token read (not an error).
    unreadable: tuple[str, ...] = ()


def overview(
    metadata: Metadata,
    registry: Registry,
    settings: Mapping[str, Any],
    *,
    now: datetime,
    cfas: Sequence[CfaRecord] | None = None,
    opco_id: str | None = None,
    warn_days: int | None = None,
    crit_days: int | None = None,
) -> Overview:
    """The rows of ``list`` and ``check``: metadata only, the key store is never opened.

    ``cfas`` limits them to these CFAs (the sites of one SIREN, or one CFA).
    """
    from cfakey.core.peak import configured_peak

    opcos = {opco.id: opco for opco in registry.opcos}
    peak = configured_peak(settings)
    hidden = metadata.team_denied
    registered = [cfa for cfa in metadata.list_cfas() if cfa.siret not in hidden]
    wanted = None if cfas is None else {cfa.siret for cfa in cfas}
    names = {record.siret: record.name for record in registered}
    windows = {
        opco.id: window_for(opco, opco.id, settings, warn_days=warn_days, crit_days=crit_days)
        for opco in registry.opcos
    }
    rows = [
        classify(
            record,
            opco=opcos.get(record.opco_id),
            cfa_name=names.get(record.siret, record.siret),
            window=windows.get(record.opco_id)
            or window_for(None, record.opco_id, settings, warn_days=warn_days, crit_days=crit_days),
            now=now,
            peak=peak,
        )
        for record in metadata.list_keys(None, opco_id)
        if wanted is None or record.siret in wanted
    ]
    if (warn_days is None) != (crit_days is None):  # both given: click compares them
        _check_alert_reachable(rows, windows, warn_days=warn_days, crit_days=crit_days)
    rows.sort(key=urgency)
    shown_cfas = tuple(c for c in registered if wanted is None or c.siret in wanted)
    interrupted = tuple(
        intent
        for intent in (*metadata.pending(), *team_interrupted(metadata))
        if (wanted is None or intent.siret in wanted) and opco_id in (None, intent.opco_id)
    )
    return Overview(
        tuple(rows),
        shown_cfas,
        filtered=wanted is not None or opco_id is not None,
        interrupted=interrupted,
        windows=windows,
        unreadable=tuple(s for s in hidden if wanted is None or s in wanted),
    )


def team_interrupted(metadata: Metadata) -> list[PendingWrite]:
    """Team keys whose engine metadata lags their data (a teammate's write was stopped),
    shown as interrupted operations until ``doctor`` or that writer repairs them."""
    from cfakey.core.team_sync import TEAM_INTERRUPTED
    from cfakey.metadata import PendingWrite

    return [
        PendingWrite(siret, opco_id, TEAM_INTERRUPTED, None, None, "openbao")
        for siret, opco_id in metadata.team_interrupted()
    ]


def _check_alert_reachable(
    rows: Sequence[KeyRow],
    windows: Mapping[str, Window],
    *,
    warn_days: int | None,
    crit_days: int | None,
) -> None:
    """Refuse ``--warn-days`` inside, or ``--crit-days`` beyond, the other window of the
    OPCO of a checked key: its alert could never come. Only those OPCOs are named; with no
    key to check, the rule is stated for the registry's windows, naming none."""
    if warn_days is not None:
        said = f"--warn-days {warn_days} est plus court que la fenêtre critique"
        fix = f"donnez aussi --crit-days (au plus {warn_days})"
        widest = max((window.crit_days for window in windows.values()), default=0)
        unreachable_for_all = f"jusqu'à {widest}" if widest > warn_days else None
    elif crit_days is not None:
        said = f"--crit-days {crit_days} dépasse la fenêtre d'alerte"
        fix = f"donnez aussi --warn-days (au moins {crit_days})"
        narrowest = min((window.warn_days for window in windows.values()), default=crit_days)
        unreachable_for_all = f"la plus courte : {narrowest}" if narrowest < crit_days else None
    else:
        return
    concerned: dict[int, list[str]] = {}
    for row in rows:
        window = windows.get(row.opco_id, DEFAULT_WINDOW)
        if window.crit_days > window.warn_days:  # the OPCO's own window, not the one given
            days = window.crit_days if crit_days is None else window.warn_days
            if row.opco_name not in concerned.get(days, []):
                concerned.setdefault(days, []).append(row.opco_name)
    never = f"l'alerte ne serait jamais atteinte ; {fix}."
    if concerned:
        where = ", ".join(
            f"{', '.join(sorted(names))} ({days} jours)"
            for days, names in sorted(concerned.items(), reverse=True)
        )
        raise UsageError(f"{said} pour {where} : {never}")
    if not rows and unreachable_for_all is not None:
        raise UsageError(f"{said} des OPCO ({unreachable_for_all} jours) : {never}")


def status_text(row: KeyRow) -> str:
    """The status people read: « critique » when ``check`` would say so of a live key."""
    if row.status is KeyStatus.EXPIRING and row.level is Level.CRITICAL:
        return "critique"
    if row.peak_due and row.status in (KeyStatus.VALID, KeyStatus.EXPIRING):
        from cfakey.core.peak import PEAK_LABEL

        return PEAK_LABEL
    return row.status.label


def advice(row: KeyRow, registry: Registry) -> str | None:
    """What to do about a key ``check`` reports, as one French line; ``None`` if nothing."""
    if row.level is Level.OK:
        return None
    try:
        opco = registry.get(row.opco_id)
    except KeyError:  # an OPCO the registry no longer knows: nothing to walk through
        return None
    command = f"cfakey rotate {opco.id} --cfa {row.siret}"
    if opco.obtain == "not_published":
        where = f" ({opco.portal_url})" if opco.portal_url else ""
        return f"demandez une nouvelle clé à l'OPCO{where}, puis : {command}"
    return command


@dataclass(frozen=True)
class CheckResult:
    """``check``: the Nagios level and the keys that need attention."""

    level: Level
    problems: tuple[KeyRow, ...]
    checked: int
    interrupted: tuple[PendingWrite, ...] = ()
    #: Known CFAs the team engine's policy hides from this token (not checked, no error).
    unreadable: tuple[str, ...] = ()
    #: The dated key that expires first, and the window of its OPCO (performance data).
    earliest: KeyRow | None = None
    window: Window | None = None
    #: Keys to renew before the contract peak whose reminder date has not come (no alert
    #: yet: said, never paged), earliest reminder first.
    peak_ahead: tuple[KeyRow, ...] = ()

    @property
    def label(self) -> str:
        """Nagios-style label, in French."""
        return self.level.label

    def as_json(self) -> dict[str, Any]:
        """The ``check --json`` object: a contract for scripts (``interrupted`` only when
        an interrupted operation is waiting, ``unreadable_cfas`` only with CFAs hidden by
        the team engine's policy, ``peak_ahead`` only with keys to renew before the
        contract peak whose reminder date is still to come)."""
        result: dict[str, Any] = {
            "status": self.level.id,
            "status_label": self.level.label,
            "exit_code": int(self.level),
            "checked": self.checked,
            "problems": [
                {**row.as_json(), "level": row.level.id, "level_label": row.level.label}
                for row in self.problems
            ],
        }
        if self.unreadable:
            result["unreadable_cfas"] = list(self.unreadable)
        if self.peak_ahead:
            result["peak_ahead"] = [
                {"cfa": row.siret, "opco": row.opco_id, **row.peak.as_json(due=False)}
                for row in self.peak_ahead
                if row.peak is not None
            ]
        if self.interrupted:
            result["interrupted"] = [
                {"siret": p.siret, "opco_id": p.opco_id, "action": p.action}
                for p in self.interrupted
            ]
        return result


def check(view: Overview) -> CheckResult:
    """Reduce an overview to a Nagios level: 0 all fine, 1 warning, 2 critical.

    An interrupted operation is at least a warning: until it is resolved, a row may show
    a key that was removed, or the one a rotation replaced.
    """
    problems = tuple(row for row in view.rows if row.level > 0)
    level = max((row.level for row in problems), default=Level.OK)
    if view.interrupted:
        level = max(level, Level.WARNING)
    dated = [row for row in view.rows if row.days_left is not None]
    earliest = min(dated, key=lambda row: row.days_left or 0, default=None)
    ahead = [row for row in view.rows if row.level is Level.OK and row.peak and not row.peak_due]
    return CheckResult(
        level=level,
        problems=problems,
        checked=len(view.rows),
        interrupted=view.interrupted,
        unreadable=view.unreadable,
        earliest=earliest,
        window=None if earliest is None else view.windows.get(earliest.opco_id),
        peak_ahead=tuple(sorted(ahead, key=lambda row: row.peak.remind_on if row.peak else 0)),
    )


def perfdata(result: CheckResult) -> str:
    """Nagios performance data (``label=value;warn;crit;min;max``), ASCII labels: keys
    counted by level, and days until the earliest expiry with its OPCO's thresholds.

    Few days left is what is bad, so the thresholds are ranges that alert inside them
    (monitoring-plugins guidelines): ``@~:45`` warns at 45 days or fewer, as ``check``
    does; no minimum, since an expired key has a negative number of days.
    """
    critical = sum(1 for row in result.problems if row.level is Level.CRITICAL)
    warning = len(result.problems) - critical
    parts = [
        f"cles_ok={result.checked - len(result.problems)};;;0",
        f"cles_alerte={warning};;;0",
        f"cles_critiques={critical};;;0",
    ]
    if result.earliest is not None:
        window = result.window or DEFAULT_WINDOW
        parts.append(
            f"jours_avant_echeance={result.earliest.days_left};"
            f"@~:{window.warn_days};@~:{window.crit_days}"
        )
    return " ".join(parts)


# Add, rotate, remove -----------------------------------------------------------------------


@dataclass(frozen=True)
class Conflicts:
    """What storing a key would collide with: a key already there, the same key elsewhere."""

    existing: KeyRecord | None
    same_key_elsewhere: tuple[KeyRecord, ...]


def find_conflicts(
    metadata: Metadata, registry: Registry, cfa: CfaRecord, opco_id: str, fp: str
) -> Conflicts:
    """The existing key of this CFA/OPCO, and other slots holding the same key.

    A key covering a whole SIREN (Afdas, OPCO Santé, OPCO 2i) legitimately appears under
    every SIRET of that SIREN for the same OPCO: that is not a pasted wrong key.
    """
    return Conflicts(
        existing=metadata.get_key(cfa.siret, opco_id),
        same_key_elsewhere=same_key_elsewhere(metadata, registry, cfa.siret, opco_id, fp),
    )


def same_key_elsewhere(
    metadata: Metadata, registry: Registry, siret: str, opco_id: str, fp: str
) -> tuple[KeyRecord, ...]:
    """Other slots already holding the key of fingerprint ``fp`` (a key pasted twice)."""
    scope = _scope(registry, opco_id)
    return tuple(
        record
        for record in metadata.keys_with_fingerprint(fp)
        if (record.siret, record.opco_id) != (siret, opco_id)
        and not (record.opco_id == opco_id and scope == "siren" and record.siret[:9] == siret[:9])
    )


def _scope(registry: Registry, opco_id: str) -> str:
    try:
        return registry.get(opco_id).scope
    except KeyError:
        return "unknown"


def describe_slots(records: Iterable[KeyRecord]) -> str:
    """``"atlas du CFA 123…, afdas du CFA 456…"`` for an error message."""
    return ", ".join(f"{record.opco_id} du CFA {record.siret}" for record in records)


@dataclass(frozen=True)
class Saved:
    """A key just stored: its metadata and, for a rotation, the previous fingerprint."""

    record: KeyRecord
    action: str
    old_fingerprint: str | None


def save_key(
    store: KeyStore,
    metadata: Metadata,
    registry: Registry,
    *,
    cfa: CfaRecord,
    opco: Opco,
    key: CleanKey,
    expiry: Expiry,
    obtained: date,
    now: datetime,
    replace: bool,
    allow_duplicate: bool,
    rotation: bool = False,
) -> Saved:
    """Store a new key or a rotation; refuses silent overwrites and keys pasted twice."""
    from cfakey.metadata import KeyRecord, current_user
    from cfakey.stores.base import fingerprint

    fp = fingerprint(key.value)
    # Under the data lock: what is replaced, and its fingerprint, cannot change meanwhile.
    with metadata.lock():
        conflicts = find_conflicts(metadata, registry, cfa, opco.id, fp)
        _refuse_conflicts(
            conflicts,
            cfa,
            opco,
            fp,
            replace=replace,
            rotation=rotation,
            allow_duplicate=allow_duplicate,
        )
        record = KeyRecord(
            siret=cfa.siret,
            opco_id=opco.id,
            obtained_on=obtained,
            stored_at=now.astimezone(UTC).replace(microsecond=0),
            expires_at=expiry.expires_at,
            expiry_source=expiry.source,
            fingerprint=fp,
            os_user=current_user(),
            store=store.kind,
        )
        action = (JournalAction.ADDED if conflicts.existing is None else JournalAction.ROTATED).id
        from cfakey.core.storage import store_key

        intent = store_key(
            store, metadata, record, key.value, action=action, detail=f"expiry:{expiry.source}"
        )
    return Saved(record=record, action=action, old_fingerprint=intent.old_fingerprint)


def _refuse_conflicts(
    conflicts: Conflicts,
    cfa: CfaRecord,
    opco: Opco,
    fp: str,
    *,
    replace: bool,
    rotation: bool,
    allow_duplicate: bool,
) -> None:
    """Refuse silent overwrites, keys pasted twice, and rotations of nothing."""
    if conflicts.same_key_elsewhere and not allow_duplicate:
        raise AlreadyExistsError(
            f"Cette clé est déjà enregistrée pour {describe_slots(conflicts.same_key_elsewhere)} : "
            "une clé collée au mauvais endroit ? Rien n'a été enregistré.",
            hint="Si c'est voulu, confirmez (ou ajoutez --yes).",
        )
    existing = conflicts.existing
    if existing is not None and existing.fingerprint == fp:
        if rotation:
            raise UsageError(
                "La nouvelle clé est identique à l'ancienne : le portail l'a-t-il bien "
                "régénérée ? Rien n'a été modifié."
            )
        raise AlreadyExistsError(
            f"Cette clé est déjà enregistrée pour {opco.name} et le CFA {cfa.siret} : rien à faire."
        )
    if existing is not None and not replace:
        raise AlreadyExistsError(
            f"Une clé {opco.name} est déjà enregistrée pour le CFA {cfa.siret} "
            f"(empreinte {existing.fingerprint}).",
            hint=f"Pour la remplacer : cfakey rotate {opco.id} --cfa {cfa.siret} (ou --yes).",
        )
    if rotation and existing is None:
        raise NotFoundError(
            f"Aucune clé {opco.name} enregistrée pour le CFA {cfa.siret} : rien à renouveler.",
            hint=f"Pour en ajouter une : cfakey add {opco.id} --cfa {cfa.siret}.",
        )


# Import, kept importable from here --------------------------------------------------------

#: The import use-case lives in :mod:`cfakey.core.imports`; these names stay reachable here.
_IMPORT_NAMES = frozenset(
    {
        "ImportPlan",
        "ImportResult",
        "ImportRow",
        "ImportRowsError",
        "plan_import",
        "read_import_file",
        "run_import",
    }
)


def __getattr__(name: str) -> Any:
    if name in _IMPORT_NAMES:
        from cfakey.core import imports  # imports builds on this module

        return getattr(imports, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Show, reveal -------------------------------------------------------------------------------


def stored_key(metadata: Metadata, opco: Opco, cfa: CfaRecord) -> KeyRecord:
    """The metadata of the key of ``cfa`` for ``opco``, or a French "not found"."""
    record = metadata.get_key(cfa.siret, opco.id)
    if record is None:
        raise NotFoundError(
            f"Aucune clé {opco.name} enregistrée pour le CFA {cfa.siret}.",
            hint=f"Pour l'ajouter : cfakey add {opco.id} --cfa {cfa.siret}.",
        )
    return record


def key_details(row: KeyRow, record: KeyRecord) -> dict[str, Any]:
    """The ``show --json`` object: the ``list --json`` row and where and when it was stored."""
    return {
        **row.as_json(),
        "stored_at": record.stored_at.isoformat(),
        "os_user": record.os_user,
        "store": record.store,
    }


def reveal_key(store: KeyStore, metadata: Metadata, record: KeyRecord, *, now: datetime) -> str:
    """The key itself (``show --reveal``), journalled with the fingerprint of what is shown."""
    from cfakey.core.storage import read_key
    from cfakey.stores.base import fingerprint

    secret = read_key(store, record.siret, record.opco_id, recorded_in=record.store)
    metadata.log(
        JournalAction.REVEALED.id,
        siret=record.siret,
        opco_id=record.opco_id,
        new_fingerprint=fingerprint(secret),  # the key shown, even if rotated meanwhile
        detail="cfakey show --reveal",
        at=now,
    )
    return secret


# Journal -------------------------------------------------------------------------------------


def query_journal(
    metadata: Metadata,
    *,
    cfa: CfaRecord | None = None,
    opco_id: str | None = None,
    since: str | None = None,
) -> list[JournalEntry]:
    """Journal entries, oldest first; ``since`` is a date typed by the operator."""
    since_at = _typed_date(since) if since else None
    return metadata.journal(siret=cfa.siret if cfa else None, opco_id=opco_id, since=since_at)


def days_until(moment: datetime, now: datetime) -> int:
    """Whole calendar days between today and ``moment``, on the operator's clock."""
    return (moment.astimezone().date() - now.astimezone().date()).days
