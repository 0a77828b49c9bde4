"""``cfakey verify`` against hostile or broken servers: a real fake OPCO on 127.0.0.1.

Each fault shows its French message and exit code; the key appears nowhere (in any
encoding) in the output, the JSON or the journal; the metadata is left as it was. The
classification of a reply and the decision to show a server's text are also checked
property-based, in-process, over random replies and random encodings of random keys.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import string
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfakey.core import verify as engine
from cfakey.core.exchange import Reply
from cfakey.core.server_text import WITHHELD_NOTE, may_reveal, shown_server_text
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from tests.conftest import CliResult, run_cli
from tests.fake_opco import ECHO_FORMS, FakeOpco, running_fake_opco
from tests.test_verify import (
    KEY_AKTO,
    KEY_ATLAS,
    SIRET,
    assert_key_confined,
    configure_akto_oauth,
    job,
    key_record,
    seed,
    set_url,
)

EXPIRES = dt.datetime(2026, 12, 31, tzinfo=dt.UTC)
CHECKED_AT = dt.datetime(2026, 9, 1, 8, 0, tzinfo=dt.UTC)


@pytest.fixture
def opco() -> Iterator[FakeOpco]:
    """A fake OPCO that knows the Atlas test key."""
    with running_fake_opco() as server:
        server.state.valid_keys.update({KEY_ATLAS: "2027-06-30", KEY_AKTO: "2027-01-15"})
        yield server


def journal() -> list[str]:
    with Metadata.open(Paths.from_env()) as metadata:
        return [entry.detail for entry in metadata.journal() if entry.action == "verified"]


def run_fault(opco: FakeOpco, scenario: str, *args: str) -> CliResult:
    """Seed the Atlas key with a typed expiry, point Atlas at ``scenario``, verify it."""
    seed((SIRET, "atlas", KEY_ATLAS), expires=EXPIRES)
    set_url("atlas", opco.base_url(scenario))
    return run_cli("verify", "atlas", *args)


def assert_nothing_leaked_or_changed(
    opco: FakeOpco, home: Path, result: CliResult, status: str
) -> None:
    """No form of the key anywhere; the expiry as typed; one complete journal entry."""
    assert_key_confined(opco, result, home, KEY_ATLAS)
    entries = journal()
    for text in (result.stdout, result.stderr, *entries):
        assert not may_reveal(text, [KEY_ATLAS]), text
    record = key_record(SIRET, "atlas")
    assert record is not None
    assert (record.expires_at, record.expiry_source) == (EXPIRES, "operator")
    assert [entry.split(" ; ")[0].split(" — ")[0] for entry in entries] == [status]


# -- item 3: an echo of the key, in any form, is not shown -----------------------------------------


@pytest.mark.parametrize("form", sorted(ECHO_FORMS))
def test_an_echoed_key_in_any_form_is_withheld(
    opco: FakeOpco, isolated_home: Path, form: str
) -> None:
    result = run_fault(opco, f"echo-{form}")

    assert result.exit_code == 10, result.stderr
    assert f"clé CFA refusée par l'OPCO (HTTP 403) : « {WITHHELD_NOTE} »" in result.stderr
    assert_nothing_leaked_or_changed(opco, isolated_home, result, "cle_refusee")


def test_an_echoed_key_is_withheld_from_the_json_too(opco: FakeOpco, isolated_home: Path) -> None:
    result = run_fault(opco, "echo-base64", "--json")

    assert result.exit_code == 10
    (row,) = json.loads(result.stdout)["results"]
    assert WITHHELD_NOTE in row["detail"]
    assert_nothing_leaked_or_changed(opco, isolated_home, result, "cle_refusee")


def test_a_harmless_server_comment_is_still_shown(opco: FakeOpco) -> None:
    result = run_fault(opco, "error-status")

    assert result.exit_code == 10
    assert "« Clé expirée ou révoquée »" in result.stderr


def test_a_key_echoed_in_retry_after_is_withheld(opco: FakeOpco) -> None:
    quick = engine.VerifySettings(default_retry_wait=0.0)

    (result,) = engine.run_jobs([job(opco.base_url("echo-retry-after"))], quick)

    assert result.outcome is engine.Outcome.RATE_LIMITED
    assert WITHHELD_NOTE in result.detail
    shown = result.detail + engine.journal_detail(result) + json.dumps(result.as_json())
    assert not may_reveal(shown, [KEY_ATLAS])


def test_what_a_careless_server_echoes_of_the_bearer_token_is_withheld(opco: FakeOpco) -> None:
    client = engine.OAuthClient(
        "akto", opco.token_url, opco.state.oauth_client_id, None, opco.state.oauth_client_secret
    )
    akto = engine.VerifyJob(
        siret=SIRET,
        cfa_name="CFA test",
        opco_id="akto",
        opco_name="AKTO",
        base_url=opco.base_url("echo-lower"),
        url_setting="opco.akto.api_url",
        fingerprint=None,
        recorded_expiry=None,
        recorded_source=None,
        secret="akto-cle-cfa-0123456789abcdef",
        oauth=client,
    )

    (result,) = engine.run_jobs([akto], engine.VerifySettings())

    assert result.outcome is engine.Outcome.KEY_REFUSED
    assert WITHHELD_NOTE in result.detail


KEY_ALPHABETS = (
    string.ascii_letters + string.digits + "+/=",
    string.hexdigits,
    string.ascii_letters + string.digits + "-_.",
)

keys = (
    st.sampled_from(KEY_ALPHABETS)
    .flatmap(lambda alphabet: st.text(alphabet, min_size=16, max_size=120))
    .filter(lambda key: sum(char.isalnum() for char in key) >= 16)
)

SEPARATORS = ("\t", "\x00", "\u00a0", "\u200b", " ", "\u00ad", "\r\n", "-")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


ENCODINGS: dict[str, Callable[[str], str]] = {
    "plain": lambda key: key,
    "lower": str.lower,
    "upper": str.upper,
    "swapcase": str.swapcase,
    "percent": lambda key: quote(key, safe=""),
    "percent-every-char": lambda key: "".join(f"%{ord(char):02X}" for char in key),
    "base64": _b64,
    "base64-url-unpadded": lambda key: base64.urlsafe_b64encode(key.encode()).decode().rstrip("="),
    "base64-of-message": lambda key: _b64(f"clé reçue : {key}"),
    "base64-wrapped": lambda key: "\n".join(_b64(key)[i : i + 16] for i in range(0, 200, 16)),
    "html-escape": html.escape,
    "html-decimal": lambda key: "".join(f"&#{ord(char)};" for char in key),
    "html-hex": lambda key: "".join(f"&#x{ord(char):x};" for char in key),
    "hex": lambda key: key.encode().hex(),
    "json-unicode": lambda key: "".join(f"\\u{ord(char):04x}" for char in key),
    "fullwidth": lambda key: "".join(
        chr(ord(char) + 0xFEE0) if "!" <= char <= "~" else char for char in key
    ),
    "percent-of-base64": lambda key: quote(_b64(key), safe=""),
    "truncated": lambda key: key[:20],
}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    key=keys,
    encoding=st.sampled_from(sorted(ENCODINGS)),
    separator=st.sampled_from(SEPARATORS),
    where=st.integers(min_value=1, max_value=15),
    prefix=st.text(max_size=40),
    suffix=st.text(max_size=40),
)
def test_any_encoding_of_a_key_is_withheld(  # noqa: PLR0917 - hypothesis draws each part
    key: str, encoding: str, separator: str, where: int, prefix: str, suffix: str
) -> None:
    encoded = ENCODINGS[encoding](key)
    for text in (encoded, encoded[:where] + separator + encoded[where:]):
        if text != encoded and (
            (encoding == "truncated" and separator != "-")  # two echoes of under 12 characters
            or ("base64" in encoding and separator == "-")  # « - » is URL-safe base64: new data
        ):
            continue
        echoed = f"{prefix}{text}{suffix}"
        assert may_reveal(echoed, [key]), (encoding, echoed)
        assert shown_server_text(echoed, ["autre-secret", key]) == WITHHELD_NOTE


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=300), key=keys)
def test_what_is_shown_is_one_safe_line(text: str, key: str) -> None:
    shown = shown_server_text(text, [key])

    assert shown == WITHHELD_NOTE or not may_reveal(shown, [key])
    assert len(shown) <= 200
    assert shown.isprintable()
    shown.encode("utf-8")  # no lone surrogate: it can go to SQLite and the terminal


@pytest.mark.parametrize(
    "comment",
    ["Clé expirée ou révoquée", "Forbidden", "Clé CFA refusée", "Le SIREN 181300021 est inconnu"],
)
def test_ordinary_comments_are_shown_as_they_are(comment: str) -> None:
    assert shown_server_text(comment, [KEY_ATLAS, "jeton-1"]) == comment


# -- item 15: unbounded bodies and slow servers ----------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "args", "code", "message", "status"),
    [
        ("gzip-bomb", (), 14, "réponse trop longue (plus de 1 Mio", "reponse_illisible"),
        ("endless", (), 14, "réponse trop longue (plus de 1 Mio", "reponse_illisible"),
        ("big-body", (), 14, "réponse trop longue (plus de 1 Mio", "reponse_illisible"),
        (
            "drip",
            ("--timeout", "0.3"),
            12,
            "réponse incomplète après 0,6 s (2 × --timeout)",
            "opco_indisponible",
        ),
        (
            "drip-headers",
            ("--timeout", "0.3"),
            12,
            "réponse incomplète après 0,6 s (2 × --timeout)",
            "opco_indisponible",
        ),
    ],
)
def test_a_body_too_long_or_too_slow_is_cut_short(  # noqa: PLR0917 - one row of the table
    opco: FakeOpco,
    isolated_home: Path,
    scenario: str,
    args: tuple[str, ...],
    code: int,
    message: str,
    status: str,
) -> None:
    result = run_fault(opco, scenario, *args)

    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert_nothing_leaked_or_changed(opco, isolated_home, result, status)


# -- item 16: replies that used to crash verify ----------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "code", "message", "status"),
    [
        (
            "retry-after-huge",
            13,
            (
                "limité — l'OPCO limite les appels (HTTP 429) : réessayez bien plus tard "
                "(délai annoncé démesuré)"
            ),
            "limite",
        ),
        (
            "ratelimit-99999",
            13,
            "limité — l'OPCO limite les appels (HTTP 429) : réessayez dans 99999 s",
            "limite",
        ),
        (
            "location-backslash",
            14,
            "redirection refusée — l'API redirige vers une adresse invalide",
            "redirection_refusee",
        ),
        ("deep-json", 14, "réponse illisible — la réponse n'est pas du JSON", "reponse_illisible"),
    ],
)
def test_a_hostile_reply_gets_a_verdict(  # noqa: PLR0917 - one row of the table
    opco: FakeOpco, isolated_home: Path, scenario: str, code: int, message: str, status: str
) -> None:
    result = run_fault(opco, scenario)

    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert_nothing_leaked_or_changed(opco, isolated_home, result, status)
    assert {request.scenario for request in opco.requests} == {scenario}


@pytest.mark.slow
def test_a_unicode_digit_in_retry_after_is_ignored_then_limited(
    opco: FakeOpco, isolated_home: Path
) -> None:
    result = run_fault(opco, "retry-after-digit")  # retried twice after the default 1 s

    assert result.exit_code == 13, result.stderr
    assert "limité — l'OPCO limite les appels (HTTP 429) après 2 nouvel(s) essai(s)" in (
        result.stderr
    )
    assert_nothing_leaked_or_changed(opco, isolated_home, result, "limite")


def test_a_unicode_digit_in_retry_after_is_waited_as_if_absent(opco: FakeOpco) -> None:
    quick = engine.VerifySettings(default_retry_wait=0.0)

    (result,) = engine.run_jobs([job(opco.base_url("retry-after-digit"))], quick)

    assert result.outcome is engine.Outcome.RATE_LIMITED
    assert len(opco.requests) == 3


@pytest.mark.parametrize(
    ("scenario", "shown"), [("date-year1", "0001-01-01"), ("date-9999", "9999-12-31")]
)
def test_an_out_of_range_date_from_the_opco_is_ignored_with_a_note(
    opco: FakeOpco, isolated_home: Path, scenario: str, shown: str
) -> None:
    result = run_fault(opco, scenario)
    as_json = run_cli("verify", "atlas", "--json")

    assert result.exit_code == 0, result.stderr
    assert (
        f"la date de fin annoncée par l'OPCO (« {shown} ») est hors de la plage acceptée "
        "(du 01/01/2000 au 31/12/2099) : ignorée"
    ) in result.stdout
    (row,) = json.loads(as_json.stdout)["results"]
    assert (row["status"], row["opco_expiry"], row["expiry_changed"]) == ("valide", None, False)
    record = key_record(SIRET, "atlas")
    assert record is not None
    assert (record.expires_at, record.expiry_source) == (EXPIRES, "operator")
    assert [entry.split(" ; ")[0] for entry in journal()] == ["valide", "valide"]
    for command in (("list",), ("show", "atlas"), ("check",)):
        assert run_cli(*command).exit_code in (0, 1, 2)


# -- the classification is total -------------------------------------------------------------------

header_names = st.sampled_from(
    ["Retry-After", "Location", "Content-Type", "X-Autre", "retry-after", "LOCATION"]
)
header_values = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=0x10FFFF, exclude_categories=["Cs"])),
    st.sampled_from(["²", "9" * 5000, "-1", "0", "3", "Fri, 31 Dec 9999 23:59:59 GMT"]),
    st.sampled_from(["\\\\elsewhere.invalid\\x", "http://[::1", "//autre.example/x", "/ok/x"]),
)
json_dates = st.one_of(
    st.dates(min_value=dt.date(1, 1, 1)).map(dt.date.isoformat),
    st.text(max_size=30),
    st.integers(),
    st.none(),
)
json_bodies = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["success", "error", "autre", 1, None, [], {}]),
        "dateFinValidite": json_dates,
        "comment": st.one_of(st.text(), st.just(KEY_ATLAS.lower()), st.integers()),
        "message": st.text(),
        "error_description": st.text(),
    },
).map(lambda payload: json.dumps(payload).encode())
bodies = st.one_of(
    st.binary(max_size=400),
    json_bodies,
    st.integers(min_value=1, max_value=200_000).map(lambda depth: b"[" * depth),
    st.text().map(str.encode),
)


@settings(max_examples=400, deadline=None)
@given(
    status=st.integers(min_value=100, max_value=999),
    headers=st.lists(st.tuples(header_names, header_values), max_size=4),
    body=bodies,
    endpoint=st.sampled_from(["/v2/cfakeyinfo", "/v2/dossiers/etats", "/v1/status"]),
    retries=st.integers(min_value=0, max_value=3),
    renewable=st.booleans(),
)
def test_every_reply_maps_to_one_step(  # noqa: PLR0917 - hypothesis draws each part
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    endpoint: str,
    retries: int,
    renewable: bool,
) -> None:
    encoded = [(name, value.encode("utf-8")) for name, value in headers]
    reply = Reply(status, httpx.Headers(encoded), body, (KEY_ATLAS, "jeton-1"))
    target = httpx.URL("https://api.opco.example/ApiEchangeCFA" + endpoint)
    quick = engine.VerifySettings(default_retry_wait=0.0)

    step = engine.next_step(
        endpoint,
        target,
        reply,
        quick,
        retries=retries,
        redirects=0,
        renewable=renewable,
        now=CHECKED_AT,
    )

    chosen = [
        step.verdict is not None,
        step.wait is not None,
        step.follow is not None,
        step.renew,
        step.fallback,
    ]
    assert chosen.count(True) == 1, step
    if step.wait is not None:
        assert 0 <= step.wait <= quick.max_retry_wait
    if step.follow is not None:
        assert (step.follow.scheme, step.follow.host) == ("https", "api.opco.example")
    if step.verdict is not None:
        result = engine.result_of(job(str(target)), step.verdict, CHECKED_AT, 0.0)
        shown = result.detail + engine.journal_detail(result) + json.dumps(result.as_json())
        shown.encode("utf-8")
        assert not may_reveal(shown, [KEY_ATLAS]), shown
        if result.opco_expiry is not None:
            assert dt.date(2000, 1, 1) <= result.opco_expiry <= dt.date(2099, 12, 31)


# -- the vendor's OAuth token server misbehaves too (issue 13's list) ------------------------------


@pytest.mark.parametrize(
    ("path", "args", "code", "message"),
    [
        ("/oauth-html/token", (), 14, "service de jeton OAuth : pas de jeton « access_token »"),
        ("/gzip-bomb/token", (), 14, "service de jeton OAuth : réponse trop longue (plus de 1 Mio"),
        (
            "/drip-headers/token",
            ("--timeout", "0.3"),
            12,
            "service de jeton OAuth : réponse incomplète après 0,6 s",
        ),
        ("/oauth-noexpiry/token", (), 0, "valide jusqu'au 15/01/2027"),
    ],
)
def test_a_misbehaving_token_server_gets_a_verdict(  # noqa: PLR0917 - one row of the table
    opco: FakeOpco, isolated_home: Path, path: str, args: tuple[str, ...], code: int, message: str
) -> None:
    seed((SIRET, "akto", KEY_AKTO))
    assert configure_akto_oauth(opco).exit_code == 0
    set_url("akto", opco.base_url("oauth"))
    assert run_cli("config", "set", "opco.akto.oauth.token_url", opco.origin + path).exit_code == 0

    result = run_cli("verify", "akto", *args)

    assert result.exit_code == code, result.stderr
    assert message in result.stdout + result.stderr
    assert_key_confined(opco, result, isolated_home, KEY_AKTO)
    client_secret = opco.state.oauth_client_secret  # sent in the token request's body only
    assert not may_reveal(result.stdout + result.stderr + " ".join(journal()), [client_secret])
    assert opco.requests[0].path == path
