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
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any, Literal

# read_import_file is re-exported: the import command reads its file through this module.
from cfakey.core.imports import ImportProblem, ImportRowsError, recorded_problems
from cfakey.core.imports import read_import_file as read_import_file  # noqa: PLC0414
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
    parse_date,
)

if TYPE_CHECKING:
    from cfakey.metadata import CfaRecord, JournalEntry, KeyRecord, Metadata
    from cfakey.registry.model import Opco, Registry
    from cfakey.stores.base import KeyStore

Status = Literal["expirée", "à renouveler", "valide", "sans date"]
EXPIRED: Status = "expirée"
RENEW: Status = "à renouveler"
VALID: Status = "valide"
NO_DATE: Status = "sans date"
# Lower sorts first: what needs the operator soonest comes first.
_STATUS_RANK: dict[str, int] = {EXPIRED: 0, RENEW: 1, VALID: 2, NO_DATE: 3}

# Shapes seen in public sources (domain.md): used to warn, never to refuse.
_BASE64ISH = re.compile(r"[A-Za-z0-9+/=_-]+")
_KNOWN_SHAPES: dict[str, tuple[re.Pattern[str], str]] = {
    "atlas": (
        re.compile(r"[A-Za-z0-9+/]{30,32}={0,2}"),
        "32 caractères (lettres, chiffres, + et /)",
    ),
    "afdas": (re.compile(r"[A-Za-z0-9]{64}"), "64 lettres et chiffres"),
    "opcoep": (
        re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*"),
        "un jeton JWT (eyJ….….…)",
    ),
}
SHORT_KEY = 16
LONG_KEY = 4096


# Key text ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CleanKey:
    """A key as it will be stored, and what was noticed about what the operator gave."""

    value: str
    trimmed: bool
    warnings: tuple[str, ...] = ()


def clean_key(raw: str, opco_id: str | None = None) -> CleanKey:
    """Trim surrounding whitespace; refuse what cannot be a key; warn on unusual shapes.

    ``trimmed`` says whether anything besides one final line end was removed.

    Refused: empty, whitespace inside, non-printable characters. Everything else is
    accepted, since keys are opaque to the CFA and OPCOs change formats.
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
    shape = _KNOWN_SHAPES.get(opco_id or "")
    if shape is not None and not shape[0].fullmatch(value):
        warnings.append(
            f"Forme inhabituelle pour cet OPCO (attendu : {shape[1]}) : vérifiez la clé."
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


def local_midnight(day: date) -> datetime:
    """The start of ``day`` on the operator's clock, as an aware UTC datetime."""
    return datetime.combine(day, time()).astimezone().astimezone(UTC)


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
    if result.expires_at is not None and not in_date_range(result.expires_at.date()):
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
        base.warn_days if warn is None else warn, base.crit_days if crit is None else crit
    )


def _int_setting(settings: Mapping[str, Any], name: str) -> int | None:
    from cfakey.config import window_days  # noqa: PLC0415

    value = settings.get(name)
    return None if value is None else window_days(name, value)


def check_window_args(warn_days: int | None, crit_days: int | None) -> None:
    """Refuse negative windows and a critical window wider than the warning one."""
    from cfakey.config import MAX_WINDOW_DAYS  # noqa: PLC0415

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
    status: Status
    level: int  # 0 ok, 1 warning, 2 critical (Nagios)
    fingerprint: str
    obtained_on: date
    expiry_source: str
    rotation_due: date | None = None

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
            "status": self.status,
            "fingerprint": self.fingerprint,
            "obtained": self.obtained_on.isoformat(),
            "expiry_source": self.expiry_source,
            "rotation_due": self.rotation_due.isoformat() if self.rotation_due else None,
        }


