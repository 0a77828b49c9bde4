"""The team store's catalog: published by every writer, cached by every reader, never stale.

With a shared store (OpenBao / Vault KV v2) the engine is the truth for everything a
teammate needs (:mod:`cfakey.stores.openbao_catalog` says where each thing lives); the
home's SQLite database only caches it, so that ``list`` and ``check`` over a thousand keys
do not cost a thousand requests each time.

The cache is trusted by the protocol "generation with lease", global and per CFA:

- every writer, before its first change to the engine and again every half lease while
  its batch lasts, writes ``<prefix>/generation`` and, before its first change to a CFA,
  ``<prefix>/generations/<SIRET>`` (same rule); the engine raises each one's version
  atomically. A single request is bounded far below half a lease (15 s against 30 s), so
  **every change to a CFA lands within one lease after a write of the global generation
  and of that CFA's generation by its writer, and after those writes**;
- a reader makes one read of the global generation: version ``G``, written at ``C`` (the
  server's clock). It trusts its whole cache iff the cache records the same engine
  location and reader (the token's fingerprint, or AppRole's role_id: another token may
  see other CFAs), the same version ``G``, and was read from a time ``T0 ≥ C + lease``;
- otherwise ``T0`` is the server's ``Date`` of that read, minus one second (the header's
  precision), and the reader reads the generation of every CFA (those listed under
  ``generations/`` when allowed, and those it knows): for CFA ``s``, version ``g`` written
  at ``c``, read at ``t`` (its ``Date`` minus one second, ``t ≥ T0``). It keeps the
  cached rows of ``s`` iff they record the same ``g > 0`` and a reading begun at
  ``Ts ≥ c + lease``; else it rereads ``s`` (its rows, from ``t``). It replaces the reread
  CFAs' rows in one transaction, records ``(g, t)`` for each, and ``(G, T0)``.

Why that never shows stale data as current. One CFA first: suppose a change X to ``s``
is missing from rows kept with ``(g, Ts)``; then X reached the engine after ``Ts``. X's
writer wrote ``s``'s generation at some ``B ≤ X`` with ``X ≤ B + lease``. If that write was
version ``g`` or earlier, ``B ≤ c``, so ``X ≤ c + lease ≤ Ts``: contradiction. So it is
later than version ``g``, which was current at ``t``: ``X ≥ B > t``. Hence after a sync
every CFA's rows hold every change to it up to its ``t ≥ T0`` (a reread one, from ``t``
on, likewise). The whole cache: suppose the reader trusts ``(G, T0)`` and misses a change
X; by the above X came after ``T0``. X's writer wrote the global generation at ``B ≤ X``
with ``X ≤ B + lease``; if that was version ``G`` or earlier, ``B ≤ C`` so
``X ≤ C + lease ≤ T0``: contradiction; so the global version is now above ``G`` and the
reader checks the CFAs again. A fresh engine has no generation entry: its version is 0
(written at the epoch), and the first writer makes it 1; a CFA whose generation is 0
(written by no cfakey) is always reread. A writer killed in the middle leaves a version
above ``G`` (and ``g``) all the same. A CFA new to the reader is listed (or known) with
no cached version: read; a CFA removed raised its generation: reread, found gone, dropped.
A CFA whose generation or keys this token's policy refuses stays known without its keys,
counted as hidden by every command. The journal is not cached through generations (its
entries never change; they are read by name).

A writer killed between a key's data and its ``custom_metadata`` leaves the metadata
describing another version than the current one: readers show that key as an interrupted
operation, and the writer's next command (recovery) or ``cfakey doctor`` repairs it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from cfakey.errors import UsageError
from cfakey.identifiers import clean_cfa_name, is_valid_siret, is_valid_uai
from cfakey.metadata import (
    EXPIRY_SOURCES,
    CfaRecord,
    JournalEntry,
    KeyRecord,
    LastVerification,
    Metadata,
    PendingWrite,
    SyncState,
    TeamRows,
    current_user,
)
from cfakey.stores.base import KeyStore, entry_name, fingerprint

if TYPE_CHECKING:
    from cfakey.stores.openbao_catalog import (
        EngineCatalog,
        EngineKey,
        Generation,
        OpenBaoCatalog,
    )

#: How many versions each key's ``custom_metadata`` describes (``h<N>``), at most.
HISTORY = 10
#: The action an engine key with lagging metadata is shown as (« opération interrompue »).
TEAM_INTERRUPTED = "written"
_RECORD_FIELDS = ("obtained_on", "stored_at", "expires_at", "expiry_source", "fingerprint")
_VERIFY_FIELDS = ("verified_at", "verify_outcome", "verify_http_status", "verify_opco_expiry")

# What is read from the engine was written by whoever holds a token, not necessarily by
# cfakey: every name and text is checked here, before it reaches the cache, a terminal,
# a calendar or a metric. A key or CFA whose identifiers are not cfakey's is left out.
_FINGERPRINT = re.compile(r"[0-9a-f]{12}")
_IDENTIFIER = re.compile(r"[a-z0-9_]{1,40}")
#: The longest free text kept from the engine (a teammate's name, a journal detail).
TEXT_MAX = 1000


def engine_text(value: object, limit: int = TEXT_MAX) -> str:
    """Free text from the engine on one line, printable, at most ``limit`` characters."""
    words = str(value or "").split()
    text = "".join(c if c.isprintable() else "\ufffd" for c in " ".join(words))
    return text[:limit]


def _fingerprint_or_none(value: object) -> str | None:
    return value if isinstance(value, str) and _FINGERPRINT.fullmatch(value) else None


def cfakey_slot(siret: str, opco_id: str) -> bool:
    """Whether an engine path's SIRET and OPCO names are ones cfakey writes."""
    return is_valid_siret(siret) and _IDENTIFIER.fullmatch(opco_id) is not None


