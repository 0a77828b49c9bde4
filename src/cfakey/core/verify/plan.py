"""What to check: the keys, where to send each (base URL), and the vendor's OAuth clients."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cfakey.core.cfas import the_cfa
from cfakey.core.verify.model import (
    HEADER_DEFAULTS,
    OAuthClient,
    Outcome,
    VerifyJob,
    VerifyRequest,
    VerifySettings,
)
from cfakey.errors import NotFoundError, UsageError
from cfakey.stores.base import entry_name, fingerprint, oauth_entry_name

if TYPE_CHECKING:
    from cfakey.config import Config
    from cfakey.metadata import CfaRecord, KeyRecord, Metadata
    from cfakey.registry.model import Opco, Registry
    from cfakey.stores.base import KeyStore

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
_USERINFO = re.compile(r"(?P<scheme>^[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")


def check_selection(
    *, opco_given: bool, all_keys: bool, api_url: str | None, opco_options: int = 0
) -> None:
    """Refuse a selection that names no key or contradicts itself (before any lookup).

    ``opco_given``: the OPCO argument; ``opco_options``: how many ``--opco`` were given.
    """
    if all_keys and opco_given:
        raise UsageError(
            "Indiquez un OPCO ou --all, pas les deux.",
            hint="Pour un OPCO dans tous les CFA : cfakey verify --all --opco OPCO",
        )
    if not all_keys and not opco_given and not opco_options:
        raise UsageError(
            "Indiquez l'OPCO dont vérifier la clé, ou --all pour toutes.",
            hint="Exemples : cfakey verify atlas ; cfakey verify --opco atlas --opco akto ; "
            "cfakey verify --all",
        )
    if api_url and (all_keys or opco_given + opco_options > 1):
        raise UsageError(
            "--api-url vaut pour un seul OPCO : réglez l'adresse de chaque OPCO avec "
            "cfakey config set."
        )


def settings_from_config(
    config: Config,
    *,
    timeout: float = 10.0,
    concurrency: int = 8,
    ca_bundle: Path | None = None,
) -> VerifySettings:
    """The request settings, with ``editeur``/``logiciel``/``version`` from the config."""
    headers: dict[str, str] = {}
    for name, default in HEADER_DEFAULTS.items():
        value = config.get(name)
        headers[name] = check_header_value(name, default if value in (None, "") else str(value))
    if timeout <= 0:
        raise UsageError(f"Délai invalide : {timeout} s (un nombre positif est attendu).")
    if concurrency < 1:
        raise UsageError(f"Parallélisme invalide : {concurrency} (au moins 1).")
    if ca_bundle is not None and not ca_bundle.is_file():
        raise UsageError(f"Fichier de certificats introuvable : {ca_bundle}.")
    return VerifySettings(
        editeur=headers["editeur"],
        logiciel=headers["logiciel"],
        version=headers["version"],
        timeout=timeout,
        concurrency=concurrency,
        ca_bundle=ca_bundle,
    )


def check_header_value(name: str, value: str) -> str:
    """A value sent in a plain-text header must be printable ASCII (no accent, no newline)."""
    text = value.strip()
    if not text or not all(32 <= ord(char) < 127 for char in text):
        raise UsageError(
            f"Valeur invalide pour « {name} » : un en-tête HTTP n'accepte que des caractères "
            "ASCII imprimables (sans accents), et pas de valeur vide.",
            hint=f"Corrigez-la : cfakey config set {name} VALEUR",
        )
    return text


def base_url_for(opco: Opco, config: Config, *, recette: bool) -> tuple[str | None, str]:
    """The configured (else registry) base URL of the OPCO, and the config key that sets it."""
    from cfakey.config import configured_api_url

    configured, setting = configured_api_url(config.values, opco.id, recette=recette)
    if configured is not None:
        return configured, setting
    public = opco.api.acceptance_url if recette else opco.api.base_url
    return public, setting


def oauth_for(opco: Opco, config: Config, store: KeyStore) -> tuple[OAuthClient | None, str | None]:
    """The vendor OAuth client of the OPCO, or a French reason why it cannot be used."""
    prefix = f"opco.{opco.id}.oauth"
    token_url = config.get(f"{prefix}.token_url")
    client_id = config.get(f"{prefix}.client_id")
    scope = config.get(f"{prefix}.scope") or opco.api.oauth_scope
    if not token_url and not client_id:
        if opco.api.oauth_client_required:
            return None, (
                f"{opco.name} exige aussi un client OAuth2 délivré à l'éditeur du logiciel, "
                "qui n'est pas configuré"
            )
        return None, None
    if not token_url or not client_id:
        missing = f"{prefix}.token_url" if not token_url else f"{prefix}.client_id"
        return None, f"client OAuth2 de {opco.name} incomplet : « {missing} » n'est pas réglé"
    secret = store.get(oauth_entry_name(opco.id))
    if not secret:
        return None, f"le secret du client OAuth2 de {opco.name} est absent du magasin de clés"
    auth = config.get(f"{prefix}.client_auth")
    return OAuthClient(
        opco.id,
        str(token_url),
        str(client_id),
        str(scope) if scope else None,
        secret,
        client_auth="basic" if (auth or opco.api.oauth_client_auth) == "basic" else "post",
    ), None


def plan_jobs(
    metadata: Metadata,
    store: KeyStore,
    config: Config,
    registry: Registry,
    request: VerifyRequest,
) -> list[VerifyJob]:
    """The keys to check, their secrets read in one store session, and where to send them."""
    records, cfas = select_keys(metadata, registry, request)
    with store.batch():
        secrets = {(r.siret, r.opco_id): store.get(entry_name(r.siret, r.opco_id)) for r in records}
        oauth: dict[str, tuple[OAuthClient | None, str | None]] = {
            opco_id: oauth_for(registry.get(opco_id), config, store)
            for opco_id in sorted({r.opco_id for r in records})
        }
    return [
        _job(
            record,
            cfas.get(record.siret),
            registry.get(record.opco_id),
            config,
            request,
            secrets,
            oauth,
        )
        for record in records
    ]


def select_keys(
    metadata: Metadata, registry: Registry, request: VerifyRequest
) -> tuple[list[KeyRecord], dict[str, CfaRecord]]:
    """The stored keys a request designates, and their CFAs by SIRET.

    ``--cfa`` names one CFA, or with a SIREN all its sites; without it, ``--all`` means
    every CFA and an OPCO alone the default CFA. ``--opco`` keeps only those OPCOs.
    """
    from cfakey.core.cfas import resolve_cfas

    wanted = request.wanted_opcos
    if request.cfa_query is None and request.all_keys:
        records = metadata.list_keys()
        cfas = {cfa.siret: cfa for cfa in metadata.list_cfas()}
    else:
        chosen = resolve_cfas(metadata, request.cfa_query)
        cfas = {cfa.siret: cfa for cfa in chosen}
        records = [record for cfa in chosen for record in metadata.list_keys(siret=cfa.siret)]
    records = [record for record in records if not wanted or record.opco_id in wanted]
    if not records and not request.all_keys:
        raise _nothing_selected(registry, wanted, list(cfas.values()))
    return records, cfas


def _nothing_selected(
    registry: Registry, wanted: tuple[str, ...], cfas: list[CfaRecord]
) -> NotFoundError:
    names = ", ".join(registry.get(opco_id).name for opco_id in wanted)
    if len(cfas) == 1:
        cfa = cfas[0]
        where = f"{the_cfa(cfa.name)} ({cfa.siret})"
        hint = f"Enregistrez-la : cfakey add {wanted[0]} --cfa {cfa.siret}"
    else:
        where = f"les {len(cfas)} établissements de ce SIREN"
        hint = "Voir : cfakey list"
    if len(wanted) == 1 and len(cfas) == 1:
        return NotFoundError(f"Aucune clé {names} n'est enregistrée pour {where}.", hint=hint)
    return NotFoundError(f"Aucune clé ({names}) n'est enregistrée pour {where}.", hint=hint)


def _job(  # noqa: PLR0917 - a private builder called once
    record: KeyRecord,
    cfa: CfaRecord | None,
    opco: Opco,
    config: Config,
    request: VerifyRequest,
    secrets: Mapping[tuple[str, str], str | None],
    oauth: Mapping[str, tuple[OAuthClient | None, str | None]],
) -> VerifyJob:
    base_url, setting = base_url_for(opco, config, recette=request.recette)
    if request.api_url is not None:
        base_url = request.api_url.strip()
    client, problem = oauth[opco.id]
    secret = secrets.get((record.siret, record.opco_id))
    return VerifyJob(
        siret=record.siret,
        cfa_name=cfa.name if cfa else record.siret,
        opco_id=opco.id,
        opco_name=opco.name,
        base_url=base_url,
        url_setting=setting,
        # The key sent to the OPCO, even if rotated since its metadata was read.
        fingerprint=record.fingerprint if secret is None else fingerprint(secret),
        recorded_expiry=record.expires_at,
        recorded_source=record.expiry_source,
        secret=secret,
        oauth=client,
        oauth_problem=problem,
        query_key=_query_key(opco, config),
    )


def _query_key(opco: Opco, config: Config) -> bool:
    """Whether ``cfakeyinfo`` gets the key in its query too: the config, else the registry."""
    configured = config.get(f"opco.{opco.id}.cfakeyinfo_query_key")
    if isinstance(configured, bool):
        return configured
    return opco.api.cfakeyinfo_query_key


def check_base_url(url: str) -> str:
    """``url`` without its trailing slash, if it is a usable API address; else a ``UsageError``.

    Only ``https://`` is accepted, except for the local machine (tests, a local gateway).
    """
    problem = url_problem(url)
    if problem is not None:
        raise UsageError(problem[1])
    return url.strip().rstrip("/")


@functools.lru_cache(maxsize=256)
def url_problem(url: str) -> tuple[Outcome, str] | None:
    """What is wrong with the base address ``url``: a class and a French reason, if anything.

    Cached: every key of an OPCO shares its base URL, and ``--all`` checks 1,100 keys.
    """
    import httpx

    text = url.strip()
    try:
        parsed = httpx.URL(text)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        return Outcome.INVALID_URL, (
            "Adresse d'API invalide : une adresse https://hôte/chemin est attendue"
        )
    if parsed.query or parsed.fragment or parsed.userinfo:
        return Outcome.INVALID_URL, (
            f"Adresse d'API invalide : {_shown_url(text)} (ni paramètres, ni fragment, "
            "ni identifiants dans l'adresse de base)"
        )
    if parsed.scheme == "http" and parsed.host not in LOCAL_HOSTS:
        return Outcome.INSECURE_URL, (
            f"Adresse non sécurisée refusée : {_shown_url(text)}. La clé ne part qu'en "
            "https:// (http:// n'est accepté que pour 127.0.0.1 et localhost)"
        )
    return None


def _shown_url(text: str) -> str:
    """An address for a message, its credentials, parameters and fragment (secrets?) hidden."""
    shown = _USERINFO.sub(r"\g<scheme>***@", text)
    for mark in "?#":
        head, found, _ = shown.partition(mark)
        shown = head + (f"{mark}…" if found else "")
    return f"« {shown} »"
