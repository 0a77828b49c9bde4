"""``cfakey doctor``: is everything in place, and if not, which command fixes it."""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cfakey.errors import CfakeyError
from cfakey.paths import PRIVATE_DIR_MODE, PRIVATE_FILE_MODE
from cfakey.stores.base import entry_name, fingerprint

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.stores.keyring_store import KeyringProbe


@dataclass(frozen=True)
class Problem:
    """Something wrong, in French, and the command that fixes it."""

    message: str
    fix: str


@dataclass(frozen=True)
class PathStatus:
    """One of cfakey's directories or files, with its permissions."""

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
    store_origin: str
    store_reason: str
    store_description: str | None
    keyring_backend: str | None
    keyring_chosen_by: str | None
    keyring_usable: bool | None
    keyring_reason: str | None
    keyring_rejected: tuple[RejectedBackend, ...]
    paths: tuple[PathStatus, ...]
    registry_shipped: str
    registry_overlay: str | None
    registry_version: str
    registry_opcos: int
    keys_checked: int
    missing_secrets: tuple[str, ...]
    orphan_entries: tuple[str, ...] | None
    problems: tuple[Problem, ...] = field(default=())
    #: Store entries whose secret does not have the fingerprint its metadata records.
    mismatched: tuple[str, ...] = ()
    #: What finishing interrupted changes did (French sentences), before the checks.
    recovered: tuple[str, ...] = ()

    @property
    def healthy(self) -> bool:
        """No problem found."""
        return not self.problems


def _path_status(label: str, path: Path, wanted: int, problems: list[Problem]) -> PathStatus:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return PathStatus(label, str(path), exists=False, mode=None, private=True)
    private = mode & 0o077 == 0
    if not private:
        problems.append(
            Problem(
                f"{label} ({path}) est lisible par d'autres utilisateurs (mode {mode:o}).",
                f"chmod {wanted:o} {path}",
            )
        )
    return PathStatus(label, str(path), exists=True, mode=f"{mode:o}", private=private)


def _probe_keyring() -> KeyringProbe | None:
    from cfakey.stores.keyring_store import probe_keyring  # noqa: PLC0415

    try:
        return probe_keyring()
    except CfakeyError:
        return None


def diagnose(context: AppContext) -> DoctorReport:
    """Check the store choice, the keyring, paths, registry and metadata/store agreement."""
    problems: list[Problem] = []
    paths = context.paths
    path_statuses = (
        _path_status("Dossier de configuration", paths.config_dir, PRIVATE_DIR_MODE, problems),
        _path_status("Fichier de configuration", paths.config_file, PRIVATE_FILE_MODE, problems),
        _path_status("Dossier de données", paths.data_dir, PRIVATE_DIR_MODE, problems),
        _path_status("Métadonnées (SQLite)", paths.metadata_db, PRIVATE_FILE_MODE, problems),
        _path_status("Fichier chiffré", paths.encrypted_store, PRIVATE_FILE_MODE, problems),
    )
    registry = context.registry
    source = context.registry_source
    decision = context.store_decision()
    probe = decision.keyring or _probe_keyring()

    description: str | None = None
    missing: list[str] = []
    mismatched: list[str] = []
    orphans: tuple[str, ...] | None = None
    metadata = context.metadata()
    records = metadata.list_keys()
    try:
        store = context.key_store()
        description = store.describe()
        records = metadata.list_keys()  # after recovery, which may have completed some
        with metadata.lock(), store.batch():
            for record in records:
                secret = store.get(entry_name(record.siret, record.opco_id))
                if secret is not None and fingerprint(secret) != record.fingerprint:
                    mismatched.append(entry_name(record.siret, record.opco_id))
                    problems.append(_mismatch(record.siret, record.opco_id, record.fingerprint))
                if secret is None:
                    missing.append(entry_name(record.siret, record.opco_id))
                    problems.append(
                        Problem(
                            f"La clé {record.opco_id} du CFA {record.siret} figure dans les "
                            "métadonnées mais plus dans le magasin de clés.",
                            f"cfakey add {record.opco_id} --cfa {record.siret}  "
                            f"(ou cfakey remove {record.opco_id} --cfa {record.siret} --yes)",
                        )
                    )
            entries = store.entries()
        if entries is not None:
            known = {entry_name(record.siret, record.opco_id) for record in records}
            orphans = tuple(
                sorted(
                    e
                    for e in entries
                    if e not in known and "/" in e and not e.startswith("oauth-client/")
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
    except CfakeyError as error:
        problems.append(
            Problem(
                f"Magasin de clés inutilisable : {error.message}",
                error.hint or "cfakey store use file",
            )
        )

    return DoctorReport(
        store=decision.kind,
        store_origin=decision.origin,
        store_reason=decision.reason,
        store_description=description,
        keyring_backend=probe.backend if probe else None,
        keyring_chosen_by=probe.chosen_by if probe else None,
        keyring_usable=probe.usable if probe else None,
        keyring_reason=probe.reason if probe else None,
        keyring_rejected=tuple(
            RejectedBackend(candidate.name, candidate.reason or "")
            for candidate in (probe.rejected if probe else ())
        ),
        paths=path_statuses,
        registry_shipped=str(source.shipped),
        registry_overlay=str(source.overlay) if source.overlay else None,
        registry_version=registry.version,
        registry_opcos=len(registry.opcos),
        keys_checked=len(records),
        missing_secrets=tuple(missing),
        orphan_entries=orphans,
        problems=tuple(problems + _unfinished(context)),
        mismatched=tuple(mismatched),
        recovered=tuple(context.recovery.messages()) if context.recovery else (),
    )


def _mismatch(siret: str, opco_id: str, expected: str) -> Problem:
    return Problem(
        f"La clé {opco_id} du CFA {siret} dans le magasin n'a pas l'empreinte que donnent "
        f"ses métadonnées ({expected}) : elles décrivent une autre clé.",
        f"saisir la bonne clé : cfakey rotate {opco_id} --cfa {siret}",
    )


def _unfinished(context: AppContext) -> list[Problem]:
    """Interrupted changes that could not be resolved with the store in service."""
    report = context.recovery
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
