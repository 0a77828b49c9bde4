"""SIREN, SIRET and UAI checks, with the exact rules (Luhn, La Poste, UAI check letter)."""

from __future__ import annotations

from cfakey.errors import UsageError, quote_input

LA_POSTE_SIREN = "356000000"
_UAI_LETTERS = "ABCDEFGHJKLMNPRSTUVWXYZ"


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
    if not value:
        return f"{kind} vide : il faut {length} chiffres."
    shown = quote_input(value)
    if not (value.isascii() and value.isdigit()):
        return f"{kind} invalide : {shown} ne doit contenir que des chiffres."
    if len(value) != length:
        return f"{kind} invalide : {shown} a {len(value)} chiffres au lieu de {length}."
    return f"{kind} invalide : {shown} a une clé de contrôle fausse (faute de frappe ?)."


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
        raise UsageError(
            f"UAI invalide : {quote_input(text)} "
            "(attendu : 7 chiffres puis une lettre, ex. 0133527N)."
        )
    expected = _UAI_LETTERS[int(digits) % 23]
    raise UsageError(
        f"UAI invalide : « {uai} » ; la lettre de contrôle devrait être « {expected} »."
    )
