"""``cfakey opcos`` and ``cfakey guide``: what the registry says, for people and for scripts."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfakey.cli.options import JSON_OPTION, OPCO_ARG
from cfakey.cli.terminal import (
    console,
    print_json,
    print_notice,
    text_table,
    to_jsonable,
    write_lines,
)

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import date

    from rich.console import Console, JustifyMethod
    from rich.table import Table

    from cfakey.context import AppContext
    from cfakey.registry.model import Link, Opco, Registry


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
        print_json([opco_summary(opco) for opco in registry.opcos])
        return

    from cfakey.expiry import describe
    from cfakey.registry.model import SCOPE_SHORT_LABELS

    # Below 100 columns the ids would squeeze every other column; names resolve as well.
    with_ids = shutil.get_terminal_size((100, 24)).columns >= 100
    headers = ["OPCO", "Id"] if with_ids else ["OPCO"]
    headers += ["Obtention", "Durée de vie", "Portée", "Contrats", "Factures"]
    rows = [
        (
            *((opco.name, opco.id) if with_ids else (opco.name,)),
            OBTAIN_SHORT_LABELS[opco.obtain],
            describe(opco.expiry),
            SCOPE_SHORT_LABELS[opco.scope],
            CONNECTION_SHORT_LABELS[opco.connection.contracts.state],
            CONNECTION_SHORT_LABELS[opco.connection.invoices.state],
        )
        for opco in registry.opcos
    ]
    lines = [f"Registre des OPCO (version {registry.version})", "", *text_table(headers, rows)]
    lines += ["", *connection_lines(registry), "Procédure détaillée : cfakey guide OPCO"]
    write_lines(lines)


def connection_lines(registry: Registry) -> list[str]:
    """The date (and source) of the connection status shown, the flows beyond contracts V1
    and invoices, and the developer portals."""
    by_date: dict[date, list[Opco]] = {}
    for opco in registry.opcos:
        by_date.setdefault(opco.connection.as_of, []).append(opco)
    main = max(by_date, key=lambda day: len(by_date[day]))
    others = "".join(
        f" ; {', '.join(o.name for o in opcos)} : au {day:%d/%m/%Y}"
        for day, opcos in by_date.items()
        if day != main
    )
    source = by_date[main][0].connection.source
    lines = [f"État de l'accrochage au {main:%d/%m/%Y}, source : {source}{others}."]
    for label, flow in (
        ("Contrats, protocole V2", "contracts_v2"),
        ("Conventions", "conventions"),
        ("Certificats de réalisation", "certificates"),
    ):
        states = _flow_states(registry, flow)
        if states:
            lines.append(f"{label} : {states}.")
    if registry.developer_portals:
        portals = ", ".join(link.url for link in registry.developer_portals)
        lines.append(f"Portails développeurs : {portals}")
    return lines


def _flow_states(registry: Registry, flow: str) -> str:
    """« en production : AKTO, Atlas ; en recette : OPCO EP » for one flow; « partout sauf
    OPCO Santé » when only a few OPCOs lack it."""
    from cfakey.registry.model import CONNECTION_LABELS

    by_state: dict[str, list[str]] = {}
    missing: list[str] = []
    for opco in registry.opcos:
        status = getattr(opco.connection, flow)
        if status is None or status.state in ("non_ouvert", "inconnu"):
            missing.append(opco.name)
            continue
        since = f" (depuis le {status.since})" if status.since and "/" in status.since else ""
        by_state.setdefault(status.state, []).append(opco.name + since)
    if list(by_state) == ["production"] and len(missing) < len(registry.opcos) / 2:
        return "en production partout sauf " + ", ".join(missing) if missing else "partout"
    return " ; ".join(
        f"{CONNECTION_LABELS[state]} : {', '.join(names)}" for state, names in by_state.items()
    )


OBTAIN_SHORT_LABELS = {
    "self_service": "portail",
    "on_request": "sur demande",
    "not_published": "non publiée",
}
CONNECTION_SHORT_LABELS = {
    "production": "prod.",
    "recette": "recette",
    "developpement": "dév.",
    "prevu": "prévu",
    "non_ouvert": "non",
    "inconnu": "inconnu",
}


def opco_summary(opco: Opco) -> dict[str, Any]:
    """The ``opcos --json`` object for one OPCO: a stable contract for scripts."""
    from cfakey.expiry import describe

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
    opco_name: Annotated[str, OPCO_ARG],
    open_portal: Annotated[
        bool, typer.Option("--open", help="Ouvre le portail de l'OPCO dans le navigateur.")
    ] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Affiche toute la procédure d'obtention de la clé d'un OPCO, étape par étape."""
    context: AppContext = ctx.obj
    opco = context.resolve_opco(opco_name)
    if as_json:
        print_json(opco)
    else:
        render_guide(console(), opco)
    if open_portal:
        open_in_browser(opco)


