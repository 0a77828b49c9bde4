"""Registry loader, overlay merge and its errors, name resolution, expiry rules, opcos/guide."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cfakey import __version__
from cfakey.errors import ExitCode, RegistryError, UnknownOpcoError, UsageError
from cfakey.expiry import add_months, chosen_expiry, fixed_expiry, jwt_expiry, parse_date
from cfakey.paths import ensure_private_dir
from cfakey.registry.loader import load_registry
from cfakey.registry.model import Registry
from cfakey.registry.names import name_index, normalize, resolve
from tests.conftest import run_cli

IDS = [
    "afdas", "akto", "atlas", "constructys", "opcommerce", "ocapiat",
    "opco2i", "opcoep", "mobilites", "sante", "uniformation",
]  # fmt: skip


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return load_registry(None, tmp_path / "cache")[0]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_registry_is_complete(registry: Registry) -> None:
    assert [opco.id for opco in registry.opcos] == IDS
    name_index(registry)  # raises if one spelling leads to two OPCOs


@pytest.mark.parametrize(
    ("spelling", "opco_id"),
    [
        ("L'Opcommerce", "opcommerce"),
        ("l’opcommerce", "opcommerce"),
        ("OPCO EP", "opcoep"),
        ("opco-ep", "opcoep"),
        ("OPCO Mobilités", "mobilites"),
        ("mobilites", "mobilites"),
        ("2i", "opco2i"),
        ("OPCO Santé", "sante"),
        ("ATLAS", "atlas"),
        ("  Uniformation ", "uniformation"),
    ],
)
def test_names_resolve(registry: Registry, spelling: str, opco_id: str) -> None:
    assert resolve(registry, spelling).id == opco_id


def test_every_alias_resolves_to_its_own_opco(registry: Registry) -> None:
    for opco in registry.opcos:
        for alias in (opco.id, opco.name, *opco.aliases):
            assert resolve(registry, alias).id == opco.id


def test_normalize_folds_everything() -> None:
    assert normalize("L’OPCO-Santé_ é.") == "lopcosantee"


def test_unknown_name_suggests(registry: Registry) -> None:
    with pytest.raises(UnknownOpcoError, match=r"Voulez-vous dire « atlas » \?") as caught:
        resolve(registry, "atlsa")
    assert caught.value.hint is not None
    assert "uniformation" in caught.value.hint


def test_cache_is_used_and_invalidated(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first, _ = load_registry(None, cache)
    files = list(cache.glob("registry.json"))
    assert len(files) == 1
    assert files[0].stat().st_mode & 0o777 == 0o600
    again, _ = load_registry(None, cache)
    assert again == first
    overlay = write(
        tmp_path / "o.yaml",
        "opcos:\n  - id: atlas\n    api:\n      base_url: https://api.example.org\n",
    )
    merged, source = load_registry(overlay, cache)
    assert merged.get("atlas").api.base_url == "https://api.example.org"
    assert source.overlay == overlay
    assert len(list(cache.glob("registry.json"))) == 1
    files[0].write_bytes(b"garbage")
    assert load_registry(None, cache)[0] == first


def test_a_cache_that_is_not_private_is_ignored(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shipped, _ = load_registry(None, cache)
    cache_file = cache / "registry.json"
    forged = cache_file.read_text(encoding="utf-8").replace("https://", "https://attacker.example/")
    cache_file.write_text(forged, encoding="utf-8")
    assert "attacker" in str(load_registry(None, cache)[0])  # private: trusted as written
    cache_file.write_text(forged, encoding="utf-8")
    cache_file.chmod(0o666)  # writable by others: anyone could have forged it

    registry, _ = load_registry(None, cache)

    assert registry == shipped
    assert cache_file.stat().st_mode & 0o777 == 0o600  # rebuilt, private again
    if os.getuid() == 0:  # only root can give a file away
        cache_file.write_text(forged, encoding="utf-8")
        os.chown(cache_file, 4242, 4242)
        assert load_registry(None, cache)[0] == shipped


def test_the_cache_cannot_run_code(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shipped, _ = load_registry(None, cache)
    marker = tmp_path / "ran"

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (marker.touch, ())  # type: ignore[return-value]

    for name in ("registry.json", "registry.pickle"):
        (cache / name).write_bytes(pickle.dumps(Payload()))
        (cache / name).chmod(0o600)
        assert load_registry(None, cache)[0] == shipped
    (cache / "registry.json").write_text(
        json.dumps([["x"], {"$": "Popen", "args": ["touch", str(marker)]}]), encoding="utf-8"
    )
    assert load_registry(None, cache)[0] == shipped
    assert not marker.exists()
    assert not (cache / "registry.pickle").exists()  # the old format is cleaned up


def test_private_directories_are_private_up_from_the_first_missing_one(tmp_path: Path) -> None:
    leaf = tmp_path / "a" / "b" / "c"

    ensure_private_dir(leaf)

    for directory in (tmp_path / "a", tmp_path / "a" / "b", leaf):
        assert directory.stat().st_mode & 0o777 == 0o700, directory


def test_overlay_merges_by_id_and_adds(tmp_path: Path) -> None:
    overlay = write(
        tmp_path / "overlay.yaml",
        """
