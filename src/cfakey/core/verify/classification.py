"""Classification: what one reply (or failed exchange) means, as a value, never raised.

Every function here is pure: it reads a reply, the settings and the instant it is given,
and returns a :class:`~cfakey.core.verify.model.Verdict` or a :class:`Step`. No text of
the server that may hold a secret gets into a verdict (``server_text``).
"""

from __future__ import annotations

import math
import re
import ssl
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

from cfakey.core.exchange import NOT_JSON, BadEncodingError, BodyTooLongError, Reply, TooSlowError
from cfakey.core.server_text import shown_server_text
from cfakey.core.verify.model import Outcome, Verdict, VerifyJob, VerifySettings
from cfakey.expiry import DATE_RANGE_TEXT, in_date_range

if TYPE_CHECKING:
    import httpx

NOT_SUPPORTED_STATUSES = frozenset({404, 405, 501})
CFAKEYINFO = "/v2/cfakeyinfo"
ETATS = "/v2/dossiers/etats"
#: Where an error body puts its explanation, in the order public clients read them.
COMMENT_FIELDS = ("comment", "description", "message", "error_description", "error")
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
CFADOCK_PORTAL = "https://www.cfadock.fr/portail_developpeur"
TRANSOPCO_PORTAL = "https://transopco.info/portail_developpeur"
DEFAULT_TOKEN_LIFETIME = 300.0
MAX_TOKEN_LIFETIME = 86_400.0
_ASCII_DIGITS = re.compile(r"[0-9]+")
_ODD_LOCATION = re.compile(r"[\\\x00-\x20\x7f]|[^\x00-\x7f]")


@dataclass(frozen=True)
class Step:
    """What to do after one reply; exactly one field is set.

    ``verdict``: stop with this result; ``wait``: retry after so many seconds; ``follow``:
    retry at this address (same origin); ``renew``: fetch a new OAuth token and retry;
    ``fallback``: this endpoint is not supported, try the next one.
    """

    verdict: Verdict | None = None
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
    now: datetime,
) -> Step:
    """What to do after ``reply`` at the instant ``now``. Total: any status, headers and body
    give a step (a property test feeds it random ones), and no text of the server that may
    hold a secret gets into a verdict."""
    status = reply.status
    if status == 401 and renewable:
        return Step(renew=True)
    if status == 429:
        wait = retry_after(reply.header("Retry-After"), settings, now)
        if wait is None or retries >= settings.max_retries:
            detail = _limited_detail(reply, retries)
            return Step(verdict=Verdict(Outcome.RATE_LIMITED, detail, endpoint, 429))
        return Step(wait=wait)
    if status in REDIRECT_STATUSES and reply.header("Location") is not None:
        return _redirect(target, endpoint, reply, settings, redirects)
    if status in NOT_SUPPORTED_STATUSES or (status == 400 and endpoint == CFAKEYINFO):
        # A 400 from cfakeyinfo (« VALIDATION_ERROR »: a parameter this OPCO wants, or an
        # endpoint it reads otherwise) says nothing of the key: the read-only ones decide.
        return Step(fallback=True)
    return Step(verdict=final_verdict(endpoint, reply))


