"""The typer application: global options, command registration, error translation.

Every command module only wires options to core functions; their heavy imports stay
inside the command bodies so that ``cfakey --version`` costs little more than typer.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import typer.main
from typer._click import exceptions
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperGroup

from cfakey import __version__
from cfakey.errors import CfakeyError, ExitCode

if TYPE_CHECKING:
    from typer._click.core import Context as ClickContext

    from cfakey.core.recovery import RecoveryReport
    from cfakey.stores.file_store import PasswordCheck


# Command name -> the module (in cfakey.cli) whose ``register(app)`` defines it, in the
# order ``--help`` lists them. Only the module of the command being run is imported, and
# only its commands are turned into click commands: start-up time is a feature.
COMMAND_MODULES: dict[str, str] = {
    "opcos": "registry_cmds",
    "guide": "registry_cmds",
    "cfa": "cfa_cmds",
    "add": "walkthrough",
    "list": "overview_cmds",
    "show": "key_cmds",
    "rotate": "walkthrough",
    "remove": "key_cmds",
    "check": "overview_cmds",
    "import": "key_cmds",
    "request": "request_cmds",
    "journal": "overview_cmds",
    "export": "export_cmds",
    "inject": "export_cmds",
    "exec": "export_cmds",
    "verify": "verify_cmds",
    "config": "config_cmds",
    "store": "store_cmds",
    "doctor": "doctor_cmds",
    "metrics": "reminder_cmds",
    "calendar": "reminder_cmds",
}


@functools.cache
def _module_commands(module_name: str) -> TyperGroup:
    """The click commands one command module registers, built on first use."""
    module = importlib.import_module(f"cfakey.cli.{module_name}")
    holder = typer.Typer(cls=TyperGroup)
    module.register(holder)
    return typer.main.get_group(holder)


STORE_HELP = (
    "Magasin de clés, au choix : {choices}. Prime sur la variable CFAKEY_STORE et sur le choix "
    "retenu."
)


#: French help of the two options typer adds for shell completion.
COMPLETION_HELP = {
    "install_completion": "Installe la complétion (commandes, options, OPCO, CFA) pour le "
    "shell utilisé : bash, zsh, fish ou PowerShell.",
    "show_completion": "Affiche le script de complétion du shell utilisé, pour le copier ou "
    "l'installer soi-même.",
}


def _install_completion(ctx: ClickContext, _param: object, value: object) -> object:
    """typer's ``--install-completion``, said in French."""
    if not value or ctx.resilient_parsing:
        return value
    from typer._completion_shared import _get_shell_name, install

    from cfakey.errors import UsageError

    shell = value if isinstance(value, str) else _get_shell_name()
    if shell not in {"bash", "zsh", "fish", "powershell", "pwsh"}:
        raise UsageError(
            "Shell non reconnu : la complétion s'installe pour bash, zsh, fish ou PowerShell.",
            hint="Lancez cfakey --install-completion depuis l'un de ces shells.",
        )
    shell, path = install(shell=shell)
    from cfakey.cli.terminal import print_notice

    print_notice(
        f"Complétion {shell} installée dans {path} : elle prendra effet dans un nouveau terminal."
    )
    raise typer.Exit(0)


def _describe_store_option(params: list[Any]) -> None:
    """``--store``'s choices and their French names, from the store table; completion's
    options in French."""
    from cfakey.stores import kinds

    for param in params:
        if param.name in COMPLETION_HELP:
            param.help = COMPLETION_HELP[param.name]
        if param.name == "store":
            param.metavar = kinds.metavar()
            choices = " ; ".join(f"{kind.name}, {kind.noun}" for kind in kinds.STORE_KINDS.values())
            param.help = STORE_HELP.format(choices=choices)


