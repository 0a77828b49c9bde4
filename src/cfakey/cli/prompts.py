"""Terminal prompts the core asks for through the context: file password, store fallback.

Both refuse to wait on a non-terminal standard input: a script gets a French error
naming the variable or option to use instead, never a hang.
"""

from __future__ import annotations

import getpass
import sys

from cfakey.cli.output import print_notice
from cfakey.errors import UsageError
from cfakey.stores.file_store import check_new_password, no_terminal_error

YES = frozenset({"o", "oui", "y", "yes"})


def _hidden(prompt: str) -> str:
    try:
        return getpass.getpass(prompt, stream=sys.stderr)
    except EOFError:
        raise no_terminal_error() from None


def prompt_file_password(*, new: bool) -> str:
    """The encrypted file's password, typed without echo; twice when it is being chosen."""
    if not sys.stdin.isatty():
        raise no_terminal_error()
    if not new:
        return _hidden("Mot de passe du fichier chiffré : ")
    print_notice(
        "Choisissez le mot de passe du fichier chiffré. Il protège toutes les clés ; "
        "sans lui, elles sont perdues."
    )
    first = check_new_password(_hidden("Nouveau mot de passe : "))
    if _hidden("Confirmez le mot de passe : ") != first:
        raise UsageError("Les deux mots de passe tapés diffèrent : rien n'a été enregistré.")
    return first


def confirm_file_store(reason: str) -> bool:
    """In a terminal, explain why the keyring is unusable and offer the encrypted file."""
    if not sys.stdin.isatty():
        return False
    print_notice(f"{reason[:1].upper()}{reason[1:]}.")
    print_notice(
        "cfakey peut garder les clés dans un fichier chiffré par un mot de passe "
        "(AES-256-GCM, clé dérivée par scrypt), jamais en clair. Ce choix sera retenu."
    )
    sys.stderr.write("Utiliser le fichier chiffré ? [o/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in YES
