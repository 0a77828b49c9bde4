"""``cfakey doctor``: is everything in place, and if not, which command fixes it.

Doctor never stops at the first thing broken: a bad ``CFAKEY_STORE``, a damaged
``config.json``, registry or database each become a problem with its fix, and the other
checks still run. It never asks anything (no store choice) and writes only to finish
what was interrupted: unfinished store changes (``core/recovery.py``) and the temporary
files, holding keys, that killed ``export``/``inject`` runs left where they wrote.
"""

from __future__ import annotations

import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from cfakey.core.codes import DatabaseCheck, DataPath
from cfakey.core.team_sync import repair
from cfakey.errors import CfakeyError
from cfakey.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from cfakey.stores.base import entry_name, fingerprint
from cfakey.stores.kinds import FALLBACK_KIND, label_of

if TYPE_CHECKING:
    from cfakey.config import Config
    from cfakey.core.recovery import RecoveryReport
    from cfakey.metadata import KeyRecord, Metadata
    from cfakey.paths import Paths
    from cfakey.registry.loader import RegistrySource
    from cfakey.registry.model import Registry
    from cfakey.stores.base import KeyStore
    from cfakey.stores.keyring_store import KeyringProbe
    from cfakey.stores.selection import StoreDecision

T = TypeVar("T")

#: ``DoctorReport.database_check``: SQLite's quick check found nothing, found damage,
#: or could not run (the database did not open); labels in ``core/codes.DatabaseCheck``.
DATABASE_OK: str = DatabaseCheck.OK.value
DATABASE_DAMAGED: str = DatabaseCheck.DAMAGED.value
DATABASE_UNCHECKED: str = DatabaseCheck.UNCHECKED.value


@dataclass(frozen=True)
class DoctorInputs:
    """What doctor examines. Each is a callable: one failing must not stop the others."""

    paths: Paths
    config: Callable[[], Config]
    registry: Callable[[], tuple[RegistrySource, Registry]]
    store_decision: Callable[[], StoreDecision]
    keyring_probe: Callable[[], KeyringProbe]
    metadata: Callable[[], Metadata]
    #: The store in service; it must neither ask anything nor remember a choice.
    key_store: Callable[[], KeyStore]
    #: What opening the store found unfinished and did about it (after ``key_store``).
    recovery: Callable[[], RecoveryReport | None]
    #: Another kind's store, opened without asking anything (``None``: it cannot be), to
    #: compare the keys recorded there; it raises a ``CfakeyError`` when it cannot be read.
    other_store: Callable[[str], KeyStore | None] = lambda _kind: None


@dataclass(frozen=True)
class Problem:
    """Something wrong, in French, and the command that fixes it."""

    message: str
    fix: str


@dataclass(frozen=True)
class PathStatus:
    """One of cfakey's directories or files, with its permissions."""

    #: Its identifier (``DataPath``) in ``doctor --json``.
    name: str
    label: str
    path: str
    exists: bool
    mode: str | None
    private: bool


