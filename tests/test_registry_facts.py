"""Pin the facts of the shipped ``opco_registry.yaml`` against the source documents.

The file is read with ``yaml.safe_load`` and validated straight through the schema
(``cfakey.registry.model.Registry``), independently of the loader module, so a wrong
fact fails here even if the loader changes. Every pinned value comes from the
procedure document v6.1 (14/09/2023, PDF text with the correct addresses), the
Linkpick article on OPCO EP (August 2025) or ``docs/domain.md``.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from cfakey.registry.model import Opco, Registry

REGISTRY_PATH = Path(__file__).resolve().parent.parent / "opco_registry.yaml"

EXPECTED_IDS = (
    "afdas",
    "akto",
    "atlas",
    "constructys",
    "opcommerce",
    "ocapiat",
    "opco2i",
    "opcoep",
    "mobilites",
    "sante",
    "uniformation",
)

# Keys whose value, when set, is a web address.
URL_KEYS = frozenset({"url", "base_url", "acceptance_url", "developer_portal"})

EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
# Anything that looks like an address inside prose, to check it too.
EMAIL_IN_TEXT_RE = re.compile(r"[\w.%+-]+@[\w-]+(?:\.[\w-]+)+")

MAIN_DOCUMENT = (
    "Convergence processus CFA/OPCO – Mode opératoire de récupération de la clé API (CFA_KEY)"
)
CONSTRUCTYS_FORM = (
    "https://forms.office.com/pages/responsepage.aspx?id="
    "LR1JWOhgok2QzE-nJGJbrmFBjDGPAzJJtHYrgxtMUaxUN0xEMzBQQVVKTUc5OTBKS05DWDQ4TEpXMS4u"
)
OPCO2I_FORM = (
    "https://forms.office.com/Pages/ResponsePage.aspx?id="
    "wqaAWP-QDE6_eTZRRqu8qpT6DSZ-s0hIsIJC1plKrnNUQThGN05XT1hBTUlZODBYVjlNRlBBOUVIUS4u"
)

_ADAPTER = TypeAdapter(Registry)


@pytest.fixture(scope="module")
def raw_text() -> str:
    return REGISTRY_PATH.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def raw(raw_text: str) -> dict[str, Any]:
    data = yaml.safe_load(raw_text)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def registry(raw: dict[str, Any]) -> Registry:
    return _ADAPTER.validate_python(copy.deepcopy(raw))


def _opco(registry: Registry, opco_id: str) -> Opco:
    return registry.get(opco_id)


def _walk(node: object, key: str | None = None) -> list[tuple[str | None, object]]:
    """Every (key, scalar) pair in a YAML tree; list items inherit their list's key."""
    if isinstance(node, dict):
        found: list[tuple[str | None, object]] = []
        for child_key, child in node.items():
            found.extend(_walk(child, str(child_key)))
        return found
    if isinstance(node, list):
        return [pair for item in node for pair in _walk(item, key)]
    return [(key, node)]


def _is_well_formed_url(url: str) -> bool:
    if any(char.isspace() for char in url):
        return False
    parts = urlsplit(url)
    host = parts.hostname or ""
    return parts.scheme in {"http", "https"} and "." in host and not host.startswith(".")


def _normalise_name(name: str) -> str:
    """Mirror of the name-matching rule: no case, accents, spaces or punctuation."""
    decomposed = unicodedata.normalize("NFKD", name.casefold())
    without_accents = "".join(c for c in decomposed if not unicodedata.combining(c))
    return re.sub(r"[\s'’\-._]", "", without_accents)


# --- shape -----------------------------------------------------------------------------


def test_top_level_metadata(registry: Registry) -> None:
    assert registry.schema_version == 1
    assert registry.version == "2026.11"
    assert registry.updated == date(2026, 11, 30)


def test_eleven_entries_in_display_order(registry: Registry) -> None:
    assert len(registry.opcos) == 11
    assert tuple(opco.id for opco in registry.opcos) == EXPECTED_IDS


def test_ids_are_unique(raw: dict[str, Any]) -> None:
    ids = [entry["id"] for entry in raw["opcos"]]
    assert len(ids) == len(set(ids))


