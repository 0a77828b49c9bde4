"""Parameters shared by several commands, so that each one reads the same everywhere."""

from __future__ import annotations

import typer

OPCO_ARG = typer.Argument(
    metavar="OPCO", help="Identifiant ou nom de l'OPCO (voir cfakey opcos).", show_default=False
)
CFA_OPTION = typer.Option(
    "--cfa", metavar="CFA", help="CFA concerné : SIRET, SIREN ou nom (défaut : le CFA par défaut)."
)
JSON_OPTION = typer.Option("--json", help="Sortie JSON (pour les scripts).")
YES_OPTION = typer.Option("--yes", "-y", help="Répond oui aux confirmations (pour les scripts).")
