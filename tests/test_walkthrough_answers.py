"""The walkthrough forgives: a bad answer after the paste is asked again, the key kept.

Each question (lifetime, date, confirmation) takes three answers; a refused one says what
is expected; the third refusal exits 2 with nothing stored. The key never shows.
"""

from __future__ import annotations

import re
from datetime import date, datetime

import pytest

from cfakey.errors import ExitCode, UsageError
from cfakey.expiry import add_months, parse_date, parse_months
from tests.test_keys_cli import ATLAS_KEY, cfa, enters, listed, run_cli, today

__all__ = ["cfa"]  # the fixture, used by name


def lifetime_answers(*answers: str) -> str:
    return "n\n" + enters("ocapiat") + f"{ATLAS_KEY}\n" + "".join(f"{a}\n" for a in answers)


def test_a_bad_lifetime_is_asked_again_and_the_key_kept(cfa: str) -> None:
    answers = lifetime_answers("7", "six", "6 mois")
    result = run_cli("add", "ocapiat", "--interactive", input=answers)
    assert result.exit_code == ExitCode.OK, result.stderr
    assert result.stderr.count("Durée de vie choisie sur le portail") == 3
    assert "Attendu : un nombre de mois de 1 à 6, par exemple 6." in result.stderr
    assert "Réessayez (2 essais restants)" in result.stderr
    assert "Réessayez (1 essai restant)" in " ".join(result.stderr.split())
    assert f"Clé reçue : {len(ATLAS_KEY)} caractères." in result.stderr
    assert ATLAS_KEY not in result.stdout + result.stderr
    (row,) = listed()
    assert row["expires_at"].startswith(add_months(today(), 6).isoformat()[:7])  # type: ignore[union-attr]


def test_three_bad_lifetimes_exit_2_and_store_nothing(cfa: str) -> None:
    result = run_cli(
        "add", "ocapiat", "--interactive", input=lifetime_answers("7", "", ATLAS_KEY, "6")
    )
    assert result.exit_code == ExitCode.USAGE
    assert "Trois réponses refusées : rien n'a été enregistré." in result.stderr
    assert "Durée de vie illisible : un nombre de mois est attendu." in result.stderr
    assert ATLAS_KEY not in result.stdout + result.stderr
    assert listed() == []


def date_answers(*answers: str) -> str:
    return "n\n" + enters("opcommerce") + f"{ATLAS_KEY}\n" + "".join(f"{a}\n" for a in answers)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [("21 mars 2027", date(2027, 3, 21)), ("21/03/27", date(2027, 3, 21))],
)
def test_a_bad_date_is_asked_again_and_french_words_are_read(
    cfa: str, typed: str, expected: date
) -> None:
    result = run_cli("add", "opcommerce", "--interactive", input=date_answers("31/02/2027", typed))
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "Date illisible" in result.stderr
    assert "Attendu : une date à venir, comme 21/03/2027 ou 21 mars 2027." in result.stderr
    (row,) = listed()
    assert row["expires_at"].startswith(expected.isoformat())  # type: ignore[union-attr]


def test_three_bad_dates_exit_2_and_store_nothing(cfa: str) -> None:
    answers = date_answers("demain", "01/01/2020", "")
    result = run_cli("add", "opcommerce", "--interactive", input=answers)
    assert result.exit_code == ExitCode.USAGE
    assert "Date d'échéance déjà passée" in result.stderr
    assert "Date d'expiration manquante" in result.stderr
    assert "Trois réponses refusées : rien n'a été enregistré." in result.stderr
    assert listed() == []


