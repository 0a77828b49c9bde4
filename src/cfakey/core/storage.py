"""Write and remove keys with no half state: the secret and its metadata go together.

A change of the key store is recorded in three steps, under the data directory's lock:

1. the intent (action, old and new fingerprints, the metadata to record, never the key)
   is committed to the ``pending`` table;
2. the store is written;
3. the metadata, the journal entry and the deletion of the intent commit together.

If step 2 or 3 fails, the store is put back as it was and read again to check it; only
then is the intent dropped. Whatever stops the process in between (a kill, a power cut,
a restore that fails too) leaves the intent behind, and :mod:`cfakey.core.recovery`
resolves it at the next command by comparing the store's fingerprint with the intent's.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from cfakey.core.codes import JournalAction
from cfakey.errors import (
    CfakeyError,
    ConcurrentChangeError,
    ExitCode,
    NotFoundError,
    StoreUnreachableError,
    os_reason,
)
from cfakey.metadata import KeyRecord, Metadata, PendingWrite
from cfakey.stores.base import KeyStore, entry_name, fingerprint


@dataclass(frozen=True)
class Change:
    """One store entry to write (``secret``) or delete (``secret`` is ``None``)."""

    siret: str
    opco_id: str
    action: str
    secret: str | None = field(repr=False)
    record: KeyRecord | None
    detail: str = ""
    #: A CFA to register with the key when it does not exist yet (import).
    cfa_name: str | None = None
    #: Journalled as the old fingerprint when the store held nothing (a lost secret).
    described_as: str | None = None

    @property
    def entry(self) -> str:
        """The store entry this change touches."""
        return entry_name(self.siret, self.opco_id)


class IncompleteWriteError(CfakeyError):
    """A change failed or was interrupted, and the store could not be checked back as it was.

    The message gives the original cause first: a failed restore never hides it.
    """

    def __init__(self, cause: BaseException, unresolved: int) -> None:
        super().__init__(
            f"{describe_failure(cause)} ; le magasin de clés n'a pas pu être remis dans son "
            f"état précédent : {unresolved} clé(s) y sont peut-être déjà écrites sans leurs "
            "métadonnées. La prochaine commande qui ouvre le magasin (ou cfakey doctor) "
            "remettra le magasin et les métadonnées en accord.",
            hint="Lancez cfakey doctor dès que la cause est corrigée.",
        )
        self.exit_code = _exit_code(cause)


def describe_failure(error: BaseException) -> str:
    """What went wrong, in French, without quoting any data (a key could be in a message)."""
    if isinstance(error, KeyboardInterrupt):
        return "Interrompu pendant l'enregistrement"
    if isinstance(error, CfakeyError):
        return error.message.rstrip(".")
    if isinstance(error, OSError):
        return f"Écriture impossible ({os_reason(error)})"
    code = getattr(error, "sqlite_errorname", None)
    if isinstance(code, str):
        reason = next((label for prefix, label in _SQLITE_REASONS if code.startswith(prefix)), code)
        return f"Écriture des métadonnées impossible ({reason})"
    return f"Erreur inattendue ({type(error).__name__})"


_SQLITE_REASONS = (
    ("SQLITE_FULL", "plus de place sur le disque"),
    ("SQLITE_READONLY", "base en lecture seule"),
    ("SQLITE_BUSY", "base verrouillée par un autre processus"),
    ("SQLITE_IOERR", "erreur d'entrée-sortie"),
)


def _exit_code(cause: BaseException) -> ExitCode:
    if isinstance(cause, KeyboardInterrupt):
        return ExitCode.INTERRUPTED
    if isinstance(cause, CfakeyError):
        return cause.exit_code
    return ExitCode.ERROR


def commit_intent(metadata: Metadata, intent: PendingWrite, *, detail: str | None = None) -> None:
    """Record what an intent did: the metadata row, the journal entry; drop the intent.

    Call inside a transaction, once the store holds the intended state.
    """
    record = intent.record
    if record is None:
        metadata.delete_key(intent.siret, intent.opco_id)
    else:
        if intent.cfa_name is not None and metadata.get_cfa(intent.siret) is None:
            metadata.add_cfa(intent.siret, intent.cfa_name, None)
        metadata.put_key(record)
    metadata.log(
        intent.action,
        siret=intent.siret,
        opco_id=intent.opco_id,
        old_fingerprint=intent.old_fingerprint,
        new_fingerprint=intent.new_fingerprint,
        detail=intent.detail if detail is None else detail,
    )
    metadata.delete_pending(intent.siret, intent.opco_id)


def apply_changes(
    store: KeyStore,
    metadata: Metadata,
    changes: Sequence[Change],
    *,
    also: Callable[[], None] | None = None,
) -> list[PendingWrite]:
    """Intent, store write, then metadata and journal; ``also`` joins the last transaction.

    Returns the intents as recorded: ``old_fingerprint`` is that of the secret actually
    replaced, read from the store under the lock.
    """
    with metadata.lock():
        # Plain reads, not a batch: the store's own lock is taken only to write, after the
        # intents are durable (the data lock already keeps other writers out).
        previous = {change.entry: store.get(change.entry) for change in changes}
        _refuse_if_changed_elsewhere(store, metadata, changes, previous)
        intents = [_intent(store, change, previous[change.entry]) for change in changes]
        with metadata.transaction():
            for intent in intents:
                metadata.add_pending(intent)
        catalog = store.catalog()
        try:
            with store.batch():
                for change in changes:
                    if catalog is not None:  # before the first change, then every half lease
                        catalog.keep_lease(change.entry)
                    if change.secret is None:
                        store.delete(change.entry)
                    else:
                        store.put(change.entry, change.secret)
            if catalog is not None:
                from cfakey.core.team_sync import publish_intents

                publish_intents(catalog, store, metadata, intents)
            with metadata.transaction():
                for intent in intents:
                    commit_intent(metadata, intent)
                if also is not None:
                    also()
        except BaseException as error:
            _undo(store, metadata, previous, {c.entry: c.secret for c in changes}, error)
            raise
    metadata.note_written(intents)  # this command's own writes are known to it
    return intents


def _refuse_if_changed_elsewhere(
    store: KeyStore,
    metadata: Metadata,
    changes: Sequence[Change],
    previous: Mapping[str, str | None],
) -> None:
    """A shared store: never write over a state this command did not start from.

    What the command started from is this home's record, brought up to date with the
    engine when the command began (a teammate's change since then is not in it): a key
    with that fingerprint, or no key. The store's own check-and-set covers a write between
    this command's read and its write; this covers one made before the read (while the
    operator was at a prompt), which would otherwise be lost unseen: a teammate's
    rotation replaced, their removal undone, their new key overwritten.
    """
    if not store.shared:
        return
    for change in changes:
        record = metadata.get_key(change.siret, change.opco_id)
        if record is not None and record.store != store.kind:
            continue  # kept in another store: not this one's to compare
        current = previous[change.entry]
        seen = metadata.found_at_start
        if seen is not None:  # as the command found it, whatever this home's rows say now
            started_from = seen.get((change.siret, change.opco_id))
        else:
            started_from = None if record is None else record.fingerprint
        found = None if current is None else fingerprint(current)
        if found != started_from:
            raise _changed_meanwhile(change.entry, started_from, found)


def _changed_meanwhile(entry: str, started_from: str | None, found: str | None) -> CfakeyError:
    """The French refusal (exit 6) of a write over a teammate's change."""
    if found is None:
        what = "a été supprimée entre-temps du coffre partagé par quelqu'un d'autre"
    elif started_from is None:
        what = "a été enregistrée entre-temps dans le coffre partagé par quelqu'un d'autre"
    else:
        what = (
            "a changé entre-temps dans le coffre partagé (écrite par quelqu'un d'autre "
            "depuis le début de cette commande)"
        )
    return ConcurrentChangeError(
        f"La clé {entry} {what} : rien n'a été écrit.",
        hint="Voyez avec l'équipe (cfakey show, cfakey journal) ; relancer la commande "
        "partira de l'état actuel du coffre.",
    )


