"""The enumerated values cfakey computes with, each an ASCII identifier with its French label.

The identifier is what ``--json`` writes and what is stored (a contract for scripts); the
label is what people read. One table per code, in the shape of verify's ``Outcome``:
adding a value means one line here, and every renderer follows.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class KeyStatus(Enum):
    """Where a key stands against its expiry; the value is the ``--json`` identifier."""

    EXPIRED = "expired"
    EXPIRING = "expiring"
    VALID = "valid"
    UNDATED = "undated"

    @property
    def label(self) -> str:
        """The French name shown to people."""
        return _STATUS_LABELS[self]


_STATUS_LABELS = {
    KeyStatus.EXPIRED: "expirée",
    KeyStatus.EXPIRING: "à renouveler",
    KeyStatus.VALID: "valide",
    KeyStatus.UNDATED: "sans date",
}


class Level(IntEnum):
    """The Nagios level of ``check``: its number is the exit code, its name the identifier."""

    OK = 0
    WARNING = 1
    CRITICAL = 2

    @property
    def id(self) -> str:
        """The ``--json`` identifier: ``ok``, ``warning`` or ``critical``."""
        return self.name.lower()

    @property
    def label(self) -> str:
        """The French name shown to people."""
        return _LEVEL_LABELS[self]


_LEVEL_LABELS = {Level.OK: "OK", Level.WARNING: "ALERTE", Level.CRITICAL: "CRITIQUE"}


class ExpirySource(Enum):
    """Where a key's expiry date came from; the value is stored with the key."""

    REGISTRY = "registry"
    JWT = "jwt"
    PORTAL = "portal"
    OPCO_API = "opco_api"
    OPERATOR = "operator"
    NONE = "none"

    @property
    def label(self) -> str:
        """The French name shown to people."""
        return _SOURCE_LABELS[self]


_SOURCE_LABELS = {
    ExpirySource.REGISTRY: "règle de l'OPCO",
    ExpirySource.JWT: "date « exp » du jeton",
    ExpirySource.PORTAL: "date du portail",
    ExpirySource.OPCO_API: "réponse de l'OPCO",
    ExpirySource.OPERATOR: "saisie",
    ExpirySource.NONE: "aucune",
}


class JournalAction(Enum):
    """What a journal entry records; the value is stored in the journal."""

    ADDED = "added"
    ROTATED = "rotated"
    IMPORTED = "imported"
    EXPORTED = "exported"
    REVEALED = "revealed"
    VERIFIED = "verified"
    REMOVED = "removed"
    CFA_ADDED = "cfa_added"
    CFA_REMOVED = "cfa_removed"
    STORE_PASSWORD_CHANGED = "store_password_changed"  # noqa: S105 - an action, not a secret

    @property
    def label(self) -> str:
        """The French name shown to people."""
        return _ACTION_LABELS[self]


_ACTION_LABELS = {
    JournalAction.ADDED: "ajoutée",
    JournalAction.ROTATED: "renouvelée",
    JournalAction.IMPORTED: "importée",
    JournalAction.EXPORTED: "exportée",
    JournalAction.REVEALED: "affichée",
    JournalAction.VERIFIED: "vérifiée",
    JournalAction.REMOVED: "supprimée",
    JournalAction.CFA_ADDED: "CFA ajouté",
    JournalAction.CFA_REMOVED: "CFA retiré",
    JournalAction.STORE_PASSWORD_CHANGED: "mot de passe du magasin changé",
}


def source_label(value: str) -> str:
    """The French label of a stored expiry source; an unknown one (newer cfakey) as is."""
    try:
        return ExpirySource(value).label
    except ValueError:
        return value


def action_label(value: str) -> str:
    """The French label of a journal action; an unknown one (newer cfakey) as is."""
    try:
        return JournalAction(value).label
    except ValueError:
        return value
