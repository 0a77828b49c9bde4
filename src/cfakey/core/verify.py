"""Live check of stored keys against the OPCOs' API Convergence: requests, classification, journal.

Read-only by construction: only ``GET`` requests reach the API (``/v2/cfakeyinfo``, then
``/v2/dossiers/etats`` and ``/v1/status`` as fallbacks); the one ``POST`` goes to the
vendor's OAuth token endpoint. The CFA key travels only in the ``X-API-KEY`` header:
redirects are followed by hand, to the same origin only, and a server's text that may
hold the key, the bearer token or the client secret, in any encoding, is never shown
(``server_text``). Each exchange is bounded in size and time (``exchange``), and every
reply maps to a verdict (:func:`next_step`).
"""

from __future__ import annotations

import functools
import math
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfakey import __version__
from cfakey.core.exchange import (
    NOT_JSON,
    BadEncodingError,
    BodyTooLongError,
    ExchangeError,
    Reply,
    Slot,
    TooSlowError,
    Watchdog,
    exchange,
)
from cfakey.core.server_text import shown_server_text
from cfakey.errors import ExitCode, NotFoundError, UsageError
from cfakey.expiry import DATE_RANGE_TEXT, in_date_range
from cfakey.stores.base import fingerprint

if TYPE_CHECKING:
    import httpx

    from cfakey.config import Config
    from cfakey.metadata import CfaRecord, KeyRecord, Metadata
    from cfakey.registry.model import Opco, Registry
    from cfakey.stores.base import KeyStore

LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
#: httpx mount patterns for LOCAL_HOSTS.
LOCAL_PATTERNS = ("all://127.0.0.1", "all://localhost", "all://[::1]")
NOT_SUPPORTED_STATUSES = frozenset({404, 405, 501})
CFADOCK_PORTAL = "https://www.cfadock.fr/portail_developpeur"
DEFAULT_EDITEUR = "cfakey"
DEFAULT_LOGICIEL = "cfakey"
#: The software headers sent when the config sets none.
HEADER_DEFAULTS = {"editeur": DEFAULT_EDITEUR, "logiciel": DEFAULT_LOGICIEL, "version": __version__}
TOKEN_MARGIN_SECONDS = 30.0
DEFAULT_TOKEN_LIFETIME = 300.0
MAX_TOKEN_LIFETIME = 86_400.0
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: One exchange (request, then the whole reply) must end within this many ``--timeout``.
DEADLINE_FACTOR = 2
_ASCII_DIGITS = re.compile(r"[0-9]+")
_ODD_LOCATION = re.compile(r"[\\\x00-\x20\x7f]|[^\x00-\x7f]")
_USERINFO = re.compile(r"(?P<scheme>^[A-Za-z][A-Za-z0-9+.-]*://)[^/?#@]*@")


class Outcome(Enum):
    """The class of one verification; the value is the ``--json`` identifier (a contract)."""

    VALID = "valide"
    KEY_REFUSED = "cle_refusee"
    UNSUPPORTED = "non_pris_en_charge"
    UNAVAILABLE = "opco_indisponible"
    RATE_LIMITED = "limite"
    BAD_RESPONSE = "reponse_illisible"
    REDIRECT_REFUSED = "redirection_refusee"
    NO_BASE_URL = "url_absente"
    INVALID_URL = "url_invalide"
    INSECURE_URL = "url_non_securisee"
    OAUTH_MISSING = "oauth_incomplet"
    NO_KEY = "cle_absente"

    @property
    def label(self) -> str:
        """The French name shown to people."""
        return _INFO[self][0]

    @property
    def exit_code(self) -> ExitCode:
        """The process exit code this class stands for."""
        return _INFO[self][1]

    @property
    def rank(self) -> int:
        """Urgency: the higher, the sooner the operator must act (0 for ``valide``)."""
        return _INFO[self][2]


_INFO: dict[Outcome, tuple[str, ExitCode, int]] = {
    Outcome.VALID: ("valide", ExitCode.OK, 0),
    Outcome.KEY_REFUSED: ("clé refusée", ExitCode.KEY_REFUSED, 100),
    Outcome.NO_KEY: ("clé absente", ExitCode.NOT_FOUND, 90),
    Outcome.OAUTH_MISSING: ("client OAuth incomplet", ExitCode.USAGE, 85),
    Outcome.NO_BASE_URL: ("adresse d'API absente", ExitCode.USAGE, 80),
    Outcome.INVALID_URL: ("adresse d'API invalide", ExitCode.USAGE, 80),
    Outcome.INSECURE_URL: ("adresse d'API non sécurisée", ExitCode.USAGE, 80),
    Outcome.REDIRECT_REFUSED: ("redirection refusée", ExitCode.BAD_RESPONSE, 70),
    Outcome.BAD_RESPONSE: ("réponse illisible", ExitCode.BAD_RESPONSE, 60),
    Outcome.UNAVAILABLE: ("OPCO indisponible", ExitCode.OPCO_UNAVAILABLE, 50),
    Outcome.RATE_LIMITED: ("limité", ExitCode.RATE_LIMITED, 40),
    Outcome.UNSUPPORTED: ("non pris en charge", ExitCode.UNSUPPORTED, 30),
}


@dataclass(frozen=True)
class OAuthClient:
    """A software vendor's OAuth2 client-credentials settings for one OPCO."""

    opco_id: str
    token_url: str
    client_id: str
    scope: str | None
    client_secret: str = field(repr=False)