class CfakeyGroup(TyperGroup):
    """The root command: lazy subcommands, and French errors with documented exit codes.

    cfakey's errors, click's usage errors and interruptions are handled here rather than
    around ``app()``, so the test runner and the real entry point behave the same.
    ``CFAKEY_DEBUG=1`` lets the exception through, with its traceback.
    """

    def format_help(self, ctx: ClickContext, formatter: Any) -> None:
        _describe_store_option(self.get_params(ctx))
        super().format_help(ctx, formatter)

    def get_params(self, ctx: ClickContext) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        for param in params:
            if param.name == "install_completion":
                param.callback = _install_completion
        return params

    def list_commands(self, ctx: ClickContext) -> list[str]:
        return list(COMMAND_MODULES)

    def get_command(self, ctx: ClickContext, cmd_name: str) -> Any:
        module_name = COMMAND_MODULES.get(cmd_name)
        if module_name is None:
            return None
        return _module_commands(module_name).get_command(ctx, cmd_name)

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except (typer.Exit, NoArgsIsHelpError):
            raise
        except Exception as error:
            if os.environ.get("CFAKEY_DEBUG") == "1":
                raise
            raise typer.Exit(_report(error)) from None

    def invoke(self, ctx: ClickContext) -> Any:
        words = [*ctx._protected_args, *ctx.args]  # before click consumes them
        try:
            with _terminate_as_interrupt():
                return super().invoke(ctx)
        except (typer.Exit, NoArgsIsHelpError):
            raise
        except Exception as error:
            if os.environ.get("CFAKEY_DEBUG") == "1":
                raise
            code = _report(error, ctx.obj, (ctx, words))
            if words[:1] == ["check"] and not isinstance(error, BrokenPipeError):
                code = _check_unknown(error, words)
            raise typer.Exit(code) from None
        except KeyboardInterrupt:
            if os.environ.get("CFAKEY_DEBUG") == "1":
                raise
            raise typer.Exit(_report_interrupt(ctx.obj)) from None


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (systemd, ``timeout``, ``docker stop``) takes Ctrl-C's path: what was being
    written is undone and checked, or the truth is said. Only the main thread has signals."""
    import signal  # not needed by --version

    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _report(
    error: Exception, context: object = None, line: tuple[ClickContext, list[str]] | None = None
) -> int:
    from cfakey.cli.terminal import print_error

    if isinstance(error, CfakeyError):
        print_error(error.message, hint=error.hint)
        return int(error.exit_code)
    if isinstance(error, BrokenPipeError):  # ``cfakey opcos | head -3``: stop without a word
        from cfakey.cli.terminal import stdout_closed

        stdout_closed()
        return int(ExitCode.ERROR)
    if isinstance(error, typer.Abort):
        return _report_interrupt(context)
    if isinstance(error, exceptions.ClickException):
        from cfakey.cli.french import click_error, command_path

        path = command_path(*line) if line is not None else None
        return click_error(error, path) or int(ExitCode.USAGE)
    # A bug: name it without its message, which could quote data (even a key).
    print_error(
        f"erreur inattendue ({type(error).__name__}).",
        hint="Relancez avec CFAKEY_DEBUG=1 pour afficher le détail technique.",
    )
    return int(ExitCode.ERROR)


def _check_unknown(error: Exception, words: list[str]) -> int:
    """``check`` is a monitoring plugin: any result that is not a key status (damaged
    database, unreadable config, bad option, busy, bug) is UNKNOWN, exit 3, with its status
    line first on stdout (the error itself is already on stderr)."""
    if "--json" not in words:
        from cfakey.cli.terminal import write_lines

        if isinstance(error, CfakeyError):
            reason = error.message
        elif isinstance(error, exceptions.ClickException):
            from cfakey.cli.french import translate_usage

            reason = f"option ou valeur invalide : {translate_usage(error.format_message())}"
        else:
            reason = f"erreur inattendue ({type(error).__name__})."
        write_lines([f"INCONNU : {reason}"])
    return CHECK_UNKNOWN


#: ``check``'s exit code when it cannot give a verdict (Nagios UNKNOWN).
CHECK_UNKNOWN = 3


_INTERRUPTED = {
    "nothing": "Interrompu : rien n'a été enregistré.",
    "saved": "Interrompu : ce qui était déjà enregistré le reste (voir cfakey journal).",
    "pending": "Interrompu pendant une écriture : la prochaine commande qui ouvre le magasin "
    "de clés (ou cfakey doctor) remettra le magasin et les métadonnées en accord.",
    "unknown": "Interrompu : vérifiez ce qui a été enregistré avec cfakey doctor.",
}


def _report_interrupt(context: object = None) -> int:
    """Say what an interruption left, as read back from the database, never assumed."""
    from cfakey.cli.terminal import print_notice
    from cfakey.context import AppContext

    state = context.interruption_state() if isinstance(context, AppContext) else "nothing"
    print_notice(f"\n{_INTERRUPTED[state]}")
    return int(ExitCode.INTERRUPTED)


app = typer.Typer(
    name="cfakey",
    cls=CfakeyGroup,
    help=(
        "Gestionnaire des clés API CFA (CFA_KEY) des OPCO : procédure d'obtention, "
        "stockage sûr, échéances, export vers le logiciel du CFA, vérification."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _show_version(value: bool) -> None:
    if value:
        # Not through cli/terminal: --version costs no more than typer (bench/startup.py).
        sys.stdout.write(f"cfakey {__version__}\n")
        raise typer.Exit(0)


@app.callback()
def root(
    ctx: typer.Context,
    registry: Annotated[
        Path | None,
        typer.Option(
            "--registry",
            metavar="FICHIER",
            envvar="CFAKEY_REGISTRY",
            help="Fichier YAML fusionné par-dessus le registre livré (par identifiant d'OPCO).",
            show_envvar=True,
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            # Metavar and help are completed from the store table when help is shown
            # (CfakeyGroup.format_help): --version does not load the table.
            metavar="MAGASIN",
            help=STORE_HELP,
        ),
    ] = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_show_version,
            is_eager=True,
            help="Affiche la version de cfakey et quitte.",
        ),
    ] = False,
) -> None:
    """Options communes à toutes les commandes."""
    from cfakey.context import AppContext

    if not isinstance(ctx.obj, AppContext):
        ctx.obj = AppContext(
            password_prompt=_prompt_password,
            confirm_file_store=_confirm_file_store,
            secret_prompt=_ask_hidden,
        )
    if ctx.obj.on_recovery is None:
        ctx.obj.on_recovery = _tell_recovery
    ctx.obj.registry_overlay = registry
    ctx.obj.store_option = store


def _tell_recovery(report: RecoveryReport) -> None:
    from cfakey.cli.terminal import print_notice

    for line in report.messages():
        print_notice(line)


def _prompt_password(*, new: bool, check: PasswordCheck | None = None) -> str:
    from cfakey.cli.prompts import prompt_file_password

    return prompt_file_password(new=new, check=check)


def _ask_hidden(question: str, *, on_end: Callable[[], CfakeyError]) -> str:
    from cfakey.cli.terminal import ask_hidden

    return ask_hidden(question, on_end=on_end)


def _confirm_file_store(reason: str) -> bool:
    from cfakey.cli.prompts import confirm_file_store

    return confirm_file_store(reason)
