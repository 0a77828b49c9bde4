"""``cfakey store password``: re-encrypt the encrypted-file store under a new password."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from cfakey.context import AppContext

NEW_PASSWORD_ENV = "CFAKEY_NEW_FILE_PASSWORD"  # noqa: S105 - a variable name

store_app = typer.Typer(
    name="store",
    help="Magasin de clés : trousseau du système ou fichier chiffré.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``store`` command group to ``app``."""
    app.add_typer(store_app)


@store_app.command("password")
def change_password(ctx: typer.Context) -> None:
    """Change le mot de passe du fichier chiffré : toutes les clés sont ré-chiffrées d'un coup.

    Le mot de passe actuel est demandé d'abord (ou lu dans CFAKEY_FILE_PASSWORD), puis le
    nouveau, deux fois (ou lu dans CFAKEY_NEW_FILE_PASSWORD). Le fichier est remplacé
    d'un seul geste : une interruption laisse l'ancien intact.
    """
    from cfakey.cli.output import print_notice  # noqa: PLC0415
    from cfakey.cli.prompts import prompt_file_password  # noqa: PLC0415
    from cfakey.errors import StoreUnavailableError, UsageError  # noqa: PLC0415
    from cfakey.stores.file_store import EncryptedFileStore  # noqa: PLC0415

    context: AppContext = ctx.obj
    if context.store_decision().kind == "keyring":
        raise UsageError(
            "Le magasin en service est le trousseau du système : il n'a pas de mot de passe "
            "propre à cfakey.",
            hint="Le fichier chiffré s'utilise avec --store file ou CFAKEY_STORE=file.",
        )
    store = context.key_store()  # the keyring does not work: the file, if the operator agrees
    assert isinstance(store, EncryptedFileStore)  # noqa: S101 - the only other kind
    count = len(store.unlock())
    new_password = context.env.get(NEW_PASSWORD_ENV)
    if not new_password:
        if not sys.stdin.isatty():
            raise StoreUnavailableError(
                "Le nouveau mot de passe du fichier chiffré est nécessaire, mais aucun terminal "
                "ne permet de le demander.",
                hint=f"Sans terminal, donnez-le dans la variable {NEW_PASSWORD_ENV}.",
            )
        new_password = prompt_file_password(new=True)
    store.change_password(new_password)
    context.metadata().log("store_password_changed", detail=str(store.path))
    print_notice(
        f"Mot de passe du fichier chiffré changé : {count} clé(s) ré-chiffrée(s) dans {store.path}."
    )
