"""``cfakey verify`` and ``cfakey config`` against a real fake OPCO on 127.0.0.1.

Every bad input and fault of the issue is checked for its French message and exit code,
and for what must not happen: the key anywhere but the ``X-API-KEY`` header, a request
to another host, a lost or half-written expiry. The only mock is an httpx transport for
what a local server cannot do (a DNS failure, a remote host that must never be called).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from cfakey import __version__
from cfakey.cli.app import app
from cfakey.context import AppContext
from cfakey.core import verify as engine
from cfakey.core.storage import store_key
from cfakey.metadata import KeyRecord, Metadata
from cfakey.paths import Paths
from cfakey.stores.base import KeyStore, fingerprint
from tests.conftest import CliResult, run_cli
from tests.fake_opco import FakeOpco, running_fake_opco

SIRET = "18130002100373"
SIRET_2 = "35600000000048"
KEY_ATLAS = "Zm9vYmFyQmF6cXV4K2Jhci9xdXV4MTIzNDU2Nzg="
KEY_AFDAS = "a" * 32 + "B" * 32
KEY_AKTO = "akto-cle-cfa-0123456789abcdef"
KEY_AKTO_2 = "akto-cle-cfa-fedcba9876543210"
ISSUED = dt.datetime(2025, 9, 1, 8, 0, tzinfo=dt.UTC)


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def opco() -> Iterator[FakeOpco]:
    """A fake OPCO knowing the test keys."""
    with running_fake_opco() as server:
        server.state.valid_keys.update(
            {
                KEY_ATLAS: "2027-06-30",
                KEY_AFDAS: "2026-12-31",
                KEY_AKTO: "2027-01-15",
                KEY_AKTO_2: None,
            }
        )
        yield server


def open_store() -> KeyStore:
    """The key store the CLI would use (the encrypted file, in tests)."""
    store: KeyStore = AppContext().key_store()  # type: ignore[attr-defined,unused-ignore]
    return store


def seed(*keys: tuple[str, str, str], expires: dt.datetime | None = None) -> None:
    """Register the CFAs and store ``(siret, opco_id, key)`` through the core APIs."""
    paths = Paths.from_env()
    with Metadata.open(paths) as metadata, open_store() as store:
        for siret, opco_id, key in keys:
            if metadata.get_cfa(siret) is None:
                metadata.add_cfa(siret, f"CFA {siret[:4]}", None)
            record = KeyRecord(
                siret=siret,
                opco_id=opco_id,
                obtained_on=ISSUED.date(),
                stored_at=ISSUED,
                expires_at=expires,
                expiry_source="operator" if expires else "none",
                fingerprint=fingerprint(key),
                os_user="test",
                store=store.kind,
            )
            store_key(store, metadata, record, key, action="added")


def set_url(opco_id: str, url: str) -> None:
    result = run_cli("config", "set", f"opco.{opco_id}.api_url", url)
    assert result.exit_code == 0, result.stderr


def key_record(siret: str, opco_id: str) -> KeyRecord | None:
    with Metadata.open(Paths.from_env()) as metadata:
        return metadata.get_key(siret, opco_id)


def journal_details(opco_id: str) -> list[str]:
    with Metadata.open(Paths.from_env()) as metadata:
        return [
            entry.detail
            for entry in metadata.journal(opco_id=opco_id)
            if entry.action == "verified"
        ]


def assert_key_confined(server: FakeOpco, result: CliResult, home: Path, *keys: str) -> None:
    """The keys travelled in X-API-KEY only, and are nowhere in outputs or files at rest."""
    for request in server.requests:
        for key in keys:
            assert key not in request.path
            assert key not in request.query
            assert key.encode() not in request.body
            for name, value in request.headers:
                if name.lower() != "x-api-key":
                    assert key not in value, name
    for key in keys:
        assert key not in result.stdout
        assert key not in result.stderr
        for path in home.rglob("*"):
            if path.is_file() and path.name != "keys.enc":
                assert key.encode() not in path.read_bytes(), path
        for detail in journal_details("atlas") + journal_details("afdas") + journal_details("akto"):
            assert key not in detail


def invoke_with_transport(transport: httpx.BaseTransport, *args: str) -> CliResult:
    """Run the CLI with an injected HTTP transport (the context's HTTP client factory)."""
    context = AppContext()
    context.http_transport = transport
    result = CliRunner().invoke(app, list(args), obj=context, prog_name="cfakey")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def forbidden_transport() -> httpx.MockTransport:
    """A transport that fails the test if cfakey ever tries to send anything."""

    def handler(request: httpx.Request) -> httpx.Response:
        pytest.fail(f"no request may leave for {request.url.host}")

    return httpx.MockTransport(handler)


def job(base_url: str | None, secret: str | None = KEY_ATLAS) -> engine.VerifyJob:
    return engine.VerifyJob(
        siret=SIRET,
        cfa_name="CFA test",
        opco_id="atlas",
        opco_name="Atlas",
        base_url=base_url,
        url_setting="opco.atlas.api_url",
        fingerprint=fingerprint(KEY_ATLAS),
        recorded_expiry=None,
        recorded_source=None,
        secret=secret,
    )


# -- the valid path ------------------------------------------------------------------------


def test_valid_key_sends_the_required_headers_and_updates_the_expiry(
    opco: FakeOpco, isolated_home: Path
) -> None:
    seed((SIRET, "atlas", KEY_ATLAS), expires=dt.datetime(2026, 12, 31, tzinfo=dt.UTC))
    set_url("atlas", opco.base_url("ok"))

    result = run_cli("verify", "atlas")

    assert result.exit_code == 0, result.stderr
    assert "valide" in result.stdout
    assert "30/06/2027" in result.stdout
    assert "L'échéance diffère" in result.stdout
    (request,) = opco.requests
    assert request.method == "GET"
    assert request.path == "/ok/ApiEchangeCFA/v2/cfakeyinfo"
    assert request.query == f"siren={SIRET[:9]}"
    assert request.header("X-API-KEY") == KEY_ATLAS
    assert request.header("EDITEUR") == "cfakey"
    assert request.header("LOGICIEL") == "cfakey"
    assert request.header("VERSION") == __version__
    assert request.header("Accept") == "application/json"
    assert request.header("Authorization") is None
    record = key_record(SIRET, "atlas")
    assert record is not None
    assert record.expiry_source == "opco_api"
    assert record.expires_at is not None
    assert record.expires_at.astimezone().date() == dt.date(2027, 6, 30)
    (detail,) = journal_details("atlas")
    assert detail.startswith("valide")
    assert "2027-06-30" in detail
    assert_key_confined(opco, result, isolated_home, KEY_ATLAS)


def test_same_expiry_is_not_reported_as_changed(opco: FakeOpco) -> None:
    local_midnight = dt.datetime(2027, 6, 30).astimezone().astimezone(dt.UTC)
    seed((SIRET, "atlas", KEY_ATLAS), expires=local_midnight)
    set_url("atlas", opco.base_url("ok"))

    result = run_cli("verify", "atlas", "--json")

    assert result.exit_code == 0
    (row,) = json.loads(result.stdout)["results"]
    assert row["expiry_changed"] is False
    assert row["opco_expiry"] == "2027-06-30"


def test_software_headers_come_from_the_config(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("ok"))
    for name, value in (
        ("editeur", "Editions Exemple"),
        ("logiciel", "GestCFA"),
        ("version", "4.2.1"),
    ):
        assert run_cli("config", "set", name, value).exit_code == 0

    assert run_cli("verify", "atlas").exit_code == 0

    (request,) = opco.requests
    assert (request.header("EDITEUR"), request.header("LOGICIEL"), request.header("VERSION")) == (
        "Editions Exemple",
        "GestCFA",
        "4.2.1",
    )


def test_header_value_with_accent_is_refused_and_not_saved() -> None:
    result = run_cli("config", "set", "editeur", "Éditions")

    assert result.exit_code == 2
    assert "ASCII" in result.stderr
    assert run_cli("config", "get", "editeur").stdout.strip() == "cfakey"


@pytest.mark.parametrize(
    ("scenario", "endpoint"),
    [("fallback-etats", "/v2/dossiers/etats"), ("fallback-status", "/v1/status")],
)
def test_fallback_to_read_only_endpoints(opco: FakeOpco, scenario: str, endpoint: str) -> None:
    seed((SIRET, "atlas", KEY_ATLAS), expires=dt.datetime(2026, 12, 31, tzinfo=dt.UTC))
    set_url("atlas", opco.base_url(scenario))

    result = run_cli("verify", "atlas")

    assert result.exit_code == 0, result.stderr
    assert endpoint in result.stdout
    assert all(request.method == "GET" for request in opco.requests)
    assert opco.requests[-1].path.endswith(endpoint)
    if endpoint == "/v2/dossiers/etats":
        assert opco.requests[-1].query == "numeroPage=1"
    record = key_record(SIRET, "atlas")
    assert record is not None
    assert record.expiry_source == "operator"  # no date from the OPCO: nothing changed


def test_same_host_redirect_is_followed(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("redirect-same"))

    result = run_cli("verify", "atlas")

    assert result.exit_code == 0, result.stderr
    assert [request.scenario for request in opco.requests] == ["redirect-same", "ok"]


# -- faults --------------------------------------------------------------------------------

JOURNAL_STATUS = {
    "unsupported": "non_pris_en_charge",
    "e500": "opco_indisponible",
    "e503": "opco_indisponible",
    "ratelimit-long": "limite",
    "notjson": "reponse_illisible",
    "wrongshape": "reponse_illisible",
    "wrongstatus": "reponse_illisible",
    "baddate": "reponse_illisible",
    "redirect-other": "redirection_refusee",
}


@pytest.mark.parametrize(
    ("scenario", "code", "message"),
    [
        ("unauthorized", 10, "clé refusée — authentification refusée (HTTP 401"),
        ("forbidden", 10, "clé refusée — clé CFA refusée par l'OPCO (HTTP 403)"),
        ("error-status", 10, "l'OPCO déclare la clé invalide : « Clé expirée ou révoquée »"),
        ("unsupported", 11, "non pris en charge"),
        ("e500", 12, "OPCO indisponible — erreur du serveur de l'OPCO (HTTP 500)"),
        ("e503", 12, "OPCO indisponible — erreur du serveur de l'OPCO (HTTP 503)"),
        (
            "ratelimit-long",
            13,
            "limité — l'OPCO limite les appels (HTTP 429) : réessayez dans 3600 s",
        ),
        ("notjson", 14, "réponse illisible — la réponse n'est pas du JSON"),
        ("wrongshape", 14, "réponse illisible — réponse JSON d'une forme inattendue"),
        ("wrongstatus", 14, "réponse JSON d'une forme inattendue"),
        ("baddate", 14, "« dateFinValidite » n'est pas une date : « 31/02/2026 »"),
        ("redirect-other", 14, "redirige vers un autre hôte (https://elsewhere.invalid)"),
    ],
)
def test_fault_gives_french_message_and_exit_code(
    opco: FakeOpco, isolated_home: Path, scenario: str, code: int, message: str
) -> None:
    expires = dt.datetime(2026, 12, 31, tzinfo=dt.UTC)
    seed((SIRET, "atlas", KEY_ATLAS), expires=expires)
    set_url("atlas", opco.base_url(scenario))

    result = run_cli("verify", "atlas")

    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert result.stdout == ""
    assert "Erreur :" in result.stderr
    record = key_record(SIRET, "atlas")
    assert record is not None
    assert (record.expires_at, record.expiry_source) == (expires, "operator")
    (detail,) = journal_details("atlas")
    assert detail.startswith(JOURNAL_STATUS.get(scenario, engine.Outcome.KEY_REFUSED.value))
    assert_key_confined(opco, result, isolated_home, KEY_ATLAS)
    if scenario == "unsupported":
        assert [r.path.rsplit("ApiEchangeCFA", 1)[1] for r in opco.requests] == [
            "/v2/cfakeyinfo",
            "/v2/dossiers/etats",
            "/v1/status",
        ]
    if scenario == "redirect-other":
        assert len(opco.requests) == 1


def test_redirect_to_another_host_never_leaves_with_the_key(opco: FakeOpco) -> None:
    contacted: list[str] = []
    real = httpx.HTTPTransport()

    class LocalOnly(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            contacted.append(request.url.host)
            if request.url.host != "127.0.0.1":
                pytest.fail(f"request sent to {request.url.host}")
            return real.handle_request(request)

    (result,) = engine.run_jobs(
        [job(opco.base_url("redirect-other"))], engine.VerifySettings(), transport=LocalOnly()
    )

    assert result.outcome is engine.Outcome.REDIRECT_REFUSED
    assert contacted == ["127.0.0.1"]


def test_timeout_is_opco_unavailable(opco: FakeOpco) -> None:
    opco.state.slow_delay = 1.5
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("slow"))

    started = time.monotonic()
    result = run_cli("verify", "atlas", "--timeout", "0.3")

    assert result.exit_code == 12
    assert "pas de réponse dans le délai de 0,3 s" in result.stderr
    assert time.monotonic() - started < 1.4


def test_connection_refused_is_opco_unavailable() -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = run_cli("verify", "atlas", "--api-url", f"http://127.0.0.1:{port}/ApiEchangeCFA")

    assert result.exit_code == 12
    assert "connexion refusée" in result.stderr


def test_dns_failure_is_opco_unavailable() -> None:
    seed((SIRET, "atlas", KEY_ATLAS))

    def no_such_host(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known", request=request)

    result = invoke_with_transport(
        httpx.MockTransport(no_such_host),
        "verify",
        "atlas",
        "--api-url",
        "https://api.opco.invalid/ApiEchangeCFA",
    )

    assert result.exit_code == 12
    assert "nom d'hôte introuvable (échec DNS)" in result.stderr
    assert KEY_ATLAS not in result.stderr


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (not trusted by the system)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-opco")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_tls_error_then_ca_bundle(certificate: tuple[Path, Path]) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    with running_fake_opco(tls=certificate) as server:
        server.state.valid_keys[KEY_ATLAS] = "2027-06-30"
        set_url("atlas", server.base_url("ok"))

        refused = run_cli("verify", "atlas")
        trusted = run_cli("verify", "atlas", "--ca-bundle", str(certificate[0]))

    assert refused.exit_code == 12
    assert "échec TLS" in refused.stderr
    assert trusted.exit_code == 0, trusted.stderr
    assert "valide" in trusted.stdout


def test_ca_bundle_that_does_not_exist_is_a_usage_error() -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", "https://api.opco.invalid/ApiEchangeCFA")

    result = run_cli("verify", "atlas", "--ca-bundle", "/nulle/part.pem")

    assert result.exit_code == 2
    assert "Fichier de certificats introuvable" in result.stderr


def test_ca_bundle_that_is_not_pem_is_a_usage_error(tmp_path: Path) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", "https://api.opco.invalid/ApiEchangeCFA")
    bundle = tmp_path / "pas-un-certificat.pem"
    bundle.write_text("ceci n'est pas un certificat\n")

    result = run_cli("verify", "atlas", "--ca-bundle", str(bundle))

    assert result.exit_code == 2
    assert "Fichier de certificats illisible" in result.stderr
    assert "Traceback" not in result.stderr
    assert journal_details("atlas") == []


def test_rate_limit_retry_after_seconds_is_honoured(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("ratelimit-once"))

    started = time.monotonic()
    result = run_cli("verify", "atlas")

    assert result.exit_code == 0, result.stderr
    assert time.monotonic() - started >= 0.9
    assert len(opco.requests) == 2


def test_rate_limit_retry_after_http_date(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("ratelimit-date"))

    result = run_cli("verify", "atlas")

    assert result.exit_code == 0, result.stderr
    assert len(opco.requests) == 2


def test_rate_limit_without_retry_after_is_retried_then_reported(opco: FakeOpco) -> None:
    settings = engine.VerifySettings(default_retry_wait=0.01, max_retries=2)

    (result,) = engine.run_jobs([job(opco.base_url("ratelimit-noheader"))], settings)

    assert result.outcome is engine.Outcome.RATE_LIMITED
    assert result.exit_code == 13
    assert "après 2 nouvel(s) essai(s)" in result.detail
    assert len(opco.requests) == 3


# -- bad input -----------------------------------------------------------------------------


def test_no_base_url_says_where_to_find_it() -> None:
    seed((SIRET, "atlas", KEY_ATLAS))

    result = run_cli("verify", "atlas")

    assert result.exit_code == 2
    assert "aucune adresse d'API connue pour Atlas" in result.stderr
    assert "https://www.cfadock.fr/portail_developpeur" in result.stderr
    assert "demandez-la à l'OPCO" in result.stderr
    assert "cfakey config set opco.atlas.api_url URL" in result.stderr


def test_no_recette_url_names_the_recette_setting() -> None:
    seed((SIRET, "atlas", KEY_ATLAS))

    result = run_cli("verify", "atlas", "--recette")

    assert result.exit_code == 2
    assert "cfakey config set opco.atlas.recette_url URL" in result.stderr


def test_recette_uses_the_registry_acceptance_url_for_afdas() -> None:
    seed((SIRET, "afdas", KEY_AFDAS))

    hosts: list[str] = []

    def acceptance(request: httpx.Request) -> httpx.Response:
        # Stands for a remote host the tests may not reach: records, answers, sends nothing.
        hosts.append(request.url.host)
        return httpx.Response(200, json={"status": "success", "dateFinValidite": "2026-10-01"})

    result = invoke_with_transport(
        httpx.MockTransport(acceptance), "verify", "afdas", "--recette", "--json"
    )

    assert result.exit_code == 0, result.stderr
    assert hosts == ["api-cfa-recette.afdas.com"]
    assert (
        json.loads(result.stdout)["results"][0]["base_url"] == "https://api-cfa-recette.afdas.com"
    )


def test_no_key_stored_for_that_opco() -> None:
    seed((SIRET, "afdas", KEY_AFDAS))

    result = run_cli("verify", "atlas")

    assert result.exit_code == 3
    assert "Aucune clé Atlas n'est enregistrée pour le CFA" in result.stderr
    assert "cfakey add atlas --cfa 18130002100373" in result.stderr


def test_key_missing_from_the_store(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("ok"))
    with open_store() as store:
        store.delete(f"{SIRET}/atlas")

    result = run_cli("verify", "atlas")

    assert result.exit_code == 3
    assert "absente du magasin de clés" in result.stderr
    assert opco.requests == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "pas une adresse",
            "Adresse d'API invalide : une adresse https://hôte/chemin est attendue",
        ),
        ("ftp://api.opco.fr/ApiEchangeCFA", "Adresse d'API invalide"),
        ("https://api.opco.fr/ApiEchangeCFA?cle=1", "« https://api.opco.fr/ApiEchangeCFA?… »"),
        ("https://moi:p4ss@api.opco.fr/ApiEchangeCFA", "« https://***@api.opco.fr/ApiEchangeCFA »"),
        (KEY_ATLAS, "Adresse d'API invalide : une adresse https://hôte/chemin est attendue"),
        ("Zx9QwEr7Ty1Ui3", "Adresse d'API invalide : une adresse https://hôte/chemin est attendue"),
    ],
)
def test_invalid_url(url: str, message: str) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))

    result = invoke_with_transport(forbidden_transport(), "verify", "atlas", "--api-url", url)
    saved = run_cli("config", "set", "opco.atlas.api_url", url)

    assert result.exit_code == 2
    assert message in result.stderr
    assert saved.exit_code == 2
    assert message in saved.stderr
    for secret in ("cle=1", "p4ss", KEY_ATLAS, "Zx9QwEr7Ty1Ui3", "pas une adresse"):
        assert secret not in result.stderr + saved.stderr
    assert run_cli("config", "list", "--json").stdout.strip() == '{\n  "values": {}\n}'