# Reading: the cache ------------------------------------------------------------------


def trusted(state: SyncState | None, generation: Generation, location: str) -> bool:
    """Whether the cached rows are the engine's current catalog (see the module's proof)."""
    from cfakey.stores.openbao_catalog import LEASE_SECONDS

    return (
        state is not None
        and state.location == location
        and state.version == generation.version
        and state.synced_at >= generation.written_at + timedelta(seconds=LEASE_SECONDS)
    )


def cfa_trusted(cached: tuple[int, datetime] | None, generation: Generation) -> bool:
    """Whether one CFA's cached rows are its current ones (the proof, for one CFA). A CFA
    without a generation entry (version 0: written by no cfakey) is always read again."""
    from cfakey.stores.openbao_catalog import LEASE_SECONDS

    return (
        cached is not None
        and generation.version > 0
        and cached[0] == generation.version
        and cached[1] >= generation.written_at + timedelta(seconds=LEASE_SECONDS)
    )


def refresh(metadata: Metadata, store: KeyStore) -> bool:
    """Bring the cache up to date with the engine; whether it had to read some of it."""
    catalog = store.catalog()
    if catalog is None:
        return False
    generation = catalog.generation()
    state = metadata.sync_state()
    if trusted(state, generation, catalog.location_id):
        metadata.team_denied = state.denied if state else ()
        return False
    marks = catalog.cfa_generations(metadata.team_sirets())
    refused = {siret for siret, mark in marks.items() if mark is None}
    if state is not None and state.location == catalog.location_id:  # only what changed
        cached = metadata.cfa_sync_states()
        stale = [
            siret
            for siret, mark in marks.items()
            if mark is not None and not cfa_trusted(cached.get(siret), mark)
        ]
        snapshot = catalog.read_cfas(stale)
        scope: set[str] | None = set(stale) | refused | set(state.denied)
        denied = (set(state.denied) - set(stale)) | refused | set(snapshot.denied)
    else:  # another engine, or another reader: everything anew
        snapshot = catalog.read_catalog(sorted(set(marks) - refused))
        stale, scope, denied = sorted(marks), None, refused | set(snapshot.denied)
    rows = _team_rows(snapshot, store.kind, marks, stale, generation)
    state = SyncState(
        catalog.location_id, generation.version, generation.server_now, tuple(sorted(denied))
    )
    metadata.replace_team_catalog(state, store.kind, rows, scope)
    metadata.team_denied = state.denied
    return True


