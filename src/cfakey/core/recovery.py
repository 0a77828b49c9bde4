"""Finish or drop the store changes a stopped process left unfinished (``pending`` intents).

An intent is committed before its store write and deleted with the metadata that
records the change (:mod:`cfakey.core.storage`). One found later belongs to a process
that was killed, lost power or failed to restore the store; under the data lock (so
never a change still under way) the store entry's fingerprint tells what happened:

- the new fingerprint: the store was written, the metadata was not: it is recorded now
  (the old key is gone from the store, so going forward is the only consistent state);
- the old fingerprint: the store was never written, or was put back: the intent is dropped;
- anything else: the store holds a key neither side expected; the intent is dropped and
  the entry reported, for ``doctor`` to compare with its metadata.
"""

from __future__ import annotations

from dataclasses import dataclass

from cfakey.core.codes import JournalAction
from cfakey.metadata import Metadata, PendingWrite
from cfakey.stores.base import KeyStore, entry_name, fingerprint

RECOVERY_DETAIL = "repris après interruption"


@dataclass(frozen=True)
class RecoveryReport:
    """What :func:`recover` found and did, intent by intent."""

    completed: tuple[PendingWrite, ...] = ()
    abandoned: tuple[PendingWrite, ...] = ()
    unexpected: tuple[PendingWrite, ...] = ()
    #: Intents written with another kind of store: left for a command using that store.
    other_store: tuple[PendingWrite, ...] = ()
    #: A shared store holds neither key: a teammate wrote the entry since (theirs stays).
    superseded: tuple[PendingWrite, ...] = ()

    @property
    def acted(self) -> bool:
        """Whether anything was found."""
        return bool(
            self.completed
            or self.abandoned
            or self.unexpected
            or self.other_store
            or self.superseded
        )

    def messages(self) -> list[str]:
        """French sentences for stderr: one per intent, or one per kind beyond a few keys.

        An import of hundreds of keys stopped midway must not bury the screen: past
        :data:`SPELLED_OUT` intents of one kind, they are counted and the first few named.
        """
        return [
            *_told(
                self.completed,
                "Opération interrompue reprise : {what} avait déjà atteint le magasin de clés ; "
                "les métadonnées et le journal sont maintenant à jour.",
                "Opérations interrompues reprises : {what} avaient déjà atteint le magasin de "
                "clés ; leurs métadonnées et le journal sont maintenant à jour.",
            ),
            *_told(
                self.abandoned,
                "Opération interrompue annulée : {what} n'avait pas atteint le magasin de clés ; "
                "rien n'avait changé.",
                "Opérations interrompues annulées : {what} n'avaient pas atteint le magasin de "
                "clés ; rien n'avait changé.",
            ),
            *_told(
                self.superseded,
                "Opération interrompue sur {slot} : un collègue a écrit depuis une autre clé "
                "dans le coffre partagé ; c'est la sienne qui est gardée.",
                "Opérations interrompues sur {slot} : des collègues ont écrit depuis d'autres "
                "clés dans le coffre partagé ; ce sont les leurs qui sont gardées.",
            ),
            *_told(
                self.unexpected,
                "Opération interrompue sur {slot} : le magasin contient une clé inattendue "
                "(ni l'ancienne ni la nouvelle) ; vérifiez avec cfakey doctor.",
                "Opérations interrompues sur {slot} : le magasin contient des clés inattendues "
                "(ni les anciennes ni les nouvelles) ; vérifiez avec cfakey doctor.",
            ),
            *(
                line
                for store in sorted({p.store for p in self.other_store})
                for line in _told(
                    tuple(p for p in self.other_store if p.store == store),
                    "Opération interrompue sur {slot} dans un autre magasin ({store}) : elle sera "
                    "reprise par une commande qui utilise ce magasin (--store {store}).",
                    "Opérations interrompues sur {slot} dans un autre magasin ({store}) : elles "
                    "seront reprises par une commande qui utilise ce magasin (--store {store}).",
                )
            ),
        ]


