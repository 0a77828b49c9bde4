"""``cfakey cfa ...``: identities, default CFA, refusal to drop a CFA that still has keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from tests.conftest import run_cli

SIRET = "18130002100373"
LA_POSTE = "35600000000010"


def test_add_list_default_remove() -> None:
    added = run_cli("cfa", "add", SIRET, "--nom", "CFA Régional Intercons", "--uai", "0133527n")
    assert added.exit_code == 0, added.stderr
    assert "CFA par défaut" in added.stderr
    assert run_cli("cfa", "add", LA_POSTE, "--nom", "CFA La Poste").exit_code == 0
    listed = json.loads(run_cli("cfa", "list", "--json").stdout)
    assert [(cfa["siret"], cfa["uai"], cfa["default"]) for cfa in listed] == [
        (LA_POSTE, None, False),
        (SIRET, "0133527N", True),
    ]
    assert run_cli("cfa", "default", "la poste").exit_code == 0
    listed = json.loads(run_cli("cfa", "list", "--json").stdout)
    assert [cfa["siret"] for cfa in listed if cfa["default"]] == [LA_POSTE]
    assert run_cli("cfa", "remove", "356000000").exit_code == 0
    assert [cfa["siret"] for cfa in json.loads(run_cli("cfa", "list", "--json").stdout)] == [SIRET]


def test_empty_list_gives_a_hint() -> None:
    result = run_cli("cfa", "list")
    assert result.exit_code == 0
    assert "cfakey cfa add" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((SIRET[:-1] + "4", "--nom", "X"), "clé de contrôle fausse"),
        (("1813000210037", "--nom", "X"), "13 chiffres au lieu de 14"),
        (("18130002100ABC", "--nom", "X"), "14 chiffres attendus, sans lettre"),
        ((SIRET, "--nom", "X", "--uai", "0133527A"), "lettre de contrôle devrait être « N »"),
        ((SIRET, "--nom", "X", "--uai", "12"), "7 chiffres puis une lettre"),
        ((SIRET, "--nom", "   "), "nom du CFA est vide"),
    ],
)
def test_invalid_identities_are_refused(
    args: tuple[str, ...], message: str, isolated_home: Path
) -> None:
    result = run_cli("cfa", "add", *args)
    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    with Metadata.open(Paths.from_env()) as metadata:
        assert metadata.list_cfas() == []


def test_unknown_cfa() -> None:
    run_cli("cfa", "add", SIRET, "--nom", "CFA")
    result = run_cli("cfa", "default", "35600000000048")  # valid, not registered
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "CFA inconnu" in result.stderr


def test_duplicate_cfa_is_refused() -> None:
    run_cli("cfa", "add", SIRET, "--nom", "CFA")
    result = run_cli("cfa", "add", SIRET, "--nom", "Autre nom")
    assert result.exit_code == ExitCode.ALREADY_EXISTS
    assert "déjà enregistré" in result.stderr
    assert json.loads(run_cli("cfa", "list", "--json").stdout)[0]["name"] == "CFA"


# cfa rename / cfa edit (issue 15, item 6) ---------------------------------------------


def cfas_json() -> list[dict[str, object]]:
    result = run_cli("cfa", "list", "--json")
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def edited_journal() -> list[str]:
    result = run_cli("journal", "--json", "--action", "cfa_edited", "--chronologique")
    return [entry["detail"] for entry in json.loads(result.stdout)]


def test_rename_and_edit_fix_a_cfa_and_journal_it() -> None:
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA Regional").exit_code == 0

    renamed = run_cli("cfa", "rename", SIRET, "CFA Régional Interconsulaire")
    edited = run_cli("cfa", "edit", "CFA Régional Interconsulaire", "--uai", "0133527n")
    same = run_cli("cfa", "edit", SIRET, "--uai", "0133527N")

    assert renamed.exit_code == 0, renamed.stderr
    assert edited.exit_code == 0, edited.stderr
    assert same.exit_code == 0, same.stderr
    assert [(c["name"], c["uai"]) for c in cfas_json()] == [
        ("CFA Régional Interconsulaire", "0133527N")
    ]
    assert edited_journal() == [
        "nom : CFA Regional → CFA Régional Interconsulaire",
        "UAI : aucun → 0133527N",
    ]


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (("edit", SIRET, "--uai", "0133527A"), "devrait être « N »", ExitCode.USAGE),
        (("edit", SIRET), "Rien à modifier : précisez --nom ou --uai.", ExitCode.USAGE),
        (("rename", SIRET, "   "), "", ExitCode.USAGE),
        (("rename", LA_POSTE, "X"), "CFA inconnu", ExitCode.NOT_FOUND),
    ],
)
def test_a_bad_edit_is_refused_and_changes_nothing(
    args: tuple[str, ...], message: str, code: int
) -> None:
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA Regional").exit_code == 0

    result = run_cli("cfa", *args)

    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert [(c["name"], c["uai"]) for c in cfas_json()] == [("CFA Regional", None)]
    assert edited_journal() == []