def test_http_to_a_remote_host_is_refused_without_any_request() -> None:
    seed((SIRET, "atlas", KEY_ATLAS))

    result = invoke_with_transport(
        forbidden_transport(), "verify", "atlas", "--api-url", "http://api.opco.fr/ApiEchangeCFA"
    )
    saved = run_cli("config", "set", "opco.atlas.api_url", "http://api.opco.fr/ApiEchangeCFA")
    (direct,) = engine.run_jobs(
        [job("http://api.opco.fr/ApiEchangeCFA")],
        engine.VerifySettings(),
        transport=forbidden_transport(),
    )

    assert result.exit_code == 2
    assert "Adresse non sécurisée refusée" in result.stderr
    assert "https://" in result.stderr
    assert saved.exit_code == 2
    assert direct.outcome is engine.Outcome.INSECURE_URL


def test_opco_and_all_are_exclusive_and_one_is_needed() -> None:
    both = run_cli("verify", "atlas", "--all")
    neither = run_cli("verify")
    all_with_url = run_cli("verify", "--all", "--api-url", "https://x.fr")

    assert (both.exit_code, neither.exit_code, all_with_url.exit_code) == (2, 2, 2)
    assert "pas les deux" in both.stderr
    assert "cfakey verify --all" in neither.stderr
    assert "--api-url vaut pour un seul OPCO" in all_with_url.stderr


