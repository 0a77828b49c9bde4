"""``cfakey doctor``: render the diagnosis of ``core/doctor.py``, exit 1 when unhealthy."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfakey.cli.options import JSON_OPTION
from cfakey.cli.terminal import print_json, to_jsonable, write_lines
from cfakey.core.codes import DatabaseCheck

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.core.doctor import DoctorInputs, DoctorReport
    from cfakey.stores.base import KeyStore


def register(app: typer.Typer) -> None:
    """Add the ``doctor`` command to ``app``."""
    app.command("doctor")(doctor)


def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Diagnostic : magasin de clés et pourquoi, trousseau, chemins, registre, clés orphelines.

    Code de sortie 0 si tout va bien, 1 sinon ; chaque problème vient avec la commande
    qui le corrige.
    """
    from cfakey.core.doctor import diagnose

    report = diagnose(doctor_inputs(ctx.obj))
    if as_json:
        print_json(to_jsonable_report(report))
    else:
        _render_doctor(report)
    if not report.healthy:
        raise typer.Exit(1)


def doctor_inputs(context: AppContext) -> DoctorInputs:
    """What ``doctor`` examines, from the command's context; the store is opened without asking."""
    from cfakey.core.doctor import DoctorInputs

    return DoctorInputs(
        paths=context.paths,
        config=context.config,
        registry=lambda: (context.registry_source, context.registry),
        store_decision=context.store_decision,
        keyring_probe=context.keyring_probe,
        metadata=lambda: context.metadata(recreate=True, refresh=False),
        key_store=lambda: context.key_store(interactive=False),
        recovery=lambda: context.recovery,
        other_store=lambda kind: _other_store(context, kind),
    )


def _other_store(context: AppContext, kind: str) -> KeyStore | None:
    """Another kind's store, opened with what the environment gives: no prompt, no choice."""
    from cfakey.stores.file_store import password_source
    from cfakey.stores.kinds import STORE_KINDS, StoreSettings
    from cfakey.stores.selection import open_store

    if kind not in STORE_KINDS:
        return None
    settings = StoreSettings(
        context.paths,
        context.env,
        password_source(context.env, None),
        context.keyring_probe,
        context.config_value,
    )
    store = open_store(kind, settings)
    if store.needs_settling:  # the keyring of an earlier version: its entries, moved once
        from cfakey.core.store_admin import settle_store

        settle_store(store, context.metadata(), [opco.id for opco in context.registry.opcos])
    return store


def to_jsonable_report(report: DoctorReport) -> dict[str, Any]:
    """The ``doctor --json`` object: each enumerated value with its ``…_label`` beside it."""
    from cfakey.stores.kinds import STORE_KINDS
    from cfakey.stores.selection import ORIGINS

    labels = {
        "store": STORE_KINDS[report.store].noun if report.store in STORE_KINDS else None,
        "store_origin": ORIGINS.get(report.store_origin or ""),
        "database_check": DatabaseCheck.label_of(report.database_check),
    }
    data: dict[str, Any] = {}
    for name, value in to_jsonable(report).items():
        data[name] = value
        if name in labels:
            data[f"{name}_label"] = labels[name]
    data["healthy"] = report.healthy
    return data


def _keyring_lines(report: DoctorReport) -> list[str]:
    """The keyring's part of ``doctor``: backends by their French names, never class paths."""
    from cfakey.stores.keyring_store import FAIL_BACKEND, backend_label

    if report.keyring_backend is None:
        return ["Trousseau du système (keyring)", "  non examiné"]
    chosen = f"{backend_label(report.keyring_backend)} ({report.keyring_chosen_by})"
    if report.keyring_backend != FAIL_BACKEND:
        usable = report.keyring_usable
        chosen += ", utilisable" if usable else f", inutilisable : {report.keyring_reason}"
    return [
        "Trousseau du système (keyring)",
        f"  choisi     : {chosen}",
        *(
            f"  écarté     : {backend_label(item.name)} : {item.reason}"
            for item in report.keyring_rejected
        ),
    ]


def _render_doctor(report: DoctorReport) -> None:
    lines = ["Magasin de clés"]
    # The reason starts with the store's French name (« fichier chiffré, choisi par … »).
    reason = report.store_reason or "aucun : choix illisible, voir les problèmes"
    lines.append(f"  en service : {reason}")
    if report.store_description:
        lines.append(f"  détail     : {report.store_description}")
    lines.extend(_keyring_lines(report))
    lines.append("Chemins")
    for item in report.paths:
        mode = f"mode {item.mode}" if item.exists else "absent"
        lines.append(f"  {item.label:<26} {item.path} ({mode})")
    lines.append("Registre des OPCO")
    if report.registry_version is None:
        lines.append("  illisible (voir les problèmes)")
    else:
        lines.append(
            f"  livré      : {report.registry_shipped} "
            f"(version {report.registry_version}, {report.registry_opcos} OPCO)"
        )
        lines.append(f"  surcouche  : {report.registry_overlay or 'aucune'}")
    lines.append("Base de métadonnées")
    lines.append(f"  intégrité  : {DatabaseCheck.label_of(report.database_check)}")
    lines.append("Cohérence métadonnées / magasin")
    lines.extend(f"  {line}" for line in report.recovered)
    lines.append(
        f"  {report.keys_checked} clé(s) vérifiée(s), "
        f"{len(report.missing_secrets)} secret(s) manquant(s), "
        f"{len(report.mismatched)} empreinte(s) différente(s) des métadonnées"
    )
    if report.elsewhere:
        lines.append(f"  rangées dans un autre magasin : {len(report.elsewhere)}")
    if report.orphan_entries is None:
        lines.append("  entrées sans métadonnées : non vérifiable (ce magasin ne sait pas lister)")
    else:
        lines.append(f"  entrées sans métadonnées : {len(report.orphan_entries)}")
    lines.extend(_removed_lines(report))
    if report.healthy:
        lines.append("\nTout va bien.")
    else:
        lines.append(f"\n{len(report.problems)} problème(s) :")
        for problem in report.problems:
            lines.append(f"  - {problem.message}")
            lines.append(f"    correction : {problem.fix}")
    write_lines(lines)


def _removed_lines(report: DoctorReport) -> list[str]:
    """The temporary files, holding keys, that killed exports left and doctor removed."""
    if not report.removed_temporaries:
        return []
    from cfakey.core.export import removed_temporary_message

    return ["Écritures interrompues"] + [
        f"  {removed_temporary_message(Path(path))}" for path in report.removed_temporaries
    ]
