"""``config set/get/unset`` as use-cases: settings in the file, OAuth client secrets in the store.

A setting's name is checked before anything is written; a value is normalised by its kind
(API address, header, warning window). The vendor's OAuth client secret never goes to the
file: it is written to the key store and journalled like every other secret, by its
fingerprint only.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cfakey.config import require_known_key, window_days
from cfakey.core.codes import JournalAction
from cfakey.core.peak import DEFAULT_PEAK_MONTHS, PEAK_SETTING, peak_setting_text
from cfakey.errors import NotFoundError, UsageError
from cfakey.stores.base import fingerprint, oauth_entry_name

if TYPE_CHECKING:
    from cfakey.config import Config
    from cfakey.metadata import Metadata
    from cfakey.registry.model import Opco, Registry
    from cfakey.stores.base import KeyStore

SECRET_SETTING = re.compile(r"opco\.(?P<opco>[^.]+)\.oauth\.client_secret")
OPCO_SETTING = re.compile(r"opco\.(?P<opco>[^.]+)\.(?P<rest>.+)")
URL_SUFFIXES = (".api_url", ".recette_url", ".oauth.token_url")
INT_SUFFIXES = (".warn_days", ".crit_days", ".follow_up_days", ".max_age_days")
HEADER_SETTINGS = ("editeur", "logiciel", "version")
#: Settings that take one of a few words, by the end of their name.
_CHOICES: dict[str, dict[str, Any]] = {
    ".cfakeyinfo_query_key": {"true": True, "false": False},
    ".oauth.client_auth": {"basic": "basic", "post": "post"},
}
#: Journal actions of the vendor's OAuth client secret (labels: the journal's table).
OAUTH_CLIENT_STORED = JournalAction.OAUTH_SECRET_SET.id
OAUTH_CLIENT_ERASED = JournalAction.OAUTH_SECRET_REMOVED.id


@dataclass(frozen=True)
class Setting:
    """A setting's name as checked, and the OPCO whose OAuth client secret it names, if so."""

    key: str
    secret_opco: Opco | None = None


@dataclass(frozen=True)
class SettingValue:
    """What ``config get`` shows: the value (``None`` for a secret), and whether it is the
    default."""

    value: Any
    is_default: bool = False


@dataclass(frozen=True)
class Sources:
    """Where settings live: the file, and (opened only for a secret) the store and journal."""

    config: Config
    store: Callable[[], KeyStore]
    metadata: Callable[[], Metadata]
    now: Callable[[], datetime]


def read(sources: Sources, setting: Setting) -> SettingValue:
    """``config get``: a setting's value or default; for a secret, only that it is stored."""
    if setting.secret_opco is None:
        return get_setting(sources.config, setting)
    require_oauth_secret(sources.store(), setting)
    return SettingValue(None)


def erase(sources: Sources, setting: Setting) -> bool:
    """``config unset``: remove a setting, or the secret (journalled); ``False`` if absent."""
    if setting.secret_opco is None:
        return unset_setting(sources.config, setting)
    return remove_oauth_secret(
        sources.store(), sources.metadata(), setting.secret_opco, now=sources.now
    )


def parse_setting(registry: Registry, key: str) -> Setting:
    """The setting ``key`` names; an unknown name or an OPCO name for an id is refused.

    An ``opco.<id>.…`` setting must use the registry id, not a name (« opco.Atlas.… »).
    """
    from cfakey.registry.names import resolve

    key = key.strip()
    match = OPCO_SETTING.fullmatch(key)
    if match is not None and all(opco.id != match["opco"] for opco in registry.opcos):
        opco = resolve(registry, match["opco"])  # an unknown name raises its own error
        raise UsageError(
            f"« {match['opco']} » n'est pas un identifiant d'OPCO.",
            hint=f"Utilisez l'identifiant : opco.{opco.id}.{match['rest']}",
        )
    secret = SECRET_SETTING.fullmatch(key)
    if secret is not None:
        return Setting(key, registry.get(secret["opco"]))
    require_known_key(key)  # before quoting it anywhere: it may be a key typed in the wrong place
    return Setting(key)


def coerce(key: str, value: str) -> Any:
    """``value`` as stored for ``key``: an API address checked, a header ASCII, days a number."""
    from cfakey.core.verify.plan import check_base_url, check_header_value

    if key.endswith(URL_SUFFIXES):
        return check_base_url(value)
    if key in HEADER_SETTINGS:
        return check_header_value(key, value)
    if key.endswith(INT_SUFFIXES):
        return window_days(key, value)
    owned = _owned_setting(key, value)
    if owned is not None:
        return owned
    for suffix, choices in _CHOICES.items():
        if key.endswith(suffix):
            return _choice(key, value, choices)
    return value.strip()