# -- OAuth -----------------------------------------------------------------------------------


def configure_akto_oauth(server: FakeOpco, secret: str = "secret-client-oauth") -> CliResult:  # noqa: S107
    set_url("akto", server.base_url("oauth"))
    assert run_cli("config", "set", "opco.akto.oauth.token_url", server.token_url).exit_code == 0
    assert run_cli("config", "set", "opco.akto.oauth.client_id", "editeur-client").exit_code == 0
    return run_cli("config", "set", "opco.akto.oauth.client_secret", input=secret + "\n")


def test_oauth_token_fetched_once_and_sent_as_bearer(opco: FakeOpco, isolated_home: Path) -> None:
    seed((SIRET, "akto", KEY_AKTO), (SIRET_2, "akto", KEY_AKTO_2))
    stored = configure_akto_oauth(opco)
    assert stored.exit_code == 0, stored.stderr

    result = run_cli("verify", "--all", "--json")

    assert result.exit_code == 0, result.stdout + result.stderr
    token_requests = [request for request in opco.requests if request.path == "/oauth/token"]
    api_requests = [request for request in opco.requests if request.path.startswith("/oauth/Api")]
    assert len(token_requests) == 1
    assert token_requests[0].method == "POST"
    assert token_requests[0].header("X-API-KEY") is None
    assert len(api_requests) == 2
    assert {request.header("Authorization") for request in api_requests} == {"Bearer jeton-1"}
    assert {request.header("X-API-KEY") for request in api_requests} == {KEY_AKTO, KEY_AKTO_2}
    config_text = (isolated_home / "config.json").read_text()
    assert "secret-client-oauth" not in config_text
    assert "secret-client-oauth" not in result.stdout + result.stderr + stored.stderr
    assert_key_confined(opco, result, isolated_home, KEY_AKTO, KEY_AKTO_2)


