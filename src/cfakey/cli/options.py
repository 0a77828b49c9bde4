"""Parameters shared by several commands, so that each one reads the same everywhere."""

from __future__ import annotations

import typer

from cfakey.cli.completion import complete_cfa, complete_opco

OPCO_ARG = typer.Argument(
    metavar="OPCO",
    help="Identifiant ou nom de l'OPCO (voir cfakey opcos).",
    show_default=False,
    autocompletion=complete_opco,
)
CFA_OPTION = typer.Option(
    "--cfa",
    metavar="CFA",
    help="CFA concerné : SIRET, SIREN ou nom (défaut : le CFA par défaut).",
    autocompletion=complete_cfa,
)
OPCO_FILTER_OPTION = typer.Option(
    "--opco", metavar="OPCO", help="Seulement cet OPCO.", autocompletion=complete_opco
)
JSON_OPTION = typer.Option("--json", help="Sortie JSON (pour les scripts).")
YES_OPTION = typer.Option("--yes", "-y", help="Répond oui aux confirmations (pour les scripts).")
UAI_OPTION = typer.Option("--uai", metavar="UAI", help="Code UAI (7 chiffres et une lettre).")
