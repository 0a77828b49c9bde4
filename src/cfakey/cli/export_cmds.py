"""``cfakey export``, ``cfakey inject`` and ``cfakey exec``: handing keys to the CFA's software."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.options import CFA_OPTION

if TYPE_CHECKING:
    import subprocess
    from types import FrameType

    from cfakey.context import AppContext
    from cfakey.core.export import ExpiryFlag, ExportedKey, KeyPlan
    from cfakey.metadata import Metadata

    Handler = Callable[[int, FrameType | None], object] | int | None

# Below this many keys the store answers before a bar would be worth drawing.
PROGRESS_THRESHOLD = 5
COMMAND_NOT_FOUND = 127
COMMAND_NOT_EXECUTABLE = 126

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
    ),
]
StrictOption = Annotated[
    bool,
    typer.Option("--strict", help="Refuse si une clé est expirée ou proche de l'échéance."),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Remplace le fichier de sortie s'il existe.")
]


def register(app: typer.Typer) -> None:
    """Add the export commands to ``app``."""
    app.command("export")(export)
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
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="Format : env, dotenv, json, yaml ou csv.",
            show_default=False,
        ),
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
    """Exporte les clés pour le logiciel du CFA (env, dotenv, json, yaml, csv).

    Voir docs/export.md pour les noms de variables et l'échappement de chaque format.
    """
    from cfakey.cli.output import print_notice  # noqa: PLC0415
    from cfakey.core import export as core  # noqa: PLC0415
    from cfakey.errors import UsageError  # noqa: PLC0415

    context: AppContext = ctx.obj
    core.check_format(fmt)
    if output is None and sys.stdout.isatty() and not reveal:
        raise UsageError(
            "Affichage des clés dans le terminal refusé : "
            "l'historique du terminal les conserverait.",
            hint="Ajoutez --output FICHIER, redirigez la sortie, ou ajoutez --reveal.",
        )
    if output is not None:
        core.check_destination(output, force=force)
    metadata = context.metadata()
    plan = core.plan_export(
        metadata, context.registry, cfa_query=cfa, all_cfas=all_cfas, opco_ids=tuple(opcos or ())
    )
    _check_expiry(context, plan, strict=strict)
    keys = _read_keys(context, plan)
    text = core.render(
        keys, fmt, qualified=plan.qualified, exported_at=context.now().replace(microsecond=0)
    )
    destination = "stdout" if output is None else str(output.resolve())
    if output is None:
        # Journalled first: even a reader that stops early may have received keys.
        with metadata.transaction():
            core.journal_export(metadata, keys, f"export {fmt} vers {destination}")
        _write_stdout(text)
    else:
        with metadata.transaction():
            core.journal_export(metadata, keys, f"export {fmt} vers {destination}")
            core.write_output(output, text, force=force)
    if fmt == "csv":
        for key in core.formula_risks(keys):
            print_notice(
                f"Note : la clé {key.opco_name} ({key.siret}) commence par un caractère "
                "qu'un tableur prend pour une formule (=, +, -, @) : "
                "importez la colonne « cle » comme texte."
            )
    if output is not None:
        print_notice(
            f"{_count(len(keys))} exportée{'s' if len(keys) > 1 else ''} vers {output} "
            f"(format {fmt}, lisible par vous seul)."
        )


def _write_stdout(text: str) -> None:
    import os  # noqa: PLC0415

    from cfakey.errors import CfakeyError  # noqa: PLC0415

    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again when flushing at exit: point stdout at nothing.
        with suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
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
    from cfakey.cli.output import print_notice  # noqa: PLC0415
    from cfakey.core import export as core  # noqa: PLC0415

    context: AppContext = ctx.obj
    parsed = core.read_template(template)
    core.check_destination(output, force=force)
    metadata = context.metadata()
    planned = core.plan_template(parsed, metadata, context.registry, cfa_query=cfa)
    _check_expiry(context, planned.plan, strict=strict)
    store = context.key_store()
    with _progress(len(planned.plan.keys)) as on_progress:
        filled = core.fill_template(planned, store, on_progress=on_progress)
    destination = str(output.resolve())
    with metadata.transaction():
        core.journal_export(
            metadata, filled.keys, f"inject vers {destination} (modèle {template.resolve()})"
        )
        core.write_output(output, filled.text, force=force)
    print_notice(
        f"{output} écrit à partir de {template} "
        f"({_count(len(filled.keys))}, lisible par vous seul)."
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
    from cfakey.core import export as core  # noqa: PLC0415
    from cfakey.errors import UsageError  # noqa: PLC0415

    context: AppContext = ctx.obj
    if not command:
        raise UsageError(
            "Aucune commande à lancer.",
            hint="Exemple : cfakey exec --opco atlas -- mon-logiciel --synchroniser",
        )
    metadata = context.metadata()
    plan = core.plan_export(
        metadata, context.registry, cfa_query=cfa, all_cfas=all_cfas, opco_ids=tuple(opcos or ())
    )
    _check_expiry(context, plan, strict=strict)
    keys = _read_keys(context, plan)
    environment = core.exec_environment(context.env, keys, qualified=plan.qualified)
    code = _run(command, environment, metadata, keys)
    raise typer.Exit(code)


def _run(
    command: list[str], environment: dict[str, str], metadata: Metadata, keys: list[ExportedKey]
) -> int:
    """Start ``command``, journal the hand-over once it runs, and wait for its exit code."""
    import subprocess  # noqa: PLC0415

    from cfakey.cli.output import print_error  # noqa: PLC0415
    from cfakey.core.export import journal_export  # noqa: PLC0415

    try:
        # The journal entry commits only if the command really started.
        with metadata.transaction():
            journal_export(metadata, keys, f"exec de {Path(command[0]).name}")
            process = subprocess.Popen(command, env=environment)  # noqa: S603 - the operator's own command
    except FileNotFoundError:
        print_error(
            f"Commande introuvable : « {command[0]} ».", hint="Vérifiez son nom et le PATH."
        )
        return COMMAND_NOT_FOUND
    except PermissionError:
        print_error(f"La commande « {command[0]} » n'est pas exécutable.")
        return COMMAND_NOT_EXECUTABLE
    except OSError as error:
        print_error(f"Impossible de lancer « {command[0]} » ({error.strerror}).")
        return COMMAND_NOT_EXECUTABLE
    with _signals_to(process):
        returncode = process.wait()
    return 128 - returncode if returncode < 0 else returncode


@contextmanager
def _signals_to(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """While the child runs: Ctrl-C and Ctrl-\\ reach it from the terminal, so cfakey ignores
    them; a SIGTERM or SIGHUP sent to cfakey alone is passed on to the child."""
    import signal  # noqa: PLC0415

    def forward(signum: int, _frame: FrameType | None) -> None:
        process.send_signal(signum)

    handlers: dict[signal.Signals, Handler] = {
        signal.SIGINT: signal.SIG_IGN,
        signal.SIGTERM: forward,
    }
    if sys.platform != "win32":  # Windows has neither Ctrl-\ (SIGQUIT) nor SIGHUP
        handlers[signal.SIGQUIT] = signal.SIG_IGN
        handlers[signal.SIGHUP] = forward
    previous: dict[signal.Signals, Handler] = {}
    try:
        for signum, handler in handlers.items():
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave signals as they are
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _window(context: AppContext) -> Callable[[str], int]:
    """Each OPCO's warning window, the same as ``cfakey list`` uses (config, else defaults)."""
    from cfakey.core.keys import window_for  # noqa: PLC0415

    settings = context.config().values
    registry = context.registry

    def warn_days(opco_id: str) -> int:
        opco = next((item for item in registry.opcos if item.id == opco_id), None)
        return window_for(opco, opco_id, settings).warn_days

    return warn_days


