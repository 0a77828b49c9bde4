"""Switching stores: keys stored in the other one are named where they are, never « absente »."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfakey.cli.doctor_cmds import doctor_inputs
from cfakey.context import AppContext
from cfakey.core.doctor import DoctorInputs, diagnose
from cfakey.errors import ExitCode
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from cfakey.stores.base import entry_name
from cfakey.stores.keyring_store import home_service
from tests.conftest import run_cli
from tests.secret_service import SecretServiceDaemon
from tests.store_contract import MemoryStore

SIRET = "13002526500013"
KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="


def add_with_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CFAKEY_STORE")  # only the config decides from now on
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA Test").exit_code == 0
    assert run_cli("store", "use", "keyring").exit_code == 0
    added = run_cli("add", "atlas", "--yes", input=KEY)
    assert added.exit_code == 0, added.stderr
    used = run_cli("store", "use", "file")
    assert used.exit_code == 0, used.stderr
    assert "le fichier chiffré" in used.stderr


@pytest.mark.secret_service
def test_a_key_added_with_the_keyring_is_named_after_switching_to_the_file(
    secret_service: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_with_keyring(monkeypatch)
    result = run_cli("show", "atlas", "--reveal")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "absente" not in result.stderr
    assert "rangée dans le trousseau du système, pas dans le fichier chiffré" in result.stderr
    assert "cfakey --store keyring" in result.stderr
    assert KEY not in result.stdout + result.stderr
    # Nothing was lost: the keyring still has it, and reading it there works.
    assert secret_service.items(home_service(Paths.from_env().data_dir)) == {
        entry_name(SIRET, "atlas"): KEY
    }
    again = run_cli("--store", "keyring", "show", "atlas", "--reveal")
    assert again.exit_code == 0, again.stderr
    assert KEY in again.stdout


@pytest.mark.secret_service
def test_doctor_says_which_store_holds_the_key(
    secret_service: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_with_keyring(monkeypatch)
    result = run_cli("doctor", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["missing_secrets"] == []
    assert report["elsewhere"] == [entry_name(SIRET, "atlas")]
    (problem,) = report["problems"]
    assert "rangée dans le trousseau du système" in problem["message"]
    assert problem["fix"].startswith("cfakey --store keyring show atlas")
    human = run_cli("doctor")
    assert "rangées dans un autre magasin : 1" in human.stdout


def test_doctor_takes_its_dependencies_explicitly(isolated_home: Path) -> None:
    """``diagnose`` runs on what it is given: here an in-memory store, no AppContext."""
    context = AppContext()
    metadata = Metadata.open(Paths.from_env())
    metadata.add_cfa(SIRET, "CFA Test", None)
    store = MemoryStore()
    store.put(entry_name(SIRET, "akto"), "sans-metadonnees")
    inputs = doctor_inputs(context)
    given = DoctorInputs(
        paths=inputs.paths,
        config=inputs.config,
        registry=inputs.registry,
        store_decision=inputs.store_decision,
        keyring_probe=inputs.keyring_probe,
        metadata=lambda: metadata,
        key_store=lambda: store,
        recovery=lambda: None,
    )
    report = diagnose(given)
    assert report.store_description == "mémoire (tests)"
    assert report.orphan_entries == (entry_name(SIRET, "akto"),)
    assert store.batches == 1
    assert not (isolated_home / "keys.enc").exists()