def _redirect(
    target: httpx.URL, endpoint: str, reply: Reply, settings: VerifySettings, redirects: int
) -> Step:
    """Follow a redirect to the same origin only; refuse one that is odd or goes elsewhere."""
    import httpx

    location = (reply.header("Location") or "").strip()
    next_url = None
    # A backslash is a slash to browsers (« \\autre.hôte » is another host) but not to
    # httpx: an address read two ways is refused, as are control and non-ASCII characters.
    if not _ODD_LOCATION.search(location):
        with suppress(httpx.InvalidURL, ValueError, TypeError):
            next_url = target.join(location)
    if next_url is None or not next_url.host:
        why = "l'API redirige vers une adresse invalide : la clé n'y a pas été envoyée"
        return Step(verdict=Verdict(Outcome.REDIRECT_REFUSED, why, endpoint, reply.status))
    if (next_url.scheme, next_url.host, next_url.port) != (target.scheme, target.host, target.port):
        where = shown_server_text(f"{next_url.scheme}://{next_url.host}", reply.secrets)
        why = f"l'API redirige vers un autre hôte ({where}) : la clé n'y a pas été envoyée"
        return Step(verdict=Verdict(Outcome.REDIRECT_REFUSED, why, endpoint, reply.status))
    if redirects >= settings.max_redirects:
        return Step(
            verdict=Verdict(Outcome.BAD_RESPONSE, "trop de redirections", endpoint, reply.status)
        )
    return Step(follow=next_url)


