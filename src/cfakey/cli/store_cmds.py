"""``cfakey store``: which key store to use (``use``), its password, moving keys (``migrate``).

The use-cases are in ``core/store_admin.py`` and ``core/store_migration.py``; the kinds
and their labels in ``stores/kinds.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.terminal import print_notice, print_warning, stdin_is_terminal
from cfakey.errors import StoreUnavailableError
from cfakey.stores.kinds import STORE_KINDS, metavar

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.stores.base import KeyStore

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

Les clés déjà rangées ne sont pas déplacées : cfakey store migrate --to … les déplace.
"""


UrlOption = Annotated[str | None, typer.Option(metavar="URL", help="openbao : adresse du coffre.")]
MountOption = Annotated[
    str | None, typer.Option(metavar="NOM", help="openbao : point de montage KV v2 (secret).")
]
PrefixOption = Annotated[
    str | None, typer.Option(metavar="CHEMIN", help="openbao : préfixe (cfakey).")
]
CaBundleOption = Annotated[
    str | None,
    typer.Option(metavar="FICHIER", help="openbao : autorité de certification (PEM)."),
]
RoleIdOption = Annotated[
    str | None, typer.Option(metavar="ID", help="openbao : rôle AppRole (serveurs, CI).")
]


def _options(**given: str | None) -> dict[str, str | None]:
    """The kind's settings given on the command line, by setting name."""
    return given


@store_app.command("use", help=_USE_HELP)
def use_store(  # noqa: PLR0917 - typer passes one parameter per option
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(metavar=metavar(), help="Magasin à retenir.")],
    url: UrlOption = None,
    mount: MountOption = None,
    prefix: PrefixOption = None,
    ca_bundle: CaBundleOption = None,
    role_id: RoleIdOption = None,
) -> None:
    """Record the store kind to use from now on."""
    from cfakey.core.store_admin import use_store as record_store

    context: AppContext = ctx.obj
    options = _options(url=url, mount=mount, prefix=prefix, ca_bundle=ca_bundle, role_id=role_id)
    chosen = record_store(context.config(), kind, options)
    print_notice(f"Magasin de clés retenu : {chosen.label} (dans {context.paths.config_file}).")
    recorded = [
        name if name in _NOT_SHOWN else f"{name} {value}"
        for name in chosen.store_class().setting_names
        if (value := context.config_value(f"{chosen.name}.{name}")) not in (None, "")
    ]
    if recorded:  # options not given keep what an earlier store use recorded
        print_notice(f"Réglages retenus : {', '.join(recorded)}.")


#: Settings named, never shown: an AppRole role_id is half of a login.
_NOT_SHOWN = ("role_id",)

_MIGRATE_HELP = (
    f"Déplace toutes les clés vers un autre magasin ({_NOUNS}), puis le retient.\n\n"
    "Chaque clé (et chaque secret OAuth2 d'éditeur) est copiée, relue et comparée à son "
    "empreinte ; ses métadonnées nomment alors le nouveau magasin. Le magasin retenu ne "
    "change qu'une fois toutes les clés copiées. Interrompue, la commande se relance : ce "
    "qui est déjà copié avec la bonne empreinte est sauté. Rien n'est effacé de l'ancien "
    "magasin ; une clé déjà présente dans le nouveau avec une autre empreinte n'est jamais "
    "remplacée."
)


@store_app.command("migrate", help=_MIGRATE_HELP)
def migrate_store(  # noqa: PLR0917 - typer passes one parameter per option
    ctx: typer.Context,
    url: UrlOption = None,
    mount: MountOption = None,
    prefix: PrefixOption = None,
    ca_bundle: CaBundleOption = None,
    role_id: RoleIdOption = None,
    *,
    to: Annotated[str, typer.Option("--to", metavar=metavar(), help="Magasin de destination.")],
) -> None:
    """Copy every key to another store, check each, then record that store."""
    context: AppContext = ctx.obj
    given = _options(url=url, mount=mount, prefix=prefix, ca_bundle=ca_bundle, role_id=role_id)
    from cfakey.core.store_migration import migrate_store as migrate

    report = migrate(
        context.config(),
        context.metadata(),
        context.key_store(),
        kind_name=to,
        options=given,
        open_target=lambda kind, settings: _open_target(context, kind, settings),
        opco_ids=[opco.id for opco in context.registry.opcos],
    )
    print_notice(
        f"{len(report.copied)} entrée(s) copiée(s) et vérifiée(s), {len(report.present)} déjà "
        f"présente(s), depuis {report.source.label} vers {report.target.label} "
        f"({report.location})."
    )
    if report.elsewhere:
        print_notice(f"{report.elsewhere} clé(s) rangée(s) dans un troisième magasin : laissées.")
    print_notice(f"Magasin de clés retenu : {report.target.label}.")
    decision = context.store_decision()
    if decision.origin in ("option", "env"):
        from cfakey.stores.selection import ORIGINS

        print_warning(
            f"L'{ORIGINS[decision.origin]} impose encore {report.source.label} à chaque "
            f"commande : retirez-la pour utiliser {report.target.label}."
        )


def _open_target(context: AppContext, kind: str, settings: Mapping[str, str]) -> KeyStore:
    """The target store of ``migrate``, with its settings as given (not yet recorded)."""
    from cfakey.stores.selection import open_store

    def setting(name: str) -> object:
        own, _, key = name.partition(".")
        return settings.get(key) if own == kind else context.config_value(name)

    return open_store(kind, context.store_settings(setting))
