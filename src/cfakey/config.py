"""The user's settings file (JSON, in the config directory): store choice, API settings.

Keys are dotted names (``store``, ``editeur``, ``opco.atlas.api_url``); only known keys
are accepted, so a typo is an error rather than a setting silently ignored. No secret is
ever written here: OAuth client secrets go to the key store.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cfakey.errors import CfakeyError, DataCorruptedError, UsageError, os_reason
from cfakey.paths import atomic_write, ensure_private_dir
from cfakey.stores.kinds import choices_text, kind_names

# Each known key: a pattern for its name and a French description for help and errors.
KNOWN_KEYS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"store"),
        f"magasin de clés : {choices_text()}",
    ),
    (re.compile(r"editeur"), "en-tête EDITEUR envoyé à l'API (éditeur du logiciel)"),
    (re.compile(r"logiciel"), "en-tête LOGICIEL envoyé à l'API (nom du logiciel)"),
    (re.compile(r"version"), "en-tête VERSION envoyé à l'API (version du logiciel)"),
    (re.compile(r"opco\.[a-z0-9]+\.api_url"), "URL de base de l'API de l'OPCO (production)"),
    (re.compile(r"opco\.[a-z0-9]+\.recette_url"), "URL de base de l'API de l'OPCO (recette)"),
    (re.compile(r"opco\.[a-z0-9]+\.oauth\.token_url"), "URL du jeton OAuth2 de l'éditeur"),
    (re.compile(r"opco\.[a-z0-9]+\.oauth\.client_id"), "identifiant du client OAuth2 de l'éditeur"),
    (re.compile(r"opco\.[a-z0-9]+\.oauth\.scope"), "scope OAuth2 demandé"),
    (
        re.compile(r"opco\.[a-z0-9]+\.oauth\.client_auth"),
        "authentification du client OAuth2 : basic (en-tête HTTP Basic) ou post (formulaire)",
    ),
    (
        re.compile(r"opco\.[a-z0-9]+\.cfakeyinfo_query_key"),
        "true : cfakeyinfo reçoit aussi la clé en paramètre XAPIKEY de l'adresse (false)",
    ),
    (re.compile(r"opco\.[a-z0-9]+\.warn_days"), "jours d'alerte avant échéance pour cet OPCO"),
    (re.compile(r"opco\.[a-z0-9]+\.crit_days"), "jours d'alerte critique avant échéance"),
    (re.compile(r"request\.follow_up_days"), "jours avant de relancer une demande de clé (10)"),
    (
        re.compile(r"verify\.max_age_days"),
        "jours après lesquels une clé non vérifiée auprès de l'OPCO est signalée (30)",
    ),
    (
        re.compile(r"peak\.months"),
        "mois de la rentrée, pic des contrats : clés à renouveler avant (9,10)",
    ),
    (re.compile(r"openbao\.url"), "adresse du coffre OpenBao / Vault (https://hôte:8200)"),
    (re.compile(r"openbao\.mount"), "point de montage KV version 2 du coffre (secret)"),
    (re.compile(r"openbao\.prefix"), "préfixe des chemins de cfakey dans le coffre (cfakey)"),
    (re.compile(r"openbao\.ca_bundle"), "autorité de certification du coffre (fichier PEM)"),
    (re.compile(r"openbao\.role_id"), "rôle AppRole (secret_id : CFAKEY_BAO_SECRET_ID)"),
)
STORE_CHOICES = kind_names()


#: Widest warning window, in days: keys live months, and a larger value would overflow
#: date arithmetic (``Infinity``, 10**12).
MAX_WINDOW_DAYS = 3650


def require_known_key(key: str) -> None:
    """Refuse a setting name cfakey does not know (a typo would otherwise be ignored).

    The name is not quoted back: a key pasted in the wrong place would land in the message.
    """
    if describe_key(key) is None:
        raise UsageError(
            "Paramètre inconnu : un nom de la forme store, editeur ou opco.<id>.api_url "
            "est attendu.",
            hint="Paramètres reconnus : cfakey config list --all.",
        )


def window_days(name: str, value: object) -> int:
    """A warning window (``warn_days``, ``crit_days``) from the settings or the command line.

    Whole days from 0 to :data:`MAX_WINDOW_DAYS`; anything else (negative, ``Infinity``,
    a fraction, text) is refused with a message naming the setting, never quoting the value.
    """
    days: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        days = value
    elif (
        isinstance(value, str)
        and value.strip().isascii()
        and value.strip().isdigit()
        and len(value.strip()) <= 5
    ):
        days = int(value.strip())
    if days is None or not 0 <= days <= MAX_WINDOW_DAYS:
        raise UsageError(
            f"Paramètre « {name} » invalide : un nombre entier de jours de 0 à "
            f"{MAX_WINDOW_DAYS} est attendu.",
            hint=f"Corrigez-le : cfakey config set {name} JOURS (ou config unset {name}).",
        )
    return days


def configured_api_url(
    values: Mapping[str, Any], opco_id: str, *, recette: bool
) -> tuple[str | None, str]:
    """The API address the settings give for an OPCO (``None``: unset), and its setting."""
    setting = f"opco.{opco_id}.{'recette_url' if recette else 'api_url'}"
    value = values.get(setting)
    return (value.strip() if isinstance(value, str) and value.strip() else None), setting


def describe_key(key: str) -> str | None:
    """The French description of a known key, ``None`` for an unknown one."""
    for pattern, description in KNOWN_KEYS:
        if pattern.fullmatch(key):
            return description
    return None


class _NotJsonError(ValueError):
    """``NaN``, ``Infinity``: accepted by Python's json module, not by the JSON standard."""