def _owned_setting(key: str, value: str) -> str | None:
    """A setting its own module checks: the peak months, a store's settings
    (``openbao.prefix``, as ``store use`` checks it); ``None`` when ``key`` is not one."""
    from cfakey.stores.kinds import STORE_KINDS

    if key == PEAK_SETTING:
        return peak_setting_text(value)
    kind_name, _, name = key.partition(".")
    kind = STORE_KINDS.get(kind_name)
    if kind is None:
        return None
    store_class = kind.store_class()
    return store_class.checked_setting(name, value) if name in store_class.setting_names else None


def _choice(key: str, value: object, choices: dict[str, Any]) -> Any:
    """One of ``choices`` (named case-insensitively); the value typed is never quoted."""
    chosen = choices.get(str(value).strip().lower())
    if chosen is None:
        raise UsageError(
            f"Paramètre « {key} » invalide : {' ou '.join(choices)} est attendu.",
            hint=f"Corrigez-le : cfakey config set {key} {'|'.join(choices)}",
        )
    return chosen


def set_setting(config: Config, setting: Setting, value: str | None) -> None:
    """Write a (non-secret) setting to the file, checked and normalised."""
    if setting.secret_opco is not None:
        raise UsageError(
            "Un secret ne se passe jamais en argument (il resterait dans l'historique "
            "et la liste des processus).",
            hint="Relancez sans valeur, il sera demandé en saisie masquée (ou lu sur "
            f"l'entrée standard) : cfakey config set {setting.key}",
        )
    if value is None:
        raise UsageError(
            f"VALEUR manquante pour « {setting.key} ».",
            hint=f"Exemple : cfakey config set {setting.key} VALEUR",
        )
    config.set(setting.key, coerce(setting.key, value))


def get_setting(config: Config, setting: Setting) -> SettingValue:
    """The value of a (non-secret) setting, or its default; ``NotFoundError`` if neither."""
    from cfakey.core.verify.model import HEADER_DEFAULTS

    value = config.get(setting.key)
    if value is not None:
        return SettingValue(value)
    if setting.key in HEADER_DEFAULTS:
        return SettingValue(HEADER_DEFAULTS[setting.key], is_default=True)
    if setting.key == PEAK_SETTING:
        return SettingValue(peak_setting_text(list(DEFAULT_PEAK_MONTHS)), is_default=True)
    raise NotFoundError(
        f"Le paramètre « {setting.key} » n'est pas réglé.",
        hint=f"cfakey config set {setting.key} VALEUR",
    )


def unset_setting(config: Config, setting: Setting) -> bool:
    """Remove a (non-secret) setting from the file; ``False`` if it was not set."""
    return config.unset(setting.key)


def set_oauth_secret(
    store: KeyStore,
    metadata: Metadata,
    opco: Opco,
    secret: str,
    *,
    now: Callable[[], datetime],
) -> str:
    """Store the vendor's OAuth client secret of ``opco`` and journal it; its fingerprint.

    The journal entry and the store write go in one transaction: a store that refuses
    the secret leaves no entry, and the entry commits only once the secret is written.
    """
    secret = secret.strip()
    if not secret:
        raise UsageError("Secret vide : rien n'a été enregistré.")
    entry = oauth_entry_name(opco.id)
    new = fingerprint(secret)
    with metadata.transaction():
        old = store.get(entry)
        metadata.log(
            OAUTH_CLIENT_STORED,
            opco_id=opco.id,
            old_fingerprint=fingerprint(old) if old else None,
            new_fingerprint=new,
            detail="secret du client OAuth2 de l'éditeur",
            at=now(),
        )
        store.put(entry, secret)
    return new


def has_oauth_secret(store: KeyStore, opco: Opco) -> bool:
    """Whether the key store holds the vendor's OAuth client secret of ``opco``."""
    return store.get(oauth_entry_name(opco.id)) is not None


def require_oauth_secret(store: KeyStore, setting: Setting) -> None:
    """``config get`` of a secret: only whether it is there (``NotFoundError`` if not)."""
    if setting.secret_opco is None or not has_oauth_secret(store, setting.secret_opco):
        raise NotFoundError(
            f"Aucun secret enregistré pour « {setting.key} ».",
            hint=f"cfakey config set {setting.key}",
        )


def remove_oauth_secret(
    store: KeyStore, metadata: Metadata, opco: Opco, *, now: Callable[[], datetime]
) -> bool:
    """Delete the vendor's OAuth client secret of ``opco`` and journal it; ``False`` if absent."""
    entry = oauth_entry_name(opco.id)
    with metadata.transaction():
        old = store.get(entry)
        if old is None:
            return False
        metadata.log(
            OAUTH_CLIENT_ERASED,
            opco_id=opco.id,
            old_fingerprint=fingerprint(old),
            detail="secret du client OAuth2 de l'éditeur",
            at=now(),
        )
        return store.delete(entry)
