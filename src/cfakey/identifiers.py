"""SIREN, SIRET and UAI checks, with the exact rules (Luhn, La Poste, UAI check letter)."""

from __future__ import annotations

from cfakey.errors import UsageError

LA_POSTE_SIREN = "356000000"
_UAI_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"
#: Longest CFA name accepted (the Sirene register's names are at most 120 characters).
CFA_NAME_MAX = 150


def _luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _compact(text: str) -> str:
    return "".join(text.split())


def with_check_digit(digits: str) -> str:
    """``digits`` followed by the Luhn check digit: 8 digits give a SIREN, 13 a SIRET."""
    for last in "0123456789":
        if _luhn_ok(digits + last):
            return digits + last
    raise ValueError("a Luhn check digit always exists")  # pragma: no cover


def is_valid_siren(siren: str) -> bool:
    """Nine digits with a valid Luhn checksum."""
    return len(siren) == 9 and siren.isascii() and siren.isdigit() and _luhn_ok(siren)


def is_valid_siret(siret: str) -> bool:
    """Fourteen digits, Luhn-valid; La Poste's may instead have a digit sum divisible by 5."""
    if len(siret) != 14 or not siret.isascii() or not siret.isdigit():
        return False
    if _luhn_ok(siret):
        return True
    return siret.startswith(LA_POSTE_SIREN) and sum(int(char) for char in siret) % 5 == 0


def is_valid_uai(uai: str) -> bool:
    """Seven digits then the check letter ``"ABCDEFGHJKLMNPRSTUVWXYZ"[digits % 23]``."""
    digits, letter = uai[:7], uai[7:]
    if len(uai) != 8 or not digits.isascii() or not digits.isdigit():
        return False
    return letter.upper() == _UAI_LETTERS[int(digits) % 23]


def _explain_digits(kind: str, value: str, length: int) -> str:
    # Never quotes the value: a key typed in the wrong field would land in the message.
    if not value:
        return f"{kind} vide : il faut {length} chiffres."
    if not (value.isascii() and value.isdigit()):
        return f"{kind} invalide : {length} chiffres attendus, sans lettre ni autre signe."
    if len(value) != length:
        return f"{kind} invalide : {len(value)} chiffres au lieu de {length}."
    return f"{kind} invalide : clé de contrôle fausse (faute de frappe ?)."


def validate_siren(text: str) -> str:
    """The SIREN without spaces, or a French error saying what is wrong."""
    siren = _compact(text)
    if not is_valid_siren(siren):
        raise UsageError(_explain_digits("SIREN", siren, 9))
    return siren


def validate_siret(text: str) -> str:
    """The SIRET without spaces, or a French error saying what is wrong."""
    siret = _compact(text)
    if not is_valid_siret(siret):
        raise UsageError(_explain_digits("SIRET", siret, 14))
    return siret


def validate_uai(text: str) -> str:
    """The UAI in upper case, or a French error saying what is wrong."""
    uai = _compact(text).upper()
    if is_valid_uai(uai):
        return uai
    digits = uai[:7]
    if len(uai) != 8 or not (digits.isascii() and digits.isdigit()) or not uai[7:].isalpha():
        raise UsageError("UAI invalide : attendu 7 chiffres puis une lettre, ex. 0133527N.")
    expected = _UAI_LETTERS[int(digits) % 23]
    raise UsageError(f"UAI invalide : la lettre de contrôle devrait être « {expected} ».")


def clean_cfa_name(text: str) -> str:
    """A CFA's name on one line with single spaces, or a French error (never quoting it)."""
    name = " ".join(text.split())
    if not name:
        raise UsageError("Le nom du CFA est vide.")
    if len(name) > CFA_NAME_MAX:
        raise UsageError(
            f"Nom du CFA trop long : {len(name)} caractères, au plus {CFA_NAME_MAX} attendus."
        )
    if not name.isprintable():
        raise UsageError("Le nom du CFA contient des caractères invisibles ou de contrôle.")
    return name
