"""``cfakey opcos`` and ``cfakey guide``: what the registry says, for people and for scripts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from cfakey.context import AppContext
    from cfakey.registry.model import Link, Opco

JSON_OPTION = typer.Option("--json", help="Sortie JSON (pour les scripts).")


def register(app: typer.Typer) -> None:
    """Add the registry commands to ``app``."""
    app.command("opcos")(opcos)
    app.command("guide")(guide)


def opcos(
    ctx: typer.Context,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Liste les 11 OPCO : obtention de la clé, durée de vie, portée, état de l'accrochage."""
    context: AppContext = ctx.obj
    registry = context.registry
    if as_json:
        from cfakey.cli.output import print_json  # noqa: PLC0415

        print_json([opco_summary(opco) for opco in registry.opcos])
        return
    from rich.table import Table  # noqa: PLC0415

    from cfakey.cli.output import console  # noqa: PLC0415
    from cfakey.expiry import describe  # noqa: PLC0415
    from cfakey.registry.model import CONNECTION_LABELS, OBTAIN_LABELS, SCOPE_LABELS  # noqa: PLC0415

    table = Table(title=f"Registre des OPCO (version {registry.version})", title_justify="left")
    for header in (
        "Id",
        "OPCO",
        "Obtention de la clé",
        "Durée de vie",
        "Portée",
        "Contrats",
        "Factures",
    ):
        table.add_column(header, overflow="fold")
    for opco in registry.opcos:
        connection = opco.connection
        table.add_row(
            opco.id,
            opco.name,
            OBTAIN_LABELS[opco.obtain],
            describe(opco.expiry),
            SCOPE_LABELS[opco.scope],
            CONNECTION_LABELS[connection.contracts.state],
            CONNECTION_LABELS[connection.invoices.state],
        )
    out = console()
    out.print(table)
    out.print(
        f"État de l'accrochage au {registry.opcos[0].connection.as_of:%d/%m/%Y}. "
        "Procédure détaillée : cfakey guide OPCO",
        style="dim",
    )


def opco_summary(opco: Opco) -> dict[str, Any]:
    """The ``opcos --json`` object for one OPCO: a stable contract for scripts."""
    from cfakey.cli.output import to_jsonable  # noqa: PLC0415
    from cfakey.expiry import describe  # noqa: PLC0415

    return {
        "id": opco.id,
        "name": opco.name,
        "aliases": list(opco.aliases),
        "obtain": opco.obtain,
        "expiry": to_jsonable(opco.expiry),
        "lifetime": describe(opco.expiry),
        "scope": opco.scope,
        "portal_url": opco.portal_url,
        "regeneration_revokes": opco.regeneration_revokes,
        "shown_once": opco.shown_once,
        "connection": to_jsonable(opco.connection),
    }


def guide(
    ctx: typer.Context,
    opco_name: Annotated[str, typer.Argument(metavar="OPCO", help="Identifiant ou nom de l'OPCO.")],
    open_portal: Annotated[
        bool, typer.Option("--open", help="Ouvre le portail de l'OPCO dans le navigateur.")
    ] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Affiche toute la procédure d'obtention de la clé d'un OPCO, étape par étape."""
    context: AppContext = ctx.obj
    opco = context.resolve_opco(opco_name)
    if as_json:
        from cfakey.cli.output import print_json  # noqa: PLC0415

        print_json(opco)
    else:
        from cfakey.cli.output import console  # noqa: PLC0415

        render_guide(console(), opco)
    if open_portal:
        open_in_browser(opco)


def open_in_browser(opco: Opco) -> None:
    """Open the OPCO's portal, or say why not (no portal, no browser)."""
    from cfakey.cli.output import print_notice  # noqa: PLC0415

    url = opco.portal_url or (opco.request.form.url if opco.request else None)
    if url is None:
        print_notice(f"{opco.name} ne publie pas de portail pour la clé : rien à ouvrir.")
        return
    import webbrowser  # noqa: PLC0415

    if webbrowser.open(url):
        print_notice(f"Ouverture de {url} dans le navigateur.")
    else:
        print_notice(f"Aucun navigateur disponible : ouvrez vous-même {url}")


def _link(link: Link) -> str:
    from rich.markup import escape  # noqa: PLC0415

    return f"{escape(link.name)} : [link={link.url}]{escape(link.url)}[/link]"


def render_guide(out: Console, opco: Opco) -> None:
    """The whole procedure: portals, steps, warnings, lifetime, scope, support, next step."""
    from rich.markup import escape  # noqa: PLC0415

    from cfakey.expiry import describe  # noqa: PLC0415
    from cfakey.registry.model import OBTAIN_LABELS, SCOPE_LABELS  # noqa: PLC0415

    out.print(f"[bold]{escape(opco.name)}[/bold] : {opco.key_label} ({OBTAIN_LABELS[opco.obtain]})")
    for portal in opco.portals:
        out.print(f"  Portail : {_link(portal)}")
    for link in opco.links:
        out.print(f"  {_link(link)}")
    if opco.request is not None:
        request = opco.request
        out.print(
            f"\n[bold]Demande[/bold] ({escape(request.who_requests)}) : {_link(request.form)}"
        )
        out.print("  Le formulaire demande : " + escape(", ".join(request.fields)) + ".")
        out.print(f"  Réception : {escape(request.delivery)}")
    if opco.steps:
        out.print("\n[bold]Étapes[/bold]")
        for number, step in enumerate(opco.steps, start=1):
            out.print(f"  {number}. {escape(step)}")
    else:
        out.print("\n[bold]Étapes[/bold] : procédure non publiée par l'OPCO ; contactez-le.")
    warnings = list(opco.warnings)
    if opco.regeneration_revokes:
        warnings.insert(
            0,
            "Générer une nouvelle clé révoque l'ancienne : mettez votre logiciel à jour aussitôt.",
        )
    if opco.shown_once:
        warnings.insert(0, "La clé ne s'affiche qu'une fois : copiez-la immédiatement.")
    if warnings:
        out.print("\n[bold yellow]Attention[/bold yellow]")
        for warning in warnings:
            out.print(f"  [yellow]⚠ {escape(warning)}[/yellow]")
    out.print(f"\n[bold]Durée de vie[/bold] : {describe(opco.expiry)}")
    if opco.expiry.note:
        out.print(f"  {escape(opco.expiry.note)}")
    scope_note = f" ({escape(opco.scope_note)})" if opco.scope_note else ""
    out.print(f"[bold]Portée de la clé[/bold] : {SCOPE_LABELS[opco.scope]}{scope_note}")
    for conflict in opco.conflicts:
        out.print(f"[bold]Sources en désaccord[/bold] : {escape(conflict)}")
    _render_support(out, opco)
    out.print(f"\nÉtape suivante : [bold]cfakey add {opco.id}[/bold]")


def _render_support(out: Console, opco: Opco) -> None:
    from rich.markup import escape  # noqa: PLC0415

    support = opco.support
    contacts = [*support.emails, *support.phones]
    contacts += [_link(link) for link in support.web]
    if not contacts and not support.note:
        out.print("[bold]Support[/bold] : aucun contact publié.")
        return
    out.print("[bold]Support[/bold] : " + " ; ".join(contacts))
    if support.note:
        out.print(f"  {escape(support.note)}")
