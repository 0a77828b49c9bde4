"""Real-world API behaviour (issue 13, item 4), each against the fake OPCO, each set per
OPCO in the registry (``api:`` block, via an overlay) or in the config: the ``XAPIKEY``
query parameter, a 400 from ``cfakeyinfo``, OAuth2 client authentication and scope, one
token renewal after a 401, paged ``/v2/dossiers/etats``, and error bodies."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfakey.core.server_text import WITHHELD_NOTE
from cfakey.core.verify.classification import page_text
from tests.conftest import CliResult, run_cli
from tests.fake_opco import FakeOpco, running_fake_opco
from tests.test_verify import KEY_AKTO, KEY_ATLAS, SIRET, journal_details, seed, set_url

CLIENT_SECRET = "secret-client-oauth"


@pytest.fixture
def opco() -> Iterator[FakeOpco]:
    with running_fake_opco() as server:
        server.state.valid_keys[KEY_ATLAS] = "2027-06-30"
        server.state.valid_keys[KEY_AKTO] = "2027-01-15"
        yield server


def config(*args: str, stdin: str | None = None) -> None:
    result = run_cli("config", "set", *args, input=stdin)
    assert result.exit_code == 0, result.stderr


def everything_said(result: CliResult, isolated_home: Path) -> str:
    """Outputs, the journal and every file at rest, as text."""
    files = "".join(
        path.read_bytes().decode("latin-1") for path in isolated_home.rglob("*") if path.is_file()
    )
    return result.stdout + result.stderr + " ".join(journal_details("atlas")) + files


# -- XAPIKEY query parameter ------------------------------------------------------------


def test_the_key_is_not_in_the_url_by_default(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("query-key"))

    result = run_cli("verify", "atlas", "--json")

    assert result.exit_code == 0, result.stderr
    (first,) = json.loads(result.stdout)["results"]
    # The 400 of cfakeyinfo (it wants XAPIKEY) falls back to the read-only endpoint.
    assert first["endpoint"] == "/v2/dossiers/etats"
    assert first["status"] == "valide"
    assert all(KEY_ATLAS not in request.query for request in opco.requests)


def test_query_key_from_the_config(opco: FakeOpco, isolated_home: Path) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("query-key"))
    config("opco.atlas.cfakeyinfo_query_key", "true")

    result = run_cli("verify", "atlas", "--json")

    assert result.exit_code == 0, result.stderr
    (first,) = json.loads(result.stdout)["results"]
    assert (first["endpoint"], first["opco_expiry"]) == ("/v2/cfakeyinfo", "2027-06-30")
    (info,) = [r for r in opco.requests if r.path.endswith("/v2/cfakeyinfo")]
    assert "XAPIKEY=" in info.query
    # Only there: the other endpoints, outputs, journal and files never carry it.
    assert all(KEY_ATLAS not in r.query for r in opco.requests if r is not info)
    assert KEY_ATLAS not in everything_said(result, isolated_home)
    assert first["base_url"] == opco.base_url("query-key")


def test_query_key_from_the_registry(opco: FakeOpco, isolated_home: Path) -> None:
    overlay = isolated_home.parent / "surcouche.yaml"
    overlay.write_text("opcos:\n  - id: atlas\n    api:\n      cfakeyinfo_query_key: true\n")
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("query-key"))

    result = run_cli("--registry", str(overlay), "verify", "atlas", "--json")

    assert result.exit_code == 0, result.stderr
    (first,) = json.loads(result.stdout)["results"]
    assert first["endpoint"] == "/v2/cfakeyinfo"
    # The config says false: it wins over the registry.
    config("opco.atlas.cfakeyinfo_query_key", "false")
    again = run_cli("--registry", str(overlay), "verify", "atlas", "--json")
    assert json.loads(again.stdout)["results"][0]["endpoint"] == "/v2/dossiers/etats"


@pytest.mark.parametrize("value", ["oui", "1", "vrai"])
def test_query_key_setting_is_true_or_false(value: str) -> None:
    result = run_cli("config", "set", "opco.atlas.cfakeyinfo_query_key", value)

    assert result.exit_code == 2
    assert "« opco.atlas.cfakeyinfo_query_key » invalide : true ou false est attendu" in (
        result.stderr
    )


# -- 400 from cfakeyinfo, paged answers ---------------------------------------------------


@pytest.mark.parametrize("scenario", ["cfakeyinfo-400", "etats-object", "etats-list"])
def test_paged_etats_in_both_shapes(opco: FakeOpco, scenario: str) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url(scenario))

    result = run_cli("verify", "atlas")

    assert result.exit_code == 0, result.stderr
    assert "clé acceptée par /v2/dossiers/etats (page 1 : 1 dossier(s) sur 1)" in result.stdout
    assert [r.path.rsplit("/", 2)[-2:] for r in opco.requests] == [
        ["v2", "cfakeyinfo"],
        ["dossiers", "etats"],
    ]


def test_page_text_reads_only_what_is_there() -> None:
    assert page_text({"EtatDossierResult": []}) == " (première page : 0 dossier(s))"
    assert page_text([{"page": 2, "total": 9, "EtatDossierResult": [{}]}]) == (
        " (page 2 : 1 dossier(s) sur 9)"
    )
    assert page_text([{"EtatDossierResult": []}, {}]) == ""
    assert page_text({"page": True, "total": -1, "EtatDossierResult": [1]}) == (
        " (première page : 1 dossier(s))"
    )
    assert page_text({"dossiers": []}) == ""


# -- error bodies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field", ["description", "message", "error_description", "error", "errors"]
)
def test_error_bodies_are_read_and_scrubbed(opco: FakeOpco, field: str) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url(f"error-{field}"))

    result = run_cli("verify", "atlas")

    assert result.exit_code == 10
    assert "clé CFA refusée par l'OPCO (HTTP 403) : « clé révoquée le 01/09/2026 »" in (
        result.stderr
    )
    (detail,) = journal_details("atlas")
    assert "« clé révoquée le 01/09/2026 »" in detail

    set_url("atlas", opco.base_url(f"error-echo-{field}"))
    echoed = run_cli("verify", "atlas")

    assert echoed.exit_code == 10
    assert f"(HTTP 403) : « {WITHHELD_NOTE} »" in echoed.stderr
    assert KEY_ATLAS not in echoed.stdout + echoed.stderr
    assert all(KEY_ATLAS not in detail for detail in journal_details("atlas"))


# -- OAuth2: client authentication, scope, renewal ------------------------------------------


def configure_oauth(server: FakeOpco, token_path: str) -> None:
    set_url("akto", server.base_url("oauth"))
    config("opco.akto.oauth.token_url", f"{server.origin}/{token_path}/token")
    config("opco.akto.oauth.client_id", server.state.oauth_client_id)
    config("opco.akto.oauth.client_secret", stdin=CLIENT_SECRET + "\n")


def test_basic_client_authentication_from_the_config(opco: FakeOpco) -> None:
    seed((SIRET, "akto", KEY_AKTO))
    configure_oauth(opco, "oauth-basic")

    refused = run_cli("verify", "akto")
    assert refused.exit_code == 10
    assert "refusé (HTTP 401) : « Client authentication failed »" in refused.stderr
    assert "oauth.client_auth" in refused.stderr
    # The key never reached the API: nothing journalled, nothing kept with the key.
    assert not any(r.path.startswith("/oauth/ApiEchangeCFA") for r in opco.requests)
    assert journal_details("akto") == []
    assert list_verification() is None

    config("opco.akto.oauth.client_auth", "basic")
    result = run_cli("verify", "akto")

    assert result.exit_code == 0, result.stderr
    token = [r for r in opco.requests if r.path == "/oauth-basic/token"][-1]
    assert CLIENT_SECRET.encode() not in token.body
    assert (token.header("Authorization") or "").startswith("Basic ")
    assert CLIENT_SECRET not in result.stdout + result.stderr + refused.stderr
    assert len(journal_details("akto")) == 1
    assert list_verification() == "valide"


def list_verification() -> str | None:
    (row,) = json.loads(run_cli("list", "--json").stdout)
    return None if row["verification"] is None else row["verification"]["outcome"]


@pytest.mark.parametrize(
    ("scenario", "code", "said"),
    [
        ("redirect-other", 14, "redirige vers un autre hôte (https://elsewhere.invalid)"),
        ("echo", 10, "réponse de l'OPCO non affichée"),
        ("echo-percent", 10, "réponse de l'OPCO non affichée"),
    ],
)
def test_the_query_key_is_no_leak_with_a_hostile_server(
    opco: FakeOpco, isolated_home: Path, scenario: str, code: int, said: str
) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url(scenario))
    config("opco.atlas.cfakeyinfo_query_key", "true")

    result = run_cli("verify", "atlas", "--json")

    assert result.exit_code == code
    (first,) = json.loads(result.stdout)["results"]
    assert said in first["detail"]
    assert KEY_ATLAS not in everything_said(result, isolated_home)
    assert len(opco.requests) == 1  # the redirect was not followed


def test_client_authentication_and_scope_from_the_registry(
    opco: FakeOpco, isolated_home: Path
) -> None:
    overlay = isolated_home.parent / "surcouche.yaml"
    overlay.write_text(
        "opcos:\n  - id: akto\n    api:\n      oauth_client_auth: basic\n"
        "      oauth_scope: CFA_OPCO\n"
    )
    opco.state.required_scope = "CFA_OPCO"
    seed((SIRET, "akto", KEY_AKTO))
    configure_oauth(opco, "oauth-basic")

    result = run_cli("--registry", str(overlay), "verify", "akto")

    assert result.exit_code == 0, result.stderr
    token = [r for r in opco.requests if r.path == "/oauth-basic/token"][-1]
    assert b"scope=CFA_OPCO" in token.body
    # The config's post and scope win over the registry's.
    config("opco.akto.oauth.scope", "autre")
    wrong = run_cli("--registry", str(overlay), "verify", "akto")
    assert wrong.exit_code == 10
    assert "refusé (HTTP 400) : « invalid_scope »" in wrong.stderr


def test_client_auth_setting_is_basic_or_post() -> None:
    result = run_cli("config", "set", "opco.akto.oauth.client_auth", "header")

    assert result.exit_code == 2
    assert "basic ou post est attendu" in result.stderr


def test_a_401_fetches_a_new_token_once_then_reports(opco: FakeOpco) -> None:
    seed((SIRET, "akto", KEY_AKTO))
    configure_oauth(opco, "oauth")
    set_url("akto", opco.base_url("oauth-revoked"))

    renewed = run_cli("verify", "akto")

    assert renewed.exit_code == 0, renewed.stderr
    assert [r.path for r in opco.requests].count("/oauth/token") == 2

    set_url("akto", opco.base_url("oauth-401"))
    before = len(opco.requests)
    refused = run_cli("verify", "akto")

    assert refused.exit_code == 10
    assert "HTTP 401" in refused.stderr
    paths = [r.path for r in opco.requests[before:]]
    assert paths.count("/oauth/token") == 2  # the first token, then one renewal
    assert sum(p.endswith("/v2/cfakeyinfo") for p in paths) == 2
