"""``cfakey cfa add|list|default|rename|edit|remove``: the CFAs whose keys are managed here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.options import JSON_OPTION, UAI_OPTION
from cfakey.cli.terminal import print_json, print_notice, text_table, write_lines

if TYPE_CHECKING:
    from cfakey.context import AppContext

cfa_app = typer.Typer(
    name="cfa",
    help="Gère les CFA (SIRET, nom, UAI) dont cfakey garde les clés.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``cfa`` command group to ``app``."""
    app.add_typer(cfa_app)


@cfa_app.command("add")
def add_cfa(
    ctx: typer.Context,
    siret: Annotated[
        str, typer.Argument(metavar="SIRET", help="SIRET de l'établissement (14 chiffres).")
    ],
    name: Annotated[str, typer.Option("--nom", metavar="NOM", help="Nom du CFA.")],
    uai: Annotated[str | None, UAI_OPTION] = None,
) -> None:
    """Enregistre un CFA ; le premier devient celui par défaut."""
    from cfakey.core import cfas

    context: AppContext = ctx.obj
    record = cfas.add_cfa(context.metadata(), siret, name, uai, catalog=context.team_catalog())
    default = " (CFA par défaut)" if record.is_default else ""
    print_notice(f"CFA enregistré : {record.name}, SIRET {record.siret}{default}.")
    if " ".join(name.split()) != record.name or (uai is not None and uai != record.uai):
        print_notice(
            "Le coffre de l'équipe connaissait déjà ce CFA : son nom et son UAI y sont "
            "gardés tels quels (pour les changer : cfakey cfa edit)."
        )


@cfa_app.command("list")
def list_cfas(
    ctx: typer.Context,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Liste les CFA enregistrés et le nombre de clés de chacun."""
    from cfakey.core import cfas

    context: AppContext = ctx.obj
    summaries = cfas.list_cfas(context.metadata())
    if as_json:
        print_json([summary.as_json() for summary in summaries])
        return
    if not summaries:
        print_notice(
            'Aucun CFA enregistré. Commencez par : cfakey cfa add SIRET --nom "Nom du CFA"'
        )
        return
    rows = [
        (
            item.cfa.siret,
            item.cfa.name,
            item.cfa.uai or "",
            str(item.keys),
            "oui" if item.cfa.is_default else "",
        )
        for item in summaries
    ]
    write_lines(text_table(("SIRET", "Nom", "UAI", "Clés", "Par défaut"), rows))


@cfa_app.command("default")
def default_cfa(
    ctx: typer.Context,
    cfa: Annotated[str, typer.Argument(metavar="CFA", help="SIRET, SIREN ou nom du CFA.")],
) -> None:
    """Choisit le CFA utilisé quand --cfa n'est pas précisé."""
    from cfakey.core import cfas

    context: AppContext = ctx.obj
    record = cfas.set_default_cfa(context.metadata(), cfa)
    print_notice(f"CFA par défaut : {record.name} ({record.siret}).")


@cfa_app.command("rename")
def rename_cfa(
    ctx: typer.Context,
    cfa: Annotated[str, typer.Argument(metavar="CFA", help="SIRET, SIREN ou nom du CFA.")],
    name: Annotated[str, typer.Argument(metavar="NOM", help="Nouveau nom du CFA.")],
) -> None:
    """Corrige le nom d'un CFA (inscrit au journal)."""
    from cfakey.core import cfas

    context: AppContext = ctx.obj
    record = cfas.edit_cfa(context.metadata(), cfa, name=name, catalog=context.team_catalog())
    print_notice(f"CFA {record.siret} : nom « {record.name} ».")


@cfa_app.command("edit")
def edit_cfa(
    ctx: typer.Context,
    cfa: Annotated[str, typer.Argument(metavar="CFA", help="SIRET, SIREN ou nom du CFA.")],
    name: Annotated[
        str | None, typer.Option("--nom", metavar="NOM", help="Nouveau nom du CFA.")
    ] = None,
    uai: Annotated[str | None, UAI_OPTION] = None,
) -> None:
    """Corrige le nom ou ajoute le code UAI d'un CFA (inscrit au journal)."""
    from cfakey.core import cfas

    context: AppContext = ctx.obj
    record = cfas.edit_cfa(
        context.metadata(), cfa, name=name, uai=uai, catalog=context.team_catalog()
    )
    print_notice(f"CFA {record.siret} : nom « {record.name} », UAI {record.uai or 'aucun'}.")


@cfa_app.command("remove")
def remove_cfa(
    ctx: typer.Context,
    cfa: Annotated[str, typer.Argument(metavar="CFA", help="SIRET, SIREN ou nom du CFA.")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Supprime aussi les clés de ce CFA (magasin et métadonnées)."),
    ] = False,
) -> None:
    """Retire un CFA ; refusé tant qu'il a des clés, sauf avec --force."""
    from cfakey.core import cfas

    context: AppContext = ctx.obj
    removed = cfas.remove_cfa(
        context.settled_metadata() if force else context.metadata(),
        cfa,
        open_store=context.key_store if force else None,
        catalog=context.team_catalog(),
    )
    record = removed.cfa
    print_notice(
        f"CFA retiré : {record.name} ({record.siret}), {removed.removed_keys} clé(s) supprimée(s)."
    )
