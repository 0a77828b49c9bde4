"""French for the few texts typer's vendored click writes itself (help option, usage errors).

Click builds these messages in English with f-strings, so they are rewritten here rather
than through a gettext catalogue. Nothing in this module runs unless help is displayed or
the command line is wrong, so ordinary start-up does not pay for rich.
"""

from __future__ import annotations

import re
from typing import Any

from cfakey.errors import ExitCode

HELP_OPTION_TEXT = "Affiche cette aide et quitte."

_USAGE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^No such option: (?P<a>\S+)(?: Did you mean (?P<b>.+)\?)?$"),
        "option inconnue : {a}",
    ),
    (re.compile(r"^No such command '?(?P<a>[^'.]+)'?\.?(?:.*)$"), "commande inconnue : « {a} »"),
    (re.compile(r"^Missing argument '(?P<a>[^']+)'\.?$"), "argument manquant : {a}"),
    (re.compile(r"^Missing option '(?P<a>[^']+)'\.?$"), "option obligatoire manquante : {a}"),
    (re.compile(r"^Missing parameter: (?P<a>.+)$"), "paramètre manquant : {a}"),
    (re.compile(r"^Missing command\.?$"), "commande manquante"),
    (
        re.compile(r"^Got unexpected extra argument(?:s|\(s\))? \((?P<a>.*)\)$"),
        "argument(s) en trop : {a}",
    ),
    (re.compile(r"^Invalid value for (?P<a>[^:]+): (?P<b>.*)$"), "valeur invalide pour {a} : {b}"),
    (re.compile(r"^Invalid value: (?P<b>.*)$"), "valeur invalide : {b}"),
    (
        re.compile(r"^Option '(?P<a>[^']+)' requires an argument\.?$"),
        "l'option {a} attend une valeur",
    ),
    (re.compile(r"^(?P<a>\S+) option requires an argument\.?$"), "l'option {a} attend une valeur"),
)
_VALUE_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"^'?(?P<a>.*?)'? is not a valid int(?:eger)?(?: range)?\.?$"),
        "« {a} » n'est pas un nombre entier",
    ),
    (re.compile(r"^Value '?(?P<a>.*?)'? is not a valid (?P<b>.+)\.$"), "« {a} » n'est pas valide"),
    (
        re.compile(r"^'?(?P<a>.*?)'? is not one of (?P<b>.+)\.$"),
        "« {a} » ne fait pas partie de {b}",
    ),
    (
        re.compile(r"^(?P<a>.+) is not in the range (?P<b>.+)\.$"),
        "{a} n'est pas dans l'intervalle {b}",
    ),
)
#: A word (quotes and brackets aside) long enough to be a key rather than a value.
_LONG_WORD = re.compile(r"(?:« )?(?P<word>[^\s'\"«»()\[\],]{21,})(?: »)?")
_PANEL_TITLES = {
    "ARGUMENTS_PANEL_TITLE": "Arguments",
    "OPTIONS_PANEL_TITLE": "Options",
    "COMMANDS_PANEL_TITLE": "Commandes",
    "ERRORS_PANEL_TITLE": "Erreur",
    "ABORTED_TEXT": "Abandon.",
    "DEFAULT_STRING": "[défaut : {}]",
    "ENVVAR_STRING": "[variable : {}]",
    "REQUIRED_LONG_STRING": "[obligatoire]",
    "DEPRECATED_STRING": "(obsolète) ",
}


def translate_usage(message: str) -> str:
    """Rewrite one of click's usage messages in French (unknown ones are kept)."""
    for pattern, template in _USAGE_PATTERNS:
        match = pattern.match(message.strip())
        if match:
            parts = {key: _translate_value(value or "") for key, value in match.groupdict().items()}
            text = template.format(**parts)
            if match.groupdict().get("b") and "Did you mean" in message:
                text += f" (voulez-vous dire {parts['b']} ?)"
            return text
    return message


def _mask_long_values(message: str) -> str:
    """Click quotes back what was typed; a long word there is most often a pasted key."""
    from cfakey.errors import quote_input  # noqa: PLC0415

    return _LONG_WORD.sub(lambda match: quote_input(match["word"]), message)


def _translate_value(text: str) -> str:
    for pattern, template in _VALUE_PATTERNS:
        match = pattern.match(text.strip())
        if match:
            return template.format(**match.groupdict())
    return text


def click_error(error: Exception) -> int | None:
    """Report a click exception in French on stderr; ``None`` if it is not one of click's."""
    from typer._click import exceptions  # noqa: PLC0415

    if isinstance(error, exceptions.MissingParameter) and error.param is not None:
        from cfakey.cli.output import print_error  # noqa: PLC0415

        command = error.ctx.command_path if error.ctx is not None else "cfakey"
        options = [opt for opt in error.param.opts if opt.startswith("--")]
        if error.param.param_type_name == "option" and options:
            message = f"Option obligatoire manquante : {options[0]}."
        else:
            name = error.param.metavar or error.param.name or "?"
            message = f"{name.upper()} manquant."
        print_error(message, hint=f"Aide : « {command} --help ».")
        return int(ExitCode.USAGE)
    if isinstance(error, exceptions.UsageError):
        from cfakey.cli.output import print_error  # noqa: PLC0415

        command = error.ctx.command_path if error.ctx is not None else "cfakey"
        text = _mask_long_values(translate_usage(error.format_message())).rstrip(".")
        print_error(f"{text[:1].upper()}{text[1:]}.", hint=f"Aide : « {command} --help ».")
        return int(ExitCode.USAGE)
    if isinstance(error, exceptions.ClickException):
        from cfakey.cli.output import print_error  # noqa: PLC0415

        print_error(error.format_message())
        return int(ExitCode.ERROR)
    return None


def prepare_help() -> None:
    """French panel titles and help-option text for the help screen."""
    from typer import rich_utils  # noqa: PLC0415
    from typer._click import decorators  # noqa: PLC0415

    for name, text in _PANEL_TITLES.items():
        setattr(rich_utils, name, text)
    _hide_argument_types()
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
    that tells the operator nothing the name (OPCO, FICHIER, CLE) does not. Options carry
    their own metavars, which click shows instead of the type.
    """
    from typer._click import types  # noqa: PLC0415
    from typer.models import TyperPath  # noqa: PLC0415

    def named_by_metavar(self: Any, param: Any, ctx: Any) -> str | None:
        return "" if getattr(param, "metavar", None) else None

    for param_type in (types.StringParamType, TyperPath):
        param_type.get_metavar = named_by_metavar  # type: ignore[method-assign]