@dataclass(frozen=True)
class RejectedBackend:
    """A keyring backend keyring ruled out, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class DoctorReport:
    """Everything ``doctor`` checked; healthy when there is no problem."""

    store: str | None
    store_origin: str | None
    store_reason: str | None
    store_description: str | None
    keyring_backend: str | None
    keyring_chosen_by: str | None
    keyring_usable: bool | None
    keyring_reason: str | None
    keyring_rejected: tuple[RejectedBackend, ...]
    paths: tuple[PathStatus, ...]
    registry_shipped: str | None
    registry_overlay: str | None
    registry_version: str | None
    registry_opcos: int | None
    keys_checked: int
    missing_secrets: tuple[str, ...]
    orphan_entries: tuple[str, ...] | None
    database_check: str = DATABASE_UNCHECKED
    problems: tuple[Problem, ...] = field(default=())
    #: Store entries whose secret does not have the fingerprint its metadata records.
    mismatched: tuple[str, ...] = ()
    #: What finishing interrupted changes did (French sentences), before the checks.
    recovered: tuple[str, ...] = ()
    #: Entries absent from the store in service whose metadata says another store has them.
    elsewhere: tuple[str, ...] = ()
    #: Temporary files (holding keys) that killed ``export``/``inject`` runs left: removed.
    removed_temporaries: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        """No problem found."""
        return not self.problems


def _add(problems: list[Problem], problem: Problem) -> None:
    """Record a problem once (a damaged config.json is met by several checks)."""
    if all(known.message != problem.message for known in problems):
        problems.append(problem)


def _guarded(problems: list[Problem], check: Callable[[], T], fix: str) -> T | None:
    """Run one check; a cfakey error becomes a problem (its hint, else ``fix``) and ``None``."""
    try:
        return check()
    except CfakeyError as error:
        # An unreadable value's usual hint sends to doctor: here, its remedy itself.
        remedy = getattr(error, "remedy", None)
        _add(problems, Problem(error.message, remedy or error.hint or fix))
        return None


def _path_status(place: DataPath, path: Path, wanted: int, problems: list[Problem]) -> PathStatus:
    label = place.label
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):
        return PathStatus(place.value, label, str(path), exists=False, mode=None, private=True)
    except OSError as error:
        _add(problems, Problem(f"{label} ({path}) est inaccessible ({error.strerror}).", _ACCESS))
        return PathStatus(place.value, label, str(path), exists=False, mode=None, private=True)
    private = mode & 0o077 == 0
    if not private:
        problems.append(
            Problem(
                f"{label} ({path}) est lisible par d'autres utilisateurs (mode {mode:o}).",
                f"chmod {wanted:o} {path}",
            )
        )
    return PathStatus(place.value, label, str(path), exists=True, mode=f"{mode:o}", private=private)


_ACCESS = "vérifiez les droits du dossier, ou choisissez-en un autre avec CFAKEY_HOME"


def _check_settings(config: Config, problems: list[Problem]) -> None:
    """Each known setting through the check its commands apply (``list`` refuses a negative
    ``warn_days``, ``verify`` an ``http://`` address): doctor names what they would refuse.

    A setting cfakey does not know is left alone: no command reads it.
    """
    from cfakey.config import describe_key
    from cfakey.core.settings import INT_SUFFIXES, coerce

    for key, value in sorted(config.values.items()):
        days = key.endswith(INT_SUFFIXES)
        if describe_key(key) is None or value is None or (not days and not str(value).strip()):
            continue  # unknown, or an empty text the commands read as not set
        # The commands read days as they are stored, and any other value as text.
        given = value if days or isinstance(value, str) else str(value)
        try:
            coerce(key, given)
        except CfakeyError as error:
            _add(problems, Problem(error.message, f"cfakey config unset {key}"))


def _paths(paths: Paths, problems: list[Problem]) -> tuple[PathStatus, ...]:
    return (
        _path_status(DataPath.CONFIG_DIR, paths.config_dir, PRIVATE_DIR_MODE, problems),
        _path_status(DataPath.CONFIG_FILE, paths.config_file, PRIVATE_FILE_MODE, problems),
        _path_status(DataPath.DATA_DIR, paths.data_dir, PRIVATE_DIR_MODE, problems),
        _path_status(DataPath.METADATA_DB, paths.metadata_db, PRIVATE_FILE_MODE, problems),
        _path_status(DataPath.ENCRYPTED_STORE, paths.encrypted_store, PRIVATE_FILE_MODE, problems),
    )


def _check_database(metadata: Metadata, problems: list[Problem]) -> str:
    """SQLite's quick check: damage that the queries of this run did not reach."""
    from cfakey.metadata import damage_hint

    found = _guarded(problems, metadata.integrity_problems, damage_hint(metadata.path))
    if found is None:
        return DATABASE_DAMAGED
    if found:
        _add(
            problems,
            Problem(
                f"La base de métadonnées {metadata.path} est endommagée : la vérification "
                f"d'intégrité de SQLite signale {len(found)} anomalie(s).",
                damage_hint(metadata.path),
            ),
        )
        return DATABASE_DAMAGED
    return DATABASE_OK


@dataclass
class _StoreCheck:
    """What comparing the store with the metadata found."""

    description: str | None = None
    missing: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    orphans: tuple[str, ...] | None = None
    #: Keys compared, counted after recovery (which may have completed removals).
    checked: int | None = None
    #: Team keys whose engine metadata was described anew (``team_sync.repair``).
    repaired: list[str] = field(default_factory=list)


def _check_store(
    inputs: DoctorInputs, records: list[KeyRecord] | None, problems: list[Problem]
) -> _StoreCheck:
    """The store's description, secrets missing or different from their metadata, orphans.

    ``records`` is ``None`` when the metadata cannot be read: then nothing is compared,
    rather than calling every key of the store an orphan.
    """
    found = _StoreCheck()
    try:
        store = inputs.key_store()
        found.description = store.describe()
        if records is None:
            return found
        metadata = inputs.metadata()
        found.repaired = [
            f"Clé {entry} du coffre partagé : ses métadonnées, restées sur une version "
            "précédente (écriture interrompue), décrivent de nouveau la version actuelle."
            for entry in repair(metadata, store)
        ]
        records = metadata.list_keys()  # after recovery, which may have completed some
        found.checked = len(records)
        with metadata.lock(), store.batch():
            _compare_secrets(store, records, found, problems)
            entries = store.entries()
            _compare_elsewhere(inputs, records, store.kind, found, problems)
        if entries is not None:
            found.orphans = _orphans(entries, records, problems)
    except CfakeyError as error:
        problems.append(
            Problem(
                f"Magasin de clés inutilisable : {error.message}",
                error.hint or f"cfakey store use {FALLBACK_KIND}",
            )
        )
    return found


def _compare_secrets(
    store: KeyStore, records: list[KeyRecord], found: _StoreCheck, problems: list[Problem]
) -> None:
    """Each described key must be in the store, with the fingerprint its metadata records."""
    for record in records:
        entry = entry_name(record.siret, record.opco_id)
        secret = store.get(entry)
        if secret is None and record.store != store.kind:
            found.elsewhere.append(entry)
            problems.append(_elsewhere(record, store.kind))
        elif secret is None:
            found.missing.append(entry)
            problems.append(
                Problem(
                    f"La clé {record.opco_id} du CFA {record.siret} figure dans les "
                    "métadonnées mais plus dans le magasin de clés.",
                    f"cfakey add {record.opco_id} --cfa {record.siret}  "
                    f"(ou cfakey remove {record.opco_id} --cfa {record.siret} --yes)",
                )
            )
        elif fingerprint(secret) != record.fingerprint:
            found.mismatched.append(entry)
            problems.append(_mismatch(record.siret, record.opco_id, record.fingerprint))


def _compare_elsewhere(
    inputs: DoctorInputs,
    records: list[KeyRecord],
    in_service: str,
    found: _StoreCheck,
    problems: list[Problem],
) -> None:
    """Keys recorded in another store: compared there too, when it opens without asking."""
    by_kind: dict[str, list[KeyRecord]] = {}
    for record in records:
        if record.store != in_service:
            by_kind.setdefault(record.store, []).append(record)
    for kind, recorded in by_kind.items():
        try:
            other = inputs.other_store(kind)
            if other is None:
                continue
            with other:
                secrets = {r: other.get(entry_name(r.siret, r.opco_id)) for r in recorded}
        except CfakeyError:
            continue  # locked, no password or token here: said by the « elsewhere » problem
        for record, secret in secrets.items():
            entry = entry_name(record.siret, record.opco_id)
            if secret is None:
                found.missing.append(entry)
                problems.append(_missing(record, kind))
            elif fingerprint(secret) != record.fingerprint:
                found.mismatched.append(entry)
                problems.append(_mismatch(record.siret, record.opco_id, record.fingerprint))


def _missing(record: KeyRecord, kind: str) -> Problem:
    return Problem(
        f"La clé {record.opco_id} du CFA {record.siret} figure dans les métadonnées mais "
        f"plus dans {label_of(kind)}, où elles la rangent.",
        f"cfakey --store {kind} add {record.opco_id} --cfa {record.siret}",
    )


def _orphans(
    entries: list[str], records: list[KeyRecord], problems: list[Problem]
) -> tuple[str, ...]:
    """Store entries no metadata describes (OAuth client secrets aside)."""
    known = {entry_name(record.siret, record.opco_id) for record in records}
    orphans = tuple(
        sorted(
            e for e in entries if e not in known and "/" in e and not e.startswith("oauth-client/")
        )
    )
    problems.extend(
        Problem(
            f"Le magasin contient une clé sans métadonnées ({entry}).",
            "la saisir à nouveau pour la décrire : "
            f"cfakey add {entry.split('/')[1]} --cfa {entry.split('/')[0]}",
        )
        for entry in orphans
    )
    return orphans


def diagnose(inputs: DoctorInputs) -> DoctorReport:
    """Check the store choice, the keyring, paths, registry, database and their agreement."""
    from cfakey.paths import remove_abandoned_outputs

    problems: list[Problem] = []
    removed = remove_abandoned_outputs(inputs.paths.pending_outputs)
    path_statuses = _paths(inputs.paths, problems)
    config_file = inputs.paths.config_file
    put_aside = f"mv {config_file} {config_file}.ancien"
    config_fix = f"corrigez {config_file} (JSON), ou mettez-le de côté : {put_aside}"
    config = _guarded(problems, inputs.config, config_fix)
    if config is not None:
        _check_settings(config, problems)
    registry = _guarded(
        problems,
        inputs.registry,
        "corrigez la surcouche du registre (option --registry ou variable CFAKEY_REGISTRY)",
    )
    decision = _guarded(problems, inputs.store_decision, config_fix)
    probe = inputs.keyring_probe()
    metadata = _guarded(problems, inputs.metadata, _ACCESS)
    records = _guarded(problems, metadata.list_keys, _ACCESS) if metadata else None
    database_check = _check_database(metadata, problems) if metadata else DATABASE_UNCHECKED
    if metadata and records is not None:
        _check_expiries(metadata, problems)
    # Without a valid choice there is no store to check: the choice is the problem.
    checked = _check_store(inputs, records, problems) if decision else _StoreCheck()
    recovery = inputs.recovery()
    source, loaded = registry if registry else (None, None)
    return DoctorReport(
        store=decision.kind if decision else None,
        store_origin=decision.origin if decision else None,
        store_reason=decision.reason if decision else None,
        store_description=checked.description,
        keyring_backend=probe.backend,
        keyring_chosen_by=probe.chosen_by,
        keyring_usable=probe.usable,
        keyring_reason=probe.reason,
        keyring_rejected=tuple(
            RejectedBackend(candidate.name, candidate.reason or "") for candidate in probe.rejected
        ),
        paths=path_statuses,
        registry_shipped=str(source.shipped) if source else None,
        registry_overlay=str(source.overlay) if source and source.overlay else None,
        registry_version=loaded.version if loaded else None,
        registry_opcos=len(loaded.opcos) if loaded else None,
        keys_checked=len(records or []) if checked.checked is None else checked.checked,
        missing_secrets=tuple(checked.missing),
        orphan_entries=checked.orphans,
        database_check=database_check,
        problems=tuple(problems + _unfinished(recovery)),
        mismatched=tuple(checked.mismatched),
        recovered=(*(recovery.messages() if recovery else ()), *checked.repaired),
        elsewhere=tuple(checked.elsewhere),
        removed_temporaries=tuple(str(path) for path in removed),
    )


def _check_expiries(metadata: Metadata, problems: list[Problem]) -> None:
    """Keys listed « sans date » because their stored expiry cannot be used."""
    unusable = _guarded(problems, metadata.unusable_expiries, _ACCESS) or []
    problems.extend(
        Problem(
            f"La date d'échéance enregistrée de la clé {opco_id} du CFA {siret} est illisible "
            "ou hors de la plage acceptée : la clé est listée « sans date », sans alerte "
            "avant son expiration.",
            f"enregistrez-la de nouveau avec sa date d'échéance : "
            f"cfakey rotate {opco_id} --cfa {siret}",
        )
        for siret, opco_id in unusable
    )


def _mismatch(siret: str, opco_id: str, expected: str) -> Problem:
    return Problem(
        f"La clé {opco_id} du CFA {siret} dans le magasin n'a pas l'empreinte que donnent "
        f"ses métadonnées ({expected}) : elles décrivent une autre clé.",
        f"saisir la bonne clé : cfakey rotate {opco_id} --cfa {siret}",
    )


def _elsewhere(record: KeyRecord, in_service: str) -> Problem:
    """A key its metadata places in another store than the one in service."""
    return Problem(
        f"La clé {record.opco_id} du CFA {record.siret} a été rangée dans "
        f"{label_of(record.store)}, pas dans {label_of(in_service)} en service.",
        f"cfakey --store {record.store} show {record.opco_id} --cfa {record.siret}  "
        f"(ou revenir à ce magasin : cfakey store use {record.store})",
    )


def _unfinished(report: RecoveryReport | None) -> list[Problem]:
    """Interrupted changes that could not be resolved with the store in service."""
    if report is None:
        return []
    return [
        Problem(
            f"Opération interrompue sur la clé {p.opco_id} du CFA {p.siret}, écrite dans un "
            f"autre magasin ({p.store}).",
            f"cfakey --store {p.store} doctor",
        )
        for p in report.other_store
    ]