def test_oauth_secret_is_never_an_argument() -> None:
    result = run_cli("config", "set", "opco.akto.oauth.client_secret", "s3cret")

    assert result.exit_code == 2
    assert "Un secret ne se passe jamais en argument" in result.stderr
    assert run_cli("config", "get", "opco.akto.oauth.client_secret").exit_code == 3


def test_oauth_client_refused(opco: FakeOpco) -> None:
    seed((SIRET, "akto", KEY_AKTO))
    assert configure_akto_oauth(opco, secret="mauvais-secret").exit_code == 0

    result = run_cli("verify", "akto")

    assert result.exit_code == 10
    assert "le client OAuth2 de l'éditeur a été refusé (HTTP 401)" in result.stderr
    assert "mauvais-secret" not in result.stderr


def test_akto_without_oauth_client_is_reported_before_sending_the_key() -> None:
    seed((SIRET, "akto", KEY_AKTO))

    result = invoke_with_transport(
        forbidden_transport(),
        "verify",
        "akto",
        "--api-url",
        "https://api.akto.invalid/ApiEchangeCFA",
    )

    assert result.exit_code == 2
    assert "exige aussi un client OAuth2" in result.stderr
    assert "cfakey config set opco.akto.oauth.client_secret" in result.stderr


# -- --all and --json ----------------------------------------------------------------------------