def test_every_entry_spells_out_every_field(raw: dict[str, Any]) -> None:
    expected = set(Opco.__dataclass_fields__)
    for entry in raw["opcos"]:
        assert set(entry) == expected, entry["id"]


def test_official_names(registry: Registry) -> None:
    names = {opco.id: opco.name for opco in registry.opcos}
    assert names == {
        "afdas": "Afdas",
        "akto": "AKTO",
        "atlas": "Atlas",
        "constructys": "Constructys",
        "opcommerce": "L'Opcommerce",
        "ocapiat": "Ocapiat",
        "opco2i": "OPCO 2i",
        "opcoep": "OPCO EP",
        "mobilites": "OPCO Mobilités",
        "sante": "OPCO Santé",
        "uniformation": "Uniformation",
    }


def test_no_name_or_alias_is_shared_between_opcos(registry: Registry) -> None:
    owner: dict[str, str] = {}
    for opco in registry.opcos:
        for name in {opco.id, opco.name, *opco.aliases}:
            key = _normalise_name(name)
            assert key, f"{opco.id}: empty alias {name!r}"
            assert owner.setdefault(key, opco.id) == opco.id, f"{name!r} clashes"


def test_every_entry_cites_the_procedure_document(registry: Registry) -> None:
    for opco in registry.opcos:
        main = [source for source in opco.sources if source.document == MAIN_DOCUMENT]
        assert len(main) == 1, opco.id
        assert main[0].version == "6.1"
        assert main[0].date == date(2023, 9, 14)


def test_steps_name_no_url_and_are_present(registry: Registry) -> None:
    for opco in registry.opcos:
        assert opco.steps, opco.id
        for step in opco.steps:
            assert "http" not in step, f"{opco.id}: URL inside a step"
            assert step.endswith("."), f"{opco.id}: {step!r}"


# --- addresses ---------------------------------------------------------------------------


def test_every_url_is_well_formed(raw: dict[str, Any]) -> None:
    urls = [value for key, value in _walk(raw) if key in URL_KEYS and value is not None]
    assert len(urls) >= 15  # the check must see the registry's addresses
    for url in urls:
        assert isinstance(url, str)
        assert _is_well_formed_url(url), url


def test_every_email_is_well_formed(raw: dict[str, Any], registry: Registry) -> None:
    listed = [email for opco in registry.opcos for email in opco.support.emails]
    assert len(listed) == 4
    in_prose = [
        match
        for _, value in _walk(raw)
        if isinstance(value, str)
        for match in EMAIL_IN_TEXT_RE.findall(value)
    ]
    for email in [*listed, *in_prose]:
        assert EMAIL_RE.fullmatch(email), email


def test_well_formed_checks_reject_bad_addresses() -> None:
    assert not _is_well_formed_url("partenaire.lopcommerce.com")
    assert not _is_well_formed_url("https://localhost/")
    assert not _is_well_formed_url("https://www.ocapiat .fr/")
    assert not _is_well_formed_url("ftp://www.ocapiat.fr/")
    assert not EMAIL_RE.fullmatch("a.davin@afdas")
    assert not EMAIL_RE.fullmatch("a davin@afdas.com")


def test_typos_of_the_cleaner_transcription_are_absent(raw_text: str) -> None:
    for typo in ("afdass", "loppcommerce", "phaseexperimentale", "DGPazJtHY"):
        assert typo not in raw_text


# --- pinned facts ------------------------------------------------------------------------


def test_mobilites_key_lives_365_days(registry: Registry) -> None:
    expiry = _opco(registry, "mobilites").expiry
    assert (expiry.kind, expiry.days, expiry.months) == ("fixed_duration", 365, None)


def test_sante_key_lives_12_months(registry: Registry) -> None:
    expiry = _opco(registry, "sante").expiry
    assert (expiry.kind, expiry.days, expiry.months) == ("fixed_duration", None, 12)


def test_ocapiat_lifetime_is_chosen_from_1_to_6_months(registry: Registry) -> None:
    expiry = _opco(registry, "ocapiat").expiry
    assert (expiry.kind, expiry.min_months, expiry.max_months) == ("chosen_duration", 1, 6)


