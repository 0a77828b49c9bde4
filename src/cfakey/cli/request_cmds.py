"""``cfakey request add|list|cancel``: key requests sent by e-mail (Constructys, OPCO 2i).

The key of these OPCOs arrives days after the request: ``request add`` notes when it was
sent and to whom, ``list`` and ``request list`` say when to follow it up, and ``cfakey add``
closes it once the e-mail has arrived.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.options import CFA_OPTION, JSON_OPTION, OPCO_ARG
from cfakey.cli.terminal import print_json, print_notice, text_table, write_lines

if TYPE_CHECKING:
    from cfakey.context import AppContext

request_app = typer.Typer(
    name="request",
    help="Suit les demandes de clé envoyées par e-mail (Constructys, OPCO 2i).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``request`` command group to ``app``."""
    app.add_typer(request_app)


@request_app.command("add")
def add_request(
    ctx: typer.Context,
    opco_name: Annotated[str, OPCO_ARG],
    cfa: Annotated[str | None, CFA_OPTION] = None,
    sent_on: Annotated[
        str | None,
        typer.Option("--le", metavar="DATE", help="Date d'envoi (JJ/MM/AAAA) ; sinon aujourd'hui."),
    ] = None,
    sent_to: Annotated[
        str | None,
        typer.Option("--a", metavar="ADRESSE", help="Adresse e-mail à qui la demande est partie."),
    ] = None,
) -> None:
    """Note qu'une demande de clé est partie ; cfakey list dira quand relancer."""
    from datetime import timedelta

    from cfakey.core.cfas import resolve_cfa
    from cfakey.core.requests import follow_up_days, record_request
    from cfakey.expiry import parse_date

    context: AppContext = ctx.obj
    opco = context.resolve_opco(opco_name)
    record_cfa = resolve_cfa(context.metadata(), cfa)
    now = context.now()
    day = parse_date(sent_on).date() if sent_on else now.astimezone().date()
    delay = follow_up_days(context.config().values)
    record = record_request(
        context.metadata(), opco, record_cfa, sent_on=day, sent_to=sent_to, now=now
    )
    follow_up = record.sent_on + timedelta(days=delay)
    print_notice(
        f"Demande de clé {opco.name} pour {record_cfa.name} notée (envoyée le "
        f"{record.sent_on:%d/%m/%Y}) ; à relancer le {follow_up:%d/%m/%Y} si rien n'arrive."
    )
    print_notice(f"Quand l'e-mail arrivera : cfakey add {opco.id} --cfa {record_cfa.siret}")


@request_app.command("list")
def list_requests(
    ctx: typer.Context,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Les demandes de clé en cours, à relancer d'abord."""
    from cfakey.core.requests import open_requests, request_cell

    context: AppContext = ctx.obj
    rows = open_requests(
        context.metadata(), context.registry, context.config().values, now=context.now()
    )
    if as_json:
        print_json([row.as_json() for row in rows])
        return
    if not rows:
        print_notice("Aucune demande de clé en cours.")
        return
    cells = [
        (row.cfa_name[:30], row.siret, row.opco_name, request_cell(row), row.sent_to or "")
        for row in rows
    ]
    write_lines(text_table(("CFA", "SIRET", "OPCO", "Demande", "Envoyée à"), cells, rule=False))


@request_app.command("cancel")
def cancel_request(
    ctx: typer.Context,
    opco_name: Annotated[str, OPCO_ARG],
    cfa: Annotated[str | None, CFA_OPTION] = None,
) -> None:
    """Oublie une demande de clé (envoyée par erreur, ou abandonnée)."""
    from cfakey.core import requests
    from cfakey.core.cfas import resolve_cfa

    context: AppContext = ctx.obj
    opco = context.resolve_opco(opco_name)
    record_cfa = resolve_cfa(context.metadata(), cfa)
    requests.cancel_request(context.metadata(), opco, record_cfa)
    print_notice(f"Demande de clé {opco.name} pour {record_cfa.name} annulée.")
