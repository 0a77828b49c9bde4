"""French for the few texts typer's vendored click writes itself (help option, usage errors).

Click builds these messages in English with f-strings, so they are rewritten here rather
than through a gettext catalogue. Nothing in this module runs unless help is displayed or
the command line is wrong, so ordinary start-up does not pay for rich.
"""

from __future__ import annotations

import re
from typing import Any

from typer._click import exceptions, types
from typer.models import TyperPath

from cfakey.errors import ExitCode

HELP_OPTION_TEXT = "Affiche cette aide et quitte."

# Click quotes back what was typed (an unknown command, an extra argument, a bad value):
# that may be a key pasted in the wrong place, so no French template keeps it. Groups named
# ``a`` are typed text and are dropped; ``p`` is a parameter's name and ``b`` click's own
# list of choices or suggestions, both written by cfakey, and are kept.
_USAGE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^No such option: (?P<a>\S+)(?: \(Possible options: (?P<b>.+)\))?$"),
        "option inconnue",
    ),
    (
        re.compile(r"^No such command '?(?P<a>[^'.]+)'?\.?(?: Did you mean (?P<c>'[\w-]+')\?)?.*$"),
        "commande inconnue",
    ),
    (re.compile(r"^Missing argument '(?P<p>[^']+)'\.?$"), "argument manquant : {p}"),
    (re.compile(r"^Missing option '(?P<p>[^']+)'\.?$"), "option obligatoire manquante : {p}"),
    (re.compile(r"^Missing parameter: (?P<p>.+)$"), "paramètre manquant : {p}"),
    (re.compile(r"^Missing command\.?$"), "commande manquante"),
    (
        re.compile(r"^Got unexpected extra argument(?:s|\(s\))? \((?P<a>.*)\)$"),
        "argument(s) en trop",
    ),
    (re.compile(r"^Invalid value for (?P<p>[^:]+): (?P<v>.*)$"), "valeur invalide pour {p}{v}"),
    (re.compile(r"^Invalid value: (?P<v>.*)$"), "valeur invalide{v}"),
    (
        re.compile(r"^Option '(?P<p>-{1,2}[\w-]+)' does not take a value\.?$"),
        "l'option {p} n'attend pas de valeur",
    ),
    (
        re.compile(r"^Option '(?P<p>[^']+)' requires an argument\.?$"),
        "l'option {p} attend une valeur",
    ),
    (
        re.compile(r"^(?P<p>-{1,2}[\w-]+) option requires an argument\.?$"),
        "l'option {p} attend une valeur",
    ),
)
# What was wrong with a value, said without the value (see above).
_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^.* is not a valid int(?:eger)?(?: range)?\.?$", re.S),
        "un nombre entier est attendu",
    ),
    (re.compile(r"^.* is not a valid float\.?$", re.S), "un nombre est attendu"),
    (re.compile(r"^.* is not a valid boolean\..*$", re.S), "oui ou non est attendu"),
    (re.compile(r"^.* does not match the formats .*$", re.S), "le format n'est pas reconnu"),
    (
        re.compile(r"^.* is not one of (?P<b>(?:'[\w.-]*'(?:, )?)+)\.$", re.S),
        "choix possibles : {b}",
    ),
    (
        re.compile(r"^.* is not in the range (?P<b>[\d<=>x. -]+)\.$", re.S),
        "hors de l'intervalle {b}",
    ),
    (re.compile(r"^.* does not exist\.?$", re.S), "ce chemin n'existe pas"),
    (re.compile(r"^.* is a directory\.?$", re.S), "c'est un dossier"),
    (re.compile(r"^.* is a file\.?$", re.S), "c'est un fichier"),
    (re.compile(r"^.* is not readable\.?$", re.S), "ce fichier n'est pas lisible"),
)
#: A number written with a decimal point (click's ranges, typer's defaults).
_DECIMAL_POINT = re.compile(r"(?<=\d)\.(?=\d)")


def decimal_commas(text: str) -> str:
    """``0.1<=x<=600.0`` → ``0,1<=x<=600,0``: numbers as people read them in French."""
    return _DECIMAL_POINT.sub(",", text)


class _FrenchNumbers:
    """One of typer's help templates, its numbers as people write them: ``10``, ``0,1``."""

    def __init__(self, template: str) -> None:
        self.template = template

    def format(self, value: str) -> str:
        try:
            number = float(value)
        except ValueError:
            return self.template.format(decimal_commas(value))
        return self.template.format(int(number) if number.is_integer() else decimal_commas(value))


#: What an option typed wrong may look like to be named back: no key has this shape.
_OPTION_SHAPE = re.compile(r"--?[a-z0-9-]{1,30}")
#: Click's "Possible options: --x, --y" suggestions: option names cfakey defines.
_OPTION_LIST = re.compile(r"-{1,2}[\w-]+(?:, -{1,2}[\w-]+)*")
_PANEL_TITLES = {
    "ARGUMENTS_PANEL_TITLE": "Arguments",
    "OPTIONS_PANEL_TITLE": "Options",
    "COMMANDS_PANEL_TITLE": "Commandes",
    "ERRORS_PANEL_TITLE": "Erreur",
    "ABORTED_TEXT": "Abandon.",
    "DEFAULT_STRING": _FrenchNumbers("[défaut : {}]"),
    "RANGE_STRING": _FrenchNumbers(" [{}]"),
    "ENVVAR_STRING": "[variable : {}]",
    "REQUIRED_LONG_STRING": "[obligatoire]",
    "DEPRECATED_STRING": "(obsolète) ",
}