@dataclass(frozen=True)
class VerifyJob:
    """One key to check, with what is needed to reach its OPCO (the secret is never printed)."""

    siret: str
    cfa_name: str
    opco_id: str
    opco_name: str
    base_url: str | None
    url_setting: str
    fingerprint: str | None
    recorded_expiry: datetime | None
    recorded_source: str | None
    secret: str | None = field(repr=False)
    oauth: OAuthClient | None = field(default=None, repr=False)
    oauth_problem: str | None = None

    @property
    def siren(self) -> str:
        """The legal unit the ``cfakeyinfo`` endpoint asks about."""
        return self.siret[:9]


@dataclass(frozen=True)
class VerifySettings:
    """How to talk to the APIs: the software's headers, time limits, trust, retries."""

    editeur: str = DEFAULT_EDITEUR
    logiciel: str = DEFAULT_LOGICIEL
    version: str = __version__
    timeout: float = 10.0
    concurrency: int = 8
    ca_bundle: Path | None = None
    max_retries: int = 2
    default_retry_wait: float = 1.0
    max_retry_wait: float = 30.0
    max_redirects: int = 3

    @property
    def deadline(self) -> float:
        """The longest one exchange may take, request and whole reply (docs/verify.md)."""
        return DEADLINE_FACTOR * self.timeout


@dataclass(frozen=True)
class Channel:
    """One worker's way to the OPCOs: its HTTP client, and the watch on its connection."""

    client: httpx.Client
    watchdog: Watchdog | None = None
    slot: Slot | None = None

    def exchange(
        self,
        method: str,
        url: httpx.URL | str,
        *,
        headers: Mapping[str, str],
        settings: VerifySettings,
        secrets: tuple[str, ...] = (),
        data: Mapping[str, str] | None = None,
    ) -> Reply:
        """One exchange within :data:`~cfakey.core.exchange.MAX_BODY_BYTES` and the deadline."""
        return exchange(
            self.client,
            method,
            url,
            headers=headers,
            seconds=settings.deadline,
            secrets=secrets,
            data=data,
            watchdog=self.watchdog,
            slot=self.slot,
        )