def classify(
    record: KeyRecord,
    *,
    opco: Opco | None,
    cfa_name: str,
    window: Window,
    now: datetime,
) -> KeyRow:
    """Status of one key at ``now`` within ``window``."""
    today = local_date(now)
    rotation_due: date | None = None
    days_left: int | None = None
    if record.expires_at is not None:
        days_left = (local_date(record.expires_at) - today).days
        if record.expires_at <= now:
            status, level = EXPIRED, 2
        elif days_left <= window.crit_days:
            status, level = RENEW, 2
        elif days_left <= window.warn_days:
            status, level = RENEW, 1
        else:
            status, level = VALID, 0
    else:
        status, level = NO_DATE, 0
        months = opco.expiry.recommended_rotation_months if opco is not None else None
        if months and in_date_range(record.obtained_on):
            rotation_due = add_months(record.obtained_on, months)
            if (rotation_due - today).days <= window.warn_days:
                # Advice, not an outage: never critical.
                status, level = RENEW, 1
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
    )


def urgency(row: KeyRow) -> tuple[int, float, str, str]:
    """Sort key: expired first, then fewest days left, undated last."""
    days = float("inf") if row.days_left is None else float(row.days_left)
    return (
        _STATUS_RANK[row.status] if row.status != RENEW else 1,
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


def overview(
    metadata: Metadata,
    registry: Registry,
    settings: Mapping[str, Any],
    *,
    now: datetime,
    cfa: CfaRecord | None = None,
    opco_id: str | None = None,
    warn_days: int | None = None,
    crit_days: int | None = None,
) -> Overview:
    """The rows of ``list`` and ``check``: metadata only, the key store is never opened."""
    opcos = {opco.id: opco for opco in registry.opcos}
    cfas = metadata.list_cfas()
    names = {record.siret: record.name for record in cfas}
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
        )
        for record in metadata.list_keys(cfa.siret if cfa else None, opco_id)
    ]
    rows.sort(key=urgency)
    shown_cfas = tuple(c for c in cfas if cfa is None or c.siret == cfa.siret)
    return Overview(tuple(rows), shown_cfas, filtered=cfa is not None or opco_id is not None)


@dataclass(frozen=True)
class CheckResult:
    """``check``: the Nagios level and the keys that need attention."""

    level: int
    problems: tuple[KeyRow, ...]
    checked: int

    @property
    def label(self) -> str:
        """Nagios-style label, in French."""
        return ("OK", "ALERTE", "CRITIQUE")[self.level]


def check(view: Overview) -> CheckResult:
    """Reduce an overview to a Nagios level: 0 all fine, 1 warning, 2 critical."""
    problems = tuple(row for row in view.rows if row.level > 0)
    level = max((row.level for row in problems), default=0)
    return CheckResult(level=level, problems=problems, checked=len(view.rows))


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
    from cfakey.metadata import KeyRecord, current_user  # noqa: PLC0415
    from cfakey.stores.base import fingerprint  # noqa: PLC0415

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
        action = "added" if conflicts.existing is None else "rotated"
        from cfakey.core.storage import store_key  # noqa: PLC0415

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


# Import ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportRow:
    """One validated row, ready to store."""

    number: int
    siret: str
    cfa_name: str | None
    opco: Opco
    key: CleanKey
    expiry: Expiry
    obtained: date


@dataclass(frozen=True)
class ImportPlan:
    """Every row of the file, validated; nothing is stored until :func:`run_import`."""

    rows: tuple[ImportRow, ...]
    new_cfas: tuple[tuple[str, str], ...]
    replaced: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)


def plan_import(
    rows: Sequence[Mapping[str, str]],
    metadata: Metadata,
    registry: Registry,
    *,
    now: datetime,
    replace: bool,
) -> ImportPlan:
    """Validate every row; raise one error listing every problem, or return the plan."""
    if not rows:
        raise UsageError("Le fichier ne contient aucune ligne à importer.")
    checker = _RowChecker(metadata, registry, now=now, replace=replace)
    for index, raw in enumerate(rows):
        checker.check(int(raw.get("__row__") or raw.get("__line__") or index + 2), raw)
    if checker.problems:
        if "__row__" in rows[0]:
            checker.problems = [
                dataclasses.replace(problem, unit="élément") for problem in checker.problems
            ]
        raise ImportRowsError(checker.problems)
    return ImportPlan(
        tuple(checker.planned), tuple(checker.new_cfas.items()), tuple(checker.replaced)
    )