def translate_usage(message: str) -> str:
    """Rewrite one of click's usage messages in French, never keeping a typed value.

    An unknown message is replaced by a generic one for the same reason.
    """
    for pattern, template in _USAGE_PATTERNS:
        match = pattern.match(message.strip())
        if match:
            groups = match.groupdict()
            parts = {"p": groups.get("p") or "", "v": _translate_value(groups.get("v"))}
            text = template.format(**parts)
            typed = groups.get("a")
            if template == "option inconnue" and typed and _OPTION_SHAPE.fullmatch(typed):
                text += f" : {typed}"
            if groups.get("c"):  # typer's suggestion: one of cfakey's command names
                text += f" (voulez-vous dire {groups['c'].strip(chr(39))} ?)"
            suggested = groups.get("b")
            if suggested and _OPTION_LIST.fullmatch(suggested):
                text += f" (voulez-vous dire {suggested.replace(', ', ' ou ')} ?)"
            return text
    return "ligne de commande invalide"


def _translate_value(text: str | None) -> str:
    """`` : reason`` for click's explanation of a bad value, or nothing when unknown."""
    if text is None:
        return ""
    for pattern, template in _VALUE_PATTERNS:
        match = pattern.match(text.strip())
        if match:
            return " : " + decimal_commas(template.format(**match.groupdict()))
    return ""


def command_path(root: Any, words: list[str]) -> str:
    """The command a command line names (``cfakey cfa add``), read from its words that are
    command names: what « --help » to point to when click did not say."""
    path, command = [root.command_path], root.command
    for word in words:
        found = command.get_command(root, word) if hasattr(command, "get_command") else None
        if found is None:
            break
        path.append(word)
        command = found
    return " ".join(path)


def _commands_hint(error: exceptions.UsageError, text: str) -> str:
    """After « commande inconnue » with no suggestion: the commands there are (never the
    typed word, which could be a key)."""
    ctx = error.ctx
    if ctx is None or not text.startswith("commande inconnue") or "?" in text:
        return text
    names = ctx.command.list_commands(ctx) if hasattr(ctx.command, "list_commands") else []
    return f"{text}. Commandes : {', '.join(names)}" if names else text


def click_error(error: Exception, path: str | None = None) -> int | None:
    """Report a click exception in French on stderr; ``None`` if it is not one of click's.

    ``path``: the command named on the command line, for errors click raised without it.
    """
    if isinstance(error, exceptions.MissingParameter) and error.param is not None:
        from cfakey.cli.terminal import print_error

        command = error.ctx.command_path if error.ctx is not None else path or "cfakey"
        options = [opt for opt in error.param.opts if opt.startswith("--")]
        if error.param.param_type_name == "option" and options:
            message = f"Option obligatoire manquante : {options[0]}."
        else:
            name = error.param.metavar or error.param.name or "?"
            message = f"{name.upper()} manquant."
        print_error(message, hint=f"Aide : « {command} --help ».")
        return int(ExitCode.USAGE)
    if isinstance(error, exceptions.UsageError):
        from cfakey.cli.terminal import print_error

        command = error.ctx.command_path if error.ctx is not None else path or "cfakey"
        text = _commands_hint(error, translate_usage(error.format_message()).rstrip("."))
        print_error(f"{text[:1].upper()}{text[1:]}.", hint=f"Aide : « {command} --help ».")
        return int(ExitCode.USAGE)
    if isinstance(error, exceptions.ClickException):
        from cfakey.cli.terminal import print_error

        print_error(error.format_message())
        return int(ExitCode.ERROR)
    return None