def _team_rows(
    snapshot: EngineCatalog,
    store_kind: str,
    marks: Mapping[str, Generation | None],
    read: Iterable[str],
    generation: Generation,
) -> TeamRows:
    """The cache rows of what was read, and the generation of each CFA read (when its
    reading began: its generation's read, or the global one's for a CFA found after)."""
    records, interrupted = [], []
    for key in snapshot.keys:
        if not cfakey_slot(key.siret, key.opco_id):
            continue
        record = key_record(key, store_kind)
        if record is not None:
            records.append(record)
        if key_interrupted(key):
            interrupted.append((key.siret, key.opco_id))
    cfas = [
        cfa_record(siret, fields)
        for siret, fields in snapshot.cfas.items()
        if is_valid_siret(siret)
    ]
    found = set(read) | {key.siret for key in snapshot.keys} | set(snapshot.cfas)
    versions = {}
    for siret in sorted(found - set(snapshot.denied)):
        mark = marks.get(siret)
        if mark is None and siret in marks:
            continue  # refused to this token
        versions[siret] = (
            (0, generation.server_now)
            if mark is None
            else (
                mark.version,
                mark.server_now,
            )
        )
    return TeamRows(cfas, records, interrupted, versions)


def key_interrupted(key: EngineKey) -> bool:
    """The key's metadata does not describe its current version (a writer was stopped)."""
    live = _live(key)
    return live and key.fields.get("version") != str(key.current_version)


def _live(key: EngineKey) -> bool:
    """Whether the key's current version still holds a secret (not deleted, destroyed)."""
    current = next((v for v in key.versions if v.number == key.current_version), None)
    return current is None or (current.deleted_at is None and not current.destroyed)


def key_record(key: EngineKey, store_kind: str) -> KeyRecord | None:
    """The cached row of an engine key; ``None``: no (readable) metadata, or no secret."""
    fields = key.fields
    if not _live(key) or "version" not in fields or not cfakey_slot(key.siret, key.opco_id):
        return None
    try:
        source = fields["expiry_source"]
        if source not in EXPIRY_SOURCES or not _fingerprint_or_none(fields["fingerprint"]):
            return None
        return KeyRecord(
            siret=key.siret,
            opco_id=key.opco_id,
            obtained_on=date.fromisoformat(fields["obtained_on"]),
            stored_at=_aware(fields["stored_at"]),
            expires_at=_aware(fields["expires_at"]) if fields.get("expires_at") else None,
            expiry_source=source,
            fingerprint=fields["fingerprint"],
            os_user=engine_text(fields.get("os_user"), 100) or "inconnu",
            store=store_kind,
            verification=_verification(fields),
        )
    except (KeyError, ValueError):
        return None


