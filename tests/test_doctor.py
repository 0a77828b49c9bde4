"""``cfakey doctor``: healthy setups exit 0; each problem is named with its fix and exits 1."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from cfakey.cli.doctor_cmds import doctor_inputs
from cfakey.context import AppContext
from cfakey.core.doctor import diagnose
from cfakey.errors import ExitCode
from tests.conftest import run_cli

SIRET = "18130002100373"
KEY = "Canari+doctor/0123456789abcdef="


@pytest.fixture
def one_key() -> None:
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA Doctor").exit_code == 0
    added = run_cli("add", "atlas", "--yes", input=KEY)
    assert added.exit_code == 0, added.stderr


@pytest.mark.usefixtures("one_key")
def test_healthy_setup() -> None:
    result = run_cli("doctor")
    assert result.exit_code == ExitCode.OK, result.stdout
    assert "Tout va bien." in result.stdout
    assert "fichier chiffré, choisi par variable CFAKEY_STORE" in result.stdout
    assert "choisi     : aucun trousseau utilisable" in result.stdout  # not its class name
    assert KEY not in result.stdout + result.stderr
    report = json.loads(run_cli("doctor", "--json").stdout)
    assert report["healthy"] is True
    assert report["store"] == "file"
    assert report["keys_checked"] == 1
    assert report["missing_secrets"] == []
    assert report["orphan_entries"] == []
    assert report["registry_opcos"] == 11
    assert {item["label"] for item in report["paths"]} >= {
        "Métadonnées (SQLite)",
        "Fichier chiffré",
    }
    assert report["keyring_rejected"], "keyring's rejected backends are listed with reasons"


@pytest.mark.usefixtures("one_key")
def test_missing_secret_and_orphan_entry_are_reported_with_fixes() -> None:
    store = AppContext().key_store()
    assert store.delete(f"{SIRET}/atlas")
    store.put(f"{SIRET}/sante", "orphan-secret-value")
    result = run_cli("doctor")
    assert result.exit_code == 1
    assert "figure dans les métadonnées mais plus dans le magasin" in result.stdout
    assert f"cfakey add atlas --cfa {SIRET}" in result.stdout
    assert f"clé sans métadonnées ({SIRET}/sante)" in result.stdout
    assert "orphan-secret-value" not in result.stdout + result.stderr
    report = json.loads(run_cli("doctor", "--json").stdout)
    assert report["healthy"] is False
    assert report["missing_secrets"] == [f"{SIRET}/atlas"]
    assert report["orphan_entries"] == [f"{SIRET}/sante"]
    assert all(problem["fix"] for problem in report["problems"])


@pytest.mark.usefixtures("one_key")
def test_loose_permissions_are_a_problem(isolated_home: Path) -> None:
    isolated_home.chmod(0o755)
    result = run_cli("doctor")
    assert result.exit_code == 1
    assert f"chmod 700 {isolated_home}" in result.stdout


def test_unusable_keyring_and_no_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CFAKEY_STORE")
    result = run_cli("doctor")
    assert result.exit_code == 1
    assert "Magasin de clés inutilisable" in result.stdout
    assert "--store file" in result.stdout


def test_store_use_remembers_the_choice(isolated_home: Path) -> None:
    assert run_cli("store", "use", "file").exit_code == 0
    config = json.loads((isolated_home / "config.json").read_text())
    assert config["store"] == "file"
    result = run_cli("store", "use", "coffre")
    assert result.exit_code == ExitCode.USAGE
    assert "Magasin inconnu" in result.stderr
    assert json.loads((isolated_home / "config.json").read_text())["store"] == "file"


# -- doctor never stops at what is broken, and never asks ------------------------------


def _doctor_json() -> dict[str, Any]:
    result = run_cli("doctor", "--json")
    assert result.exit_code == 1, result.stderr
    assert "inattendue" not in result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["healthy"] is False
    return report


def _problem(report: dict[str, Any], words: str) -> dict[str, str]:
    found = [problem for problem in report["problems"] if words in problem["message"]]
    assert found, report["problems"]
    problem: dict[str, str] = found[0]
    assert problem["fix"]
    return problem


@pytest.mark.usefixtures("one_key")
def test_an_unknown_store_in_the_environment_is_a_problem_with_its_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CFAKEY_STORE", "coffre")
    result = run_cli("doctor")
    assert result.exit_code == 1
    # The value is never quoted back: it could be a key typed in the wrong place.
    assert "Magasin de clés inconnu (variable CFAKEY_STORE)" in result.stdout
    assert "coffre" not in result.stdout
    assert "unset CFAKEY_STORE" in result.stdout
    report = _doctor_json()
    assert _problem(report, "Magasin de clés inconnu")["fix"].startswith("export CFAKEY_STORE")
    assert report["store"] is None
    assert report["keys_checked"] == 1  # the database is still examined
    assert report["registry_opcos"] == 11


@pytest.mark.usefixtures("one_key")
def test_a_damaged_config_is_a_problem_and_the_rest_is_still_checked(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = isolated_home / "config.json"
    config.write_bytes(b"\x00\xff binaire \x80")
    config.chmod(0o600)
    report = _doctor_json()  # CFAKEY_STORE=file: the store does not depend on the config
    assert f"mv {config}" in _problem(report, "pas du texte UTF-8")["fix"]
    assert report["store"] == "file"
    assert report["missing_secrets"] == []
    assert report["database_check"] == "ok"
    monkeypatch.delenv("CFAKEY_STORE")  # now the config was to decide
    report = _doctor_json()
    assert report["store"] is None
    assert len([p for p in report["problems"] if "UTF-8" in p["message"]]) == 1
    assert config.read_bytes() == b"\x00\xff binaire \x80"


@pytest.mark.usefixtures("one_key")
@pytest.mark.parametrize(
    ("content", "words"),
    [(b"", "vide (0 octet)"), (b"pas une base SQLite " * 300, "illisible ou endommagée")],
)
def test_a_damaged_or_empty_database_is_a_problem_with_its_fix(
    isolated_home: Path, content: bytes, words: str
) -> None:
    db = isolated_home / "cfakey.sqlite3"
    for leftover in isolated_home.glob("cfakey.sqlite3-*"):
        leftover.unlink()
    db.write_bytes(content)
    report = _doctor_json()
    assert "Restaurez une sauvegarde" in _problem(report, words)["fix"]
    assert report["database_check"] == "unchecked"
    assert report["store"] == "file"
    assert report["orphan_entries"] is None  # unknown, not « every key of the store »
    assert not [p for p in report["problems"] if "sans métadonnées" in p["message"]]
    assert db.read_bytes() == content
    assert "Restaurez une sauvegarde" in run_cli("doctor").stdout


@pytest.mark.usefixtures("one_key")
def test_damage_inside_the_database_is_found_by_the_integrity_check(isolated_home: Path) -> None:
    db = isolated_home / "cfakey.sqlite3"
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page_size = connection.execute("PRAGMA page_size").fetchone()[0]
        root = connection.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'key_fingerprint'"
        ).fetchone()[0]
    connection.close()
    with db.open("r+b") as handle:  # an index page: every query of doctor still works
        handle.seek((root - 1) * page_size)
        handle.write(b"\x5a" * page_size)
    report = _doctor_json()
    assert report["database_check"] == "damaged"
    assert "Restaurez une sauvegarde" in _problem(report, "vérification d'intégrité")["fix"]
    assert "endommagée (voir les problèmes)" in run_cli("doctor").stdout


def test_a_bad_registry_overlay_is_a_problem(tmp_path: Path) -> None:
    overlay = tmp_path / "surcouche.yaml"
    overlay.write_text("opcos: [ceci n'est pas : du YAML valide\n")
    result = run_cli("--registry", str(overlay), "doctor", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["registry_version"] is None
    assert any(str(overlay) in problem["message"] for problem in report["problems"])


def test_doctor_never_asks_to_choose_a_store_nor_writes_the_config(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CFAKEY_STORE")  # the keyring is keyring's « fail »: nothing works
    asked: list[str] = []

    def confirm(reason: str) -> bool:
        asked.append(reason)
        return True

    report = diagnose(doctor_inputs(AppContext(confirm_file_store=confirm)))
    assert asked == []
    assert report.store is None
    assert any("Magasin de clés inutilisable" in problem.message for problem in report.problems)
    assert not (isolated_home / "config.json").exists()
    assert not (isolated_home / "keys.enc").exists()


@pytest.mark.usefixtures("one_key")
@pytest.mark.parametrize(
    ("setting", "value", "refused_by", "words"),
    [
        ("opco.mobilites.warn_days", -1, "list", "Paramètre « opco.mobilites.warn_days »"),
        ("opco.atlas.crit_days", True, "check", "Paramètre « opco.atlas.crit_days »"),
        ("opco.atlas.warn_days", 1e300, "list", "Paramètre « opco.atlas.warn_days »"),
        ("opco.atlas.api_url", "http://api.opco.fr/x", "verify", "Adresse non sécurisée"),
        ("editeur", "Éditeur accentué", "verify", "Valeur invalide pour « editeur »"),
    ],
)
def test_a_setting_the_commands_refuse_is_a_problem_with_its_fix(
    isolated_home: Path, setting: str, value: object, refused_by: str, words: str
) -> None:
    config = isolated_home / "config.json"
    content = json.dumps({setting: value}).encode()
    config.write_bytes(content)
    config.chmod(0o600)
    refused = run_cli(refused_by, *(["atlas"] if refused_by == "verify" else []))
    # what doctor must announce; check (a monitoring plugin) says UNKNOWN, 3 (issue 14)
    expected = 3 if refused_by == "check" else ExitCode.USAGE
    assert refused.exit_code == expected, refused.stderr

    result = run_cli("doctor")

    assert result.exit_code == 1
    assert "Tout va bien" not in result.stdout
    assert words in result.stdout
    assert _problem(_doctor_json(), words)["fix"] == f"cfakey config unset {setting}"
    assert config.read_bytes() == content  # doctor never writes
    assert run_cli("config", "unset", setting).exit_code == 0  # the fix given works
    assert run_cli("doctor").exit_code == 0
