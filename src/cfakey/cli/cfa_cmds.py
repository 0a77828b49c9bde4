"""``cfakey cfa add|list|default|remove``: the CFAs whose keys are managed here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.options import JSON_OPTION

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
    uai: Annotated[
        str | None,
        typer.Option("--uai", metavar="UAI", help="Code UAI (7 chiffres et une lettre)."),
    ] = None,
) -> None:
    """Enregistre un CFA ; le premier devient celui par défaut."""
    from cfakey.cli.output import print_notice  # noqa: PLC0415
    from cfakey.identifiers import clean_cfa_name, validate_siret, validate_uai  # noqa: PLC0415

    context: AppContext = ctx.obj
    valid_siret = validate_siret(siret)
    valid_uai = validate_uai(uai) if uai is not None else None
    clean_name = clean_cfa_name(name)
    record = context.metadata().add_cfa(valid_siret, clean_name, valid_uai)
    default = " (CFA par défaut)" if record.is_default else ""
    print_notice(f"CFA enregistré : {record.name}, SIRET {record.siret}{default}.")


@cfa_app.command("list")
def list_cfas(
    ctx: typer.Context,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Liste les CFA enregistrés et le nombre de clés de chacun."""
    from cfakey.cli.output import print_json, print_notice  # noqa: PLC0415

    context: AppContext = ctx.obj
    metadata = context.metadata()
    cfas = metadata.list_cfas()
    counts: dict[str, int] = {}
    for record in metadata.list_keys():
        counts[record.siret] = counts.get(record.siret, 0) + 1
    if as_json:
        print_json(
            [
                {
                    "siret": cfa.siret,
                    "siren": cfa.siren,
                    "name": cfa.name,
                    "uai": cfa.uai,
                    "default": cfa.is_default,
                    "keys": counts.get(cfa.siret, 0),
                }
                for cfa in cfas
            ]
        )
        return
    if not cfas:
        print_notice(
            'Aucun CFA enregistré. Commencez par : cfakey cfa add SIRET --nom "Nom du CFA"'
        )
        return
    from rich.table import Table  # noqa: PLC0415

    from cfakey.cli.output import console  # noqa: PLC0415

    table = Table()
    for header in ("SIRET", "Nom", "UAI", "Clés", "Par défaut"):
        table.add_column(header)
    for cfa in cfas:
        table.add_row(
            cfa.siret,
            cfa.name,
            cfa.uai or "",
            str(counts.get(cfa.siret, 0)),
            "oui" if cfa.is_default else "",
        )
    console().print(table)


@cfa_app.command("default")
def default_cfa(
    ctx: typer.Context,
    cfa: Annotated[str, typer.Argument(metavar="CFA", help="SIRET, SIREN ou nom du CFA.")],
) -> None:
    """Choisit le CFA utilisé quand --cfa n'est pas précisé."""
    from cfakey.cli.output import print_notice  # noqa: PLC0415
    from cfakey.core.cfas import resolve_cfa  # noqa: PLC0415

    context: AppContext = ctx.obj
    metadata = context.metadata()
    record = resolve_cfa(metadata, cfa)
    metadata.set_default_cfa(record.siret)
    print_notice(f"CFA par défaut : {record.name} ({record.siret}).")


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
    from cfakey.cli.output import print_notice  # noqa: PLC0415
    from cfakey.core.cfas import resolve_cfa  # noqa: PLC0415
    from cfakey.core.storage import remove_keys  # noqa: PLC0415
    from cfakey.errors import AlreadyExistsError  # noqa: PLC0415

    context: AppContext = ctx.obj
    metadata = context.metadata()
    record = resolve_cfa(metadata, cfa)
    store = context.key_store() if force else None
    with metadata.lock():  # no key may be added to this CFA meanwhile
        keys = metadata.list_keys(siret=record.siret)
        if keys and not force:
            opcos = ", ".join(key.opco_id for key in keys)
            raise AlreadyExistsError(
                f"Le CFA {record.siret} a encore {len(keys)} clé(s) ({opcos}) : "
                "rien n'a été supprimé.",
                hint=(
                    f"Supprimez-les d'abord (cfakey remove OPCO --cfa {record.siret}) "
                    "ou ajoutez --force."
                ),
            )
        if keys and store is not None:
            # Every intent first, the store in one write, then all metadata and the CFA at once:
            # no secret is ever left without its metadata (nor metadata without its secret).
            remove_keys(
                store,
                metadata,
                keys,
                detail="cfa remove --force",
                also=lambda: metadata.remove_cfa(record.siret),
            )
        else:
            metadata.remove_cfa(record.siret)
    print_notice(f"CFA retiré : {record.name} ({record.siret}), {len(keys)} clé(s) supprimée(s).")
