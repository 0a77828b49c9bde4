"""The seams of ``core/verify``: the injected clock, and classification as pure values (a
verdict returned, never raised). Its ``--json`` contract is in ``test_json_contract.py``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import httpx
import pytest

from cfakey.core import verify as engine
from cfakey.core.exchange import Reply
from cfakey.core.verify import classification
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from tests.fake_opco import FakeOpco, running_fake_opco
from tests.test_verify import KEY_ATLAS, SIRET, akto_job, job, seed

NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


@pytest.fixture
def opco() -> Iterator[FakeOpco]:
    with running_fake_opco() as server:
        server.state.valid_keys[KEY_ATLAS] = "2027-06-30"
        yield server


class Clock:
    """A clock tests move by hand."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


# -- the injected clock ---------------------------------------------------------------------------


def test_results_and_their_journal_entries_are_stamped_by_the_injected_clock(
    opco: FakeOpco,
) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    jobs = [job(opco.base_url("ok"))]

    with Metadata.open(Paths.from_env()) as metadata:
        (result,) = engine.run_and_record(metadata, jobs, engine.VerifySettings(), clock=Clock(NOW))
        (entry,) = [e for e in metadata.journal() if e.action == "verified"]

    assert result.outcome is engine.Outcome.VALID
    assert result.checked_at == NOW
    assert result.as_json()["checked_at"] == "2026-03-02T09:30:00+00:00"
    assert entry.at == NOW


def test_an_oauth_token_ends_by_the_injected_clock(opco: FakeOpco) -> None:
    opco.state.accept_any_key = True
    client = engine.OAuthClient(
        "akto", opco.token_url, opco.state.oauth_client_id, None, opco.state.oauth_client_secret
    )
    clock = Clock(NOW)
    tokens = engine.TokenCache(clock)
    settings = engine.VerifySettings(concurrency=1)

    engine.run_jobs([akto_job(opco.base_url("oauth"), client)], settings, tokens=tokens)
    clock.now = NOW + dt.timedelta(seconds=3600 - 31)  # expires_in 3600, 30 s margin
    engine.run_jobs([akto_job(opco.base_url("oauth"), client)], settings, tokens=tokens)
    assert tokens.fetches == 1
    clock.now = NOW + dt.timedelta(seconds=3600 - 30)
    engine.run_jobs([akto_job(opco.base_url("oauth"), client)], settings, tokens=tokens)

    assert tokens.fetches == 2


@pytest.mark.parametrize(
    ("header", "wait"),
    [
        ("Mon, 02 Mar 2026 09:30:20 GMT", 20.0),
        ("Mon, 02 Mar 2026 09:29:00 GMT", 0.0),
        ("Mon, 02 Mar 2026 10:30:00 GMT", None),  # beyond the 30 s cap: reported as « limité »
    ],
)
def test_a_retry_after_date_is_read_against_the_injected_instant(
    header: str, wait: float | None
) -> None:
    assert classification.retry_after(header, engine.VerifySettings(), NOW) == wait


# -- classification returns verdicts ------------------------------------------------------------


def reply(status: int, body: object, headers: dict[str, str] | None = None) -> Reply:
    encoded = json.dumps(body).encode()
    return Reply(status, httpx.Headers(headers or {}), encoded, (KEY_ATLAS,))


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (200, {"status": "success", "dateFinValidite": "2027-06-30"}, engine.Outcome.VALID),
        (200, {"status": "error"}, engine.Outcome.KEY_REFUSED),
        (403, {}, engine.Outcome.KEY_REFUSED),
        (503, {}, engine.Outcome.UNAVAILABLE),
        (200, ["pas", "un", "objet"], engine.Outcome.BAD_RESPONSE),
        (418, {}, engine.Outcome.BAD_RESPONSE),
    ],
)
def test_a_final_answer_is_returned_as_a_verdict(
    status: int, body: object, outcome: engine.Outcome
) -> None:
    verdict = classification.final_verdict("/v2/cfakeyinfo", reply(status, body))

    assert isinstance(verdict, engine.Verdict)
    assert (verdict.outcome, verdict.endpoint, verdict.status) == (
        outcome,
        "/v2/cfakeyinfo",
        status,
    )


def test_a_rate_limit_beyond_the_retries_is_a_verdict_step() -> None:
    target = httpx.URL("https://api.opco.example/ApiEchangeCFA/v2/cfakeyinfo")
    answer = reply(429, {}, {"Retry-After": "99999"})

    step = engine.next_step(
        "/v2/cfakeyinfo",
        target,
        answer,
        engine.VerifySettings(),
        retries=0,
        redirects=0,
        renewable=False,
        now=NOW,
    )

    assert step.verdict is not None
    assert step.verdict.outcome is engine.Outcome.RATE_LIMITED
    assert step.verdict.detail == "l'OPCO limite les appels (HTTP 429) : réessayez dans 99999 s"