def _intent(store: KeyStore, change: Change, previous: str | None) -> PendingWrite:
    return PendingWrite(
        siret=change.siret,
        opco_id=change.opco_id,
        action=change.action,
        old_fingerprint=change.described_as if previous is None else fingerprint(previous),
        record=change.record,
        store=store.kind,
        detail=change.detail,
        cfa_name=change.cfa_name,
        pid=os.getpid(),
    )


def _undo(
    store: KeyStore,
    metadata: Metadata,
    previous: dict[str, str | None],
    targets: Mapping[str, str | None],
    error: BaseException,
) -> None:
    """Put back every entry this command changed whose intent is still there, check it,
    then drop those intents.

    An intent already gone means its metadata committed (the error came after): that
    entry is left alone. So is an entry that holds neither what was there before nor
    what this command wrote (``targets``): someone else wrote it since (a teammate whose
    check-and-set won), and putting the old key back would destroy their write.
    Raises :class:`IncompleteWriteError` unless everything checks.
    """
    try:
        open_intents = {entry_name(p.siret, p.opco_id) for p in metadata.pending(pid=os.getpid())}
    except Exception:  # noqa: BLE001 - cannot tell what committed: touch nothing, say so
        raise IncompleteWriteError(error, len(previous)) from error
    open_intents &= previous.keys()
    if isinstance(error, StoreUnreachableError) and open_intents:
        # Refused or timed out: each read back would wait as long again (an engine's
        # timeout per entry). The intents stay: the next command resolves them.
        raise IncompleteWriteError(error, len(open_intents)) from error
    catalog = store.catalog()
    try:
        with store.batch():
            for entry in sorted(open_intents):
                old, held = previous[entry], store.get(entry)
                if held != old and held == targets[entry]:  # this command's write landed
                    if catalog is not None:
                        catalog.keep_lease(entry)  # putting back is a change too
                    if old is None:
                        store.delete(entry)
                    else:
                        store.put(entry, old)
    except BaseException:  # noqa: BLE001, S110 - what was put back is checked below
        pass
    checked = _settled(store, open_intents, previous, targets)
    try:
        with metadata.transaction():
            for entry in checked:
                siret, opco_id = entry.split("/", 1)
                metadata.delete_pending(siret, opco_id)
    except Exception:  # noqa: BLE001, S110 - an intent left over is resolved by the next command
        pass
    if checked != open_intents:
        raise IncompleteWriteError(error, len(open_intents - checked)) from error