def test_a_confirmation_takes_only_yes_or_no(cfa: str) -> None:
    first = run_cli("add", "atlas", "--expires", "01/01/2027", input=ATLAS_KEY)
    assert first.exit_code == ExitCode.OK, first.stderr
    answers = "peut-être\nbof\n?\n"
    result = run_cli("add", "atlas", "--interactive", input=answers)
    assert result.exit_code == ExitCode.USAGE
    assert "Réponse non comprise. Attendu : o (oui) ou n (non)." in result.stderr
    assert "Trois réponses refusées : rien n'a été enregistré." in result.stderr
    (row,) = listed()
    assert row["opco"] == "atlas"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("21 mars 2027", datetime(2027, 3, 21)),  # noqa: DTZ001 - local wall clock
        ("1er avril 2027", datetime(2027, 4, 1)),  # noqa: DTZ001
        ("le 3 févr. 2027", datetime(2027, 2, 3)),  # noqa: DTZ001
        ("21 SEPTEMBRE 2027 à 14h30", datetime(2027, 9, 21, 14, 30)),  # noqa: DTZ001
        ("21/03/27", datetime(2027, 3, 21)),  # noqa: DTZ001
        ("30/06/2027 00:00:00", datetime(2027, 6, 30)),  # noqa: DTZ001
        ("2027-03-21T15:18", datetime(2027, 3, 21, 15, 18)),  # noqa: DTZ001
    ],
)
def test_dates_people_type(text: str, expected: datetime) -> None:
    assert parse_date(text) == expected


@pytest.mark.parametrize("text", ["21 brumaire 2027", "32 mars 2027", "1er 2027", "21/03/1999"])
def test_dates_refused(text: str) -> None:
    with pytest.raises(UsageError, match=r"^Date "):
        parse_date(text)


@pytest.mark.parametrize(("text", "months"), [("6", 6), ("6 mois", 6), (" 3MOIS ", 3)])
def test_lifetimes_people_type(text: str, months: int) -> None:
    assert parse_months(text) == months


@pytest.mark.parametrize("text", ["six", "mois", "6 mois 2", "", "-1", "9" * 40])
def test_lifetimes_refused(text: str) -> None:
    with pytest.raises(UsageError, match="Durée de vie illisible"):
        parse_months(text)


@pytest.mark.parametrize("command", ["add", "rotate"])
def test_revocation_and_shown_once_are_each_warned_once(cfa: str, command: str) -> None:
    if command == "rotate":
        first = run_cli("add", "opcoep", "--expires", "01/06/2027", input="F" * 40)
        assert first.exit_code == ExitCode.OK, first.stderr
    answers = "n\n" + enters("opcoep") + f"{ATLAS_KEY}\n01/06/2027\n"
    result = run_cli(command, "opcoep", "--interactive", input=answers)
    assert result.exit_code == ExitCode.OK, result.stderr
    warnings = re.findall(r"⚠ [^\n]*", result.stderr)
    assert len([line for line in warnings if "révoque" in line]) == 1, warnings
    assert len([line for line in warnings if "qu'une" in line]) == 1, warnings
    # Each where it matters: just before the step that generates the key, in the OPCO's words.
    said = " ".join(result.stderr.split())  # wrapped at the terminal's width
    generate = said.index("Génération du token")
    assert said.index("révoque immédiatement l'ancien") < generate


def test_ocapiat_warns_of_revocation_once_and_an_empty_paste_has_no_count(cfa: str) -> None:
    """The registry's « écrase la précédente » is said once, at the generating step; an
    empty paste is refused by its own message, not counted as « 0 caractères »."""
    empty = run_cli("add", "ocapiat", "--interactive", input="n\n" + enters("ocapiat") + "\n")

    assert empty.exit_code == ExitCode.USAGE
    assert "La clé est vide : rien n'a été enregistré." in empty.stderr
    assert "0 caractères" not in empty.stderr
    assert listed() == []

    result = run_cli("add", "ocapiat", "--interactive", input=lifetime_answers("6"))

    assert result.exit_code == ExitCode.OK, result.stderr
    warnings = re.findall(r"⚠ [^\n]*", result.stderr)
    revocations = [w for w in warnings if "écrase" in w or "révoque" in w]
    ocapiat = "La génération d'une nouvelle clé écrase la précédente et impose de reparamétrer"
    assert revocations == [f"⚠ {ocapiat} le SI du CFA."]
    assert result.stderr.index("écrase la précédente") > result.stderr.index("Étape 1/")
    assert ATLAS_KEY not in result.stdout + result.stderr