opcos:
  - id: akto
    obtain: self_service
    steps: ["Se connecter au portail AKTO.", "Cliquer sur « Générer ma clé »."]
    expiry: {kind: fixed_duration, months: 6}
    portals: [{name: Portail AKTO, url: "https://akto.example.org/"}]
  - id: atlas
    api: {base_url: "https://api.atlas.example.org/ApiEchangeCFA"}
""",
    )
    registry, _ = load_registry(overlay, None)
    akto = registry.get("akto")
    assert akto.obtain == "self_service"
    assert akto.expiry.months == 6
    assert len(akto.steps) == 2
    atlas = registry.get("atlas")
    assert atlas.api.base_url == "https://api.atlas.example.org/ApiEchangeCFA"
    assert atlas.support.emails == ("webassistance@opcoatlas.fr",)  # untouched fields kept


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "opcos:\n  - id: atlas\n    colour: blue\n",
            "OPCO « atlas », champ « colour » : champ inconnu",
        ),
        (
            "opcos:\n  - id: mobilites\n    expiry: {kind: fixed_duration, days: -365}\n",
            "OPCO « mobilites », champ « expiry » : « days » doit être un nombre positif",
        ),
        (
            "opcos:\n  - id: sante\n    expiry: {kind: fixed_duration, months: 0}\n",
            "« months » doit être un nombre positif",
        ),
        (
            "opcos:\n  - id: atlas\n    shown_once: peut-être\n",
            "champ « shown_once » : type invalide",
        ),
        ("opcos:\n  - id: atlas\n  - id: atlas\n", "l'OPCO « atlas » est déclaré deux fois"),
        ("opcos:\n  - id: atlas\n    scope: planet\n", "valeur 'planet' non reconnue"),
        (
            "opcos:\n  - id: nouveau\n    name: Nouveau\n",
            "OPCO « nouveau », champ « aliases » : champ obligatoire",
        ),
        ("opcos:\n  - name: sans id\n", "l'entrée n° 1 n'a pas de champ « id »"),
        ("opcos: {}\n", "le fichier doit contenir une liste « opcos »"),
        ("autre: 1\nopcos: []\n", "champ inconnu « autre »"),
        ("opcos:\n  - id: atlas\n    name: a: b\n", "ligne 3"),
        # A name or an id equal to another OPCO's alias: every later lookup would crash.
        ("opcos:\n  - id: akto\n    name: 2i\n", "« 2i » désigne à la fois akto et opco2i"),
        (
            "opcos:\n  - id: atlas\n    aliases: [OPCO EP]\n",
            "« opcoep » désigne à la fois atlas et opcoep",
        ),
        # Lifetimes that would overflow date arithmetic.
        (
            "opcos:\n  - id: mobilites\n    expiry:\n      days: 1000000000000\n",
            "OPCO « mobilites », champ « expiry » : « days » vaut au plus 3660",
        ),
        (
            "opcos:\n  - id: sante\n    expiry:\n      months: 99999999\n",
            "« months » vaut au plus 120",
        ),
        (
            "opcos:\n  - id: opcoep\n    expiry:\n      recommended_rotation_months: 10000\n",
            "« recommended_rotation_months » vaut au plus 120",
        ),
        # Per-OPCO facts of the key commands: the matrix column, the expected key shape.
        (
            "opcos:\n  - id: atlas\n    short_label: Atlas+\n",
            "OPCO « atlas », champ « (entrée entière) » : « short_label » compte de 1 à 5",
        ),
        (
            "opcos:\n  - id: afdas\n    key_shape:\n      pattern: '[A-Z'\n      description: x\n",
            "« pattern » n'est pas une expression régulière valide",
        ),
        (
            "opcos:\n  - id: akto\n    key_shape:\n      pattern: '[A-Z]+'\n",
            "OPCO « akto », champ « key_shape.description » : champ obligatoire",
        ),
    ],
)
def test_bad_overlays_name_file_opco_and_field(tmp_path: Path, text: str, expected: str) -> None:
    overlay = write(tmp_path / "overlay.yaml", text)
    with pytest.raises(RegistryError) as caught:
        load_registry(overlay, tmp_path / "cache")
    assert str(overlay) in caught.value.message
    assert expected in caught.value.message
    assert not list((tmp_path / "cache").glob("registry.*"))


#: Words of pydantic's and PyYAML's English messages, which must never reach the operator.
ENGLISH = ("Input should", "should be", "Field required", "Value error", "could not", "did not",
           "expected", "found", "while ", "constructor", "Unexpected", "valid ")  # fmt: skip


def assert_french(message: str) -> None:
    assert not [word for word in ENGLISH if word in message], message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Round 2, new 6: every pydantic error type in French, the field named.
        ("opcos:\n  - id: mobilites\n    expiry:\n      days: .inf\n", "un nombre entier"),
        ("opcos:\n  - id: mobilites\n    expiry:\n      days: trente\n", "un nombre entier"),
        ("opcos:\n  - id: atlas\n    name: [a, b]\n", "champ « name » : type invalide"),
        ("opcos:\n  - id: atlas\n    downloadable: 12\n", "un booléen (true ou false)"),
        ("opcos:\n  - id: atlas\n    connection: {as_of: hier}\n", "une date AAAA-MM-JJ"),
        ("opcos:\n  - id: atlas\n    support: 3\n", "champ « support » : type invalide"),
        ("opcos:\n  - id: atlas\n    steps: 3\n", "une liste est attendue"),
        ("opcos:\n  - id: atlas\n    scope: planet\n", "attendu : 'siren', 'siret'"),
        # Round 2, new 7: strict numbers, safe addresses, real e-mail addresses.
        ("opcos:\n  - id: mobilites\n    expiry:\n      days: true\n", "un nombre entier"),
        ("opcos:\n  - id: mobilites\n    expiry:\n      days: 30.0\n", "un nombre entier"),
        ("opcos:\n  - id: atlas\n    regeneration_revokes: 1\n", "un booléen"),
        (
            "opcos:\n  - id: atlas\n    portals: [{name: P, url: 'javascript:alert(1)'}]\n",
            "champ « portals.0 » : « url » : adresse invalide : une adresse https://hôte/chemin",
        ),
        (
            "opcos:\n  - id: atlas\n    api: {base_url: 'http://api.opco.fr/x'}\n",
            "champ « api » : « base_url » : adresse invalide",
        ),
        ("opcos:\n  - id: atlas\n    links: [{name: L, url: '//x.fr'}]\n", "https://"),
        ("opcos:\n  - id: atlas\n    links: [{name: L, url: 'https://'}]\n", "https://"),
        (
            "opcos:\n  - id: atlas\n    support: {emails: ['support chez atlas']}\n",
            "adresse e-mail invalide",
        ),
        ("opcos:\n  - id: atlas\n    support: {emails: ['a@b@c.fr']}\n", "e-mail invalide"),
        # Round 2, new 6: PyYAML's messages in French, with the line.
        ("opcos:\n  - id: atlas\n    name: !!python/object:os.system x\n", "ligne 3"),
        ("opcos:\n  - id: atlas\n    name: !!python/object:os.system x\n", "étiquette"),
        ("opcos: [{id: atlas}, {id: sante}\n", "« , » ou « ] » attendu"),
        ("opcos:\n  - id: atlas\n\tname: X\n", "tabulation"),
    ],
)
def test_overlay_errors_are_strict_and_french(tmp_path: Path, text: str, expected: str) -> None:
    overlay = write(tmp_path / "overlay.yaml", text)
    with pytest.raises(RegistryError) as caught:
        load_registry(overlay, tmp_path / "cache")
    assert f"Registre {overlay}" in caught.value.message
    assert expected in caught.value.message
    assert_french(caught.value.message)
    assert not list((tmp_path / "cache").glob("registry.*"))


def test_local_addresses_may_use_http_in_an_overlay(tmp_path: Path) -> None:
    overlay = write(
        tmp_path / "overlay.yaml",
        "opcos:\n  - id: atlas\n    api: {base_url: 'http://127.0.0.1:8080/ApiEchangeCFA'}\n",
    )
    registry, _ = load_registry(overlay, None)
    assert registry.get("atlas").api.base_url == "http://127.0.0.1:8080/ApiEchangeCFA"


def test_missing_and_unreadable_overlays(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="n'existe pas"):
        load_registry(tmp_path / "absent.yaml", None)
    with pytest.raises(RegistryError, match="est un dossier"):
        load_registry(tmp_path, None)
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"opcos:\n  - id: \xff\xfe\x00garbage\n")
    with pytest.raises(RegistryError, match="YAML invalide"):
        load_registry(binary, None)


def test_bad_overlay_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overlay = write(
        tmp_path / "o.yaml",
        "opcos:\n  - id: ocapiat\n    expiry: {kind: chosen_duration, max_months: -6}\n",
    )
    monkeypatch.setenv("CFAKEY_REGISTRY", str(overlay))
    result = run_cli("opcos")
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""
    assert str(overlay) in result.stderr
    assert "ocapiat" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("--registry", str(tmp_path / "absent.yaml"), "guide", "atlas")
    assert result.exit_code == ExitCode.USAGE
    assert "n'existe pas" in result.stderr


# Expiry rules ----------------------------------------------------------------------------


def test_mobilites_365_days_across_a_leap_year(registry: Registry) -> None:
    assert fixed_expiry(registry.get("mobilites").expiry, date(2027, 3, 1)) == date(2028, 2, 29)


@pytest.mark.parametrize(
    ("obtained", "expected"),
    [(date(2028, 2, 29), date(2029, 2, 28)), (date(2026, 8, 31), date(2027, 8, 31))],
)
def test_sante_12_months(registry: Registry, obtained: date, expected: date) -> None:
    assert fixed_expiry(registry.get("sante").expiry, obtained) == expected


@pytest.mark.parametrize("months", [1, 2, 3, 4, 5, 6])
def test_ocapiat_accepts_one_to_six_months(registry: Registry, months: int) -> None:
    assert chosen_expiry(registry.get("ocapiat").expiry, date(2026, 8, 31), months) == add_months(
        date(2026, 8, 31), months
    )


@pytest.mark.parametrize("months", [0, 7, -1])
def test_ocapiat_refuses_other_lifetimes(registry: Registry, months: int) -> None:
    with pytest.raises(UsageError, match="de 1 à 6 mois"):
        chosen_expiry(registry.get("ocapiat").expiry, date(2026, 8, 31), months)


def test_add_months_clamps_to_month_end() -> None:
    assert add_months(date(2026, 8, 31), 6) == date(2027, 2, 28)
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 12, 15), 1) == date(2027, 1, 15)


def test_jwt_exp_claim() -> None:
    # {"alg":"HS256","typ":"JWT"} . {"sub":"cfa","exp":1893456000} . signature
    token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjZmEiLCJleHAiOjE4OTM0NTYwMDB9.c2ln"
    assert jwt_expiry(token) == datetime(2030, 1, 1, tzinfo=UTC)
    assert jwt_expiry("T9epl6tM2uq3s0Cvlyc7craVqg1-AcL") is None
    assert jwt_expiry("eyJhbGciOiJIUzI1NiIs.bm90IGpzb24.x") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("21/03/2022 15:18", datetime(2022, 3, 21, 15, 18)),  # noqa: DTZ001 - local wall clock
        ("21/03/2022", datetime(2022, 3, 21)),  # noqa: DTZ001
        ("2022-03-21", datetime(2022, 3, 21)),  # noqa: DTZ001
        ("2022-03-21T15:18", datetime(2022, 3, 21, 15, 18)),  # noqa: DTZ001
    ],
)
def test_portal_dates(text: str, expected: datetime) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["31/02/2027", "demain", "2027-13-01", ""])
def test_unparseable_dates(text: str) -> None:
    with pytest.raises(UsageError, match="Date illisible"):
        parse_date(text)


# CLI -------------------------------------------------------------------------------------


def test_opcos_table_and_json() -> None:
    table = run_cli("opcos")
    assert table.exit_code == 0
    for name in ("Afdas", "L'Opcommerce", "OPCO Mobilités", "365 jours", "12 mois", "non publiée"):
        assert name in table.stdout
    rows = json.loads(run_cli("opcos", "--json").stdout)
    assert [row["id"] for row in rows] == IDS
    for row in rows:
        assert {"id", "name", "obtain", "expiry", "scope", "portal_url"} <= set(row)
    by_id = {row["id"]: row for row in rows}
    assert by_id["mobilites"]["expiry"]["kind"] == "fixed_duration"
    assert by_id["mobilites"]["expiry"]["days"] == 365
    assert by_id["ocapiat"]["expiry"]["max_months"] == 6
    assert by_id["akto"]["obtain"] == "not_published"
    assert by_id["atlas"]["portal_url"] == "https://myatlas.opco-atlas.fr/"


def test_guide_shows_the_whole_procedure() -> None:
    result = run_cli("guide", "OPCO 2i")
    assert result.exit_code == 0
    out = result.stdout
    assert "« Afficher le mot de passe »" in out
    assert "mono-dossier" in out
    assert "une seule fois" in out
    assert "cfakey add opco2i" in out
    assert "forms.office.com" in out


def test_guide_json_is_the_entry() -> None:
    entry = json.loads(run_cli("guide", "opcoep", "--json").stdout)
    assert entry["id"] == "opcoep"
    assert entry["expiry"]["jwt_exp_precedence"] is True
    assert entry["conflicts"]


@pytest.mark.parametrize("name", ["atlsa", "", "zzzz"])
def test_guide_unknown_or_empty_name(name: str) -> None:
    result = run_cli("guide", name)
    assert result.exit_code == ExitCode.USAGE
    assert result.stdout == ""
    assert "afdas, akto, atlas" in result.stderr
    if name == "atlsa":
        assert "Voulez-vous dire « atlas » ?" in result.stderr


def test_guide_open_uses_the_browser(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    result = run_cli("guide", "atlas", "--open")
    assert result.exit_code == 0
    assert opened == ["https://myatlas.opco-atlas.fr/"]


def test_usage_errors_are_french() -> None:
    result = run_cli("guide", "atlas", "--bogus")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith("Erreur : Option inconnue : --bogus.")
    result = run_cli("gide")
    assert result.exit_code == ExitCode.USAGE
    assert "Commande inconnue" in result.stderr


def test_version_and_help_in_a_real_process() -> None:
    version = subprocess.run(
        [sys.executable, "-m", "cfakey", "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout == f"cfakey {__version__}\n"
    shown = subprocess.run(
        [sys.executable, "-m", "cfakey", "--help"], capture_output=True, text=True, check=True
    )
    assert "Commandes" in shown.stdout
    assert "Affiche cette aide et quitte." in shown.stdout
    assert "Show this message" not in shown.stdout


def test_missing_required_option_names_the_option() -> None:
    result = run_cli("export")
    assert result.exit_code == ExitCode.USAGE
    assert result.stderr.startswith("Erreur : Option obligatoire manquante : --format.")


def test_unparseable_long_date_is_not_quoted_back() -> None:
    pasted_key = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
    with pytest.raises(UsageError, match="Date illisible : formats acceptés") as caught:
        parse_date(pasted_key)
    assert pasted_key not in caught.value.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("opcos:\n  - id: akto\n    name: 2i\n", "« 2i » désigne à la fois akto et opco2i"),
        ("opcos:\n  - id: sante\n    expiry:\n      months: 99999999\n", "vaut au plus 120"),
    ],
)
def test_cli_refuses_an_overlay_before_any_lookup(tmp_path: Path, text: str, expected: str) -> None:
    overlay = write(tmp_path / "overlay.yaml", text)

    for args in (("guide", "2i"), ("opcos",), ("list",)):
        result = run_cli("--registry", str(overlay), *args)

        assert result.exit_code == ExitCode.USAGE, result.stderr
        assert f"Registre {overlay}" in result.stderr
        assert expected in result.stderr
        assert "erreur inattendue" not in result.stderr
