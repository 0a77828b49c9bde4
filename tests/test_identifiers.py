"""SIREN, SIRET and UAI rules from docs/domain.md, including La Poste's exception."""

from __future__ import annotations

import pytest

from cfakey.errors import UsageError
from cfakey.identifiers import (
    is_valid_siren,
    is_valid_siret,
    is_valid_uai,
    validate_siren,
    validate_siret,
    validate_uai,
)


@pytest.mark.parametrize(
    "siret", ["18130002100373", "35600000000010", "35600000000048", "73282932000074"]
)
def test_valid_sirets(siret: str) -> None:
    assert is_valid_siret(siret)


@pytest.mark.parametrize(
    "siret",
    [
        "18130002100374",
        "35600000000011",
        "9999999900009",
        "1813000210037A",
        "",
        "181300021003731",
        "１８１３０００２１００３７３",
    ],
)
def test_invalid_sirets(siret: str) -> None:
    assert not is_valid_siret(siret)


def test_siren_rules() -> None:
    assert is_valid_siren("181300021")
    assert is_valid_siren("356000000")
    assert not is_valid_siren("181300022")
    assert not is_valid_siren("18130002")


def test_uai_check_letter() -> None:
    assert is_valid_uai("0133527N")
    assert not is_valid_uai("0133527A")
    assert not is_valid_uai("013352N")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("18130002100374", "clé de contrôle fausse"),
        ("1813000210037", "13 chiffres au lieu de 14"),
        ("1813000210037A", "14 chiffres attendus, sans lettre"),
        ("", "SIRET vide"),
    ],
)
def test_siret_errors_say_what_is_wrong(value: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate_siret(value)


def test_validation_normalises() -> None:
    assert validate_siret(" 181 300 021 00373 ") == "18130002100373"
    assert validate_siren("181 300 021") == "181300021"
    assert validate_uai("0133527n") == "0133527N"
    with pytest.raises(UsageError, match="« N »"):
        validate_uai("0133527B")
    with pytest.raises(UsageError, match="7 chiffres puis une lettre"):
        validate_uai("ABC")