def test_all_checks_every_key_problems_first(opco: FakeOpco, isolated_home: Path) -> None:
    seed(
        (SIRET, "atlas", KEY_ATLAS),
        (SIRET, "afdas", KEY_AFDAS),
        (SIRET_2, "atlas", KEY_ATLAS + "x"),
    )
    set_url("atlas", opco.base_url("ok"))
    set_url("afdas", opco.base_url("e503"))

    result = run_cli("verify", "--all")

    # Atlas refuses the second CFA's key (10) and Afdas is down (12): refused wins.
    assert result.exit_code == 10, result.stderr
    lines = result.stdout.splitlines()
    rule = next(index for index, line in enumerate(lines) if line.startswith("─"))
    known = ("clé refusée", "OPCO indisponible", "valide")
    # One line per result; wrapped continuation lines start with spaces.
    labels = [
        next(label for label in known if line.startswith(label))
        for line in lines[rule + 1 :]
        if line and not line.startswith(" ")
    ]
    assert labels == ["clé refusée", "OPCO indisponible", "valide"]
    assert "3 clé(s) vérifiée(s)" in result.stderr
    assert "cfakey rotate atlas --cfa 35600000000048" in result.stderr
    assert len(opco.requests) == 3
    assert_key_confined(opco, result, isolated_home, KEY_ATLAS, KEY_AFDAS)


