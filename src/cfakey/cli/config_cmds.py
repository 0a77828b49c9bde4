"""``cfakey config``: read and change settings (the OAuth client secret goes to the key store)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfakey.cli.options import JSON_OPTION
from cfakey.cli.terminal import ask_secret, print_json, print_notice, write_lines
from cfakey.errors import UsageError

if TYPE_CHECKING:
    from cfakey.config import Config
    from cfakey.context import AppContext
    from cfakey.core.settings import Setting, Sources

config_app = typer.Typer(
    help="Réglages de cfakey : adresses des API des OPCO, en-têtes, client OAuth2, magasin.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``config`` group to ``app``."""
    app.add_typer(config_app, name="config")


def _sources(ctx: typer.Context, key: str) -> tuple[Sources, Setting]:
    """The settings' sources from the command's context, and the setting ``key`` names."""
    from cfakey.core.settings import Sources, parse_setting

    context: AppContext = ctx.obj
    sources = Sources(context.config(), context.key_store, context.metadata, context.clock)
    return sources, parse_setting(context.registry, key)


def _read_secret(label: str) -> str:
    """The secret, hidden on a terminal, else one line of stdin; none at all is refused."""
    # An empty line goes on to the use-case, which refuses it with the same sentence.
    return ask_secret(
        f"{label} : ",
        on_end=lambda: UsageError("Secret vide : rien n'a été enregistré."),
    )


@config_app.command("set")
def config_set(
    ctx: typer.Context,
    key: Annotated[
        str, typer.Argument(metavar="PARAMETRE", help="Paramètre, par exemple opco.atlas.api_url.")
    ],
    value: Annotated[
        str | None,
        typer.Argument(
            metavar="VALEUR",
            help="Nouvelle valeur (jamais pour un secret : saisie masquée).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Règle un paramètre (le secret OAuth2 va dans le magasin de clés, jamais dans le fichier)."""
    from cfakey.core.settings import set_oauth_secret, set_setting

    sources, setting = _sources(ctx, key)
    opco = setting.secret_opco
    if opco is None or value is not None:
        set_setting(sources.config, setting, value)
        # Not the value: a key pasted in the wrong place must not be written back.
        print_notice(f"{setting.key} enregistré.")
        return
    secret = _read_secret(f"Secret du client OAuth2 de {opco.name}")
    shown = set_oauth_secret(sources.store(), sources.metadata(), opco, secret, now=sources.now)
    print_notice(
        f"Secret du client OAuth2 de {opco.name} enregistré dans le magasin de clés "
        f"(empreinte {shown})."
    )


@config_app.command("get")
def config_get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="PARAMETRE", help="Paramètre à afficher.")],
) -> None:
    """Affiche la valeur d'un paramètre (jamais celle d'un secret)."""
    from cfakey.core.settings import read

    found = read(*_sources(ctx, key))
    if found.value is None:
        print_notice("Secret enregistré dans le magasin de clés (il n'est jamais affiché).")
        return
    write_lines([found.value])
    if found.is_default:
        print_notice("(valeur par défaut)")


@config_app.command("unset")
def config_unset(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="PARAMETRE", help="Paramètre à effacer.")],
) -> None:
    """Efface un paramètre (ou le secret OAuth2 du magasin de clés)."""
    from cfakey.core.settings import erase

    sources, setting = _sources(ctx, key)
    removed = erase(sources, setting)
    print_notice(
        f"{setting.key} effacé." if removed else f"{setting.key} n'était pas réglé : rien à faire."
    )


def _pattern_name(pattern: re.Pattern[str]) -> str:
    return pattern.pattern.replace("[a-z0-9]+", "<id>").replace("\\.", ".")


@config_app.command("list")
def config_list(
    ctx: typer.Context,
    show_all: Annotated[
        bool, typer.Option("--all", help="Montre aussi les paramètres reconnus.")
    ] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Liste les paramètres réglés (et, avec --all, tous ceux que cfakey reconnaît)."""
    from cfakey.config import KNOWN_KEYS

    context: AppContext = ctx.obj
    config: Config = context.config()
    known = [(_pattern_name(pattern), description) for pattern, description in KNOWN_KEYS]
    known.append(
        (
            "opco.<id>.oauth.client_secret",
            "secret du client OAuth2 (dans le magasin de clés, saisie masquée)",
        )
    )
    if as_json:
        payload: dict[str, Any] = {"values": dict(sorted(config.values.items()))}
        if show_all:
            payload["known"] = [{"key": name, "description": text} for name, text in known]
        print_json(payload)
        return
    if config.values:
        write_lines([f"{name} = {config.values[name]}" for name in sorted(config.values)])
    else:
        print_notice(f"Aucun paramètre réglé ({config.path}).")
    if show_all:
        write_lines(
            ["", "Paramètres reconnus :", *(f"  {name:<32} {text}" for name, text in known)]
        )