def test_opcommerce_shows_the_date_on_the_portal(registry: Registry) -> None:
    expiry = _opco(registry, "opcommerce").expiry
    assert expiry.kind == "portal_date"
    assert not expiry.jwt_exp_precedence


def test_opcoep_date_conflict_is_recorded(registry: Registry) -> None:
    opcoep = _opco(registry, "opcoep")
    assert opcoep.expiry.kind == "portal_date"
    assert opcoep.expiry.jwt_exp_precedence
    assert opcoep.expiry.recommended_rotation_months == 12
    assert opcoep.conflicts
    conflicts = " ".join(opcoep.conflicts)
    assert "« Date d'expiration du token »" in conflicts
    assert "eyJhbGciOiJIUzI1NiIs" in conflicts
    assert any(source.date == date(2025, 8, 1) for source in opcoep.sources)


def test_opcoep_key_rules_from_the_2025_article(registry: Registry) -> None:
    opcoep = _opco(registry, "opcoep")
    assert opcoep.scope == "siret"
    assert opcoep.shown_once
    assert opcoep.downloadable
    assert opcoep.regeneration_revokes is True


@pytest.mark.parametrize("opco_id", ["akto", "uniformation"])
def test_unpublished_procedures(registry: Registry, opco_id: str) -> None:
    opco = _opco(registry, opco_id)
    assert opco.obtain == "not_published"
    assert opco.expiry.kind == "unknown"
    assert opco.scope == "unknown"


def test_akto_needs_an_oauth_client(registry: Registry) -> None:
    assert _opco(registry, "akto").api.oauth_client_required
    others = [opco.id for opco in registry.opcos if opco.api.oauth_client_required]
    assert others == ["akto"]


def test_opco2i_key_is_shown_once_with_its_two_warnings(registry: Registry) -> None:
    opco2i = _opco(registry, "opco2i")
    assert opco2i.shown_once
    assert opco2i.obtain == "on_request"
    warnings = " ".join(opco2i.warnings)
    assert "mono-dossier" in warnings
    assert "e-mail" in warnings
    assert "basculer entièrement" in warnings
    assert opco2i.request is not None
    assert opco2i.request.form.url == OPCO2I_FORM
    assert opco2i.request.who_requests == "le CFA"
    assert "« Afficher le mot de passe »" in opco2i.request.delivery
    assert len(opco2i.request.fields) == 6


def test_shown_once_only_at_opco2i_and_opcoep(registry: Registry) -> None:
    assert [opco.id for opco in registry.opcos if opco.shown_once] == ["opco2i", "opcoep"]


def test_regeneration_revokes_where_the_sources_say_so(registry: Registry) -> None:
    revokes = {opco.id: opco.regeneration_revokes for opco in registry.opcos}
    assert [opco_id for opco_id, value in revokes.items() if value is True] == [
        "afdas",
        "ocapiat",
        "opcoep",
    ]
    assert all(value is None for value in revokes.values() if value is not True)


def test_afdas_support_address(registry: Registry) -> None:
    assert _opco(registry, "afdas").support.emails == ("a.davin@afdas.com",)


def test_afdas_acceptance_host(registry: Registry) -> None:
    api = _opco(registry, "afdas").api
    assert api.acceptance_url == "https://api-cfa-recette.afdas.com"
    assert api.note is not None
    assert "OAuth" in api.note


def test_opcommerce_portal_address(registry: Registry) -> None:
    opcommerce = _opco(registry, "opcommerce")
    assert opcommerce.portal_url == "https://partenaire.lopcommerce.com/"
    assert opcommerce.support.emails == ("supportapi@lopcommerce.com",)


def test_constructys_form_address(registry: Registry) -> None:
    constructys = _opco(registry, "constructys")
    assert constructys.obtain == "on_request"
    assert constructys.scope == "og_establishments"
    assert constructys.request is not None
    assert constructys.request.form.url == CONSTRUCTYS_FORM
    assert constructys.request.who_requests == "l'organisme gestionnaire (OG)"


def test_sante_contacts(registry: Registry) -> None:
    support = _opco(registry, "sante").support
    assert support.phones == ("04 13 68 00 15",)
    assert support.emails == ("centrerelationclient@opco-sante.fr",)


