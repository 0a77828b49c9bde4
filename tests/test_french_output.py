"""French all the way: no raw code, doubled word or nested bracket reaches a person.

Each human output below once showed a stored identifier (``expiry:portal``, ``file``),
an ISO date, « le CFA CFA … » or brackets inside brackets; ``--csv`` and ``--json`` keep
their identifiers (contracts for scripts).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from tests.test_cli_help import cfakey
from tests.test_keys_cli import ATLAS_KEY, SIRET, cfa, in_days, run_cli

__all__ = ["cfa"]  # the fixture, used by name

RAW_CODES = re.compile(r"expiry:|: (?:file|keyring|openbao)\b|\bfile \(")
NESTED = re.compile(r"\([^()]*\(")
ISO_DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")


def test_journal_shows_labels_and_french_dates(cfa: str) -> None:
    assert run_cli("add", "opcommerce", "--expires", in_days(90), input=ATLAS_KEY).exit_code == 0
    shown = run_cli("journal")
    assert shown.exit_code == 0
    assert "échéance : date du portail" in shown.stdout
    assert not RAW_CODES.search(shown.stdout)
    assert not ISO_DATE.search(shown.stdout)
    assert re.search(r"\b\d\d/\d\d/20\d\d \d\d:\d\d:\d\d\b", shown.stdout)
    csv = run_cli("journal", "--csv")
    assert "expiry:portal" in csv.stdout  # the CSV keeps the stored identifier


def test_show_and_doctor_name_the_store_in_french(cfa: str) -> None:
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    shown = run_cli("show", "atlas")
    assert "Magasin       : fichier chiffré" in shown.stdout
    doctor = run_cli("doctor")
    assert "en service : fichier chiffré, choisi par" in doctor.stdout
    for text in (shown.stdout, doctor.stdout.split("Trousseau du système")[0]):
        assert not RAW_CODES.search(text), text
        assert not NESTED.search(text), text


def test_a_cfa_named_cfa_is_not_doubled(cfa: str) -> None:
    result = run_cli("export", "--format", "env")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "Aucune clé n'est enregistrée pour le CFA Test." in result.stderr
    assert "CFA CFA" not in result.stderr


def test_an_unusual_key_shape_is_said_without_nested_brackets(cfa: str) -> None:
    result = run_cli("add", "opcoep", "--expires", in_days(90), input=ATLAS_KEY)
    assert result.exit_code == 0, result.stderr
    assert "Forme inhabituelle pour cet OPCO, qui donne un jeton JWT (eyJ….….…) ;" in (
        result.stderr
    )
    assert not NESTED.search(result.stderr)


DECIMAL_POINT = re.compile(r"\d\.\d")


def test_decimal_text_writes_a_decimal_comma() -> None:
    from cfakey.cli.terminal import decimal_text

    assert decimal_text(0.34) == "0,3"
    assert decimal_text(10.0) == "10,0"
    assert decimal_text(1234.5, 2) == "1234,50"
    assert decimal_text(10.0, 0) == "10"


def test_import_duration_has_a_decimal_comma(cfa: str, tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(f"siret;opco;key\n{cfa};atlas;{ATLAS_KEY}\n", encoding="utf-8")
    result = run_cli("import", str(path))
    assert result.exit_code == 0, result.stderr
    assert re.search(r"importée\(s\) en \d+,\d s", result.stderr)
    assert not DECIMAL_POINT.search(result.stderr)


def test_help_defaults_and_range_errors_have_no_decimal_point() -> None:
    shown = cfakey("verify", "--help", capture_output=True)  # the console script's help
    assert "[défaut : 10]" in shown.stdout
    assert not DECIMAL_POINT.search(shown.stdout)
    refused = run_cli("verify", "atlas", "--timeout", "0")
    assert refused.exit_code == ExitCode.USAGE
    assert "0,1" in refused.stderr
    assert "600" in refused.stderr
    assert not DECIMAL_POINT.search(refused.stderr)


def test_verify_names_a_cfa_called_cfa_without_doubling() -> None:
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA des Métiers").exit_code == 0
    result = run_cli("verify", "atlas")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "Aucune clé Atlas n'est enregistrée pour le CFA des Métiers" in result.stderr
    assert "CFA CFA" not in result.stderr


ENGLISH_WORDS = re.compile(
    r"\b(?:required|installed|unable|failed|error|unset|not|no|keyring\.backends|"
    r"RuntimeError|non traduite)\b|« fail »|« null »|keyring\.backends\.|keyrings\.alt\.",
    re.IGNORECASE,
)


def test_doctor_names_keyrings_in_french(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBUS_SESSION_BUS_ADDRESS", raising=False)  # Secret Service refuses
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")  # keyring's own choice: its fail backend
    human = run_cli("doctor")
    keyring_part = human.stdout.split("Trousseau du système")[1].split("Chemins")[0]
    assert "aucun trousseau utilisable" in keyring_part
    assert "Secret Service (GNOME Trousseau, KWallet…)" in keyring_part
    assert not ENGLISH_WORDS.search(keyring_part), keyring_part
    as_json = json.loads(run_cli("doctor", "--json").stdout)
    assert as_json["keyring_backend"] == "keyring.backends.fail.Keyring"  # scripts keep it
