"""Typed model of ``opco_registry.yaml``: one entry per OPCO, and the rules code computes with.

The classes are frozen standard-library dataclasses on purpose: pydantic validates them
(``__pydantic_config__`` forbids unknown fields) when the YAML changes, but building them
from the validated cache does not import pydantic, which keeps every command quick to
start. ``docs/registry.md`` documents each field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

# Not pydantic.ConfigDict: a plain mapping needs no pydantic import; pydantic reads it.
_STRICT: Any = {"extra": "forbid", "str_strip_whitespace": True}


class _Exact:
    """``Annotated`` marker: pydantic takes the value only as that very type.

    Lax pydantic reads ``days: true`` as 1 day and ``days: 30.0`` as 30; a registry value
    must be written as what it is. pydantic reads the marker only when it validates (it
    calls this hook), so the model still imports without pydantic.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema  # only when validating

        if self.kind == "int":
            return core_schema.int_schema(strict=True)
        return core_schema.bool_schema(strict=True)


#: A whole number written as one (no ``true``, no ``30.0``, no ``"30"``).
StrictInt = Annotated[int, _Exact("int")]
#: ``true`` or ``false`` (no ``1``, no ``"oui"``).
StrictBool = Annotated[bool, _Exact("bool")]

#: Hosts a registry address may reach over plain ``http://`` (a local gateway, tests).
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def check_url(name: str, url: str | None) -> None:
    """Refuse an address a browser or the HTTP client must not open (``javascript:``...).

    ``https://`` and a host, or ``http://`` for the local machine only; no space.
    """
    from urllib.parse import urlsplit  # only when validating

    if url is None:
        return
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        parts, host = None, ""
    secure = parts is not None and (
        parts.scheme == "https" or (parts.scheme == "http" and host in LOCAL_HOSTS)
    )
    if not secure or not host or any(char.isspace() or not char.isprintable() for char in url):
        raise ValueError(
            f"« {name} » : adresse invalide : une adresse https://hôte/chemin est attendue "
            "(http:// seulement pour 127.0.0.1 et localhost)"
        )


def check_email(address: str) -> None:
    """One ``name@domain.tld`` address, with no space nor second ``@``."""
    import re  # only when validating

    if not re.fullmatch(r"[^@\s]+@[^@\s]+\.[^@\s.]+", address) or not address.isprintable():
        raise ValueError("« emails » : adresse e-mail invalide : nom@domaine.fr est attendu")


#: Longest lifetime a registry rule may state: ten years, in days or in months.
MAX_RULE_DAYS = 3660
MAX_RULE_MONTHS = 120

ObtainMethod = Literal["self_service", "on_request", "not_published"]
KeyScope = Literal["siren", "siret", "selected_cfa", "og_establishments", "account", "unknown"]
ExpiryKind = Literal["fixed_duration", "chosen_duration", "portal_date", "none_stated", "unknown"]
OAuthClientAuth = Literal["basic", "post"]
ConnectionState = Literal[
    "production", "recette", "developpement", "prevu", "non_ouvert", "inconnu"
]

OBTAIN_LABELS: dict[str, str] = {
    "self_service": "libre-service sur le portail",
    "on_request": "sur demande (formulaire, puis e-mail)",
    "not_published": "procédure non publiée",
}
SCOPE_LABELS: dict[str, str] = {
    "siren": "SIREN (tous les établissements)",
    "siret": "SIRET (un établissement)",
    "selected_cfa": "le CFA sélectionné",
    "og_establishments": "établissements validés de l'OG",
    "account": "compte du portail",
    "unknown": "inconnue",
}
SCOPE_SHORT_LABELS: dict[str, str] = {
    "siren": "SIREN",
    "siret": "SIRET",
    "selected_cfa": "CFA choisi",
    "og_establishments": "étab. de l'OG",
    "account": "compte",
    "unknown": "inconnue",
}
CONNECTION_LABELS: dict[str, str] = {
    "production": "en production",
    "recette": "en recette",
    "developpement": "en développement",
    "prevu": "prévu",
    "non_ouvert": "pas encore ouvert",
    "inconnu": "inconnu",
}