def test_all_json_contract(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS), (SIRET, "afdas", KEY_AFDAS))
    set_url("atlas", opco.base_url("ok"))
    set_url("afdas", opco.base_url("unsupported"))

    result = run_cli("verify", "--all", "--json", "--concurrency", "2")

    assert result.exit_code == 11
    payload: dict[str, Any] = json.loads(result.stdout)
    assert set(payload) == {"results", "summary"}
    # Dict equality ignores order: one comparison covers both orders of "counts".
    assert payload["summary"] == {
        "total": 2,
        "counts": {"valide": 1, "non_pris_en_charge": 1},
        "exit_code": 11,
    }
    first, second = payload["results"]
    assert set(first) == {
        "siret", "cfa", "opco", "opco_name", "status", "label", "exit_code", "detail", "advice",
        "endpoint", "http_status", "base_url", "opco_expiry", "recorded_expiry", "expiry_changed",
        "checked_at", "duration_ms", "sent",
    }  # fmt: skip
    assert (first["opco"], first["status"], first["label"], first["exit_code"]) == (
        "afdas",
        "non_pris_en_charge",
        "non pris en charge",
        11,
    )
    assert (second["opco"], second["status"], second["opco_expiry"], second["expiry_changed"]) == (
        "atlas",
        "valide",
        "2027-06-30",
        True,
    )