def open_in_browser(opco: Opco) -> None:
    """Open the OPCO's portal, or say why not (no portal, no browser)."""

    url = opco.portal_url or (opco.request.form.url if opco.request else None)
    if url is None:
        print_notice(f"{opco.name} ne publie pas de portail pour la clé : rien à ouvrir.")
        return
    import webbrowser

    if webbrowser.open(url):
        print_notice(f"Ouverture de {url} dans le navigateur.")
    else:
        print_notice(f"Aucun navigateur disponible : ouvrez vous-même {url}")


def _link(link: Link) -> str:
    from rich.markup import escape

    return f"{escape(link.name)} : [link={link.url}]{escape(link.url)}[/link]"


def render_guide(out: Console, opco: Opco) -> None:
    """The whole procedure: portals, steps, warnings, lifetime, scope, support, next step."""
    from rich.markup import escape

    from cfakey.expiry import describe
    from cfakey.registry.model import OBTAIN_LABELS, SCOPE_LABELS

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
        out.print(_columns([f"{n}." for n in range(1, len(opco.steps) + 1)], opco.steps))
    else:
        out.print("\n[bold]Étapes[/bold] : procédure non publiée par l'OPCO ; contactez-le.")
    if opco.warnings:
        out.print("\n[bold yellow]Attention[/bold yellow]")
        out.print(_columns(["⚠"] * len(opco.warnings), opco.warnings, style="yellow"))
    facts = [("Durée de vie", describe(opco.expiry))]
    if opco.expiry.note:
        facts.append(("", opco.expiry.note))
    if opco.regeneration_revokes:
        facts.append(
            ("Nouvelle clé", "révoque la précédente : mettez le logiciel à jour aussitôt.")
        )
    if opco.shown_once:
        facts.append(("Affichage", "une seule fois : copiez la clé immédiatement."))
    scope_note = f" ({opco.scope_note})" if opco.scope_note else ""
    facts.append(("Portée", SCOPE_LABELS[opco.scope] + scope_note))
    facts.extend(("Sources en désaccord", conflict) for conflict in opco.conflicts)
    out.print()
    labels = [f"[bold]{label}[/bold]" for label, _ in facts]
    out.print(_columns(labels, [text for _, text in facts], justify="left"))
    _render_support(out, opco)
    out.print(f"\nÉtape suivante : [bold]cfakey add {opco.id}[/bold]")


def _columns(
    labels: list[str], texts: Sequence[str], style: str = "", justify: JustifyMethod = "right"
) -> Table:
    """Labels in one column and wrapped text in the other, so long lines keep their indent."""
    from rich.markup import escape
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify=justify, style=style, no_wrap=True)
    grid.add_column(style=style)
    for label, text in zip(labels, texts, strict=True):
        grid.add_row(f"  {label}", escape(text))
    return grid


def _render_support(out: Console, opco: Opco) -> None:
    from rich.markup import escape

    support = opco.support
    contacts = [*support.emails, *support.phones]
    contacts += [_link(link) for link in support.web]
    if not contacts and not support.note:
        out.print("[bold]Support[/bold] : aucun contact publié.")
        return
    out.print("[bold]Support[/bold] : " + " ; ".join(contacts))
    if support.note:
        out.print(f"  {escape(support.note)}")