def _refuse_constant(name: str) -> Any:
    raise _NotJsonError(name)


@dataclass
class Config:
    """The settings of one user, as read from ``path``."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path) -> Config:
        """Read the file; a missing file is an empty configuration."""
        from cfakey.userfiles import (
            CONFIG_LIMIT,
            InputTooLongError,
            read_bounded,
            size_text,
        )

        try:
            with path.open("rb") as handle:
                raw = read_bounded(handle, CONFIG_LIMIT, str(path)).decode("utf-8")
        except InputTooLongError:
            raise DataCorruptedError(
                f"Fichier de configuration {path} invalide : entrée trop longue (plus de "
                f"{size_text(CONFIG_LIMIT)}) ; corrigez-le ou supprimez-le."
            ) from None
        except FileNotFoundError:
            return cls(path)
        except UnicodeDecodeError:
            raise DataCorruptedError(
                f"Fichier de configuration {path} invalide : ce n'est pas du texte UTF-8 ; "
                "corrigez-le ou supprimez-le."
            ) from None
        except OSError as error:
            raise DataCorruptedError(
                f"Fichier de configuration {path} illisible : {os_reason(error)}."
            ) from None
        try:
            values = json.loads(raw, parse_constant=_refuse_constant)
        except (json.JSONDecodeError, _NotJsonError) as error:
            line = f" (ligne {error.lineno})" if isinstance(error, json.JSONDecodeError) else ""
            raise DataCorruptedError(
                f"Fichier de configuration {path} invalide{line} : corrigez-le ou supprimez-le."
            ) from None
        except (ValueError, RecursionError):  # a 5,000-digit number, 100,000 nested [
            raise DataCorruptedError(
                f"Fichier de configuration {path} invalide : corrigez-le ou supprimez-le."
            ) from None
        if not isinstance(values, dict):
            raise DataCorruptedError(
                f"Fichier de configuration {path} invalide : un objet JSON est attendu."
            )
        return cls(path, values)

    def get(self, key: str) -> Any:
        """The value of ``key``, or ``None``."""
        return self.values.get(key)

    def set(self, key: str, value: Any) -> None:
        """Set a known key and save the file atomically (mode 0600)."""
        require_known_key(key)
        if key == "store" and value not in STORE_CHOICES:
            raise UsageError(f"Magasin inconnu : choix possibles : {', '.join(STORE_CHOICES)}.")
        if key.endswith(("warn_days", "crit_days", "follow_up_days", "max_age_days")):
            value = window_days(key, value)
        self.values[key] = value
        self.save()

    def unset(self, key: str) -> bool:
        """Remove ``key``; ``False`` if it was not set."""
        if key not in self.values:
            return False
        del self.values[key]
        self.save()
        return True

    def save(self) -> None:
        """Write the settings atomically, readable by the owner only."""
        text = json.dumps(self.values, ensure_ascii=False, indent=2, sort_keys=True) + "\n"
        try:
            ensure_private_dir(self.path.parent)
            atomic_write(self.path, text.encode("utf-8"))
        except OSError as error:
            raise CfakeyError(
                f"Impossible d'enregistrer la configuration {self.path} : {os_reason(error)}.",
                hint="Vérifiez les droits du dossier, ou choisissez-en un autre avec CFAKEY_HOME.",
            ) from None