@dataclass(frozen=True)
class Link:
    """A named web address: a portal, a form, a guide."""

    __pydantic_config__ = _STRICT

    name: str
    url: str

    def __post_init__(self) -> None:
        check_url("url", self.url)


@dataclass(frozen=True)
class ExpiryRule:
    """How long a key lives, in a form code computes with.

    ``kind`` says which fields apply:

    - ``fixed_duration``: exactly one of ``days`` or ``months`` after the key is obtained;
    - ``chosen_duration``: the operator picks ``min_months`` to ``max_months`` on the portal;
    - ``portal_date``: the portal shows the date; with ``jwt_exp_precedence`` a JWT ``exp``
      claim inside the key wins over what is typed;
    - ``none_stated``: the source documents state no lifetime;
    - ``unknown``: the procedure itself is not published.
    """

    __pydantic_config__ = _STRICT

    kind: ExpiryKind
    days: StrictInt | None = None
    months: StrictInt | None = None
    min_months: StrictInt | None = None
    max_months: StrictInt | None = None
    jwt_exp_precedence: StrictBool = False
    recommended_rotation_months: StrictInt | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        for name in ("days", "months", "min_months", "max_months", "recommended_rotation_months"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"« {name} » doit être un nombre positif, pas {value}")
            # Keys live months: a larger value is a typo, and would overflow date arithmetic.
            limit = MAX_RULE_DAYS if name == "days" else MAX_RULE_MONTHS
            if value is not None and value > limit:
                raise ValueError(f"« {name} » vaut au plus {limit} (dix ans)")
        if self.kind == "fixed_duration" and (self.days is None) == (self.months is None):
            raise ValueError("une durée fixe demande exactement un champ « days » ou « months »")
        if self.kind != "fixed_duration" and (self.days is not None or self.months is not None):
            raise ValueError("« days » et « months » ne valent que pour « fixed_duration »")
        if self.kind == "chosen_duration":
            if self.max_months is None:
                raise ValueError("une durée choisie demande « max_months »")
            if (self.min_months or 1) > self.max_months:
                raise ValueError("« min_months » dépasse « max_months »")
        elif self.min_months is not None or self.max_months is not None:
            raise ValueError(
                "« min_months » et « max_months » ne valent que pour « chosen_duration »"
            )
        if self.jwt_exp_precedence and self.kind != "portal_date":
            raise ValueError("« jwt_exp_precedence » ne vaut que pour « portal_date »")

    @property
    def lowest_months(self) -> int:
        """The shortest lifetime the operator may choose (``chosen_duration``)."""
        return self.min_months or 1


@dataclass(frozen=True)
class KeyShape:
    """What a well-formed key of this OPCO looks like: used to warn, never to refuse.

    ``pattern`` is a regular expression the whole key must match; ``description`` says the
    same in French for the warning (« 64 lettres et chiffres »).
    """

    __pydantic_config__ = _STRICT

    pattern: str
    description: str

    def __post_init__(self) -> None:
        import re  # only where a key is checked or the registry validated

        try:
            re.compile(self.pattern)
        except re.error as error:
            raise ValueError(
                f"« pattern » n'est pas une expression régulière valide ({error.msg})"
            ) from None

    def matches(self, key: str) -> bool:
        """Whether the whole of ``key`` has this shape."""
        import re

        return re.fullmatch(self.pattern, key) is not None


#: Longest ``short_label``: the width of one column of the ``list`` matrix.
SHORT_LABEL_MAX = 5


@dataclass(frozen=True)
class KeyRequest:
    """For keys obtained on request: what to send, to whom, and how the key comes back."""

    __pydantic_config__ = _STRICT

    form: Link
    fields: tuple[str, ...]
    who_requests: str
    delivery: str


@dataclass(frozen=True)
class Support:
    """Published support contacts for key problems."""

    __pydantic_config__ = _STRICT

    emails: tuple[str, ...] = ()
    phones: tuple[str, ...] = ()
    web: tuple[Link, ...] = ()
    note: str | None = None

    def __post_init__(self) -> None:
        for address in self.emails:
            check_email(address)


@dataclass(frozen=True)
class ConnectionStatus:
    """Where one flow (contracts or invoices) stands at the OPCO."""

    __pydantic_config__ = _STRICT

    state: ConnectionState
    since: str | None = None