class _RowChecker:
    """Validates import rows one by one, remembering what earlier rows used."""

    def __init__(
        self, metadata: Metadata, registry: Registry, *, now: datetime, replace: bool
    ) -> None:
        self.metadata = metadata
        self.registry = registry
        self.now = now
        self.today = now.astimezone().date()
        self.replace = replace
        self.known_cfas = {record.siret for record in metadata.list_cfas()}
        self.problems: list[ImportProblem] = []
        self.planned: list[ImportRow] = []
        self.new_cfas: dict[str, str] = {}
        self.replaced: list[tuple[str, str]] = []
        self.seen_slots: dict[tuple[str, str], int] = {}
        self.seen_keys: dict[str, tuple[int, str, str]] = {}

    def check(self, number: int, raw: Mapping[str, str]) -> None:
        if "__extra__" in raw:
            self.problems.append(ImportProblem(number, "*", "plus de valeurs que de colonnes"))
            return
        recorded = recorded_problems(raw, number)
        found: list[ImportProblem] = []
        siret = self._siret(number, raw, found)
        opco = self._opco(number, raw, found)
        cfa_name = self._cfa_name(number, raw, found)
        key: CleanKey | None = None
        try:
            key = clean_key(raw.get("key") or "", opco.id if opco else None)
        except UsageError as error:
            found.append(ImportProblem(number, "key", _first_sentence(error.message)))
        obtained = self._obtained(number, raw, found)
        expiry: Expiry | None = None
        expires_text = self._expires_text(number, raw, found)
        if opco is not None and key is not None:
            try:
                expiry = resolve_expiry(
                    opco, key.value, obtained=obtained, now=self.now, expires=expires_text
                )
            except UsageError as error:
                found.append(ImportProblem(number, "expires", _first_sentence(error.message)))
        if recorded:
            # A field that failed its own check was left out: say why, not that it is missing.
            bad = {problem.column for problem in recorded}
            found = recorded + [problem for problem in found if problem.column not in bad]
        if found or opco is None or key is None or expiry is None:
            self.problems.extend(found)
            return
        if self._duplicate(number, siret, opco, key) or self._stored_elsewhere(
            number, siret, opco, key
        ):
            return
        if siret not in self.known_cfas:
            self.new_cfas.setdefault(siret, cfa_name or f"CFA {siret}")
        elif self.metadata.get_key(siret, opco.id) is not None:
            if not self.replace:
                message = (
                    f"une clé {opco.id} est déjà enregistrée pour ce CFA (--yes pour la remplacer)"
                )
                self.problems.append(ImportProblem(number, "opco", message, conflict=True))
                return
            self.replaced.append((siret, opco.id))
        self.planned.append(ImportRow(number, siret, cfa_name, opco, key, expiry, obtained))

    def _stored_elsewhere(self, number: int, siret: str, opco: Opco, key: CleanKey) -> bool:
        """The key is already stored for another slot: refused as ``add`` does, unless --yes."""
        from cfakey.stores.base import fingerprint  # noqa: PLC0415

        others = same_key_elsewhere(
            self.metadata, self.registry, siret, opco.id, fingerprint(key.value)
        )
        if not others or self.replace:
            return False
        message = (
            f"clé déjà enregistrée pour {describe_slots(others)} : une clé collée au mauvais "
            "endroit ? (--yes pour l'enregistrer quand même)"
        )
        self.problems.append(ImportProblem(number, "key", message, conflict=True))
        return True

    def _siret(self, number: int, raw: Mapping[str, str], found: list[ImportProblem]) -> str:
        from cfakey.identifiers import validate_siret  # noqa: PLC0415

        try:
            return validate_siret(raw.get("cfa") or "")
        except UsageError as error:
            found.append(ImportProblem(number, "cfa", _first_sentence(error.message)))
            return ""

    def _opco(self, number: int, raw: Mapping[str, str], found: list[ImportProblem]) -> Opco | None:
        from cfakey.registry.names import resolve  # noqa: PLC0415

        try:
            return resolve(self.registry, raw.get("opco") or "")
        except UsageError as error:
            found.append(ImportProblem(number, "opco", _first_sentence(error.message)))
            return None

    def _cfa_name(
        self, number: int, raw: Mapping[str, str], found: list[ImportProblem]
    ) -> str | None:
        from cfakey.identifiers import clean_cfa_name  # noqa: PLC0415

        text = raw.get("cfa_name") or ""
        if not text.strip():
            return None
        try:
            return clean_cfa_name(text)
        except UsageError as error:
            found.append(ImportProblem(number, "cfa_name", _first_sentence(error.message)))
            return None

    def _obtained(self, number: int, raw: Mapping[str, str], found: list[ImportProblem]) -> date:
        text = (raw.get("obtained") or "").strip()
        if not text:
            return self.today
        try:
            obtained = parse_date(text).date()
        except UsageError as error:
            found.append(ImportProblem(number, "obtained", _first_sentence(error.message)))
            return self.today
        if obtained > self.today:
            found.append(ImportProblem(number, "obtained", "date d'obtention dans le futur"))
        return obtained

    def _expires_text(
        self, number: int, raw: Mapping[str, str], found: list[ImportProblem]
    ) -> str | None:
        text = (raw.get("expires") or "").strip() or None
        if text is not None:
            try:
                parse_date(text)
            except UsageError as error:
                found.append(ImportProblem(number, "expires", _first_sentence(error.message)))
                return None
        return text

    def _duplicate(self, number: int, siret: str, opco: Opco, key: CleanKey) -> bool:
        from cfakey.stores.base import fingerprint  # noqa: PLC0415

        slot = (siret, opco.id)
        if slot in self.seen_slots:
            message = f"doublon : même CFA et même OPCO qu'à la ligne {self.seen_slots[slot]}"
            self.problems.append(ImportProblem(number, "opco", message))
            return True
        self.seen_slots[slot] = number
        fp = fingerprint(key.value)
        other = self.seen_keys.get(fp)
        # A SIREN-wide key (Afdas, OPCO Santé...) is rightly repeated for each SIRET of the SIREN.
        if other is not None and not (
            other[2] == opco.id and opco.scope == "siren" and other[1][:9] == siret[:9]
        ):
            self.problems.append(ImportProblem(number, "key", f"même clé qu'à la ligne {other[0]}"))
            return True
        self.seen_keys.setdefault(fp, (number, siret, opco.id))
        return False


