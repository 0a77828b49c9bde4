"""``cfakey verify`` (live check of keys against the OPCOs' API) and ``cfakey config``."""

from __future__ import annotations

import functools
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfakey.cli.options import CFA_OPTION, JSON_OPTION, OPCO_ARG

if TYPE_CHECKING:
    from cfakey.config import Config
    from cfakey.context import AppContext
    from cfakey.core.verify import VerifyResult
    from cfakey.stores.base import KeyStore

SECRET_SETTING = re.compile(r"opco\.(?P<opco>[^.]+)\.oauth\.client_secret")
OPCO_SETTING = re.compile(r"opco\.(?P<opco>[^.]+)\.(?P<rest>.+)")
URL_SUFFIXES = (".api_url", ".recette_url", ".oauth.token_url")
INT_SUFFIXES = (".warn_days", ".crit_days")
HEADER_SETTINGS = ("editeur", "logiciel", "version")

config_app = typer.Typer(
    help="Réglages de cfakey : adresses des API des OPCO, en-têtes, client OAuth2, magasin.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``verify`` and the ``config`` group to ``app``."""
    app.command("verify")(verify)
    app.add_typer(config_app, name="config")


# -- verify --------------------------------------------------------------------------------


def verify(  # noqa: PLR0917 - typer passes one parameter per option
    ctx: typer.Context,
    opco_name: Annotated[str | None, OPCO_ARG] = None,
    all_keys: Annotated[
        bool, typer.Option("--all", help="Vérifie toutes les clés enregistrées.")
    ] = False,
    cfa: Annotated[str | None, CFA_OPTION] = None,
    api_url: Annotated[
        str | None,
        typer.Option(
            "--api-url", metavar="URL", help="Adresse de base de l'API pour cet appel seulement."
        ),
    ] = None,
    recette: Annotated[
        bool, typer.Option("--recette", help="Utilise l'environnement de recette.")
    ] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
    concurrency: Annotated[
        int,
        typer.Option(
            "--concurrency",
            metavar="N",
            min=1,
            max=256,
            help="Vérifications simultanées (avec --all).",
        ),
    ] = 8,
    timeout: Annotated[
        float,
        typer.Option(
            "--timeout",
            metavar="SECONDES",
            min=0.1,
            max=600.0,
            help="Délai maximal de chaque étape d'une requête, en secondes (un échange entier : "
            "deux fois ce délai).",
        ),
    ] = 10.0,
    ca_bundle: Annotated[
        Path | None,
        typer.Option(
            "--ca-bundle",
            metavar="FICHIER",
            help="Certificats (PEM) à utiliser à la place du magasin du système.",
        ),
    ] = None,
) -> None:
    """Vérifie auprès de l'API Convergence de l'OPCO que la clé est acceptée, et jusqu'à quand."""
    from cfakey.cli.output import progress_bar  # noqa: PLC0415
    from cfakey.core import verify as engine  # noqa: PLC0415
    from cfakey.errors import UsageError  # noqa: PLC0415

    context: AppContext = ctx.obj
    if all_keys and opco_name:
        raise UsageError("Indiquez un OPCO ou --all, pas les deux.")
    if not all_keys and not opco_name:
        raise UsageError(
            "Indiquez l'OPCO dont vérifier la clé, ou --all pour toutes.",
            hint="Exemples : cfakey verify atlas ; cfakey verify --all",
        )
    if all_keys and api_url:
        raise UsageError(
            "--api-url vaut pour un seul OPCO : réglez l'adresse de chaque OPCO avec "
            "cfakey config set."
        )
    opco_id = context.resolve_opco(opco_name).id if opco_name else None
    settings = engine.settings_from_config(
        context.config(), timeout=timeout, concurrency=concurrency, ca_bundle=ca_bundle
    )
    request = engine.VerifyRequest(
        opco_id=opco_id, cfa_query=cfa, all_keys=all_keys, api_url=api_url, recette=recette
    )
    tls = engine.TlsPreparation(settings.ca_bundle)  # overlaps the key store's unlocking
    metadata = context.metadata()
    jobs = engine.plan_jobs(metadata, _store(context), context.config(), context.registry, request)
    if not jobs:
        _render_nothing(as_json=as_json)
        return
    started = time.monotonic()
    run = functools.partial(
        engine.run_jobs,
        jobs,
        settings,
        transport=context.http_transport,
        ssl_context=tls.ssl_context(),
    )
    if all_keys and not as_json:
        with progress_bar("Vérification", len(jobs), elapsed=True) as update:
            results = run(on_result=None if update is None else lambda _: update(advance=1))
    else:
        results = run()
    engine.record_results(metadata, jobs, results)
    elapsed = time.monotonic() - started
    code = engine.overall_exit_code(results)
    if as_json:
        _render_json(results, int(code))
    elif all_keys:
        _render_table(results, elapsed)
    else:
        _render_single(results[0])
    if code:
        raise typer.Exit(int(code))


def _store(context: AppContext) -> KeyStore:
    store: KeyStore = context.key_store()  # type: ignore[attr-defined,unused-ignore]
    return store


def _render_nothing(*, as_json: bool) -> None:
    from cfakey.cli.output import print_json, print_notice  # noqa: PLC0415

    if as_json:
        print_json({"results": [], "summary": {"total": 0, "counts": {}, "exit_code": 0}})
    else:
        print_notice("Aucune clé enregistrée : rien à vérifier (ajoutez-en avec cfakey add OPCO).")


def _counts(results: list[VerifyResult]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome.value] = counts.get(result.outcome.value, 0) + 1
    return counts


def _render_json(results: list[VerifyResult], code: int) -> None:
    from cfakey.cli.output import print_json  # noqa: PLC0415
    from cfakey.core.verify import by_urgency  # noqa: PLC0415

    print_json(
        {
            "results": [result.as_json() for result in by_urgency(results)],
            "summary": {"total": len(results), "counts": _counts(results), "exit_code": code},
        }
    )


def _expiry_note(result: VerifyResult) -> str | None:
    if not result.expiry_changed or result.opco_expiry is None:
        return None
    if result.recorded_expiry is None:
        return (
            "Échéance enregistrée : aucune ; l'OPCO indique le "
            f"{result.opco_expiry:%d/%m/%Y} (mise à jour)."
        )
    return (
        f"L'échéance diffère : enregistrée le {result.recorded_expiry:%d/%m/%Y}, l'OPCO indique le "
        f"{result.opco_expiry:%d/%m/%Y} (mise à jour)."
    )


def _render_single(result: VerifyResult) -> None:
    from cfakey.cli.output import print_error  # noqa: PLC0415
    from cfakey.core.verify import Outcome  # noqa: PLC0415

    who = f"{result.opco_name} — {result.cfa_name} ({result.siret})"
    if result.outcome is Outcome.VALID:
        via = f" [{result.endpoint}]" if result.endpoint else ""
        sys.stdout.write(f"{who} : valide — {result.detail}{via}.\n")
        note = _expiry_note(result)
        if note:
            sys.stdout.write(note + "\n")
        return
    print_error(f"{who} : {result.outcome.label} — {result.detail}.", hint=result.advice)


def _render_table(results: list[VerifyResult], elapsed: float) -> None:
    from cfakey.cli.output import print_notice, text_table  # noqa: PLC0415
    from cfakey.core.verify import Outcome, by_urgency  # noqa: PLC0415

    ordered = by_urgency(results)
    rows = []
    for result in ordered:
        end = f"{result.opco_expiry:%d/%m/%Y}" if result.opco_expiry else ""
        if result.expiry_changed:
            end += " (modifiée)"
        rows.append(
            (
                result.outcome.label,
                result.opco_name,
                f"{result.cfa_name} ({result.siret})",
                end,
                result.detail,
            )
        )
    # Plain text: a rich table of 1,100 rows takes about a second to lay out.
    headers = ("Résultat", "OPCO", "CFA", "Fin de validité", "Détail")
    lines = ["Vérification des clés auprès des OPCO", *text_table(headers, rows)]
    sys.stdout.write("\n".join(lines) + "\n")
    counts = _counts(results)
    parts = [f"{count} {Outcome(value).label}" for value, count in counts.items()]
    seconds = f"{elapsed:.1f}".replace(".", ",")
    print_notice(f"{len(results)} clé(s) vérifiée(s) en {seconds} s : " + ", ".join(parts) + ".")
    seen: set[tuple[str, str]] = set()
    for result in ordered:
        if result.outcome is Outcome.VALID or (result.outcome.value, result.opco_id) in seen:
            continue
        seen.add((result.outcome.value, result.opco_id))
        print_notice(f"• {result.opco_name} ({result.outcome.label}) : {result.advice}")


# -- config --------------------------------------------------------------------------------


def _parse_setting(context: AppContext, key: str) -> tuple[str, str | None]:
    """The setting's name, and the OPCO id when it names an OAuth client secret.

    An ``opco.<id>.…`` setting must use the registry id, not a name (« opco.Atlas.… »).
    """
    from cfakey.errors import UsageError  # noqa: PLC0415

    key = key.strip()
    match = OPCO_SETTING.fullmatch(key)
    if match is not None and all(opco.id != match["opco"] for opco in context.registry.opcos):
        opco = context.resolve_opco(match["opco"])  # an unknown name raises its own error
        raise UsageError(
            f"« {match['opco']} » n'est pas un identifiant d'OPCO.",
            hint=f"Utilisez l'identifiant : opco.{opco.id}.{match['rest']}",
        )
    secret = SECRET_SETTING.fullmatch(key)
    return key, secret["opco"] if secret else None


def _coerce(key: str, value: str) -> Any:
    from cfakey.config import window_days  # noqa: PLC0415
    from cfakey.core.verify import check_base_url, check_header_value  # noqa: PLC0415

    if key.endswith(URL_SUFFIXES):
        return check_base_url(value)
    if key in HEADER_SETTINGS:
        return check_header_value(key, value)
    if key.endswith(INT_SUFFIXES):
        return window_days(key, value)
    return value.strip()


def _read_secret(label: str) -> str:
    from cfakey.errors import UsageError  # noqa: PLC0415

    if sys.stdin.isatty():
        secret = str(typer.prompt(label, hide_input=True, prompt_suffix=" : "))
    else:
        secret = sys.stdin.readline()
    secret = secret.strip()
    if not secret:
        raise UsageError("Secret vide : rien n'a été enregistré.")
    return secret


@config_app.command("set")
def config_set(
    ctx: typer.Context,
    key: Annotated[
        str, typer.Argument(metavar="CLE", help="Paramètre, par exemple opco.atlas.api_url.")
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
    from cfakey.cli.output import print_notice  # noqa: PLC0415
    from cfakey.config import require_known_key  # noqa: PLC0415
    from cfakey.errors import UsageError  # noqa: PLC0415
    from cfakey.stores.base import fingerprint, oauth_entry_name  # noqa: PLC0415

    context: AppContext = ctx.obj
    key, secret_opco = _parse_setting(context, key)
    if secret_opco is not None:
        if value is not None:
            raise UsageError(
                "Un secret ne se passe jamais en argument (il resterait dans l'historique "
                "et la liste des processus).",
                hint="Relancez sans valeur, il sera demandé en saisie masquée (ou lu sur "
                f"l'entrée standard) : cfakey config set {key}",
            )
        opco = context.registry.get(secret_opco)
        secret = _read_secret(f"Secret du client OAuth2 de {opco.name}")
        _store(context).put(oauth_entry_name(opco.id), secret)
        print_notice(
            f"Secret du client OAuth2 de {opco.name} enregistré dans le magasin de clés "
            f"(empreinte {fingerprint(secret)})."
        )
        return
    require_known_key(key)  # before quoting it below: it may be a key typed in the wrong place
    if value is None:
        raise UsageError(
            f"VALEUR manquante pour « {key} ».", hint=f"Exemple : cfakey config set {key} VALEUR"
        )
    config = context.config()
    config.set(key, _coerce(key, value))
    # Not the value: a key pasted in the wrong place must not be written back (config get).
    print_notice(f"{key} enregistré.")


@config_app.command("get")
def config_get(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="CLE", help="Paramètre à afficher.")],
) -> None:
    """Affiche la valeur d'un paramètre (jamais celle d'un secret)."""
    from cfakey.cli.output import print_notice  # noqa: PLC0415
    from cfakey.config import require_known_key  # noqa: PLC0415
    from cfakey.core.verify import HEADER_DEFAULTS  # noqa: PLC0415
    from cfakey.errors import NotFoundError  # noqa: PLC0415
    from cfakey.stores.base import oauth_entry_name  # noqa: PLC0415

    context: AppContext = ctx.obj
    key, secret_opco = _parse_setting(context, key)
    if secret_opco is not None:
        if _store(context).get(oauth_entry_name(secret_opco)) is None:
            raise NotFoundError(
                f"Aucun secret enregistré pour « {key} ».", hint=f"cfakey config set {key}"
            )
        print_notice("Secret enregistré dans le magasin de clés (il n'est jamais affiché).")
        return
    require_known_key(key)
    value = context.config().get(key)
    if value is None:
        if key in HEADER_DEFAULTS:
            sys.stdout.write(f"{HEADER_DEFAULTS[key]}\n")
            print_notice("(valeur par défaut)")
            return
        raise NotFoundError(
            f"Le paramètre « {key} » n'est pas réglé.", hint=f"cfakey config set {key} VALEUR"
        )
    sys.stdout.write(f"{value}\n")


@config_app.command("unset")
def config_unset(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(metavar="CLE", help="Paramètre à effacer.")],
) -> None:
    """Efface un paramètre (ou le secret OAuth2 du magasin de clés)."""
    from cfakey.cli.output import print_notice  # noqa: PLC0415
    from cfakey.config import require_known_key  # noqa: PLC0415
    from cfakey.stores.base import oauth_entry_name  # noqa: PLC0415

    context: AppContext = ctx.obj
    key, secret_opco = _parse_setting(context, key)
    if secret_opco is not None:
        removed = _store(context).delete(oauth_entry_name(secret_opco))
    else:
        require_known_key(key)
        removed = context.config().unset(key)
    print_notice(f"{key} effacé." if removed else f"{key} n'était pas réglé : rien à faire.")


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
    from cfakey.cli.output import print_json, print_notice  # noqa: PLC0415
    from cfakey.config import KNOWN_KEYS  # noqa: PLC0415

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
    for name in sorted(config.values):
        sys.stdout.write(f"{name} = {config.values[name]}\n")
    if not config.values:
        print_notice(f"Aucun paramètre réglé ({config.path}).")
    if show_all:
        sys.stdout.write("\nParamètres reconnus :\n")
        for name, text in known:
            sys.stdout.write(f"  {name:<32} {text}\n")