def _aware(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(text)
    return moment


def _verification(fields: Mapping[str, str]) -> LastVerification | None:
    if not fields.get("verified_at"):
        return None
    status = fields.get("verify_http_status")
    day = fields.get("verify_opco_expiry")
    outcome = fields["verify_outcome"]
    if not _IDENTIFIER.fullmatch(outcome):
        raise ValueError(outcome)
    return LastVerification(
        at=_aware(fields["verified_at"]),
        outcome=outcome,
        http_status=int(status) if status else None,
        opco_expiry=date.fromisoformat(day) if day else None,
    )


def cfa_record(siret: str, fields: Mapping[str, str]) -> CfaRecord:
    """A CFA as the engine records it (its name falls back to the SIRET)."""
    try:
        created = _aware(fields.get("created_at", ""))
    except ValueError:
        created = datetime(1970, 1, 1, tzinfo=UTC)
    try:
        name = clean_cfa_name(str(fields.get("name") or siret))
    except UsageError:  # empty, too long, control characters: the SIRET names it
        name = siret
    uai = fields.get("uai") or None
    return CfaRecord(siret, name, uai if uai and is_valid_uai(uai) else None, False, created)


# Writing: what every change publishes -------------------------------------------------


def key_fields(record: KeyRecord, version: int, previous: Mapping[str, str]) -> dict[str, str]:
    """The ``custom_metadata`` describing ``version`` (never key material).

    Keeps the ``h<N>`` history of the last :data:`HISTORY` versions.
    """
    fields = {
        "obtained_on": record.obtained_on.isoformat(),
        "stored_at": record.stored_at.astimezone(UTC).isoformat(),
        "expires_at": "" if record.expires_at is None else record.expires_at.isoformat(),
        "expiry_source": record.expiry_source,
        "fingerprint": record.fingerprint,
        "os_user": record.os_user,
        "version": str(version),
    }
    check = record.verification
    if check is not None:
        fields |= {
            "verified_at": check.at.astimezone(UTC).isoformat(),
            "verify_outcome": check.outcome,
            "verify_http_status": "" if check.http_status is None else str(check.http_status),
            "verify_opco_expiry": ""
            if check.opco_expiry is None
            else check.opco_expiry.isoformat(),
        }
    history = {
        name: value
        for name, value in previous.items()
        if name.startswith("h")
        and name[1:].isascii()
        and name[1:].isdigit()
        and int(name[1:]) > version - HISTORY
    }
    history[f"h{version}"] = f"{fields['stored_at']}|{record.fingerprint}|{record.os_user}"
    return fields | dict(sorted(history.items(), key=lambda item: int(item[0][1:])))


def publish_key(catalog: OpenBaoCatalog, record: KeyRecord, version: int | None) -> None:
    """Describe the version just written (``None``: the engine's current one).

    A version 1 is a new entry (a removal takes the metadata with it): nothing to keep,
    so nothing is read first.
    """
    key = None if version == 1 else catalog.key(record.siret, record.opco_id)
    previous = {} if key is None else key.fields
    if version is None:
        version = 0 if key is None else key.current_version
    catalog.write_key_metadata(record.siret, record.opco_id, key_fields(record, version, previous))


def journal_fields(
    entry: JournalEntry | PendingWrite, *, at: datetime, user: str
) -> dict[str, str]:
    """One engine journal entry (fingerprints only)."""
    old, new = entry.old_fingerprint, entry.new_fingerprint
    return {
        "at": at.astimezone(UTC).replace(microsecond=0).isoformat(),
        "user": user,
        "siret": entry.siret or "",
        "opco_id": entry.opco_id or "",
        "action": entry.action,
        "old_fingerprint": old or "",
        "new_fingerprint": new or "",
        "detail": entry.detail,
    }


def publish_intents(
    catalog: OpenBaoCatalog,
    store: KeyStore,
    metadata: Metadata,
    intents: Sequence[PendingWrite],
    *,
    detail: str | None = None,
    grouped: bool = False,
) -> None:
    """After the store holds the intents' state: each key's metadata, its CFA record
    (first time), and one journal entry each (``grouped``: one per CFA)."""
    for siret in sorted({intent.siret for intent in intents}):
        publish_cfa(catalog, metadata, siret)
    for intent in intents:
        if intent.record is not None:
            version = store.version_of(entry_name(intent.siret, intent.opco_id))
            publish_key(catalog, intent.record, version)
        if not grouped:
            fields = journal_fields(intent, at=metadata.clock(), user=metadata.user)
            if detail is not None:
                fields["detail"] = detail
            catalog.append_journal(intent.siret, fields)
    if grouped:
        _journal_by_cfa(catalog, metadata, intents)


def _journal_by_cfa(
    catalog: OpenBaoCatalog, metadata: Metadata, intents: Sequence[PendingWrite]
) -> None:
    """One journal entry per CFA for a batch of the same action (a store migration):
    each key's fingerprint is in its own metadata, the entry names them all."""
    by_cfa: dict[str, list[PendingWrite]] = {}
    for intent in intents:
        by_cfa.setdefault(intent.siret, []).append(intent)
    for siret, group in sorted(by_cfa.items()):
        first = group[0]
        named = ", ".join(f"{p.opco_id} ({p.new_fingerprint})" for p in group)
        fields = journal_fields(first, at=metadata.clock(), user=metadata.user)
        fields |= {"opco_id": "", "new_fingerprint": "", "detail": f"{first.detail} : {named}"}
        catalog.append_journal(siret, fields)


def publish_moved(
    catalog: OpenBaoCatalog,
    store: KeyStore,
    metadata: Metadata,
    records: Sequence[KeyRecord],
    detail: str,
) -> None:
    """Keys just copied into the team store (``store migrate``): their metadata, their
    CFAs' records and one journal entry each."""
    from cfakey.core.codes import JournalAction

    intents = [
        PendingWrite(
            r.siret,
            r.opco_id,
            JournalAction.STORE_MIGRATED.id,
            None,
            dataclasses.replace(r, store=store.kind),
            store.kind,
            detail,
        )
        for r in records
    ]
    publish_intents(catalog, store, metadata, intents, grouped=True)


def publish_cfa(
    catalog: OpenBaoCatalog, metadata: Metadata, siret: str, *, again: bool = False
) -> None:
    """Put the CFA's record in the engine, unless this home knows it is there.

    Only ``again`` (``cfa edit``, or a CFA just added that the engine lacks) writes over
    what the engine may hold: otherwise the engine's record is read first and, when the
    team has one, this home takes it (a laptop migrating never renames the team's CFA).
    """
    cfa = metadata.get_cfa(siret)
    if cfa is None or (metadata.is_cfa_shared(siret) and not again):
        return
    if not again and (known := catalog.cfa(siret)) is not None:
        team = cfa_record(siret, known)
        metadata.edit_cfa(siret, name=team.name, uai=team.uai)
        metadata.mark_cfa_shared(siret)
        return
    fields = {
        "name": cfa.name,
        "uai": cfa.uai or "",
        "created_at": cfa.created_at.astimezone(UTC).isoformat(),
    }
    catalog.write_cfa(siret, fields)
    metadata.mark_cfa_shared(siret)


def publish_event(
    catalog: OpenBaoCatalog, metadata: Metadata, action: str, siret: str, detail: str = ""
) -> None:
    """Append a journal entry about a CFA (added, edited, removed) to the engine."""
    entry = JournalEntry(
        0, metadata.clock(), metadata.user, siret, None, action, None, None, detail
    )
    catalog.append_journal(siret, journal_fields(entry, at=entry.at, user=entry.user))


def publish_verifications(catalog: OpenBaoCatalog, records: Iterable[KeyRecord]) -> None:
    """Each key's last verification, into the metadata of the version it describes."""
    for record in records:
        key = catalog.key(record.siret, record.opco_id)
        if key is None or key.fields.get("fingerprint") != record.fingerprint:
            continue  # replaced or removed meanwhile: the result was about another key
        version = int(key.fields.get("version") or key.current_version)
        catalog.write_key_metadata(
            record.siret, record.opco_id, key_fields(record, version, key.fields)
        )


# Repair, history, journal --------------------------------------------------------------


def repair(metadata: Metadata, store: KeyStore) -> list[str]:
    """Describe anew each key whose metadata lags its data (from the data's fingerprint);
    the entries repaired. A writer's own intent, when it has one, does better (recovery)."""
    catalog = store.catalog()
    if catalog is None:
        return []
    refresh(metadata, store)
    repaired = []
    for siret, opco_id in metadata.team_interrupted():
        key = catalog.key(siret, opco_id)
        secret = store.get(entry_name(siret, opco_id))
        if key is None or secret is None or not key_interrupted(key):
            continue
        catalog.write_key_metadata(siret, opco_id, _repaired_fields(key, secret, store.kind))
        repaired.append(entry_name(siret, opco_id))
    if repaired:
        refresh(metadata, store)
    return repaired


def _repaired_fields(key: EngineKey, secret: str, store_kind: str) -> dict[str, str]:
    """What can be said of the current version from its data and its engine dates."""
    current = next((v for v in key.versions if v.number == key.current_version), None)
    written = (current.created_at if current else None) or datetime.now(UTC)
    previous = key_record(key, store_kind) if "version" in key.fields else None
    same = previous is not None and previous.fingerprint == fingerprint(secret)
    record = KeyRecord(
        siret=key.siret,
        opco_id=key.opco_id,
        obtained_on=previous.obtained_on if same and previous else written.date(),
        stored_at=written.replace(microsecond=0),
        expires_at=previous.expires_at if same and previous else None,
        expiry_source=previous.expiry_source if same and previous else "none",
        fingerprint=fingerprint(secret),
        os_user=f"{current_user()} (réparation)",
        store=store_kind,
    )
    return key_fields(record, key.current_version, key.fields)


#: The state of a version, in French (``show --historique``).
HISTORY_STATES = {
    "current": "actuelle",
    "kept": "remplacée",
    "deleted": "supprimée",
    "destroyed": "détruite",
}
#: The journal actions that give a key a new version (local store history).
_WRITING_ACTIONS = ("added", "rotated", "imported", "store_migrated", "removed")


@dataclass(frozen=True)
class HistoryLine:
    """One version of a key: never the key, only when, which, by whom, and its state."""

    version: int
    written_at: datetime | None
    fingerprint: str | None
    user: str | None
    state: str
    #: The journal action that wrote it (local store); ``None`` from the engine.
    action: str | None = None

    def as_json(self) -> dict[str, object]:
        """One element of ``show --historique --json``'s ``versions``."""
        return {
            "version": self.version,
            "written_at": None if self.written_at is None else self.written_at.isoformat(),
            "fingerprint": self.fingerprint,
            "user": self.user,
            "state": self.state,
            "state_label": HISTORY_STATES.get(self.state, self.state),
            "action": self.action,
        }


def key_history(
    metadata: Metadata, store: KeyStore | None, record: KeyRecord
) -> tuple[str, list[HistoryLine]]:
    """The versions of a key, newest first, and where they come from (``openbao`` or
    ``journal``): the engine's versions for a team store, else this home's journal."""
    catalog = None if store is None else store.catalog()
    if catalog is not None:
        key = catalog.key(record.siret, record.opco_id)
        return "openbao", [] if key is None else engine_history(key)
    entries = [
        entry
        for entry in metadata.journal(siret=record.siret, opco_id=record.opco_id)
        if entry.action in _WRITING_ACTIONS
    ]
    lines = []
    for number, entry in enumerate(entries, start=1):
        state = "deleted" if entry.action == "removed" else "kept"
        lines.append(
            HistoryLine(number, entry.at, entry.new_fingerprint, entry.user, state, entry.action)
        )
    if lines and lines[-1].fingerprint == record.fingerprint:
        lines[-1] = dataclasses.replace(lines[-1], state="current")
    return "journal", lines[::-1]


def engine_history(key: EngineKey) -> list[HistoryLine]:
    """Every version the engine keeps, newest first, with the ``h<N>`` it recorded."""
    lines = []
    for info in sorted(key.versions, key=lambda v: v.number, reverse=True):
        described = key.fields.get(f"h{info.number}", "")
        parts = described.split("|") if described else []
        state = "destroyed" if info.destroyed else "deleted" if info.deleted_at else "kept"
        if info.number == key.current_version and state == "kept":
            state = "current"
        lines.append(
            HistoryLine(
                info.number,
                info.created_at,
                _fingerprint_or_none(parts[1]) if len(parts) > 1 else None,
                engine_text(parts[2], 100) or None if len(parts) > 2 else None,
                state,
            )
        )
    return lines


def sync_journal(metadata: Metadata, store: KeyStore, sirets: Iterable[str]) -> tuple[str, ...]:
    """Cache the engine journal entries not seen yet; the folders this token cannot read."""
    from cfakey.stores.openbao_catalog import VENDOR_JOURNAL

    catalog = store.catalog()
    if catalog is None:
        return ()
    folders = catalog.journal_folders()
    if folders is None:
        folders = [*sorted(set(sirets)), VENDOR_JOURNAL]
    names, denied = catalog.journal_names(folders)
    known = metadata.team_journal_names()
    fresh, refused = catalog.read_journal([name for name in names if name not in known])
    metadata.add_team_journal(
        (name, _journal_entry(fields)) for name, fields in sorted(fresh.items())
    )
    if refused:  # listed but not readable: a metadata-only (monitor) token
        from cfakey.errors import StoreUnavailableError

        raise StoreUnavailableError(
            f"Le coffre partagé refuse à ce jeton la lecture de {len(refused)} entrée(s) du "
            "journal (403) : sa politique ne donne que les métadonnées, pas le journal.",
            hint="Lisez le journal avec un jeton dont la politique couvre "
            "<montage>/data/<préfixe>/journal (docs/team.md).",
        )
    return tuple(folder for folder in denied if folder != VENDOR_JOURNAL)


def _journal_entry(fields: Mapping[str, str]) -> JournalEntry:
    try:
        at = _aware(fields.get("at", ""))
    except ValueError:
        at = datetime(1970, 1, 1, tzinfo=UTC)
    siret, opco_id = fields.get("siret") or "", fields.get("opco_id") or ""
    action = fields.get("action") or ""
    return JournalEntry(
        id=0,
        at=at,
        user=engine_text(fields.get("user"), 100) or "inconnu",
        siret=siret if is_valid_siret(siret) else None,
        opco_id=opco_id if _IDENTIFIER.fullmatch(opco_id) else None,
        action=action if _IDENTIFIER.fullmatch(action) else "inconnu",
        old_fingerprint=_fingerprint_or_none(fields.get("old_fingerprint")),
        new_fingerprint=_fingerprint_or_none(fields.get("new_fingerprint")),
        detail=engine_text(fields.get("detail")),
    )
