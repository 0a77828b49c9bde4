"""The enumerated values cfakey computes with, each an ASCII identifier with its French label.

The identifier is what ``--json`` writes and what is stored (a contract for scripts); the
label is what people read. One table per code, each line an identifier and its label:
adding a value means one line here, and every renderer follows.
"""

from __future__ import annotations

from enum import Enum, IntEnum
from typing import Self


class Coded(Enum):
    """An enumeration whose members are ``(identifier, French label)`` lines.

    ``Member.value`` is the identifier, so ``Code("identifier")`` finds the member back.
    """

    label: str

    def __new__(cls, identifier: str, label: str) -> Self:
        member = object.__new__(cls)
        member._value_ = identifier
        member.label = label
        return member

    @property
    def id(self) -> str:
        """The ASCII identifier: what ``--json`` writes and what is stored."""
        return str(self.value)

    @classmethod
    def label_of(cls, identifier: str) -> str:
        """The French label of a stored identifier; an unknown one (newer cfakey) as is."""
        member = cls._value2member_map_.get(identifier)
        return member.label if isinstance(member, Coded) else identifier


class KeyStatus(Coded):
    """Where a key stands against its expiry (``list``, ``check``, ``show``)."""

    REFUSED = ("refused", "refusée")
    EXPIRED = ("expired", "expirée")
    EXPIRING = ("expiring", "à renouveler")
    VALID = ("valid", "valide")
    UNDATED = ("undated", "sans date")


class VerifyOutcome(Coded):
    """The class of one verification (``verify``), kept with the key as its last one."""

    VALID = ("valide", "valide")
    KEY_REFUSED = ("cle_refusee", "clé refusée")
    UNSUPPORTED = ("non_pris_en_charge", "non pris en charge")
    UNAVAILABLE = ("opco_indisponible", "OPCO indisponible")
    RATE_LIMITED = ("limite", "limité")
    BAD_RESPONSE = ("reponse_illisible", "réponse illisible")
    REDIRECT_REFUSED = ("redirection_refusee", "redirection refusée")
    NO_BASE_URL = ("url_absente", "adresse d'API absente")
    INVALID_URL = ("url_invalide", "adresse d'API invalide")
    INSECURE_URL = ("url_non_securisee", "adresse d'API non sécurisée")
    OAUTH_MISSING = ("oauth_incomplet", "client OAuth incomplet")
    NO_KEY = ("cle_absente", "clé absente")

    @classmethod
    def is_conclusive(cls, identifier: str) -> bool:
        """Whether the OPCO said something about the key itself (valid or refused): only
        such a verdict is kept with the key; the rest says nothing of it (issue 13)."""
        return identifier in (cls.VALID.id, cls.KEY_REFUSED.id)


class ExpirySource(Coded):
    """Where a key's expiry date came from; the identifier is stored with the key."""

    REGISTRY = ("registry", "règle de l'OPCO")
    JWT = ("jwt", "date « exp » du jeton")
    PORTAL = ("portal", "date du portail")
    OPCO_API = ("opco_api", "réponse de l'OPCO")
    OPERATOR = ("operator", "saisie")
    NONE = ("none", "aucune")


class JournalAction(Coded):
    """What a journal entry records; the identifier is stored in the journal."""

    ADDED = ("added", "ajoutée")
    ROTATED = ("rotated", "renouvelée")
    IMPORTED = ("imported", "importée")
    EXPORTED = ("exported", "exportée")
    REVEALED = ("revealed", "affichée")
    VERIFIED = ("verified", "vérifiée")
    REMOVED = ("removed", "supprimée")
    CFA_ADDED = ("cfa_added", "CFA ajouté")
    CFA_REMOVED = ("cfa_removed", "CFA retiré")
    STORE_PASSWORD_CHANGED = ("store_password_changed", "mot de passe du magasin changé")
    OAUTH_SECRET_SET = ("oauth_secret_set", "secret OAuth2 enregistré")
    OAUTH_SECRET_REMOVED = ("oauth_secret_removed", "secret OAuth2 effacé")
    REQUESTED = ("requested", "demande envoyée")
    REQUEST_CLOSED = ("request_closed", "demande close (clé reçue)")
    REQUEST_CANCELLED = ("request_cancelled", "demande annulée")
    CFA_EDITED = ("cfa_edited", "CFA modifié")
    STORE_SETTLED = ("store_settled", "clés rangées sous le nom propre à ce dossier")
    STORE_MIGRATED = ("store_migrated", "clés déplacées vers un autre magasin")


#: In a verification's journal detail when the OPCO's date replaced the recorded expiry
#: (``calendar`` raises its events' ``SEQUENCE`` from that entry's time).
EXPIRY_UPDATED = "échéance mise à jour"


class RequestStatus(Coded):
    """Where a key request sent by e-mail stands (``request list``)."""

    WAITING = ("waiting", "demandée")
    FOLLOW_UP = ("follow_up", "à relancer")


class DatabaseCheck(Coded):
    """What SQLite's quick check of the metadata database found (``doctor``)."""

    OK = ("ok", "vérifiée, sans anomalie")
    DAMAGED = ("damaged", "endommagée (voir les problèmes)")
    UNCHECKED = ("unchecked", "non vérifiée : la base ne s'ouvre pas (voir les problèmes)")


class DataPath(Coded):
    """The folders and files of cfakey that ``doctor`` examines."""

    CONFIG_DIR = ("config_dir", "Dossier de configuration")
    CONFIG_FILE = ("config_file", "Fichier de configuration")
    DATA_DIR = ("data_dir", "Dossier de données")
    METADATA_DB = ("metadata_db", "Métadonnées (SQLite)")
    ENCRYPTED_STORE = ("encrypted_store", "Fichier chiffré")


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
        return ("OK", "ALERTE", "CRITIQUE")[self]


def source_label(identifier: str) -> str:
    """The French label of a stored expiry source."""
    return ExpirySource.label_of(identifier)


def detail_label(detail: str) -> str:
    """A journal entry's detail as people read it: « échéance : date du portail », not the
    stored ``expiry:portal``; « clé refusée ; … », not the stored ``cle_refusee ; …``; a
    date JJ/MM/AAAA; any other detail is already French."""
    code, found, rest = detail.partition("expiry:")
    if found and not code:
        source, separator, more = rest.partition(" ; ")  # « ; repris après interruption »
        return f"échéance : {source_label(source)}{separator}{more}"
    head, reason_separator, reason = detail.partition(" — ")
    parts = head.split(" ; ")
    if parts[0] not in VerifyOutcome._value2member_map_:
        return detail
    parts[0] = VerifyOutcome.label_of(parts[0])
    parts = [_french_dates(part) for part in parts]
    return " ; ".join(parts) + reason_separator + reason


def _french_dates(text: str) -> str:
    """``2027-03-21`` written 21/03/2027, as people read dates."""
    import re

    return re.sub(r"\b(\d{4})-(\d{2})-(\d{2})\b", r"\3/\2/\1", text)


def action_label(identifier: str) -> str:
    """The French label of a journal action."""
    return JournalAction.label_of(identifier)
