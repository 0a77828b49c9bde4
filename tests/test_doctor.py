"""``cfakey doctor``: healthy setups exit 0; each problem is named with its fix and exits 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfakey.context import AppContext
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
    assert "keyring.backends.fail.Keyring" in result.stdout
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
