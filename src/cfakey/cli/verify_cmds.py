"""``cfakey verify``: live check of the stored keys against the OPCOs' API."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.options import JSON_OPTION, OPCO_ARG
from cfakey.cli.terminal import (
    decimal_text,
    print_error,
    print_json,
    print_notice,
    progress_bar,
    text_table,
    write_lines,
)
from cfakey.errors import ExitCode

if TYPE_CHECKING:
    from collections.abc import Callable

    from cfakey.context import AppContext
    from cfakey.core.verify import VerifyResult
    from cfakey.metadata import KeyRecord


def register(app: typer.Typer) -> None:
    """Add ``verify`` to ``app``."""
    app.command("verify")(verify)


# -- verify --------------------------------------------------------------------------------


def verify(  # noqa: PLR0917 - typer passes one parameter per option
    ctx: typer.Context,
    opco_name: Annotated[str | None, OPCO_ARG] = None,
    all_keys: Annotated[
        bool,
        typer.Option(
            "--all", help="Vérifie toutes les clés enregistrées (celles de --cfa, de --opco)."
        ),
    ] = False,
    opcos: Annotated[
        list[str] | None,
        typer.Option(
            "--opco",
            metavar="OPCO",
            help="OPCO dont vérifier la clé (répétable) ; avec --all, dans tous les CFA.",
        ),
    ] = None,
    cfa: Annotated[
        str | None,
        typer.Option(
            "--cfa",
            metavar="CFA",
            help="CFA concerné : SIRET, nom, ou SIREN (tous ses établissements).",
        ),
    ] = None,
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
    from cfakey.core import verify as engine

    context: AppContext = ctx.obj
    engine.check_selection(
        opco_given=bool(opco_name),
        all_keys=all_keys,
        api_url=api_url,
        opco_options=len(set(opcos or ())),
    )
    opco_id = context.resolve_opco(opco_name).id if opco_name else None
    settings = engine.settings_from_config(
        context.config(), timeout=timeout, concurrency=concurrency, ca_bundle=ca_bundle
    )
    request = engine.VerifyRequest(
        opco_id=opco_id,
        cfa_query=cfa,
        all_keys=all_keys,
        api_url=api_url,
        recette=recette,
        opco_ids=tuple(context.resolve_opco(name).id for name in opcos or ()),
    )
    tls = engine.TlsPreparation(settings.ca_bundle)  # overlaps the key store's unlocking
    metadata = context.metadata()
    store = context.key_store()
    jobs = engine.plan_jobs(metadata, store, context.config(), context.registry, request)
    if not jobs:
        _render_nothing(as_json=as_json)
        return
    started = time.monotonic()
    run = functools.partial(
        engine.run_and_record,
        metadata,
        jobs,
        settings,
        transport=context.http_transport,
        ssl_context=tls.ssl_context(),
        clock=context.clock,
        publish=_team_publisher(context),
    )
    several = all_keys or len(jobs) > 1
    unchecked = 0
    try:
        if several and not as_json:
            with progress_bar("Vérification", len(jobs), elapsed=True) as update:
                results = run(on_result=None if update is None else lambda _: update(advance=1))
        else:
            results = run()
    except engine.VerifyInterrupted as interrupted:
        results, unchecked = interrupted.results, interrupted.unchecked
    _render(results, time.monotonic() - started, as_json=as_json, several=several)
    if unchecked:
        print_notice(
            f"Interrompu : {unchecked} clé(s) non vérifiée(s) ; les {len(results)} résultat(s) "
            "reçu(s) sont enregistrés (voir cfakey journal)."
        )
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    code = engine.overall_exit_code(results)
    if code:
        raise typer.Exit(int(code))


def _render(results: list[VerifyResult], elapsed: float, *, as_json: bool, several: bool) -> None:
    from cfakey.core.verify import overall_exit_code

    if as_json:
        _render_json(results, int(overall_exit_code(results)))
    elif several:
        _render_table(results, elapsed)
    elif results:
        _render_single(results[0])


def _render_nothing(*, as_json: bool) -> None:
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
    from cfakey.core.verify import by_urgency

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
    from cfakey.core.verify import Outcome

    who = f"{result.opco_name} — {result.cfa_name} ({result.siret})"
    if result.outcome is Outcome.VALID:
        via = f" [{result.endpoint}]" if result.endpoint else ""
        note = _expiry_note(result)
        write_lines([f"{who} : valide — {result.detail}{via}.", *([note] if note else [])])
        return
    print_error(f"{who} : {result.outcome.label} — {result.detail}.", hint=result.advice)


def _render_table(results: list[VerifyResult], elapsed: float) -> None:
    from cfakey.core.verify import Outcome, by_urgency

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
    write_lines(["Vérification des clés auprès des OPCO", *text_table(headers, rows)])
    counts = _counts(results)
    parts = [f"{count} {Outcome(value).label}" for value, count in counts.items()]
    print_notice(
        f"{len(results)} clé(s) vérifiée(s) en {decimal_text(elapsed)} s : "
        + ", ".join(parts)
        + "."
    )
    seen: set[tuple[str, str]] = set()
    for result in ordered:
        if result.outcome is Outcome.VALID or (result.outcome.value, result.opco_id) in seen:
            continue
        seen.add((result.outcome.value, result.opco_id))
        print_notice(f"• {result.opco_name} ({result.outcome.label}) : {result.advice}")


def _team_publisher(context: AppContext) -> Callable[[list[KeyRecord]], None] | None:
    """A team store: each kept verification goes into its key's engine metadata."""
    catalog = context.team_catalog()
    if catalog is None:
        return None
    from cfakey.core.team_sync import publish_verifications

    return functools.partial(publish_verifications, catalog)
