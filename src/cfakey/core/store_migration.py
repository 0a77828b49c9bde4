"""``cfakey store migrate``: every key of the store in service copied to another, then switched.

The copy is made under the data lock, in chunks: each chunk is written to the target,
read back and compared by fingerprint with the metadata, and only then does each key's
metadata name the target (with one journal entry per key). The recorded store changes
last, once every key is there. An interruption leaves the keys copied so far recorded in
the target and the others in the source, both readable; a rerun skips what is already
there with the right fingerprint and copies the rest. Nothing is deleted from the
source. A key already in the target with another fingerprint is never replaced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cfakey.core.codes import JournalAction
from cfakey.core.store_admin import checked_options, described_entries, settle_store, use_store
from cfakey.errors import AlreadyExistsError, DataCorruptedError, UsageError
from cfakey.stores.base import fingerprint
from cfakey.stores.kinds import STORE_KINDS, StoreKind

if TYPE_CHECKING:
    from cfakey.config import Config
    from cfakey.metadata import KeyRecord, Metadata
    from cfakey.stores.base import KeyStore

#: Keys copied, read back and recorded together: the most an interruption leaves unrecorded.
CHUNK = 100


@dataclass
class MigrationReport:
    """What ``store migrate`` did, by entry name (never a key)."""

    source: StoreKind
    target: StoreKind
    location: str = ""
    copied: list[str] = field(default_factory=list)
    #: Already in the target with the fingerprint of the metadata (an earlier, interrupted run).
    present: list[str] = field(default_factory=list)
    #: In the target with another fingerprint: not replaced, the store is not switched.
    conflicts: list[str] = field(default_factory=list)
    #: Described but absent from the source, or with another fingerprint there.
    unreadable: list[str] = field(default_factory=list)
    #: Keys recorded in a third store: left where they are.
    elsewhere: int = 0


def migrate_store(
    config: Config,
    metadata: Metadata,
    source: KeyStore,
    *,
    kind_name: str,
    options: Mapping[str, str | None],
    open_target: Callable[[str, Mapping[str, str]], KeyStore],
    opco_ids: Iterable[str],
) -> MigrationReport:
    """Copy every key and OAuth client secret of ``source`` to the store ``kind_name``.

    ``options``: the target's settings given on the command line, checked as ``store use``
    checks them; ``open_target(kind, settings)`` opens the target with them. The recorded
    store is switched only when every key is in the target with its fingerprint.
    """
    kind, settings = checked_options(config, kind_name, options)
    if kind.name == source.kind:
        raise UsageError(
            f"Le magasin en service est déjà {kind.label} : rien à déplacer.",
            hint="cfakey store use … pour seulement changer ses réglages.",
        )
    opco_ids = list(opco_ids)
    with open_target(kind.name, settings) as target:
        settle_store(target, metadata, opco_ids)
        report = MigrationReport(STORE_KINDS[source.kind], kind, target.location())
        with metadata.lock():
            _copy_all(source, target, metadata, opco_ids, report)
    _refuse_if_incomplete(report)
    use_store(config, kind.name, options)
    metadata.log(
        JournalAction.STORE_MIGRATED.id,
        detail=f"{source.kind} → {kind.name} ({report.location}) : magasin retenu",
    )
    return report


def _copy_all(
    source: KeyStore,
    target: KeyStore,
    metadata: Metadata,
    opco_ids: list[str],
    report: MigrationReport,
) -> None:
    """Copy, chunk by chunk, what the metadata says is in the source (or already moved)."""
    records = {f"{r.siret}/{r.opco_id}": r for r in metadata.list_keys()}
    wanted = {
        entry: expected
        for entry, expected in described_entries(metadata, opco_ids).items()
        if entry not in records or records[entry].store in (source.kind, target.kind)
    }
    report.elsewhere = len(records) - sum(1 for entry in wanted if entry in records)
    items = list(wanted.items())
    with source.batch():
        for start in range(0, len(items), CHUNK):
            chunk = dict(items[start : start + CHUNK])
            verified = _copy_chunk(source, target, chunk, report)
            _record(metadata, [records[e] for e in verified if e in records], source, target)


def _copy_chunk(
    source: KeyStore, target: KeyStore, chunk: Mapping[str, str | None], report: MigrationReport
) -> list[str]:
    """Write the chunk's missing entries to the target, then read each back; the verified."""
    written: dict[str, str] = {}
    with target.batch():
        for entry, expected in chunk.items():
            secret = source.get(entry)
            there = target.get(entry)
            if secret is None and expected is None:
                continue  # no OAuth client secret for this OPCO
            if there is not None and fingerprint(there) == (expected or fingerprint(secret or "")):
                report.present.append(entry)
            elif there is not None:
                report.conflicts.append(entry)
            elif secret is None or (expected is not None and fingerprint(secret) != expected):
                report.unreadable.append(entry)
            else:
                if (catalog := target.catalog()) is not None:
                    catalog.keep_lease(entry)  # a team store: readers learn a change is coming
                target.put(entry, secret)
                written[entry] = secret
    with target.batch():  # read back after the batch has written (one decryption)
        for entry, secret in written.items():
            if target.get(entry) != secret:
                raise DataCorruptedError(
                    f"La copie de {entry} dans {report.target.label} ne se relit pas "
                    "avec la même empreinte : le magasin retenu n'a pas changé.",
                    hint="Relancez cfakey store migrate ; cfakey doctor pour diagnostiquer.",
                )
            report.copied.append(entry)
    return [e for e in chunk if e in written or e in report.present]


def _record(
    metadata: Metadata, records: list[KeyRecord], source: KeyStore, target: KeyStore
) -> None:
    """Each verified key's metadata names the target now, journalled in one transaction."""
    moved = [record for record in records if record.store != target.kind]
    if not moved:
        return
    catalog = target.catalog()
    if catalog is not None:  # a team store: the metadata and the journal go there too
        from cfakey.core.team_sync import publish_moved

        publish_moved(catalog, target, metadata, moved, f"{source.kind} → {target.kind}")
    with metadata.transaction():
        for record in moved:
            metadata.put_key(dataclasses.replace(record, store=target.kind))
            metadata.log(
                JournalAction.STORE_MIGRATED.id,
                siret=record.siret,
                opco_id=record.opco_id,
                new_fingerprint=record.fingerprint,
                detail=f"{source.kind} → {target.kind}",
            )


def _named(entries: list[str]) -> str:
    """« 3 clé(s) (a, b, c) », at most five named."""
    return f"{len(entries)} clé(s) ({', '.join(entries[:5])}{' …' if len(entries) > 5 else ''})"


def _refuse_if_incomplete(report: MigrationReport) -> None:
    """Some keys could not be copied: say which, and keep the recorded store."""
    kept = "le magasin retenu n'a pas changé"
    if report.conflicts:
        raise AlreadyExistsError(
            f"{_named(report.conflicts)} : elles existent déjà dans {report.target.label} "
            f"avec une autre empreinte et n'ont pas été remplacées ; {kept}.",
            hint="Voyez avec qui les a rangées là ; les autres clés ont été copiées.",
        )
    if report.unreadable:
        raise DataCorruptedError(
            f"{_named(report.unreadable)} : décrites dans les métadonnées, elles sont absentes "
            f"de {report.source.label} ou n'y ont pas leur empreinte ; {kept}.",
            hint="cfakey doctor les nomme ; les autres clés ont été copiées.",
        )