def test_all_with_nothing_stored() -> None:
    result = run_cli("verify", "--all")

    assert result.exit_code == 0
    assert "Aucune clé enregistrée" in result.stderr


def test_all_runs_concurrently(opco: FakeOpco) -> None:
    opco.state.delay = 0.2
    opco.state.accept_any_key = True
    jobs = [job(opco.base_url("ok"), secret=f"cle-{n}") for n in range(16)]

    started = time.monotonic()
    results = engine.run_jobs(jobs, engine.VerifySettings(concurrency=8))

    assert {result.outcome for result in results} == {engine.Outcome.VALID}
    assert time.monotonic() - started < 0.2 * 16 / 8 + 0.5


def test_concurrent_workers_share_one_oauth_token(opco: FakeOpco) -> None:
    opco.state.delay = 0.05
    opco.state.accept_any_key = True
    client = engine.OAuthClient(
        "akto", opco.token_url, opco.state.oauth_client_id, None, opco.state.oauth_client_secret
    )
    jobs = [
        engine.VerifyJob(
            siret=SIRET,
            cfa_name="CFA test",
            opco_id="akto",
            opco_name="AKTO",
            base_url=opco.base_url("oauth"),
            url_setting="opco.akto.api_url",
            fingerprint=None,
            recorded_expiry=None,
            recorded_source=None,
            secret=f"cle-akto-{n}",
            oauth=client,
        )
        for n in range(12)
    ]
    tokens = engine.TokenCache()

    results = engine.run_jobs(jobs, engine.VerifySettings(concurrency=8), tokens=tokens)

    assert [result.outcome for result in results] == [engine.Outcome.VALID] * 12
    assert tokens.fetches == 1
    assert [request.path for request in opco.requests].count("/oauth/token") == 1


def akto_job(base_url: str, client: engine.OAuthClient, secret: str = KEY_AKTO) -> engine.VerifyJob:
    return engine.VerifyJob(
        siret=SIRET,
        cfa_name="CFA test",
        opco_id="akto",
        opco_name="AKTO",
        base_url=base_url,
        url_setting="opco.akto.api_url",
        fingerprint=None,
        recorded_expiry=None,
        recorded_source=None,
        secret=secret,
        oauth=client,
    )


def test_what_a_careless_server_echoes_is_withheld_key_and_bearer_token(opco: FakeOpco) -> None:
    client = engine.OAuthClient(
        "akto", opco.token_url, opco.state.oauth_client_id, None, opco.state.oauth_client_secret
    )

    (result,) = engine.run_jobs([akto_job(opco.base_url("echo"), client)], engine.VerifySettings())

    assert result.outcome is engine.Outcome.KEY_REFUSED
    assert result.detail == (
        "clé CFA refusée par l'OPCO (HTTP 403) : « réponse de l'OPCO non affichée : elle "
        "semblait contenir la clé ou un secret envoyé »"
    )
    shown = result.detail + engine.journal_detail(result) + json.dumps(result.as_json())
    assert KEY_AKTO not in shown
    assert "jeton-1" not in shown