def _first_sentence(message: str) -> str:
    head = message.split(" : rien n'a été", 1)[0].split(". ", 1)[0].rstrip(".")
    if head[1:2].isupper():  # an acronym: SIRET, OPCO
        return head
    return head[:1].lower() + head[1:]


@dataclass(frozen=True)
class ImportResult:
    """What the import stored."""

    imported: int
    new_cfas: int
    replaced: int


def run_import(
    store: KeyStore, metadata: Metadata, plan: ImportPlan, *, now: datetime
) -> ImportResult:
    """Store every planned key in one store session, then all metadata in one transaction.

    Each entry's intent is recorded first (:func:`cfakey.core.storage.apply_changes`): if
    the metadata cannot be written the store entries are put back and checked, and what
    cannot be put back is resolved by the next command.
    """
    from cfakey.core.storage import Change, apply_changes  # noqa: PLC0415
    from cfakey.metadata import KeyRecord, current_user  # noqa: PLC0415
    from cfakey.stores.base import fingerprint  # noqa: PLC0415

    user = current_user()
    stored_at = now.astimezone(UTC).replace(microsecond=0)
    for row in plan.rows:  # a key the store cannot hold stops the import before any write
        store.check_secret(row.key.value)
    new_cfas = dict(plan.new_cfas)
    changes = [
        Change(
            row.siret,
            row.opco.id,
            "imported",
            row.key.value,
            KeyRecord(
                siret=row.siret,
                opco_id=row.opco.id,
                obtained_on=row.obtained,
                stored_at=stored_at,
                expires_at=row.expiry.expires_at,
                expiry_source=row.expiry.source,
                fingerprint=fingerprint(row.key.value),
                os_user=user,
                store=store.kind,
            ),
            detail=f"ligne {row.number}",
            cfa_name=new_cfas.get(row.siret),
        )
        for row in plan.rows
    ]
    apply_changes(store, metadata, changes)
    return ImportResult(
        imported=len(plan.rows), new_cfas=len(plan.new_cfas), replaced=len(plan.replaced)
    )


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
