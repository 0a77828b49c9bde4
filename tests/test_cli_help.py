"""The help screens, usage errors and process edges of the CLI."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest

from cfakey.cli.app import COMMAND_MODULES, app
from cfakey.cli.french import EXAMPLES
from cfakey.errors import ExitCode
from cfakey.stores import kinds
from tests.conftest import run_cli

LEAF_COMMANDS = (
    "opcos",
    "guide",
    "cfa add",
    "cfa list",
    "cfa default",
    "cfa rename",
    "cfa edit",
    "cfa remove",
    "add",
    "list",
    "show",
    "rotate",
    "remove",
    "check",
    "metrics",
    "calendar",
    "import",
    "request add",
    "request list",
    "request cancel",
    "journal",
    "export",
    "inject",
    "exec",
    "verify",
    "config set",
    "config get",
    "config unset",
    "config list",
    "store use",
    "store password",
    "store migrate",
    "doctor",
)
#: How typer names click types when a parameter has no metavar of its own.
TYPE_JARGON = re.compile(r"<(str|path|int|float|text|integer)[a-z ]*>")


def cfakey(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "cfakey", *args], env=env, text=True, check=False, **kwargs
    )


def test_every_command_is_in_the_help_list() -> None:
    assert {command.split()[0] for command in LEAF_COMMANDS} == set(COMMAND_MODULES)


@pytest.mark.parametrize("command", LEAF_COMMANDS)
def test_help_shows_french_names_not_type_jargon(command: str) -> None:
    shown = cfakey(*command.split(), "--help", capture_output=True)

    assert shown.returncode == 0, shown.stderr
    assert "Affiche cette aide et quitte." in shown.stdout
    assert TYPE_JARGON.search(shown.stdout) is None, shown.stdout
    # French headings, no English usage words, no braces, and one example.
    assert f"Utilisation : cfakey {command} [OPTIONS]" in shown.stdout
    assert not re.findall(r"\bUsage\b|\bCOMMAND\b|\bARGS\b|env var", shown.stdout), shown.stdout
    usage = next(line for line in shown.stdout.splitlines() if "Utilisation :" in line)
    assert "{" not in usage
    assert f"Exemple : {EXAMPLES[command]}" in " ".join(shown.stdout.split())


@pytest.mark.parametrize("group", sorted({c.split()[0] for c in LEAF_COMMANDS if " " in c}))
def test_a_group_alone_shows_its_help_in_french(group: str) -> None:
    shown = cfakey(group, capture_output=True)

    assert "Affiche cette aide et quitte." in shown.stdout + shown.stderr
    assert "Show this message" not in shown.stdout + shown.stderr
    assert "Commandes" in shown.stdout + shown.stderr


def test_the_root_help_is_french() -> None:
    shown = cfakey("--help", capture_output=True).stdout

    assert "Utilisation : cfakey [OPTIONS] COMMANDE [ARGUMENTS]..." in shown
    assert "Commandes" in shown
    assert "<path>" not in shown
    assert re.search(r"--registry +FICHIER", shown)
    assert "Exemple : cfakey add atlas" in shown


@pytest.mark.parametrize("command", ["", *LEAF_COMMANDS, "cfa", "config", "store"])
def test_each_example_is_a_command_line_cfakey_accepts(command: str) -> None:
    """The example parses: its command exists and takes these options and arguments."""
    import shlex

    import typer.main
    from typer._click.core import Context
    from typer.core import TyperGroup as Group

    args = shlex.split(EXAMPLES[command])[1:]
    leaf = typer.main.get_command(app)
    while isinstance(leaf, Group):
        name, args = args[0], args[1:]
        found = leaf.get_command(Context(leaf), name)
        assert found is not None, name
        leaf = found
    with leaf.make_context(leaf.name, args) as parsed:
        assert parsed.params is not None


def test_help_options_say_what_they_take() -> None:
    shown = cfakey("verify", "--help", capture_output=True).stdout

    lines = {line.split()[1]: line for line in shown.splitlines() if line.startswith("│ --")}
    assert "CFA" in lines["--cfa"].split("CFA (")[0]
    assert " URL " in lines["--api-url"]
    assert " N [1<=x<=256]" in lines["--concurrency"]
    assert " SECONDES " in lines["--timeout"]
    assert " FICHIER " in lines["--ca-bundle"]


def test_closed_stdout_ends_quietly() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before cfakey writes: like « | head -0 »
    try:
        result = cfakey("opcos", stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)

    assert result.returncode == ExitCode.ERROR
    assert result.stderr == ""


PASTED_KEY = "Zx9QwEr7Ty1Ui3Op5As6Df8Gh0JkLm12"
# Keys of 20 characters or fewer exist: the old « long value » mask quoted them back.
SHORT_KEY = "Zx9QwEr7Ty1Ui3"


@pytest.mark.parametrize("pasted", [PASTED_KEY, SHORT_KEY])
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (("add", "atlas", "{key}"), ExitCode.USAGE, "Erreur : Argument(s) en trop."),
        (
            ("add", "ocapiat", "--lifetime-months", "{key}"),
            ExitCode.USAGE,
            "Valeur invalide pour '--lifetime-months' : un nombre entier est attendu.",
        ),
        (("{key}",), ExitCode.USAGE, "Erreur : Commande inconnue."),
        (
            ("cfa", "add", "{key}", "--nom", "CFA"),
            ExitCode.USAGE,
            "SIRET invalide : 14 chiffres attendus",
        ),
        (
            ("cfa", "add", "18130002100373", "--nom", "CFA", "--uai", "{key}"),
            ExitCode.USAGE,
            "UAI invalide : attendu 7 chiffres puis une lettre",
        ),
        (("cfa", "default", "{key}"), ExitCode.NOT_FOUND, "CFA inconnu : un SIRET, un SIREN"),
        (("list", "--cfa", "{key}"), ExitCode.NOT_FOUND, "CFA inconnu : un SIRET, un SIREN"),
        (("guide", "{key}"), ExitCode.USAGE, "OPCO inconnu : un identifiant ou un nom"),
        (("export", "--format", "{key}"), ExitCode.USAGE, "Format inconnu : formats disponibles"),
        (("journal", "--since", "{key}"), ExitCode.USAGE, "Date illisible : formats acceptés"),
        (
            ("config", "set", "opco.atlas.api_url", "{key}"),
            ExitCode.USAGE,
            "Adresse d'API invalide : une adresse https://hôte/chemin est attendue",
        ),
        (("config", "set", "{key}", "x"), ExitCode.USAGE, "Paramètre inconnu : un nom"),
        (("config", "set", "{key}"), ExitCode.USAGE, "Paramètre inconnu : un nom"),
        (("--store", "{key}", "add", "atlas"), ExitCode.USAGE, "Magasin de clés inconnu (option"),
        (
            ("config", "set", "opco.atlas.warn_days", "{key}"),
            ExitCode.USAGE,
            "Paramètre « opco.atlas.warn_days » invalide : un nombre entier de jours",
        ),
        # check is a monitoring plugin: a bad value is UNKNOWN, 3 (issue 14)
        (("check", "--warn-days", "{key}"), 3, "un nombre entier est attendu"),
    ],
)
def test_a_key_typed_in_the_wrong_place_is_not_quoted_back(
    args: tuple[str, ...], code: int, message: str, pasted: str
) -> None:
    assert run_cli("cfa", "add", "18130002100373", "--nom", "CFA Démo").exit_code == 0

    result = run_cli(*(arg.format(key=pasted) for arg in args))

    assert result.exit_code == code
    assert message in result.stderr, result.stderr
    assert pasted not in result.stdout + result.stderr
    assert pasted[:8] not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (("add", "atlas", "--forse"), "Erreur : Option inconnue : --forse.", "cfakey add --help"),
        (
            ("frobnicate",),
            "Erreur : Commande inconnue. Commandes : opcos, guide, cfa, add, list,",
            "cfakey --help",
        ),
        (("cfa", "frob"), "Commandes : add, list, default, rename, edit, remove.", "cfakey cfa"),
        (("list", "--cfa"), "Erreur : L'option --cfa attend une valeur.", "cfakey list --help"),
        (("cfa", "add", "--uai"), "L'option --uai attend une valeur.", "cfakey cfa add --help"),
        (("add", "atlas", "--Zm9vYmFy+k3y"), "Erreur : Option inconnue.\n", "cfakey add --help"),
    ],
)
def test_usage_errors_name_what_is_wrong_but_never_a_key(
    args: tuple[str, ...], message: str, hint: str
) -> None:
    """An option-shaped word is named; an unknown command is never echoed: the list is."""
    result = run_cli(*args)

    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr, result.stderr
    assert f"Aide : « {hint}" in result.stderr
    assert "frob" not in result.stderr
    assert "Zm9vYmFy" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("verify", "--concurrency", "abc"),
            "Valeur invalide pour '--concurrency' : un nombre entier est attendu.",
        ),
        (("add", "atlas", "de", "trop"), "Argument(s) en trop."),
        (("list", "--cf", "x"), "Option inconnue : --cf (voulez-vous dire --cfa ou --opco ?)."),
    ],
)
def test_usage_errors_are_french_with_one_final_period(args: tuple[str, ...], message: str) -> None:
    result = run_cli(*args)

    assert result.exit_code == ExitCode.USAGE
    assert message in result.stderr
    assert ".." not in result.stderr


@pytest.mark.parametrize(
    "command", [("cfa", "default"), ("export", "--format", "env", "--cfa"), ("list", "--cfa")]
)
def test_a_siret_typo_in_cfa_is_said_as_such_everywhere(command: tuple[str, ...]) -> None:
    assert run_cli("cfa", "add", "18130002100373", "--nom", "CFA Démo").exit_code == 0

    result = run_cli(*command, "18130002100374")

    assert result.exit_code == ExitCode.USAGE
    assert "clé de contrôle fausse" in result.stderr


def test_the_store_option_lists_the_kinds_of_the_store_table(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--store``'s choices come from ``stores.kinds``: a new line there shows up here."""
    vault = dataclasses.replace(
        kinds.STORE_KINDS["file"], name="vault", label="le coffre distant", settings=()
    )
    monkeypatch.setitem(kinds.STORE_KINDS, "vault", vault)
    help_text = " ".join(run_cli("--help").stdout.replace("│", " ").split())
    assert "|".join(kinds.STORE_KINDS) in help_text
    assert help_text.count("|vault") == 1
    assert (
        "au choix : keyring, trousseau du système ; file, fichier chiffré ; openbao, coffre "
        "partagé OpenBao / Vault ; vault, coffre distant."
    ) in help_text