def _settled(
    store: KeyStore,
    entries: set[str],
    previous: Mapping[str, str | None],
    targets: Mapping[str, str | None],
) -> set[str]:
    """The entries the store, read again, no longer holds as this command left them:
    as before, or as someone else wrote them since.

    Stops at the first entry it cannot read: a store gone or hanging costs one failed
    read (an engine's timeout), not one per entry; the rest is left to recovery.
    """
    checked = set()
    for entry in sorted(entries):
        try:
            held = store.get(entry)
        except Exception:  # noqa: BLE001 - unreadable: neither this entry nor the rest checked
            break
        if held == previous[entry] or held != targets[entry]:
            checked.add(entry)
    return checked


def store_key(
    store: KeyStore,
    metadata: Metadata,
    record: KeyRecord,
    secret: str,
    *,
    action: str,
    detail: str = "",
) -> PendingWrite:
    """Store one secret with its metadata and journal entry (see :func:`apply_changes`)."""
    change = Change(record.siret, record.opco_id, action, secret, record, detail)
    return apply_changes(store, metadata, [change])[0]


def read_key(store: KeyStore, siret: str, opco_id: str, *, recorded_in: str | None = None) -> str:
    """The stored secret, or a French error naming where it is.

    ``recorded_in`` is the store kind the key's metadata row records. A key stored in
    another kind than the one in service is never reported as lost, and that other store
    is not opened behind the operator's back (it may ask a password or be locked): the
    message names it and the command that reads it.
    """
    secret = store.get(entry_name(siret, opco_id))
    if secret is not None:
        return secret
    if recorded_in is not None and recorded_in != store.kind:
        from cfakey.stores.kinds import label_of

        raise NotFoundError(
            f"La clé {opco_id} du CFA {siret} a été rangée dans {label_of(recorded_in)}, "
            f"pas dans {label_of(store.kind)} en service.",
            hint=f"Pour la lire : cfakey --store {recorded_in} … ; pour revenir à ce "
            f"magasin : cfakey store use {recorded_in}.",
        )
    raise NotFoundError(
        f"La clé {opco_id} du CFA {siret} est absente du magasin de clés.",
        hint="Diagnostic : cfakey doctor ; pour la remettre : cfakey add "
        + opco_id
        + f" --cfa {siret}.",
    )


def remove_keys(
    store: KeyStore,
    metadata: Metadata,
    records: Sequence[KeyRecord],
    *,
    detail: str = "",
    also: Callable[[], None] | None = None,
) -> None:
    """Delete secrets and their metadata together, and journal each."""
    changes = [
        Change(
            record.siret,
            record.opco_id,
            JournalAction.REMOVED.id,
            None,
            None,
            detail,
            described_as=record.fingerprint,
        )
        for record in records
    ]
    apply_changes(store, metadata, changes, also=also)


def remove_key(
    store: KeyStore, metadata: Metadata, siret: str, opco_id: str, *, detail: str = ""
) -> KeyRecord:
    """Delete one secret and its metadata together, and journal it."""
    with metadata.lock():
        record = metadata.get_key(siret, opco_id)
        if record is None:
            raise NotFoundError(
                f"Aucune clé {opco_id} enregistrée pour le CFA {siret}.",
                hint="Voir : cfakey list.",
            )
        remove_keys(store, metadata, [record], detail=detail)
    return record