def test_atlas_support_and_portal(registry: Registry) -> None:
    atlas = _opco(registry, "atlas")
    assert atlas.portal_url == "https://myatlas.opco-atlas.fr/"
    assert atlas.support.emails == ("webassistance@opcoatlas.fr",)


def test_mobilites_developer_portal(registry: Registry) -> None:
    api = _opco(registry, "mobilites").api
    assert api.developer_portal == "https://www.cfadock.fr/portail_developpeur"


def test_no_production_base_url_is_public(registry: Registry) -> None:
    assert all(opco.api.base_url is None for opco in registry.opcos)


@pytest.mark.parametrize(
    ("opco_id", "obtain", "scope"),
    [
        ("afdas", "self_service", "siren"),
        ("akto", "not_published", "unknown"),
        ("atlas", "self_service", "account"),
        ("constructys", "on_request", "og_establishments"),
        ("opcommerce", "self_service", "account"),
        ("ocapiat", "self_service", "selected_cfa"),
        ("opco2i", "on_request", "siren"),
        ("opcoep", "self_service", "siret"),
        ("mobilites", "self_service", "siret"),
        ("sante", "self_service", "siren"),
        ("uniformation", "not_published", "unknown"),
    ],
)
def test_obtain_method_and_scope(registry: Registry, opco_id: str, obtain: str, scope: str) -> None:
    opco = _opco(registry, opco_id)
    assert (opco.obtain, opco.scope) == (obtain, scope)


#: The cfadock « Accrochage » table surveyed on 28/07/2026 (docs/domain.md): per OPCO,
#: contracts V1, contracts V2, invoices, conventions, « certificats de réalisation ».
STATUS_2026 = {
    "afdas": ("production", "non_ouvert", "production", "production", "production"),
    "akto": ("production", "production", "production", "production", "non_ouvert"),
    "atlas": ("production", "production", "production", "production", "non_ouvert"),
    "constructys": ("production", "non_ouvert", "production", "production", "non_ouvert"),
    "opcommerce": ("production", "production", "production", "production", "non_ouvert"),
    "ocapiat": ("production", "production", "production", "production", "non_ouvert"),
    "opco2i": ("production", "non_ouvert", "production", "production", "non_ouvert"),
    "opcoep": ("production", "recette", "production", "production", "non_ouvert"),
    "mobilites": ("production", "production", "production", "production", "non_ouvert"),
    "sante": ("developpement", "non_ouvert", "production", "non_ouvert", "non_ouvert"),
    "uniformation": ("production", "non_ouvert", "developpement", "production", "non_ouvert"),
}
#: When contracts and invoices went into production (the 2023 table), where it says so.
SINCE_2023 = {
    "afdas": ("Juillet 2022", "T3 2022"),
    "akto": ("Mars 2022", "Mars 2022"),
    "atlas": ("Septembre 2021", "Février 2022"),
    "constructys": ("Mars 2022", "Mars 2022"),
    "opcommerce": ("Septembre 2021", "Février 2022"),
    "ocapiat": ("Septembre 2021", "Février 2022"),
    "opco2i": ("Septembre 2021", "Février 2022"),
    "opcoep": ("Mars 2022", "T3 2022"),
    "mobilites": ("Avril 2022", "Avril 2022"),
    "sante": (None, None),
    "uniformation": (None, None),
}


@pytest.mark.parametrize("opco_id", EXPECTED_IDS)
def test_connection_status_as_of_28_07_2026(registry: Registry, opco_id: str) -> None:
    connection = _opco(registry, opco_id).connection
    flows = (
        connection.contracts,
        connection.contracts_v2,
        connection.invoices,
        connection.conventions,
        connection.certificates,
    )
    assert tuple(flow.state if flow else None for flow in flows) == STATUS_2026[opco_id]
    assert (connection.contracts.since, connection.invoices.since) == SINCE_2023[opco_id]
    assert connection.as_of == date(2026, 7, 28)
    assert connection.source == "tableau « Accrochage » de cfadock"
    assert connection.note
    assert "En 2023 (mode opératoire v6.1, 14/09/2023)" in connection.note
    (cited,) = [source for source in _opco(registry, opco_id).sources if source.date.year == 2026]
    assert cited.date == date(2026, 7, 28)
    assert "« Accrochage » de cfadock" in cited.document