#: How many intents of one kind are named one by one before they are counted.
SPELLED_OUT = 5


def _told(intents: tuple[PendingWrite, ...], one: str, many: str) -> list[str]:
    """``one`` per intent when they are few, else ``many`` once, the keys counted.

    Holes: ``{what}`` (the action and the key), ``{slot}`` (the key), ``{store}``.
    """
    if len(intents) <= SPELLED_OUT:
        return [
            one.format(what=f"{_what(p)} ({_slot(p)})", slot=_slot(p), store=p.store)
            for p in intents
        ]
    named = ", ".join(_slot(p) for p in intents[:3])
    counted = f"{len(intents)} clés ({named} et {len(intents) - 3} autres)"
    return [many.format(what=counted, slot=counted, store=intents[0].store)]


_ACTIONS = {
    JournalAction.ADDED.id: "l'ajout de la clé",
    JournalAction.ROTATED.id: "le renouvellement de la clé",
    JournalAction.IMPORTED.id: "l'import de la clé",
    JournalAction.REMOVED.id: "la suppression de la clé",
}


#: The operation an intent belongs to, as a noun (« opération interrompue (suppression) »).
ACTION_NOUNS = {
    "added": "ajout",
    "rotated": "renouvellement",
    "imported": "import",
    "removed": "suppression",
}


def unresolved_warning(intent: PendingWrite) -> str:
    """What the overview says of an intent it cannot resolve (it never opens the store)."""
    what = ACTION_NOUNS.get(intent.action, "écriture")
    return (
        f"Attention : opération interrompue sur {_slot(intent)} ({what}) : cette ligne peut "
        "être fausse ; lancez cfakey doctor pour la terminer."
    )


def _what(intent: PendingWrite) -> str:
    return _ACTIONS.get(intent.action, "l'écriture de la clé")


def _slot(intent: PendingWrite) -> str:
    return f"{intent.opco_id} du CFA {intent.siret}"


def has_pending(metadata: Metadata) -> bool:
    """Whether any intent is waiting (cheap: metadata only, the store stays closed)."""
    return bool(metadata.pending())


def recover(store: KeyStore, metadata: Metadata) -> RecoveryReport:
    """Resolve every unfinished intent of ``store``'s kind by comparing fingerprints."""
    with metadata.lock():
        intents = metadata.pending()
        if not intents:
            return RecoveryReport()
        mine = [intent for intent in intents if intent.store == store.kind]
        with store.batch():
            found = {
                (p.siret, p.opco_id): _fingerprint_of(store, entry_name(p.siret, p.opco_id))
                for p in mine
            }
        from cfakey.core.storage import commit_intent

        completed, abandoned, unexpected, superseded = [], [], [], []
        with metadata.transaction():
            for intent in mine:
                current = found[(intent.siret, intent.opco_id)]
                if current == intent.new_fingerprint:
                    commit_intent(metadata, intent, detail=_detail(intent))
                    completed.append(intent)
                    continue
                metadata.delete_pending(intent.siret, intent.opco_id)
                if current == intent.old_fingerprint:
                    abandoned.append(intent)
                elif store.shared:  # neither: a teammate wrote it since, theirs stays
                    superseded.append(intent)
                else:
                    unexpected.append(intent)
        catalog = store.catalog()
        if catalog is not None and completed:
            from cfakey.core.team_sync import publish_intents

            publish_intents(catalog, store, metadata, completed, detail=RECOVERY_DETAIL)
    return RecoveryReport(
        tuple(completed),
        tuple(abandoned),
        tuple(unexpected),
        tuple(intent for intent in intents if intent.store != store.kind),
        tuple(superseded),
    )


def _fingerprint_of(store: KeyStore, entry: str) -> str | None:
    secret = store.get(entry)
    return None if secret is None else fingerprint(secret)


def _detail(intent: PendingWrite) -> str:
    return f"{intent.detail} ; {RECOVERY_DETAIL}" if intent.detail else RECOVERY_DETAIL
