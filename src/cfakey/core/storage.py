"""Write and remove keys with no half state: the secret and its metadata go together."""

from __future__ import annotations

from cfakey.errors import NotFoundError
from cfakey.metadata import KeyRecord, Metadata
from cfakey.stores.base import KeyStore, entry_name


def store_key(
    store: KeyStore,
    metadata: Metadata,
    record: KeyRecord,
    secret: str,
    *,
    action: str,
    old_fingerprint: str | None = None,
    detail: str = "",
) -> None:
    """Store the secret, then its metadata and journal entry in one transaction.

    If the metadata cannot be written, the store is put back as it was (the previous
    secret restored, or the new one deleted), so a key never exists without its row.
    """
    entry = entry_name(record.siret, record.opco_id)
    previous = store.get(entry)
    store.put(entry, secret)
    try:
        with metadata.transaction():
            metadata.put_key(record)
            metadata.log(
                action,
                siret=record.siret,
                opco_id=record.opco_id,
                old_fingerprint=old_fingerprint,
                new_fingerprint=record.fingerprint,
                detail=detail,
            )
    except BaseException:
        if previous is None:
            store.delete(entry)
        else:
            store.put(entry, previous)
        raise


def read_key(store: KeyStore, siret: str, opco_id: str) -> str:
    """The stored secret, or a French error when the store has lost it."""
    secret = store.get(entry_name(siret, opco_id))
    if secret is None:
        raise NotFoundError(
            f"La clé {opco_id} du CFA {siret} est absente du magasin de clés.",
            hint="Diagnostic : cfakey doctor ; pour la remettre : cfakey add "
            + opco_id
            + f" --cfa {siret}.",
        )
    return secret


def remove_key(
    store: KeyStore, metadata: Metadata, siret: str, opco_id: str, *, detail: str = ""
) -> KeyRecord:
    """Delete the secret and its metadata together, and journal it."""
    record = metadata.get_key(siret, opco_id)
    if record is None:
        raise NotFoundError(
            f"Aucune clé {opco_id} enregistrée pour le CFA {siret}.", hint="Voir : cfakey list."
        )
    entry = entry_name(siret, opco_id)
    previous = store.get(entry)
    try:
        with metadata.transaction():
            metadata.delete_key(siret, opco_id)
            metadata.log(
                "removed",
                siret=siret,
                opco_id=opco_id,
                old_fingerprint=record.fingerprint,
                detail=detail,
            )
            # Inside the transaction: if the store refuses, the metadata stays as it was.
            store.delete(entry)
    except BaseException:
        if previous is not None and store.get(entry) is None:
            store.put(entry, previous)
        raise
    return record