def retry_after(value: str | None, settings: VerifySettings, now: datetime) -> float | None:
    """Seconds to wait before retrying, or ``None`` when the wait exceeds the cap.

    An unreadable value (« ² », a date out of range) counts as none; a date is read
    against ``now``.
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
            seconds = max((moment - now).total_seconds(), 0.0)
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


def failure(error: Exception, settings: VerifySettings) -> tuple[Outcome, str]:
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
    import httpx

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


def final_verdict(endpoint: str, reply: Reply) -> Verdict:  # noqa: PLR0911 - one per class of answer
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
        return Verdict(Outcome.KEY_REFUSED, detail, endpoint=endpoint, status=status)
    if status >= 500 or not 200 <= status < 300:
        why = (
            f"erreur du serveur de l'OPCO (HTTP {status})"
            if status >= 500
            else f"réponse inattendue (HTTP {status})"
        )
        comment = _comment(reply)
        outcome = Outcome.UNAVAILABLE if status >= 500 else Outcome.BAD_RESPONSE
        detail = why + (f" : « {comment} »" if comment else "")
        return Verdict(outcome, detail, endpoint=endpoint, status=status)
    payload = reply.payload()
    if payload is NOT_JSON:
        detail = "la réponse n'est pas du JSON"
        return Verdict(Outcome.BAD_RESPONSE, detail, endpoint=endpoint, status=status)
    if endpoint != CFAKEYINFO:
        if not isinstance(payload, dict | list):
            detail = "réponse JSON d'une forme inattendue"
            return Verdict(Outcome.BAD_RESPONSE, detail, endpoint=endpoint, status=status)
        page = page_text(payload) if endpoint == ETATS else ""
        detail = (
            f"clé acceptée par {endpoint}{page} (l'OPCO n'indique pas la date de fin de validité)"
        )
        return Verdict(Outcome.VALID, detail, endpoint=endpoint, status=status)
    if not isinstance(payload, dict) or payload.get("status") not in ("success", "error"):
        detail = "réponse JSON d'une forme inattendue (champ « status » absent ou inconnu)"
        return Verdict(Outcome.BAD_RESPONSE, detail, endpoint=endpoint, status=status)
    if payload["status"] == "error":
        comment = _comment(reply)
        detail = "l'OPCO déclare la clé invalide" + (f" : « {comment} »" if comment else "")
        return Verdict(Outcome.KEY_REFUSED, detail, endpoint=endpoint, status=status)
    return end_of_validity(payload.get("dateFinValidite"), reply, endpoint)


def end_of_validity(raw_date: object, reply: Reply, endpoint: str) -> Verdict:
    """The verdict of a ``success``: valid, with the OPCO's end date when it is usable.

    A date outside :data:`cfakey.expiry.DATE_RANGE_TEXT` (« 0001-01-01 », .NET's
    « 9999-12-31 » for "never") is ignored with a note: it is never stored.
    """
    status = reply.status
    if raw_date in (None, ""):
        detail = "clé valide (l'OPCO n'indique pas de date de fin)"
        return Verdict(Outcome.VALID, detail, endpoint=endpoint, status=status)
    end = _parse_api_date(raw_date)
    shown = shown_server_text(str(raw_date), reply.secrets)
    if end is None:
        detail = f"« dateFinValidite » n'est pas une date : « {shown} »"
        return Verdict(Outcome.BAD_RESPONSE, detail, endpoint=endpoint, status=status)
    if not in_date_range(end):
        detail = (
            f"clé valide ; la date de fin annoncée par l'OPCO (« {shown} ») est hors de la "
            f"plage acceptée ({DATE_RANGE_TEXT}) : ignorée"
        )
        return Verdict(Outcome.VALID, detail, endpoint=endpoint, status=status)
    detail = f"clé valide jusqu'au {end:%d/%m/%Y}"
    return Verdict(Outcome.VALID, detail, endpoint=endpoint, status=status, opco_expiry=end)


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


def page_text(payload: object) -> str:
    """`` (page 1 : 3 dossier(s) sur 12)`` from a paged ``/v2/dossiers/etats`` answer.

    Two shapes are seen: an object holding ``EtatDossierResult``, or a one-element list
    holding that object. Empty when the answer has neither: the key was accepted all the same.
    """
    if isinstance(payload, list) and len(payload) == 1:
        payload = payload[0]
    if not isinstance(payload, dict) or not isinstance(payload.get("EtatDossierResult"), list):
        return ""
    count = len(payload["EtatDossierResult"])
    page, total = payload.get("page"), payload.get("total")
    where = f"page {page}" if _whole(page) else "première page"
    out_of = f" sur {total}" if _whole(total) else ""
    return f" ({where} : {count} dossier(s){out_of})"


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**9


def _comment(reply: Reply) -> str:
    """The server's explanation, if it gave one that may be shown (see ``server_text``):
    ``comment``, ``description``, ``message``, ``error_description``, ``error``, or the
    first of ``errors`` (a text, or an object with one of those fields)."""
    payload = reply.payload()
    if not isinstance(payload, dict):
        return ""
    errors = payload.get("errors")
    first = errors[0] if isinstance(errors, list) and errors else None
    for source in (payload, first):
        if isinstance(source, str) and source.strip():
            return shown_server_text(source, reply.secrets)
        if not isinstance(source, dict):
            continue
        for name in COMMENT_FIELDS:
            value = source.get(name)
            if isinstance(value, str) and value.strip():
                return shown_server_text(value, reply.secrets)
    return ""


def token_reply(reply: Reply) -> Verdict | tuple[str, float]:
    """The token and its lifetime from the OAuth token endpoint's reply, or the verdict."""
    if reply.status in (400, 401, 403):
        comment = _comment(reply)
        return Verdict(
            Outcome.KEY_REFUSED,
            f"le client OAuth2 de l'éditeur a été refusé (HTTP {reply.status})"
            + (f" : « {comment} »" if comment else "")
            + " ; vérifiez son identifiant, son secret, son mode d'authentification "
            "(oauth.client_auth) et son scope",
            status=reply.status,
        )
    if reply.status != 200:
        outcome = Outcome.UNAVAILABLE if reply.status >= 500 else Outcome.BAD_RESPONSE
        detail = f"service de jeton OAuth : HTTP {reply.status}"
        return Verdict(outcome, detail, status=reply.status)
    payload = reply.payload()
    token = payload.get("access_token") if isinstance(payload, dict) else None
    if not isinstance(token, str) or not token or not all(32 < ord(char) < 127 for char in token):
        return Verdict(
            Outcome.BAD_RESPONSE, "service de jeton OAuth : pas de jeton « access_token » lisible"
        )
    return token, token_lifetime(payload.get("expires_in") if isinstance(payload, dict) else None)


def token_lifetime(value: object) -> float:
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
            f"consultez les portails développeurs ({CFADOCK_PORTAL}, {TRANSOPCO_PORTAL}), "
            "puis : "
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