def _report_flags(flags: list[ExpiryFlag]) -> None:
    from cfakey.cli.output import print_notice  # noqa: PLC0415

    for flag in flags:
        print_notice(flag.message())


def _check_expiry(context: AppContext, plan: KeyPlan, *, strict: bool) -> None:
    """Flag expired or soon-expiring keys on stderr; ``--strict`` refuses them before any unlock."""
    from cfakey.core.export import expiry_flags, refuse_if_strict  # noqa: PLC0415

    flags = expiry_flags(plan.keys, context.now(), _window(context))
    _report_flags(flags)
    if strict:
        refuse_if_strict(flags)


def _read_keys(context: AppContext, plan: KeyPlan) -> list[ExportedKey]:
    from cfakey.core.export import read_planned  # noqa: PLC0415

    store = context.key_store()
    # Shared with other readers; store writers (add, rotate, import...) wait meanwhile.
    with context.metadata().lock(shared=True), _progress(len(plan.keys)) as on_progress:
        return read_planned(store, plan, on_progress=on_progress)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr when it is a terminal and there are enough keys to wait for."""
    from cfakey.cli.output import progress_bar  # noqa: PLC0415

    if total <= PROGRESS_THRESHOLD:
        yield None
        return
    with progress_bar("Lecture des clés", total) as update:
        yield None if update is None else lambda done, _total: update(completed=done)