#: One example per command, shown at the foot of its help (``cfakey add --help``).
EXAMPLES: dict[str, str] = {
    "": "cfakey add atlas",
    "opcos": "cfakey opcos --json",
    "guide": "cfakey guide ocapiat",
    "cfa": 'cfakey cfa add 18130002100373 --nom "CFA des Métiers"',
    "cfa add": 'cfakey cfa add 18130002100373 --nom "CFA des Métiers" --uai 0312345A',
    "cfa list": "cfakey cfa list",
    "cfa default": "cfakey cfa default 18130002100373",
    "cfa remove": "cfakey cfa remove 18130002100373",
    "cfa rename": 'cfakey cfa rename 18130002100373 "CFA des Métiers de Marseille"',
    "cfa edit": "cfakey cfa edit 18130002100373 --uai 0133527N",
    "add": "cfakey add ocapiat --cfa 18130002100373",
    "list": "cfakey list --cfa 181300021",
    "show": "cfakey show atlas --cfa 18130002100373 --historique",
    "rotate": "cfakey rotate atlas --cfa 18130002100373",
    "remove": "cfakey remove atlas --cfa 18130002100373",
    "check": "cfakey check --warn-days 30 --crit-days 7",
    "import": "cfakey import cles.csv --dry-run",
    "calendar": "cfakey calendar --output echeances.ics",
    "metrics": "cfakey metrics --textfile /var/lib/node_exporter/textfile_collector",
    "journal": "cfakey journal --action exported --limit 20",
    "request": "cfakey request list",
    "request add": "cfakey request add constructys --le 02/11/2026 --a cles-api@constructys.fr",
    "request list": "cfakey request list --json",
    "request cancel": "cfakey request cancel constructys --cfa 18130002100373",
    "export": "cfakey export --format env --output cles.env",
    "inject": "cfakey inject --input modele.xml --output config.xml",
    "exec": "cfakey exec --opco atlas -- mon-logiciel --synchro",
    "verify": "cfakey verify atlas --cfa 18130002100373",
    "config": "cfakey config set opco.atlas.api_url https://api.exemple.fr",
    "config set": "cfakey config set opco.atlas.api_url https://api.exemple.fr",
    "config get": "cfakey config get opco.atlas.api_url",
    "config unset": "cfakey config unset opco.atlas.api_url",
    "config list": "cfakey config list --all",
    "store": "cfakey store use file",
    "store use": "cfakey store use file",
    "store password": "cfakey store password",
    "store migrate": "cfakey store migrate --to openbao --url https://coffre.exemple.fr:8200",
    "doctor": "cfakey doctor",
}
USAGE_PREFIX = "Utilisation : "
SUBCOMMAND_METAVAR = "COMMANDE [ARGUMENTS]..."


def prepare_help() -> None:
    """French panel titles, usage line, examples and help-option text for the help screen."""
    from typer import rich_utils
    from typer._click import decorators

    for name, text in _PANEL_TITLES.items():
        setattr(rich_utils, name, text)
    _hide_argument_types()
    _french_usage()
    _examples_in_help(rich_utils)
    original = decorators.help_option
    if getattr(original, "_cfakey_french", False):
        return

    def french_help_option(param_decls: list[str]) -> Any:
        decorate = original(param_decls)

        def apply(command: Any) -> Any:
            command = decorate(command)
            command.params[-1].help = HELP_OPTION_TEXT
            return command

        return apply

    french_help_option._cfakey_french = True  # type: ignore[attr-defined]
    decorators.help_option = french_help_option


def _hide_argument_types() -> None:
    """No ``<str>`` or ``<path>`` beside an argument that has its own French name.

    typer prints an argument's click type next to its metavar (``OPCO  <str>``): jargon
    that tells the operator nothing the name (OPCO, FICHIER, PARAMETRE) does not. Options carry
    their own metavars, which click shows instead of the type.
    """

    def named_by_metavar(self: Any, param: Any, ctx: Any) -> str | None:
        return "" if getattr(param, "metavar", None) else None

    for param_type in (types.StringParamType, TyperPath):
        param_type.get_metavar = named_by_metavar  # type: ignore[method-assign]


def _french_usage() -> None:
    """« Utilisation : cfakey add [OPTIONS] OPCO » instead of « Usage: … {OPCO} ».

    typer writes a required argument in braces; a plain name reads better, and the
    brackets that remain mean one thing only: optional.
    """
    from typer import core
    from typer._click import formatting

    if getattr(formatting.HelpFormatter.write_usage, "_cfakey_french", False):
        return
    write_usage = formatting.HelpFormatter.write_usage
    make_metavar = core.TyperArgument.make_metavar

    def french_write_usage(self: Any, prog: str, args: str = "", prefix: str | None = None) -> None:
        args = args.replace("COMMAND [ARGS]...", SUBCOMMAND_METAVAR)
        write_usage(self, prog, args, USAGE_PREFIX if prefix is None else prefix)

    def plain_metavar(self: Any, ctx: Any, *, usage: bool = False) -> str:
        text: str = make_metavar(self, ctx, usage=usage)
        return text[1:-1] if text.startswith("{") and text.endswith("}") else text

    french_write_usage._cfakey_french = True  # type: ignore[attr-defined]
    formatting.HelpFormatter.write_usage = french_write_usage  # type: ignore[method-assign]
    core.TyperArgument.make_metavar = plain_metavar  # type: ignore[method-assign]


def _examples_in_help(rich_utils: Any) -> None:
    """Each command's example (:data:`EXAMPLES`) at the foot of its help screen."""
    if getattr(rich_utils.rich_format_help, "_cfakey_french", False):
        return
    original = rich_utils.rich_format_help

    def with_example(*, obj: Any, ctx: Any, markup_mode: Any) -> None:
        path = ctx.command_path.partition(" ")[2]
        example = EXAMPLES.get(path)
        if example and not obj.epilog:
            obj.epilog = f"Exemple : {example}"
        original(obj=obj, ctx=ctx, markup_mode=markup_mode)

    with_example._cfakey_french = True  # type: ignore[attr-defined]
    rich_utils.rich_format_help = with_example
