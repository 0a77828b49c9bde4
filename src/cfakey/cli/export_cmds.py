"""``cfakey export``, ``cfakey inject`` and ``cfakey exec``: handing keys to the CFA's software.

Each command parses its options, calls one use-case of :mod:`cfakey.core.export` and
renders the result; reading keys, the journal and the files are the core's business.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.completion import complete_opco
from cfakey.cli.options import CFA_OPTION
from cfakey.cli.terminal import (
    print_error,
    print_notice,
    progress_bar,
    stdout_closed,
    stdout_is_terminal,
    write_text,
)
from cfakey.core import export as core
from cfakey.core.export import Hooks, Sources, inject_template
from cfakey.core.export.formats import FORMATS, format_help
from cfakey.errors import CfakeyError, UsageError

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.core.export import ExpiryFlag, Hooks, Sources

# Below this many keys the store answers before a bar would be worth drawing.
PROGRESS_THRESHOLD = 5

CfaOption = Annotated[str | None, CFA_OPTION]
AllCfasOption = Annotated[
    bool,
    typer.Option(
        "--toutes-cfa",
        help="Tous les CFA enregistrés ; les variables deviennent CFA_KEY_<SIRET>_<OPCO>.",
    ),
]
OpcoOption = Annotated[
    list[str] | None,
    typer.Option(
        "--opco",
        metavar="OPCO",
        help="OPCO à inclure (répétable) ; par défaut, tous ceux qui ont une clé.",
        autocompletion=complete_opco,
    ),
]
StrictOption = Annotated[
    bool,
    typer.Option(
        "--strict",
        help="Refuse si une clé est expirée ou à renouveler (comme l'indique cfakey list).",
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Remplace le fichier de sortie s'il existe.")
]
EXPORT_HELP = (
    f"Exporte les clés pour le logiciel du CFA ({', '.join(FORMATS)}).\n\n"
    "Voir docs/export.md pour les noms de variables et l'échappement de chaque format."
)


def register(app: typer.Typer) -> None:
    """Add the export commands to ``app``."""
    app.command("export", help=EXPORT_HELP)(export)
    app.command("inject")(inject)
    app.command(
        "exec",
        context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    )(exec_command)


def export(
    ctx: typer.Context,
    *,
    fmt: Annotated[
        str,
        typer.Option("--format", "-f", metavar="FORMAT", help=format_help(), show_default=False),
    ],
    cfa: CfaOption = None,
    all_cfas: AllCfasOption = False,
    opcos: OpcoOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FICHIER",
            help="Fichier à créer (droits 0600) ; sinon la sortie standard.",
        ),
    ] = None,
    force: ForceOption = False,
    reveal: Annotated[
        bool,
        typer.Option("--reveal", help="Autorise l'affichage des clés dans le terminal."),
    ] = False,
    strict: StrictOption = False,
) -> None:
    """Exporte les clés pour le logiciel du CFA."""

    context: AppContext = ctx.obj
    core.check_format(fmt)
    if output is None and stdout_is_terminal() and not reveal:
        raise UsageError(
            "Affichage des clés dans le terminal refusé : "
            "l'historique du terminal les conserverait.",
            hint="Ajoutez --output FICHIER, redirigez la sortie, ou ajoutez --reveal.",
        )
    selection = core.Selection(cfa, all_cfas, tuple(opcos or ()))
    result = core.export_keys(
        _sources(context), selection, fmt, output=output, force=force, strict=strict, hooks=_hooks()
    )
    if output is None:
        _write_stdout(result.text)
    if all_cfas:
        from cfakey.cli.overview_cmds import warn_unreadable

        warn_unreadable(context.metadata().team_denied)
    for key in result.formula_risks:
        print_notice(
            f"Note : la clé {key.opco_name} ({key.siret}) commence par un caractère "
            "qu'un tableur prend pour une formule (=, +, -, @) : "
            "importez la colonne « cle » comme texte."
        )
    if output is not None:
        count = len(result.keys)
        print_notice(
            f"{_count(count)} exportée{'s' if count > 1 else ''} vers {output} "
            f"(format {fmt}, lisible par vous seul)."
        )


def _write_stdout(text: str) -> None:
    try:
        write_text(text, flush=True)
    except BrokenPipeError:
        stdout_closed()
        raise CfakeyError(
            "La sortie a été fermée avant la fin de l'export : export incomplet."
        ) from None


def _count(number: int) -> str:
    return "1 clé" if number == 1 else f"{number} clés"


def inject(
    ctx: typer.Context,
    *,
    template: Annotated[
        Path,
        typer.Option(
            "--input",
            "-i",
            metavar="MODELE",
            help="Modèle contenant des références {{ cfakey:OPCO }}.",
            show_default=False,
        ),
    ],
    output: Annotated[
        Path,
        typer.Option(
            "--output",
            "-o",
            metavar="FICHIER",
            help="Fichier de configuration à créer (droits 0600).",
            show_default=False,
        ),
    ],
    cfa: CfaOption = None,
    force: ForceOption = False,
    strict: StrictOption = False,
) -> None:
    """Remplit un fichier de configuration (INI, XML, JSON, properties...) à partir d'un modèle.

    Références : {{ cfakey:atlas }}, {{ cfakey:SIRET/opcoep }}, {{ cfakey:atlas.expires }},
    {{ cfakey:atlas | json }}, {{ cfakey:atlas | xml }}. Voir docs/export.md.
    """
    context: AppContext = ctx.obj
    result = inject_template(
        _sources(context),
        template,
        output,
        cfa_query=cfa,
        force=force,
        strict=strict,
        hooks=_hooks(),
    )
    print_notice(
        f"{output} écrit à partir de {template} "
        f"({_count(len(result.keys))}, lisible par vous seul)."
    )


def exec_command(
    ctx: typer.Context,
    *,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="COMMANDE",
            help="Commande à lancer avec ses arguments, après « -- » (ex. : -- mon-si --synchro).",
        ),
    ] = None,
    cfa: CfaOption = None,
    all_cfas: AllCfasOption = False,
    opcos: OpcoOption = None,
    strict: StrictOption = False,
) -> None:
    """Lance une commande avec les clés dans son environnement (CFA_KEY_ATLAS...).

    Le code de sortie de la commande est rendu tel quel (128+N si un signal N l'arrête).
    """
    context: AppContext = ctx.obj
    try:
        result = core.run_with_keys(
            _sources(context),
            core.Selection(cfa, all_cfas, tuple(opcos or ())),
            command or (),
            environment=context.env,
            strict=strict,
            hooks=_hooks(),
        )
    except core.CommandNotStartedError as error:
        print_error(error.message, hint=error.hint)
        raise typer.Exit(error.returncode) from None
    raise typer.Exit(result.returncode)


def _sources(context: AppContext) -> Sources:
    """What the export use-cases read, from the command's context."""
    return Sources(
        open_metadata=context.settled_metadata,
        load_registry=lambda: context.registry,
        load_settings=lambda: context.config().values,
        now=context.now,
        open_store=context.key_store,
        pending_outputs=context.paths.pending_outputs,
    )


def _hooks() -> Hooks:
    return Hooks(on_flags=_report_flags, progress=_progress, on_removed=_report_removed)


def _report_removed(removed: Sequence[Path]) -> None:
    for path in removed:
        print_notice(core.removed_temporary_message(path))


def _report_flags(flags: Sequence[ExpiryFlag]) -> None:
    for flag in flags:
        print_notice(flag.message())


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr when it is a terminal and there are enough keys to wait for."""

    if total <= PROGRESS_THRESHOLD:
        yield None
        return
    with progress_bar("Lecture des clés", total) as update:
        yield None if update is None else lambda done, _total: update(completed=done)