def test_the_2026_counts_of_the_issue(registry: Registry) -> None:
    def at(flow: str, state: str) -> list[str]:
        return [
            o.id
            for o in registry.opcos
            if (status := getattr(o.connection, flow)) is not None and status.state == state
        ]

    assert len(at("contracts", "production")) == 10
    assert "sante" not in at("contracts", "production")
    assert at("contracts_v2", "production") == [
        "akto",
        "atlas",
        "opcommerce",
        "ocapiat",
        "mobilites",
    ]
    assert at("contracts_v2", "recette") == ["opcoep"]
    assert len(at("invoices", "production")) == 10
    assert "uniformation" not in at("invoices", "production")
    assert at("certificates", "production") == ["afdas"]
    assert registry.get("afdas").connection.certificates.since == "20/10/2025"  # type: ignore[union-attr]


def test_developer_portals_and_vademecum(registry: Registry) -> None:
    assert [link.url for link in registry.developer_portals] == [
        "https://www.cfadock.fr/portail_developpeur",
        "https://transopco.info/portail_developpeur",
    ]
    (vademecum,) = registry.documents
    assert "Vademecum CFA V2" in vademecum.document
    assert (vademecum.date.year, vademecum.date.month) == (2024, 2)


def test_afdas_acceptance_oauth_is_basic_with_scope(registry: Registry) -> None:
    api = registry.get("afdas").api
    assert (api.oauth_client_auth, api.oauth_scope) == ("basic", "CFA_OPCO")
    assert all(
        (o.api.oauth_client_auth, o.api.cfakeyinfo_query_key) == ("post", False)
        for o in registry.opcos
        if o.id != "afdas"
    )


# --- the schema rejects a broken copy ----------------------------------------------------


def _entry(data: dict[str, Any], opco_id: str) -> dict[str, Any]:
    return next(entry for entry in data["opcos"] if entry["id"] == opco_id)


def test_negative_days_are_rejected(raw: dict[str, Any]) -> None:
    broken = copy.deepcopy(raw)
    _entry(broken, "mobilites")["expiry"]["days"] = -365
    with pytest.raises(ValidationError, match="days"):
        _ADAPTER.validate_python(broken)


def test_unknown_field_is_rejected(raw: dict[str, Any]) -> None:
    broken = copy.deepcopy(raw)
    _entry(broken, "sante")["expiry"]["jours"] = 365
    with pytest.raises(ValidationError, match="jours"):
        _ADAPTER.validate_python(broken)


def test_every_shipped_opco_has_a_short_label_that_fits_the_matrix(registry: Registry) -> None:
    from cfakey.registry.model import SHORT_LABEL_MAX

    labels = [opco.short_label for opco in registry.opcos]
    assert all(label and len(label) <= SHORT_LABEL_MAX for label in labels), labels
    assert len(set(labels)) == len(labels)


def test_key_shapes_come_from_the_registry(registry: Registry) -> None:
    shaped = {opco.id: opco.key_shape for opco in registry.opcos if opco.key_shape}
    assert set(shaped) == {"afdas", "atlas", "opcoep"}
    assert shaped["afdas"].matches("A" * 64)
    assert not shaped["afdas"].matches("A" * 63)
    assert shaped["afdas"].description == "64 lettres et chiffres"


def test_opcos_says_the_date_and_source_of_the_status_it_prints() -> None:
    from tests.conftest import run_cli

    result = run_cli("opcos")

    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "État de l'accrochage au 28/07/2026, source : tableau « Accrochage » de cfadock." in (
        lines
    )
    assert (
        "Contrats, protocole V2 : en production : AKTO, Atlas, L'Opcommerce, Ocapiat, "
        "OPCO Mobilités ; en recette : OPCO EP." in lines
    )
    assert "Conventions : en production partout sauf OPCO Santé." in lines
    assert "Certificats de réalisation : en production : Afdas (depuis le 20/10/2025)." in lines
    assert (
        "Portails développeurs : https://www.cfadock.fr/portail_developpeur, "
        "https://transopco.info/portail_developpeur" in lines
    )
