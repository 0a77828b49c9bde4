"""Running the verifications: worker threads, the shared OAuth token cache, TLS set-up."""

from __future__ import annotations

import base64
import dataclasses
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

from cfakey.core.exchange import ExchangeError, Watchdog
from cfakey.core.verify.classification import advice, failure, token_reply
from cfakey.core.verify.http import Call, Channel, check, preflight
from cfakey.core.verify.model import (
    OAuthClient,
    Stop,
    Verdict,
    VerifyInterrupted,
    VerifyJob,
    VerifyResult,
    VerifySettings,
)
from cfakey.core.verify.plan import url_problem
from cfakey.core.verify.record import record_results
from cfakey.errors import UsageError

if TYPE_CHECKING:
    import httpx

    from cfakey.metadata import KeyRecord, Metadata

#: httpx mount patterns for the local hosts (plan.LOCAL_HOSTS).
LOCAL_PATTERNS = ("all://127.0.0.1", "all://localhost", "all://[::1]")
TOKEN_MARGIN_SECONDS = 30.0


def utc_now() -> datetime:
    """The wall clock, for callers that inject none (the CLI passes ``AppContext.clock``)."""
    return datetime.now(UTC)


class TokenCache:
    """Vendor OAuth tokens, fetched once per OPCO and kept in memory for their lifetime.

    Shared by the worker threads: one lock per OPCO, so that the first worker fetches the
    token while the others wait for it instead of asking again. A token's end is read on
    the injected ``clock``.
    """

    def __init__(self, clock: Callable[[], datetime] = utc_now) -> None:
        self._clock = clock
        self._tokens: dict[str, tuple[str, datetime]] = {}
        self._failures: dict[str, Verdict] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.fetches = 0

    def _lock(self, opco_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(opco_id, threading.Lock())

    def token(self, channel: Channel, oauth: OAuthClient, settings: VerifySettings) -> str:
        """A valid token for ``oauth``: from memory, or from the token endpoint (once).

        A refusal is remembered and raised afresh (a new :class:`Stop`) for every key:
        re-raising one exception would pile up tracebacks and keep alive the frames of
        every job it ended, their keys included.
        """
        with self._lock(oauth.opco_id):
            if oauth.opco_id in self._failures:
                raise Stop(self._failures[oauth.opco_id])
            cached = self._tokens.get(oauth.opco_id)
            if cached is not None and cached[1] > self._clock():
                return cached[0]
            fetched = self._fetch(channel, oauth, settings)
            if isinstance(fetched, Verdict):
                # No token: the key itself never reached the API.
                fetched = dataclasses.replace(fetched, sent=False)
                self._failures[oauth.opco_id] = fetched
                raise Stop(fetched)
            token, lifetime = fetched
            margin = max(lifetime - TOKEN_MARGIN_SECONDS, 1.0)
            self._tokens[oauth.opco_id] = (token, self._clock() + timedelta(seconds=margin))
            return token

    def invalidate(self, opco_id: str, token: str) -> None:
        """Forget ``token`` (refused by the API) so that the next call fetches a new one."""
        with self._lock(opco_id):
            cached = self._tokens.get(opco_id)
            if cached is not None and cached[0] == token:
                del self._tokens[opco_id]

    def _fetch(
        self, channel: Channel, oauth: OAuthClient, settings: VerifySettings
    ) -> Verdict | tuple[str, float]:
        import httpx

        problem = url_problem(oauth.token_url)
        if problem is not None:
            return Verdict(
                problem[0], problem[1].replace("Adresse d'API", "Adresse du jeton OAuth")
            )
        form, headers = token_request(oauth)
        with self._guard:
            self.fetches += 1
        try:
            reply = channel.exchange(
                "POST",
                oauth.token_url,
                data=form,
                headers=headers,
                settings=settings,
                secrets=(oauth.client_secret, *headers.get("Authorization", "").split()[1:]),
            )
        except (httpx.HTTPError, ExchangeError) as error:
            outcome, why = failure(error, settings)
            return Verdict(outcome, "service de jeton OAuth : " + why)
        return token_reply(reply)


def token_request(oauth: OAuthClient) -> tuple[dict[str, str], dict[str, str]]:
    """The form and headers of a client-credentials token request.

    ``basic`` (``client_secret_basic``, RFC 6749 § 2.3.1): the id and secret, each
    form-encoded, in an HTTP Basic header; ``post``: both in the form body.
    """
    form = {"grant_type": "client_credentials"}
    headers = {"Accept": "application/json", "Accept-Encoding": "gzip, deflate"}
    if oauth.client_auth == "basic":
        pair = f"{quote_plus(oauth.client_id)}:{quote_plus(oauth.client_secret)}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    else:
        form |= {"client_id": oauth.client_id, "client_secret": oauth.client_secret}
    if oauth.scope:
        form["scope"] = oauth.scope
    return form, headers


def run_jobs(
    jobs: Sequence[VerifyJob],
    settings: VerifySettings,
    *,
    transport: httpx.BaseTransport | None = None,
    on_result: Callable[[VerifyResult], None] | None = None,
    tokens: TokenCache | None = None,
    ssl_context: ssl.SSLContext | None = None,
    clock: Callable[[], datetime] = utc_now,
) -> list[VerifyResult]:
    """Check every job, at most ``settings.concurrency`` at a time; results in job order.

    One thread per worker, each with a blocking client holding a single connection: the
    work is waiting on the network, and a blocking client spends about a third less CPU
    per request than the asyncio one, which matters at 1,100 keys. ``on_result`` is called
    from the worker threads. An injected ``transport`` belongs to the caller: it is shared
    by the workers and never closed here. ``ssl_context`` comes from ``TlsPreparation``;
    without it, it is built here. ``clock`` stamps each result and dates token ends.
    """
    tokens = tokens or TokenCache(clock)
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
                result = verify_job(channel, jobs[index], settings, tokens, clock)
                results[index] = result
                if on_result is not None:
                    on_result(result)
        except Exception as error:  # noqa: BLE001 - re-raised in the calling thread below
            failures.append(error)
            stop.set()
        finally:
            if transport is None:
                client.close()

    try:
        _run_workers(worker, min(settings.concurrency, len(jobs)), stop, watchdog)
    except KeyboardInterrupt:
        # What was received is kept (the caller records it); keys in flight are not.
        received = [result for result in list(results) if result is not None]
        raise VerifyInterrupted(received, len(jobs) - len(received)) from None
    if failures:
        raise failures[0]
    return [result for result in results if result is not None]


def run_and_record(
    metadata: Metadata,
    jobs: Sequence[VerifyJob],
    settings: VerifySettings,
    *,
    transport: httpx.BaseTransport | None = None,
    on_result: Callable[[VerifyResult], None] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    clock: Callable[[], datetime] = utc_now,
    publish: Callable[[list[KeyRecord]], None] | None = None,
) -> list[VerifyResult]:
    """The ``verify`` use-case once planned: check every job, then journal the results and
    store the OPCOs' end dates (:func:`~cfakey.core.verify.record.record_results`).

    Interrupted (Ctrl-C, SIGTERM), the results already received are recorded all the
    same, then :class:`VerifyInterrupted` goes on up with them.
    """
    try:
        results = run_jobs(
            jobs,
            settings,
            transport=transport,
            on_result=on_result,
            ssl_context=ssl_context,
            clock=clock,
        )
    except VerifyInterrupted as interrupted:
        record_results(metadata, jobs, interrupted.results, publish=publish)
        raise
    record_results(metadata, jobs, results, publish=publish)
    return results


def _run_workers(
    worker: Callable[[], None], count: int, stop: threading.Event, watchdog: Watchdog
) -> None:
    """Run ``count`` threads of ``worker`` to their end; on the way out, stop them all."""
    # Daemon threads: after Ctrl-C the process exits without waiting for slow OPCOs.
    workers = [
        threading.Thread(target=worker, name=f"cfakey-verify-{number}", daemon=True)
        for number in range(count)
    ]
    for thread in workers:
        thread.start()
    try:
        for thread in workers:
            thread.join()
    finally:
        stop.set()
        watchdog.close()


def _worker_client(
    settings: VerifySettings, transport: httpx.BaseTransport | None, ssl_context: ssl.SSLContext
) -> httpx.Client:
    """One worker's blocking client: a single connection, redirects never followed by httpx."""
    import httpx

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
            import httpx  # noqa: F401 - imported here for its cost, used by run_jobs

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
    channel: Channel,
    job: VerifyJob,
    settings: VerifySettings,
    tokens: TokenCache,
    clock: Callable[[], datetime] = utc_now,
) -> VerifyResult:
    """Check one key and classify the answer; never raises for what the OPCO does."""
    started = time.monotonic()
    checked_at = clock().astimezone(UTC).replace(microsecond=0)
    try:
        base = preflight(job)
        verdict = check(Call(channel, settings, tokens, clock), job, base)
    except Stop as stop:
        verdict = stop.verdict
    return result_of(job, verdict, checked_at, started)


def _local_date(moment: datetime | None) -> date | None:
    return None if moment is None else moment.astimezone().date()


def result_of(
    job: VerifyJob, verdict: Verdict, checked_at: datetime, started: float
) -> VerifyResult:
    """The result of ``job`` ended by ``verdict`` (``started``: its ``time.monotonic()``)."""
    recorded = _local_date(job.recorded_expiry)
    changed = verdict.opco_expiry is not None and verdict.opco_expiry != recorded
    return VerifyResult(
        siret=job.siret,
        cfa_name=job.cfa_name,
        opco_id=job.opco_id,
        opco_name=job.opco_name,
        outcome=verdict.outcome,
        detail=verdict.detail,
        advice=advice(verdict.outcome, job),
        endpoint=verdict.endpoint,
        http_status=verdict.status,
        base_url=job.base_url,
        opco_expiry=verdict.opco_expiry,
        recorded_expiry=recorded,
        expiry_changed=changed,
        checked_at=checked_at,
        duration_ms=round((time.monotonic() - started) * 1000),
        sent=verdict.sent,
    )
