"""The HTTP side of one verification: headers, the read-only calls, retries and redirects.

Read-only by construction: only ``GET`` requests reach the API (``/v2/cfakeyinfo``, then
``/v2/dossiers/etats`` and ``/v1/status`` as fallbacks). The CFA key travels in the
``X-API-KEY`` header, and in ``cfakeyinfo``'s ``XAPIKEY`` query parameter only where the
registry or the config says the OPCO needs it (no message ever shows a URL); redirects
are followed by hand, to the same origin only
(:func:`~cfakey.core.verify.classification.next_step` decides).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from cfakey.core.exchange import ExchangeError, Reply, Slot, Watchdog, exchange
from cfakey.core.verify.classification import failure, next_step
from cfakey.core.verify.model import (
    OAuthClient,
    Outcome,
    Stop,
    Verdict,
    VerifyJob,
    VerifySettings,
)
from cfakey.core.verify.plan import url_problem

if TYPE_CHECKING:
    import httpx

#: The endpoints tried in turn, with their query parameters (the SIREN filled in).
ENDPOINTS = ("/v2/cfakeyinfo", "/v2/dossiers/etats", "/v1/status")


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


class Tokens(Protocol):
    """Where the calls get the vendor's OAuth token (the runner's shared cache)."""

    def token(self, channel: Channel, oauth: OAuthClient, settings: VerifySettings) -> str:
        """A valid token for ``oauth``."""
        ...

    def invalidate(self, opco_id: str, token: str) -> None:
        """Forget ``token``, refused by the API."""
        ...


@dataclass(frozen=True)
class Call:
    """What every call of one verification shares: the way out, the settings, the clock."""

    channel: Channel
    settings: VerifySettings
    tokens: Tokens
    clock: Callable[[], datetime]


def preflight(job: VerifyJob) -> str:
    """The base URL to call, once the job is known to be sendable; else the verdict, raised."""
    if job.secret is None:
        detail = f"la clé {job.opco_name} du CFA {job.siret} est absente du magasin de clés"
        raise Stop(Verdict(Outcome.NO_KEY, detail, sent=False))
    if job.base_url is None or not job.base_url.strip():
        raise Stop(
            Verdict(
                Outcome.NO_BASE_URL,
                f"aucune adresse d'API connue pour {job.opco_name}",
                sent=False,
            )
        )
    problem = url_problem(job.base_url)
    if problem is not None:
        raise Stop(Verdict(*problem, sent=False))
    if job.oauth_problem is not None:
        raise Stop(Verdict(Outcome.OAUTH_MISSING, job.oauth_problem, sent=False))
    if not all(32 < ord(char) < 127 for char in job.secret):
        raise Stop(
            Verdict(
                Outcome.KEY_REFUSED,
                "la clé enregistrée contient des espaces, des accents ou des caractères de "
                "contrôle : elle ne peut pas être transmise (non envoyée)",
                sent=False,
            )
        )
    return job.base_url.strip().rstrip("/")


def check(call: Call, job: VerifyJob, base: str) -> Verdict:
    """The verdict of the first endpoint the OPCO supports (``non pris en charge`` if none)."""
    info = {"siren": job.siren}
    if job.query_key and job.secret:
        # Opt-in only (registry or config): a key in a URL can end up in proxy logs.
        info["XAPIKEY"] = job.secret
    params: tuple[dict[str, str], ...] = (info, {"numeroPage": "1"}, {})
    status = None
    for endpoint, query in zip(ENDPOINTS, params, strict=True):
        reply = _get(call, job, f"{base}{endpoint}", query, endpoint)
        if isinstance(reply, Verdict):
            return reply
        status = reply.status
    return Verdict(
        Outcome.UNSUPPORTED,
        "l'OPCO ne répond à aucun des points d'accès /v2/cfakeyinfo, /v2/dossiers/etats "
        "et /v1/status",
        endpoint=ENDPOINTS[-1],
        status=status,
    )


def _get(
    call: Call, job: VerifyJob, url: str, params: Mapping[str, str], endpoint: str
) -> Verdict | Reply:
    """One read-only call: 429 retried, same-origin redirects followed, OAuth token renewed once.

    The verdict; or the reply when the endpoint is not supported.
    """
    import httpx

    renewed = False
    retries = 0
    redirects = 0
    target = httpx.URL(url, params=dict(params))
    while True:
        headers = _headers(job, call.settings)
        token = None
        if job.oauth is not None:
            token = call.tokens.token(call.channel, job.oauth, call.settings)
            headers["Authorization"] = f"Bearer {token}"
        try:
            reply = call.channel.exchange(
                "GET",
                target,
                headers=headers,
                settings=call.settings,
                secrets=sent_secrets(job, token),
            )
        except (httpx.HTTPError, ExchangeError) as error:
            return Verdict(*failure(error, call.settings), endpoint=endpoint)
        step = next_step(
            endpoint,
            target,
            reply,
            call.settings,
            retries=retries,
            redirects=redirects,
            renewable=token is not None and not renewed,
            now=call.clock(),
        )
        if step.verdict is not None:
            return step.verdict
        if step.fallback:
            return reply
        if step.renew and job.oauth is not None and token is not None:
            call.tokens.invalidate(job.oauth.opco_id, token)
            renewed = True
        elif step.wait is not None:
            retries += 1
            time.sleep(step.wait)
        elif step.follow is not None:
            redirects += 1
            target = step.follow


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


def sent_secrets(job: VerifyJob, token: str | None = None) -> tuple[str, ...]:
    """What must never be shown: the key, the OAuth client secret, the bearer token sent."""
    candidates = (job.secret, job.oauth.client_secret if job.oauth else None, token)
    return tuple(secret.strip() for secret in candidates if secret and secret.strip())
