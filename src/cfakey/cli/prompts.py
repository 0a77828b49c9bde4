"""Terminal prompts the core asks for through the context: file password, store fallback.

Both follow the terminal module's rule: without a terminal they never wait, and a script
gets a French error naming the variable or option to use instead.
"""

from __future__ import annotations

from cfakey.cli.terminal import (
    ANSWER_TRIES,
    ask_hidden,
    ask_yes_no,
    print_notice,
    print_warning,
    stdin_is_terminal,
    tries_left,
)
from cfakey.errors import CfakeyError, UsageError
from cfakey.stores.file_store import PasswordCheck, check_new_password, no_terminal_error


def prompt_file_password(*, new: bool, check: PasswordCheck | None = None) -> str:
    """The encrypted file's password, typed without echo; twice when it is being chosen.

    An existing file's password that ``check`` refuses is asked again, three tries in all;
    the last answer is returned as typed, for the store to refuse.
    """
    if not new:
        return _existing_password(check)
    if not stdin_is_terminal():
        raise no_terminal_error()
    print_notice(
        "Choisissez le mot de passe du fichier chiffré. Il protège toutes les clés ; "
        "sans lui, elles sont perdues."
    )
    for left in range(ANSWER_TRIES - 1, -1, -1):
        try:
            return _new_password()
        except UsageError as error:
            if not left:
                raise UsageError(
                    f"{error.message} Trois essais refusés : rien n'a été enregistré."
                ) from None
            print_warning(f"{error.message} Réessayez ({tries_left(left)}).")
    raise AssertionError("unreachable")  # pragma: no cover


def _existing_password(check: PasswordCheck | None) -> str:
    for left in range(ANSWER_TRIES - 1, -1, -1):
        password = ask_hidden("Mot de passe du fichier chiffré : ", on_end=no_terminal_error)
        if check is None or not left or check(password):
            return password
        print_warning(f"Mot de passe incorrect, réessayez ({tries_left(left)}).")
    raise AssertionError("unreachable")  # pragma: no cover


def _new_password() -> str:
    first = check_new_password(ask_hidden("Nouveau mot de passe : ", on_end=no_terminal_error))
    if ask_hidden("Confirmez le mot de passe : ", on_end=no_terminal_error) != first:
        raise UsageError("Les deux mots de passe tapés diffèrent.")
    return first


def confirm_file_store(reason: str) -> bool:
    """In a terminal, explain why the keyring is unusable and offer the encrypted file.

    No terminal, or no answer, is a refusal: the caller then says why the keyring failed.
    """
    if not stdin_is_terminal():
        return False
    print_notice(f"{reason[:1].upper()}{reason[1:]}.")
    print_notice(
        "cfakey peut garder les clés dans un fichier chiffré par un mot de passe "
        "(AES-256-GCM, clé dérivée par scrypt), jamais en clair. Ce choix sera retenu."
    )
    try:
        return ask_yes_no("Utiliser le fichier chiffré ?", default=False, on_end=no_terminal_error)
    except CfakeyError:
        return False