def test_a_refused_oauth_client_is_one_verdict_raised_afresh_for_each_key(opco: FakeOpco) -> None:
    client = engine.OAuthClient("akto", opco.token_url, "inconnu", None, "mauvais-secret")
    jobs = [akto_job(opco.base_url("oauth"), client, secret=f"cle-{n}") for n in range(3)]
    tokens = engine.TokenCache()

    results = engine.run_jobs(jobs, engine.VerifySettings(concurrency=1), tokens=tokens)

    assert [result.outcome for result in results] == [engine.Outcome.KEY_REFUSED] * 3
    assert tokens.fetches == 1
    with httpx.Client() as http:
        raised = []
        for _ in range(2):
            with pytest.raises(engine.Stop) as caught:
                tokens.token(engine.Channel(http), client, engine.VerifySettings())
            raised.append(caught.value)
    assert raised[0] is not raised[1]
    assert raised[0].outcome is raised[1].outcome is engine.Outcome.KEY_REFUSED


def test_a_proxy_from_the_environment_never_gets_a_local_plain_http_request(
    opco: FakeOpco, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port where nothing listens: the proxy would fail
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{dead}")
    monkeypatch.delenv("NO_PROXY")

    (result,) = engine.run_jobs([job(opco.base_url("ok"))], engine.VerifySettings())

    assert result.outcome is engine.Outcome.VALID, result.detail


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (3600, 3600.0),
        (None, 300.0),
        (True, 300.0),
        ("3600", 300.0),
        (-5, 300.0),
        (float("nan"), 300.0),
        (10**400, 86_400.0),
        (1e12, 86_400.0),
    ],
)
def test_token_lifetime_is_bounded(value: object, seconds: float) -> None:
    assert engine.token_lifetime(value) == seconds


def test_unsupported_reports_the_status_the_opco_gave() -> None:
    def not_implemented(request: httpx.Request) -> httpx.Response:
        return httpx.Response(501, json={"message": "Not Implemented"})

    (result,) = engine.run_jobs(
        [job("http://127.0.0.1:9/ApiEchangeCFA")],
        engine.VerifySettings(),
        transport=httpx.MockTransport(not_implemented),
    )

    assert result.outcome is engine.Outcome.UNSUPPORTED
    assert result.http_status == 501


def test_an_unexpected_error_in_a_worker_reaches_the_caller() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("panne interne")

    jobs = [job("http://127.0.0.1:9/ApiEchangeCFA", secret=f"cle-{n}") for n in range(6)]

    with pytest.raises(RuntimeError, match="panne interne"):
        engine.run_jobs(
            jobs, engine.VerifySettings(concurrency=3), transport=httpx.MockTransport(broken)
        )


def test_journal_shows_verifications_in_french_and_opcos_by_name(opco: FakeOpco) -> None:
    """People read « clé refusée » and « OPCO Santé »; scripts keep the identifiers."""
    seed((SIRET, "atlas", KEY_ATLAS), expires=dt.datetime(2026, 12, 31, tzinfo=dt.UTC))
    set_url("atlas", opco.base_url("forbidden"))
    assert run_cli("verify", "atlas").exit_code == 10
    set_url("atlas", opco.base_url("ok"))
    assert run_cli("verify", "atlas").exit_code == 0
    atlas = AppContext().registry.get("atlas").name  # type: ignore[attr-defined,unused-ignore]

    table = run_cli("journal", "--action", "verified")
    excel = run_cli("journal", "--action", "verified", "--excel")
    machine = run_cli("journal", "--action", "verified", "--csv").stdout
    machine += run_cli("journal", "--action", "verified", "--json").stdout

    for shown in (table.stdout, excel.stdout):
        assert "clé refusée ; /v2/cfakeyinfo ; HTTP 403" in shown
        assert "valide ; /v2/cfakeyinfo ; HTTP 200 ; fin de validité 30/06/2027" in shown
        assert atlas in shown
        assert "cle_refusee" not in shown
        assert "2027-06-30" not in shown
    assert "cle_refusee ; /v2/cfakeyinfo ; HTTP 403" in machine
    assert ",atlas," in machine
    assert '"opco": "atlas"' in machine
    assert KEY_ATLAS not in table.stdout + excel.stdout + machine
