"""``cfakey store``: which key store to use (``use``), and its password (``password``).

The use-cases are in ``core/store_admin.py``; the kinds and their labels in
``stores/kinds.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.terminal import print_notice, stdin_is_terminal
from cfakey.errors import StoreUnavailableError
from cfakey.stores.kinds import STORE_KINDS, metavar

if TYPE_CHECKING:
    from cfakey.context import AppContext

_NOUNS = " ou ".join(kind.noun for kind in STORE_KINDS.values())

store_app = typer.Typer(
    name="store",
    help=f"Magasin de clés : {_NOUNS}.",
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
    from cfakey.core.store_admin import change_store_password, require_password

    context: AppContext = ctx.obj
    require_password(context.store_decision().kind)
    # The store in service (when nothing works: the fallback, if the operator agrees).
    changed = change_store_password(
        context.key_store(), context.metadata(), lambda: _new_password(context)
    )
    print_notice(
        f"Mot de passe du {changed.kind.noun} changé : {changed.entries} clé(s) "
        f"ré-chiffrée(s) dans {changed.location}."
    )


def _new_password(context: AppContext) -> str:
    """The new password: ``CFAKEY_NEW_FILE_PASSWORD``, else asked twice in a terminal."""
    from cfakey.cli.prompts import prompt_file_password
    from cfakey.stores.file_store import NEW_PASSWORD_ENV

    new_password = context.env.get(NEW_PASSWORD_ENV)
    if new_password:
        return new_password
    if not stdin_is_terminal():
        raise StoreUnavailableError(
            "Le nouveau mot de passe du fichier chiffré est nécessaire, mais aucun terminal "
            "ne permet de le demander.",
            hint=f"Sans terminal, donnez-le dans la variable {NEW_PASSWORD_ENV}.",
        )
    return prompt_file_password(new=True)


_USE_HELP = f"""Retient le magasin de clés à utiliser : {_NOUNS}.

Les clés déjà rangées ne sont pas déplacées : exportez-les puis réimportez-les.
"""


@store_app.command("use", help=_USE_HELP)
def use_store(  # noqa: PLR0917 - typer passes one parameter per option
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(metavar=metavar(), help="Magasin à retenir.")],
    url: Annotated[
        str | None, typer.Option(metavar="URL", help="openbao : adresse du coffre.")
    ] = None,
    mount: Annotated[
        str | None, typer.Option(metavar="NOM", help="openbao : point de montage KV v2 (secret).")
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(metavar="CHEMIN", help="openbao : préfixe (cfakey).")
    ] = None,
    ca_bundle: Annotated[
        str | None,
        typer.Option(metavar="FICHIER", help="openbao : autorité de certification (PEM)."),
    ] = None,
    role_id: Annotated[
        str | None, typer.Option(metavar="ID", help="openbao : rôle AppRole (serveurs, CI).")
    ] = None,
) -> None:
    """Record the store kind to use from now on."""
    from cfakey.core.store_admin import use_store as record_store

    context: AppContext = ctx.obj
    options = {
        "url": url,
        "mount": mount,
        "prefix": prefix,
        "ca_bundle": ca_bundle,
        "role_id": role_id,
    }
    chosen = record_store(context.config(), kind, options)
    print_notice(f"Magasin de clés retenu : {chosen.label} (dans {context.paths.config_file}).")