@dataclass(frozen=True)
class Connection:
    """The connection ("accrochage") status for contracts and invoices, as of a date."""

    __pydantic_config__ = _STRICT

    contracts: ConnectionStatus
    invoices: ConnectionStatus
    as_of: date
    source: str
    note: str | None = None
    #: Contracts sent with protocol V2 (``contracts`` is protocol V1).
    contracts_v2: ConnectionStatus | None = None
    #: Training agreements (``POST /v1/conventions``).
    conventions: ConnectionStatus | None = None
    #: « Certificats de réalisation » (``POST /v2/certificats``).
    certificates: ConnectionStatus | None = None


@dataclass(frozen=True)
class ApiFacts:
    """What is publicly known of the OPCO's API Convergence endpoint."""

    __pydantic_config__ = _STRICT

    base_url: str | None = None
    acceptance_url: str | None = None
    oauth_client_required: StrictBool = False
    developer_portal: str | None = None
    note: str | None = None
    #: ``cfakeyinfo`` also wants the key as the ``XAPIKEY`` query parameter (off: a key
    #: in a URL can end up in proxy logs; config ``opco.<id>.cfakeyinfo_query_key``).
    cfakeyinfo_query_key: StrictBool = False
    #: How the vendor's OAuth2 client authenticates: HTTP Basic or the form body.
    oauth_client_auth: OAuthClientAuth = "post"
    #: The scope asked with the token, when the OPCO's server needs one.
    oauth_scope: str | None = None

    def __post_init__(self) -> None:
        for name in ("base_url", "acceptance_url", "developer_portal"):
            check_url(name, getattr(self, name))


@dataclass(frozen=True)
class Source:
    """A document the entry's facts come from."""

    __pydantic_config__ = _STRICT

    document: str
    date: date
    version: str | None = None
    url: str | None = None
    note: str | None = None

    def __post_init__(self) -> None:
        check_url("url", self.url)


@dataclass(frozen=True)
class Opco:
    """One OPCO: how its key is obtained, how long it lives, what to watch out for."""

    __pydantic_config__ = _STRICT

    id: str
    name: str
    aliases: tuple[str, ...]
    obtain: ObtainMethod
    key_label: str
    portals: tuple[Link, ...]
    steps: tuple[str, ...]
    scope: KeyScope
    expiry: ExpiryRule
    regeneration_revokes: StrictBool | None
    shown_once: StrictBool
    connection: Connection
    sources: tuple[Source, ...]
    links: tuple[Link, ...] = ()
    scope_note: str | None = None
    request: KeyRequest | None = None
    downloadable: StrictBool = False
    warnings: tuple[str, ...] = ()
    support: Support = Support()
    api: ApiFacts = ApiFacts()
    conflicts: tuple[str, ...] = ()
    short_label: str | None = None
    key_shape: KeyShape | None = None

    def __post_init__(self) -> None:
        if self.obtain == "on_request" and self.request is None:
            raise ValueError("une clé obtenue sur demande demande un bloc « request »")
        if self.short_label is not None and not 1 <= len(self.short_label) <= SHORT_LABEL_MAX:
            raise ValueError(f"« short_label » compte de 1 à {SHORT_LABEL_MAX} caractères")

    @property
    def column_label(self) -> str:
        """The OPCO's column heading in the ``list`` matrix (at most 5 characters)."""
        return self.short_label or self.id[:SHORT_LABEL_MAX]

    @property
    def portal_url(self) -> str | None:
        """The first portal's address, where the operator starts."""
        return self.portals[0].url if self.portals else None


@dataclass(frozen=True)
class Registry:
    """The whole registry: its own version and the OPCO entries, in display order."""

    __pydantic_config__ = _STRICT

    schema_version: StrictInt
    version: str
    updated: date
    opcos: tuple[Opco, ...]
    #: The developer portals of the API Convergence (cfadock, transopco).
    developer_portals: tuple[Link, ...] = ()
    #: Documents about the API as a whole (the Vademecum CFA), each with its date.
    documents: tuple[Source, ...] = ()

    def get(self, opco_id: str) -> Opco:
        """The entry with this exact id (names go through :mod:`cfakey.registry.names`)."""
        for opco in self.opcos:
            if opco.id == opco_id:
                return opco
        raise KeyError(opco_id)