@dataclass(frozen=True)
class VerifyResult:
    """What one verification found, ready to render, journal and serialise."""

    siret: str
    cfa_name: str
    opco_id: str
    opco_name: str
    outcome: Outcome
    detail: str
    advice: str
    endpoint: str | None
    http_status: int | None
    base_url: str | None
    opco_expiry: date | None
    recorded_expiry: date | None
    expiry_changed: bool
    checked_at: datetime
    duration_ms: int

    @property
    def exit_code(self) -> ExitCode:
        """The exit code of this result alone."""
        return self.outcome.exit_code

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` object of one result: a contract for scripts."""
        return {
            "siret": self.siret,
            "cfa": self.cfa_name,
            "opco": self.opco_id,
            "opco_name": self.opco_name,
            "status": self.outcome.value,
            "label": self.outcome.label,
            "exit_code": int(self.exit_code),
            "detail": self.detail,
            "advice": self.advice,
            "endpoint": self.endpoint,
            "http_status": self.http_status,
            "base_url": self.base_url,
            "opco_expiry": self.opco_expiry.isoformat() if self.opco_expiry else None,
            "recorded_expiry": self.recorded_expiry.isoformat() if self.recorded_expiry else None,
            "expiry_changed": self.expiry_changed,
            "checked_at": self.checked_at.isoformat(),
            "duration_ms": self.duration_ms,
        }


class _Stop(Exception):  # noqa: N818 - a control-flow signal, not an error for the operator
    """Ends one verification with a classified result."""

    def __init__(
        self,
        outcome: Outcome,
        detail: str,
        *,
        endpoint: str | None = None,
        status: int | None = None,
        opco_expiry: date | None = None,
    ) -> None:
        super().__init__(outcome.value)
        self.outcome = outcome
        self.detail = detail
        self.endpoint = endpoint
        self.status = status
        self.opco_expiry = opco_expiry

    def again(self) -> _Stop:
        """The same verdict as a new exception, for another job.

        Re-raising one exception would pile up tracebacks and keep alive the frames of
        every job it ended, their keys included.
        """
        return _Stop(
            self.outcome,
            self.detail,
            endpoint=self.endpoint,
            status=self.status,
            opco_expiry=self.opco_expiry,
        )


# -- planning ---------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifyRequest:
    """What the operator asked for: one OPCO (of one CFA) or every stored key."""

    opco_id: str | None = None
    cfa_query: str | None = None
    all_keys: bool = False
    api_url: str | None = None
    recette: bool = False


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
    setting = f"opco.{opco.id}.{'recette_url' if recette else 'api_url'}"
    configured = config.get(setting)
    if isinstance(configured, str) and configured.strip():
        return configured.strip(), setting
    public = opco.api.acceptance_url if recette else opco.api.base_url
    return public, setting


def oauth_for(opco: Opco, config: Config, store: KeyStore) -> tuple[OAuthClient | None, str | None]:
    """The vendor OAuth client of the OPCO, or a French reason why it cannot be used."""
    from cfakey.stores.base import oauth_entry_name  # noqa: PLC0415

    prefix = f"opco.{opco.id}.oauth"
    token_url = config.get(f"{prefix}.token_url")
    client_id = config.get(f"{prefix}.client_id")
    scope = config.get(f"{prefix}.scope")
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
    return OAuthClient(
        opco.id, str(token_url), str(client_id), str(scope) if scope else None, secret
    ), None


def plan_jobs(
    metadata: Metadata,
    store: KeyStore,
    config: Config,
    registry: Registry,
    request: VerifyRequest,
) -> list[VerifyJob]:
    """The keys to check, their secrets read in one store session, and where to send them."""
    from cfakey.core.cfas import resolve_cfa  # noqa: PLC0415
    from cfakey.stores.base import entry_name  # noqa: PLC0415

    if request.all_keys:
        siret_filter = resolve_cfa(metadata, request.cfa_query).siret if request.cfa_query else None
        records = metadata.list_keys(siret=siret_filter)
        cfas = {cfa.siret: cfa for cfa in metadata.list_cfas()}
    else:
        if request.opco_id is None:
            raise UsageError("Indiquez un OPCO ou --all.", hint="Exemple : cfakey verify atlas")
        cfa = resolve_cfa(metadata, request.cfa_query)
        record = metadata.get_key(cfa.siret, request.opco_id)
        opco = registry.get(request.opco_id)
        if record is None:
            raise NotFoundError(
                f"Aucune clé {opco.name} n'est enregistrée pour le CFA {cfa.name} ({cfa.siret}).",
                hint=f"Enregistrez-la : cfakey add {opco.id} --cfa {cfa.siret}",
            )
        records, cfas = [record], {cfa.siret: cfa}
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
    )


# -- URLs --------------------------------------------------------------------------------


def check_base_url(url: str) -> str:
    """``url`` without its trailing slash, if it is a usable API address; else a ``UsageError``.

    Only ``https://`` is accepted, except for the local machine (tests, a local gateway).
    """
    problem = _url_problem(url)
    if problem is not None:
        raise UsageError(problem[1])
    return url.strip().rstrip("/")


@functools.lru_cache(maxsize=256)
def _url_problem(url: str) -> tuple[Outcome, str] | None:
    """What is wrong with the base address ``url``: a class and a French reason, if anything.

    Cached: every key of an OPCO shares its base URL, and ``--all`` checks 1,100 keys.
    """
    import httpx  # noqa: PLC0415

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


# -- running -----------------------------------------------------------------------------


class TokenCache:
    """Vendor OAuth tokens, fetched once per OPCO and kept in memory for their lifetime.

    Shared by the worker threads: one lock per OPCO, so that the first worker fetches the
    token while the others wait for it instead of asking again.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: dict[str, tuple[str, float]] = {}
        self._failures: dict[str, _Stop] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fetches = 0

    def _lock(self, opco_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(opco_id, threading.Lock())

    def token(self, channel: Channel, oauth: OAuthClient, settings: VerifySettings) -> str:
        """A valid token for ``oauth``: from memory, or from the token endpoint (once)."""
        with self._lock(oauth.opco_id):
            if oauth.opco_id in self._failures:
                raise self._failures[oauth.opco_id].again()
            cached = self._tokens.get(oauth.opco_id)
            if cached is not None and cached[1] > self._clock():
                return cached[0]
            try:
                token, lifetime = self._fetch(channel, oauth, settings)
            except _Stop as stop:
                self._failures[oauth.opco_id] = stop
                raise
            self._tokens[oauth.opco_id] = (
                token,
                self._clock() + max(lifetime - TOKEN_MARGIN_SECONDS, 1.0),
            )
            return token

    def invalidate(self, opco_id: str, token: str) -> None:
        """Forget ``token`` (refused by the API) so that the next call fetches a new one."""
        with self._lock(opco_id):
            cached = self._tokens.get(opco_id)
            if cached is not None and cached[0] == token:
                del self._tokens[opco_id]

    def _fetch(
        self, channel: Channel, oauth: OAuthClient, settings: VerifySettings
    ) -> tuple[str, float]:
        import httpx  # noqa: PLC0415

        problem = _url_problem(oauth.token_url)
        if problem is not None:
            raise _Stop(problem[0], problem[1].replace("Adresse d'API", "Adresse du jeton OAuth"))
        form = {
            "grant_type": "client_credentials",
            "client_id": oauth.client_id,
            "client_secret": oauth.client_secret,
        }
        if oauth.scope:
            form["scope"] = oauth.scope
        with self._guard:
            self.fetches += 1
        try:
            reply = channel.exchange(
                "POST",
                oauth.token_url,
                data=form,
                headers={"Accept": "application/json", "Accept-Encoding": "gzip, deflate"},
                settings=settings,
                secrets=(oauth.client_secret,),
            )
        except (httpx.HTTPError, ExchangeError) as error:
            outcome, why = _failure(error, settings)
            raise _Stop(outcome, "service de jeton OAuth : " + why) from None
        if reply.status in (400, 401, 403):
            raise _Stop(
                Outcome.KEY_REFUSED,
                f"le client OAuth2 de l'éditeur a été refusé (HTTP {reply.status}) : "
                "vérifiez son identifiant et son secret",
                status=reply.status,
            )
        if reply.status != 200:
            outcome = Outcome.UNAVAILABLE if reply.status >= 500 else Outcome.BAD_RESPONSE
            raise _Stop(
                outcome, f"service de jeton OAuth : HTTP {reply.status}", status=reply.status
            )
        payload = reply.payload()
        token = payload.get("access_token") if isinstance(payload, dict) else None
        if (
            not isinstance(token, str)
            or not token
            or not all(32 < ord(char) < 127 for char in token)
        ):
            raise _Stop(
                Outcome.BAD_RESPONSE,
                "service de jeton OAuth : pas de jeton « access_token » lisible",
            )
        return token, _token_lifetime(payload.get("expires_in"))


def _token_lifetime(value: object) -> float:
    """``expires_in`` in seconds: 5 minutes when absent or absurd, a day at the most."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return DEFAULT_TOKEN_LIFETIME
    try:
        seconds = float(value)
    except OverflowError:  # an integer too large for a float
        return MAX_TOKEN_LIFETIME
    if math.isnan(seconds) or seconds <= 0:
        return DEFAULT_TOKEN_LIFETIME
    return min(seconds, MAX_TOKEN_LIFETIME)


def run_jobs(
    jobs: Sequence[VerifyJob],
    settings: VerifySettings,
    *,
    transport: httpx.BaseTransport | None = None,
    on_result: Callable[[VerifyResult], None] | None = None,
    tokens: TokenCache | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> list[VerifyResult]:
    """Check every job, at most ``settings.concurrency`` at a time; results in job order.

    One thread per worker, each with a blocking client holding a single connection: the
    work is waiting on the network, and a blocking client spends about a third less CPU
    per request than the asyncio one, which matters at 1,100 keys. ``on_result`` is called
    from the worker threads. An injected ``transport`` belongs to the caller: it is shared
    by the workers and never closed here. ``ssl_context`` comes from ``TlsPreparation``;
    without it, it is built here.
    """
    tokens = tokens or TokenCache()
    watchdog = Watchdog()
    if ssl_context is None:
        ssl_context = _ssl_context(settings.ca_bundle)
    results: list[VerifyResult | None] = [None] * len(jobs)
    failures: list[Exception] = []
    pending = iter(range(len(jobs)))
    taking = threading.Lock()
    stop = threading.Event()

    def next_index() -> int | None:
        with taking:
            return None if stop.is_set() else next(pending, None)

    def worker() -> None:
        client = _worker_client(settings, transport, ssl_context)
        # The watchdog learns a connection's socket when the worker's own pool opens it: a
        # transport shared by the workers could hand it to another worker's exchange.
        channel = (
            Channel(client, watchdog, watchdog.slot()) if transport is None else Channel(client)
        )
        try:
            while (index := next_index()) is not None:
                result = verify_job(channel, jobs[index], settings, tokens)
                results[index] = result
                if on_result is not None:
                    on_result(result)
        except Exception as error:  # noqa: BLE001 - re-raised in the calling thread below
            failures.append(error)
            stop.set()
        finally:
            if transport is None:
                client.close()

    # Daemon threads: after Ctrl-C the process exits without waiting for slow OPCOs.
    workers = [
        threading.Thread(target=worker, name=f"cfakey-verify-{number}", daemon=True)
        for number in range(min(settings.concurrency, len(jobs)))
    ]
    for thread in workers:
        thread.start()
    try:
        for thread in workers:
            thread.join()
    finally:
        stop.set()
        watchdog.close()
    if failures:
        raise failures[0]
    return [result for result in results if result is not None]


def _worker_client(
    settings: VerifySettings, transport: httpx.BaseTransport | None, ssl_context: ssl.SSLContext
) -> httpx.Client:
    """One worker's blocking client: a single connection, redirects never followed by httpx."""
    import httpx  # noqa: PLC0415

    return httpx.Client(
        transport=transport,
        verify=ssl_context,
        timeout=settings.timeout,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        # A proxy set in the environment (HTTP_PROXY…) never gets a plain-http request
        # to this machine: it would carry the key in clear.
        mounts=dict.fromkeys(LOCAL_PATTERNS),
    )


class TlsPreparation:
    """httpx imported and the TLS context built in a background thread.

    Started before the key store is unlocked: the encrypted file's scrypt derivation
    (about 0.4 s) releases the GIL, so this set-up (about 0.08 s) costs no wall time there.
    """

    def __init__(self, ca_bundle: Path | None) -> None:
        self._context: ssl.SSLContext | None = None
        self._error: Exception | None = None
        self._thread = threading.Thread(
            target=self._prepare, args=(ca_bundle,), name="cfakey-tls", daemon=True
        )
        self._thread.start()

    def _prepare(self, ca_bundle: Path | None) -> None:
        try:
            import httpx  # noqa: F401, PLC0415 - imported here for its cost, used by run_jobs

            self._context = _ssl_context(ca_bundle)
        except Exception as error:  # noqa: BLE001 - re-raised by ssl_context()
            self._error = error

    def ssl_context(self) -> ssl.SSLContext:
        """The prepared context, once ready; the preparation's error if it failed."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        if self._context is None:  # pragma: no cover - the thread sets one or the other
            raise RuntimeError("TLS preparation ended without a result")
        return self._context


def _ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """The system trust store, or only the given bundle (a corporate proxy's authority)."""
    if ca_bundle is None:
        return ssl.create_default_context()
    try:
        return ssl.create_default_context(cafile=str(ca_bundle))
    except (OSError, ssl.SSLError):
        raise UsageError(f"Fichier de certificats illisible : {ca_bundle} (PEM attendu).") from None


def verify_job(
    channel: Channel, job: VerifyJob, settings: VerifySettings, tokens: TokenCache
) -> VerifyResult:
    """Check one key and classify the answer; never raises for what the OPCO does."""
    started = time.monotonic()
    checked_at = datetime.now(UTC).replace(microsecond=0)
    try:
        base = _preflight(job)
        _check(channel, job, base, settings, tokens)
    except _Stop as stop:
        return _result(job, stop, checked_at, started)
    raise AssertionError("unreachable: _check always ends with _Stop")  # pragma: no cover


def _preflight(job: VerifyJob) -> str:
    if job.secret is None:
        raise _Stop(
            Outcome.NO_KEY,
            f"la clé {job.opco_name} du CFA {job.siret} est absente du magasin de clés",
        )
    if job.base_url is None or not job.base_url.strip():
        raise _Stop(Outcome.NO_BASE_URL, f"aucune adresse d'API connue pour {job.opco_name}")
    problem = _url_problem(job.base_url)
    if problem is not None:
        raise _Stop(*problem)
    if job.oauth_problem is not None:
        raise _Stop(Outcome.OAUTH_MISSING, job.oauth_problem)
    if not all(32 < ord(char) < 127 for char in job.secret):
        raise _Stop(
            Outcome.KEY_REFUSED,
            "la clé enregistrée contient des espaces, des accents ou des caractères de contrôle : "
            "elle ne peut pas être transmise (non envoyée)",
        )
    return job.base_url.strip().rstrip("/")


def _check(
    channel: Channel,
    job: VerifyJob,
    base: str,
    settings: VerifySettings,
    tokens: TokenCache,
) -> None:
    steps: tuple[tuple[str, dict[str, str]], ...] = (
        ("/v2/cfakeyinfo", {"siren": job.siren}),
        ("/v2/dossiers/etats", {"numeroPage": "1"}),
        ("/v1/status", {}),
    )
    for endpoint, params in steps:
        reply = _get(channel, job, f"{base}{endpoint}", params, settings, tokens, endpoint)
    raise _Stop(
        Outcome.UNSUPPORTED,
        "l'OPCO ne répond à aucun des points d'accès /v2/cfakeyinfo, /v2/dossiers/etats "
        "et /v1/status",
        endpoint="/v1/status",
        status=reply.status,
    )


def _get(  # noqa: PLR0917 - private, called from one place
    channel: Channel,
    job: VerifyJob,
    url: str,
    params: Mapping[str, str],
    settings: VerifySettings,
    tokens: TokenCache,
    endpoint: str,
) -> Reply:
    """One read-only call: 429 retried, same-origin redirects followed, OAuth token renewed once.

    Raises the verdict; returns the reply only when the endpoint is not supported.
    """
    import httpx  # noqa: PLC0415

    renewed = False
    retries = 0
    redirects = 0
    target = httpx.URL(url, params=dict(params))
    while True:
        headers = _headers(job, settings)
        token = None
        if job.oauth is not None:
            token = tokens.token(channel, job.oauth, settings)
            headers["Authorization"] = f"Bearer {token}"
        try:
            reply = channel.exchange(
                "GET", target, headers=headers, settings=settings, secrets=_sent_secrets(job, token)
            )
        except (httpx.HTTPError, ExchangeError) as error:
            raise _Stop(*_failure(error, settings), endpoint=endpoint) from None
        renewable = token is not None and not renewed
        step = next_step(
            endpoint,
            target,
            reply,
            settings,
            retries=retries,
            redirects=redirects,
            renewable=renewable,
        )
        if step.verdict is not None:
            raise step.verdict
        if step.fallback:
            return reply
        if step.renew and job.oauth is not None and token is not None:
            tokens.invalidate(job.oauth.opco_id, token)
            renewed = True
        elif step.wait is not None:
            retries += 1
            time.sleep(step.wait)
        elif step.follow is not None:
            redirects += 1
            target = step.follow


@dataclass(frozen=True)
class Step:
    """What to do after one reply; exactly one field is set.

    ``verdict``: stop with this result; ``wait``: retry after so many seconds; ``follow``:
    retry at this address (same origin); ``renew``: fetch a new OAuth token and retry;
    ``fallback``: this endpoint is not supported, try the next one.
    """

    verdict: _Stop | None = None
    wait: float | None = None
    follow: httpx.URL | None = None
    renew: bool = False
    fallback: bool = False


def next_step(
    endpoint: str,
    target: httpx.URL,
    reply: Reply,
    settings: VerifySettings,
    *,
    retries: int,
    redirects: int,
    renewable: bool,
) -> Step:
    """What to do after ``reply``. Total: any status, headers and body give a step (a
    property test feeds it random ones), and no text of the server that may hold a secret
    gets into a verdict."""
    status = reply.status
    if status == 401 and renewable:
        return Step(renew=True)
    if status == 429:
        wait = _retry_after(reply.header("Retry-After"), settings)
        if wait is None or retries >= settings.max_retries:
            detail = _limited_detail(reply, retries)
            return Step(verdict=_Stop(Outcome.RATE_LIMITED, detail, endpoint=endpoint, status=429))
        return Step(wait=wait)
    if status in REDIRECT_STATUSES and reply.header("Location") is not None:
        return _redirect(target, endpoint, reply, settings, redirects)
    if status in NOT_SUPPORTED_STATUSES:
        return Step(fallback=True)
    return Step(verdict=_verdict(endpoint, reply))


def _redirect(
    target: httpx.URL, endpoint: str, reply: Reply, settings: VerifySettings, redirects: int
) -> Step:
    """Follow a redirect to the same origin only; refuse one that is odd or goes elsewhere."""
    import httpx  # noqa: PLC0415

    location = (reply.header("Location") or "").strip()
    next_url = None
    # A backslash is a slash to browsers (« \\autre.hôte » is another host) but not to
    # httpx: an address read two ways is refused, as are control and non-ASCII characters.
    if not _ODD_LOCATION.search(location):
        with suppress(httpx.InvalidURL, ValueError, TypeError):
            next_url = target.join(location)
    if next_url is None or not next_url.host:
        why = "l'API redirige vers une adresse invalide : la clé n'y a pas été envoyée"
        return Step(
            verdict=_Stop(Outcome.REDIRECT_REFUSED, why, endpoint=endpoint, status=reply.status)
        )
    if (next_url.scheme, next_url.host, next_url.port) != (target.scheme, target.host, target.port):
        where = shown_server_text(f"{next_url.scheme}://{next_url.host}", reply.secrets)
        why = f"l'API redirige vers un autre hôte ({where}) : la clé n'y a pas été envoyée"
        return Step(
            verdict=_Stop(Outcome.REDIRECT_REFUSED, why, endpoint=endpoint, status=reply.status)
        )
    if redirects >= settings.max_redirects:
        why = "trop de redirections"
        return Step(
            verdict=_Stop(Outcome.BAD_RESPONSE, why, endpoint=endpoint, status=reply.status)
        )
    return Step(follow=next_url)


def _headers(job: VerifyJob, settings: VerifySettings) -> dict[str, str]:
    return {
        "X-API-KEY": job.secret or "",
        "EDITEUR": settings.editeur,
        "LOGICIEL": settings.logiciel,
        "VERSION": settings.version,
        "Accept": "application/json",
        # The two codings exchange.py inflates within its cap.
        "Accept-Encoding": "gzip, deflate",
    }


def _retry_after(value: str | None, settings: VerifySettings) -> float | None:
    """Seconds to wait before retrying, or ``None`` when the wait exceeds the cap.

    An unreadable value (« ² », a date out of range) counts as none.
    """
    if value is None or not value.strip():
        return settings.default_retry_wait
    text = value.strip()
    if _ASCII_DIGITS.fullmatch(text):
        seconds = float(text) if len(text) <= 9 else math.inf
    else:
        try:
            moment = parsedate_to_datetime(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            seconds = max((moment - datetime.now(UTC)).total_seconds(), 0.0)
        except (TypeError, ValueError, IndexError, OverflowError):
            return settings.default_retry_wait
    return None if seconds > settings.max_retry_wait else seconds


def _limited_detail(reply: Reply, retries: int) -> str:
    value = (reply.header("Retry-After") or "").strip()
    tried = f" après {retries} nouvel(s) essai(s)" if retries else ""
    limited = f"l'OPCO limite les appels (HTTP 429){tried}"
    if not value:
        return limited
    if _ASCII_DIGITS.fullmatch(value):
        if len(value) <= 9:
            return f"{limited} : réessayez dans {int(value)} s"
        return f"{limited} : réessayez bien plus tard (délai annoncé démesuré)"
    return f"{limited} : réessayez après « {shown_server_text(value, reply.secrets)} »"


def _failure(error: Exception, settings: VerifySettings) -> tuple[Outcome, str]:
    """The class and French reason of an exchange that gave no usable reply."""
    if isinstance(error, TooSlowError):
        seconds = f"{settings.deadline:g}".replace(".", ",")
        return Outcome.UNAVAILABLE, f"réponse incomplète après {seconds} s (2 × --timeout)"
    if isinstance(error, BodyTooLongError):
        return Outcome.BAD_RESPONSE, "réponse trop longue (plus de 1 Mio) : lecture arrêtée"
    if isinstance(error, BadEncodingError):
        return Outcome.BAD_RESPONSE, "réponse compressée de façon inconnue ou invalide"
    return Outcome.UNAVAILABLE, _transport_detail(error, settings)


def _transport_detail(error: Exception, settings: VerifySettings) -> str:  # noqa: PLR0911
    """A French reason for a failed exchange, built from the error's type, never its text."""
    import httpx  # noqa: PLC0415

    if isinstance(error, httpx.TimeoutException):
        return f"pas de réponse dans le délai de {settings.timeout:g} s".replace(".", ",")
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = " ".join(str(item) for item in chain).lower()
    if (
        any(isinstance(item, ssl.SSLError) for item in chain)
        or "ssl" in text
        or "certificate" in text
    ):
        return "échec TLS : certificat non reconnu ou connexion sécurisée impossible"
    if isinstance(error, httpx.ConnectError):
        if "name or service not known" in text or "name resolution" in text or "nodename" in text:
            return "nom d'hôte introuvable (échec DNS)"
        if "refused" in text or any(isinstance(item, ConnectionRefusedError) for item in chain):
            return "connexion refusée"
        return "connexion impossible"
    if isinstance(error, httpx.UnsupportedProtocol | httpx.InvalidURL):
        return "adresse inutilisable"
    return "échange interrompu avec l'OPCO"


def _verdict(endpoint: str, reply: Reply) -> _Stop:  # noqa: PLR0911 - one per class of answer
    """The verdict of a final answer (no redirect, no 429, not 404/405/501)."""
    status = reply.status
    if status in (401, 403):
        comment = _comment(reply)
        why = (
            "authentification refusée (HTTP 401 : jeton OAuth absent ou expiré, ou clé refusée)"
            if status == 401
            else "clé CFA refusée par l'OPCO (HTTP 403)"
        )
        detail = why + (f" : « {comment} »" if comment else "")
        return _Stop(Outcome.KEY_REFUSED, detail, endpoint=endpoint, status=status)
    if status >= 500:
        detail = f"erreur du serveur de l'OPCO (HTTP {status})"
        return _Stop(Outcome.UNAVAILABLE, detail, endpoint=endpoint, status=status)
    if not 200 <= status < 300:
        detail = f"réponse inattendue (HTTP {status})"
        return _Stop(Outcome.BAD_RESPONSE, detail, endpoint=endpoint, status=status)
    payload = reply.payload()
    if payload is NOT_JSON:
        detail = "la réponse n'est pas du JSON"
        return _Stop(Outcome.BAD_RESPONSE, detail, endpoint=endpoint, status=status)
    if endpoint != "/v2/cfakeyinfo":
        if not isinstance(payload, dict | list):
            detail = "réponse JSON d'une forme inattendue"
            return _Stop(Outcome.BAD_RESPONSE, detail, endpoint=endpoint, status=status)
        detail = f"clé acceptée par {endpoint} (l'OPCO n'indique pas la date de fin de validité)"
        return _Stop(Outcome.VALID, detail, endpoint=endpoint, status=status)
    if not isinstance(payload, dict) or payload.get("status") not in ("success", "error"):
        detail = "réponse JSON d'une forme inattendue (champ « status » absent ou inconnu)"
        return _Stop(Outcome.BAD_RESPONSE, detail, endpoint=endpoint, status=status)
    if payload["status"] == "error":
        comment = _comment(reply)
        detail = "l'OPCO déclare la clé invalide" + (f" : « {comment} »" if comment else "")
        return _Stop(Outcome.KEY_REFUSED, detail, endpoint=endpoint, status=status)
    return _end_of_validity(payload.get("dateFinValidite"), reply, endpoint)


def _end_of_validity(raw_date: object, reply: Reply, endpoint: str) -> _Stop:
    """The verdict of a ``success``: valid, with the OPCO's end date when it is usable.

    A date outside :data:`cfakey.expiry.DATE_RANGE_TEXT` (« 0001-01-01 », .NET's
    « 9999-12-31 » for "never") is ignored with a note: it is never stored.
    """
    status = reply.status
    if raw_date in (None, ""):
        detail = "clé valide (l'OPCO n'indique pas de date de fin)"
        return _Stop(Outcome.VALID, detail, endpoint=endpoint, status=status)
    end = _parse_api_date(raw_date)
    shown = shown_server_text(str(raw_date), reply.secrets)
    if end is None:
        detail = f"« dateFinValidite » n'est pas une date : « {shown} »"
        return _Stop(Outcome.BAD_RESPONSE, detail, endpoint=endpoint, status=status)
    if not in_date_range(end):
        detail = (
            f"clé valide ; la date de fin annoncée par l'OPCO (« {shown} ») est hors de la "
            f"plage acceptée ({DATE_RANGE_TEXT}) : ignorée"
        )
        return _Stop(Outcome.VALID, detail, endpoint=endpoint, status=status)
    detail = f"clé valide jusqu'au {end:%d/%m/%Y}"
    return _Stop(Outcome.VALID, detail, endpoint=endpoint, status=status, opco_expiry=end)


def _parse_api_date(value: object) -> date | None:
    """``YYYY-MM-DD`` (an ISO date-time is accepted too); ``None`` when it is not a date."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        return (
            date.fromisoformat(text[:10])
            if len(text) == 10
            else datetime.fromisoformat(text).date()
        )
    except ValueError:
        return None


def _comment(reply: Reply) -> str:
    """The server's explanation, if it gave one that may be shown (see ``server_text``)."""
    payload = reply.payload()
    if isinstance(payload, dict):
        for name in ("comment", "message", "error_description"):
            value = payload.get(name)
            if isinstance(value, str) and value.strip():
                return shown_server_text(value, reply.secrets)
    return ""


def _sent_secrets(job: VerifyJob, token: str | None = None) -> tuple[str, ...]:
    """What must never be shown: the key, the OAuth client secret, the bearer token sent."""
    candidates = (job.secret, job.oauth.client_secret if job.oauth else None, token)
    return tuple(secret.strip() for secret in candidates if secret and secret.strip())


def _local_date(moment: datetime | None) -> date | None:
    return None if moment is None else moment.astimezone().date()


def _result(job: VerifyJob, stop: _Stop, checked_at: datetime, started: float) -> VerifyResult:
    recorded = _local_date(job.recorded_expiry)
    changed = stop.opco_expiry is not None and stop.opco_expiry != recorded
    return VerifyResult(
        siret=job.siret,
        cfa_name=job.cfa_name,
        opco_id=job.opco_id,
        opco_name=job.opco_name,
        outcome=stop.outcome,
        detail=stop.detail,
        advice=advice(stop.outcome, job),
        endpoint=stop.endpoint,
        http_status=stop.status,
        base_url=job.base_url,
        opco_expiry=stop.opco_expiry,
        recorded_expiry=recorded,
        expiry_changed=changed,
        checked_at=checked_at,
        duration_ms=round((time.monotonic() - started) * 1000),
    )


def advice(outcome: Outcome, job: VerifyJob) -> str:
    """What the operator should do about this result, in French."""
    opco, setting = job.opco_id, job.url_setting
    texts = {
        Outcome.VALID: "Rien à faire.",
        Outcome.KEY_REFUSED: (
            "La clé a peut-être été régénérée par un collègue, révoquée, ou mal copiée. Récupérez "
            f"la clé en cours sur le portail de l'OPCO (cfakey guide {opco}), enregistrez-la "
            f"(cfakey rotate {opco} --cfa {job.siret}) et recopiez-la dans le logiciel du CFA."
        ),
        Outcome.UNSUPPORTED: (
            "Cet OPCO n'offre aucun point d'accès de vérification à cette adresse : vérifiez "
            "l'adresse de base (souvent terminée par /ApiEchangeCFA : "
            f"cfakey config get {setting}) "
            "ou contrôlez la clé depuis le logiciel du CFA."
        ),
        Outcome.UNAVAILABLE: (
            "Réessayez plus tard ; si cela dure, contactez le support de l'OPCO. Derrière un proxy "
            "d'entreprise, indiquez son autorité de certification avec --ca-bundle FICHIER."
        ),
        Outcome.RATE_LIMITED: (
            "L'OPCO limite le nombre d'appels : réessayez plus tard, ou avec --concurrency "
            "plus faible."
        ),
        Outcome.BAD_RESPONSE: (
            "Cette adresse ne semble pas être celle de l'API Convergence : vérifiez-la "
            f"(cfakey config get {setting})."
        ),
        Outcome.REDIRECT_REFUSED: (
            "Si la nouvelle adresse est bien celle de l'OPCO, configurez-la directement : "
            f"cfakey config set {setting} URL"
        ),
        Outcome.NO_BASE_URL: (
            "L'adresse de l'API n'est pas publique pour cet OPCO : demandez-la à l'OPCO ou "
            f"consultez le portail développeur cfadock ({CFADOCK_PORTAL}), puis : "
            f"cfakey config set {setting} URL"
        ),
        Outcome.INVALID_URL: f"Corrigez l'adresse : cfakey config set {setting} https://…",
        Outcome.INSECURE_URL: (
            f"Utilisez l'adresse https:// de l'API : cfakey config set {setting} https://…"
        ),
        Outcome.OAUTH_MISSING: (
            "Réglez le client OAuth2 de l'éditeur : "
            f"cfakey config set opco.{opco}.oauth.token_url URL, "
            f"cfakey config set opco.{opco}.oauth.client_id ID, puis le secret (saisie masquée) : "
            f"cfakey config set opco.{opco}.oauth.client_secret"
        ),
        Outcome.NO_KEY: f"Enregistrez la clé : cfakey add {opco} --cfa {job.siret}",
    }
    return texts[outcome]


# -- after the run -------------------------------------------------------------------------


def expiry_moment(day: date) -> datetime:
    """The stored form of an OPCO's end-of-validity date: local midnight, as UTC."""
    return datetime(day.year, day.month, day.day).astimezone().astimezone(UTC)


def record_results(
    metadata: Metadata, jobs: Sequence[VerifyJob], results: Sequence[VerifyResult]
) -> None:
    """Journal every verification and store the expiry dates the OPCOs gave, in one transaction."""
    sources = {(job.siret, job.opco_id): job for job in jobs}
    with metadata.transaction():
        for result in results:
            job = sources.get((result.siret, result.opco_id))
            update = result.opco_expiry is not None and job is not None
            if update and job is not None and result.opco_expiry is not None:
                stale = result.expiry_changed or job.recorded_source != "opco_api"
                current = metadata.get_key(job.siret, job.opco_id)
                # Only onto the key verified: not onto one rotated in the meantime.
                if stale and current is not None and current.fingerprint == job.fingerprint:
                    moment = expiry_moment(result.opco_expiry)
                    metadata.set_expiry(job.siret, job.opco_id, moment, "opco_api")
            metadata.log(
                "verified",
                siret=result.siret,
                opco_id=result.opco_id,
                old_fingerprint=job.fingerprint if job else None,
                detail=journal_detail(result),
            )


def journal_detail(result: VerifyResult) -> str:
    """The journal line of a verification: its class, endpoint and reason (never the key)."""
    parts = [result.outcome.value]
    if result.endpoint:
        parts.append(result.endpoint)
    if result.http_status is not None:
        parts.append(f"HTTP {result.http_status}")
    if result.opco_expiry is not None:
        parts.append(f"fin de validité {result.opco_expiry.isoformat()}")
    if result.expiry_changed:
        parts.append("échéance mise à jour")
    return " ; ".join(parts) + (f" — {result.detail}" if result.detail else "")


def overall_exit_code(results: Iterable[VerifyResult]) -> ExitCode:
    """0 when every key is valid, else the code of the most urgent class present."""
    worst = max(
        (result.outcome for result in results),
        key=lambda outcome: outcome.rank,
        default=Outcome.VALID,
    )
    return worst.exit_code


def by_urgency(results: Iterable[VerifyResult]) -> list[VerifyResult]:
    """Problems first (most urgent first), then changed expiries, then the rest."""
    return sorted(
        results,
        key=lambda r: (
            -r.outcome.rank,
            not r.expiry_changed,
            r.cfa_name.casefold(),
            r.siret,
            r.opco_id,
        ),
    )
