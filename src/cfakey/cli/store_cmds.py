"""``cfakey store password``: re-encrypt the encrypted-file store under a new password."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfakey.cli.options import JSON_OPTION

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.core.doctor import DoctorReport

store_app = typer.Typer(
    name="store",
    help="Magasin de clés : trousseau du système ou fichier chiffré.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add the ``store`` command group to ``app``."""
    app.add_typer(store_app)
    app.command("doctor")(doctor)


@store_app.command("password")
def change_password(ctx: typer.Context) -> None:
    """Change le mot de passe du fichier chiffré : toutes les clés sont ré-chiffrées d'un coup.

    Le mot de passe actuel est demandé d'abord (ou lu dans CFAKEY_FILE_PASSWORD), puis le
    nouveau, deux fois (ou lu dans CFAKEY_NEW_FILE_PASSWORD). Le fichier est remplacé
    d'un seul geste : une interruption laisse l'ancien intact.
    """
    from cfakey.cli.output import print_notice  # noqa: PLC0415
    from cfakey.cli.prompts import prompt_file_password  # noqa: PLC0415
    from cfakey.errors import StoreUnavailableError, UsageError  # noqa: PLC0415
    from cfakey.stores.file_store import NEW_PASSWORD_ENV, EncryptedFileStore  # noqa: PLC0415

    context: AppContext = ctx.obj
    if context.store_decision().kind == "keyring":
        raise UsageError(
            "Le magasin en service est le trousseau du système : il n'a pas de mot de passe "
            "propre à cfakey.",
            hint="Le fichier chiffré s'utilise avec --store file ou CFAKEY_STORE=file.",
        )
    store = context.key_store()  # the keyring does not work: the file, if the operator agrees
    assert isinstance(store, EncryptedFileStore)  # noqa: S101 - the only other kind
    count = len(store.unlock())
    new_password = context.env.get(NEW_PASSWORD_ENV)
    if not new_password:
        if not sys.stdin.isatty():
            raise StoreUnavailableError(
                "Le nouveau mot de passe du fichier chiffré est nécessaire, mais aucun terminal "
                "ne permet de le demander.",
                hint=f"Sans terminal, donnez-le dans la variable {NEW_PASSWORD_ENV}.",
            )
        new_password = prompt_file_password(new=True)
    store.change_password(new_password)
    context.metadata().log("store_password_changed", detail=str(store.path))
    print_notice(
        f"Mot de passe du fichier chiffré changé : {count} clé(s) ré-chiffrée(s) dans {store.path}."
    )


@store_app.command("use")
def use_store(
    ctx: typer.Context,
    kind: Annotated[str, typer.Argument(metavar="keyring|file", help="Magasin à retenir.")],
) -> None:
    """Retient le magasin de clés à utiliser : trousseau du système ou fichier chiffré.

    Les clés déjà rangées ne sont pas déplacées : exportez-les puis réimportez-les.
    """
    from cfakey.cli.output import print_notice  # noqa: PLC0415

    context: AppContext = ctx.obj
    choice = kind.strip().lower()
    context.config().set("store", choice)
    label = "le trousseau du système" if choice == "keyring" else "le fichier chiffré"
    print_notice(f"Magasin de clés retenu : {label} (dans {context.paths.config_file}).")


def doctor(
    ctx: typer.Context,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Diagnostic : magasin de clés et pourquoi, trousseau, chemins, registre, clés orphelines.

    Code de sortie 0 si tout va bien, 1 sinon ; chaque problème vient avec la commande
    qui le corrige.
    """
    from cfakey.cli.output import print_json  # noqa: PLC0415
    from cfakey.core.doctor import diagnose  # noqa: PLC0415

    context: AppContext = ctx.obj
    report = diagnose(context)
    if as_json:
        print_json({**to_jsonable_report(report), "healthy": report.healthy})
    else:
        _render_doctor(report)
    if not report.healthy:
        raise typer.Exit(1)


def to_jsonable_report(report: DoctorReport) -> dict[str, Any]:
    """The ``doctor --json`` object."""
    from cfakey.cli.output import to_jsonable  # noqa: PLC0415

    data: dict[str, Any] = to_jsonable(report)
    return data


_DATABASE_CHECKS = {
    "ok": "vérifiée, sans anomalie",
    "damaged": "endommagée (voir les problèmes)",
    "unchecked": "non vérifiée : la base ne s'ouvre pas (voir les problèmes)",
}


def _render_doctor(report: DoctorReport) -> None:
    lines = ["Magasin de clés"]
    reason = report.store_reason or "choix illisible, voir les problèmes"
    lines.append(f"  en service : {report.store or 'aucun'} ({reason})")
    if report.store_description:
        lines.append(f"  détail     : {report.store_description}")
    lines.append("Trousseau du système (keyring)")
    if report.keyring_backend is None:
        lines.append("  non examiné")
    else:
        state = "utilisable" if report.keyring_usable else f"inutilisable : {report.keyring_reason}"
        lines.append(
            f"  choisi     : {report.keyring_backend} ({report.keyring_chosen_by}), {state}"
        )
        lines.extend(
            f"  écarté     : {item.name} : {item.reason}" for item in report.keyring_rejected
        )
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
    lines.append(f"  intégrité  : {_DATABASE_CHECKS[report.database_check]}")
    lines.append("Cohérence métadonnées / magasin")
    lines.extend(f"  {line}" for line in report.recovered)
    lines.append(
        f"  {report.keys_checked} clé(s) vérifiée(s), "
        f"{len(report.missing_secrets)} secret(s) manquant(s), "
        f"{len(report.mismatched)} empreinte(s) différente(s) des métadonnées"
    )
    if report.orphan_entries is None:
        lines.append("  entrées sans métadonnées : non vérifiable (ce magasin ne sait pas lister)")
    else:
        lines.append(f"  entrées sans métadonnées : {len(report.orphan_entries)}")
    if report.healthy:
        lines.append("\nTout va bien.")
    else:
        lines.append(f"\n{len(report.problems)} problème(s) :")
        for problem in report.problems:
            lines.append(f"  - {problem.message}")
            lines.append(f"    correction : {problem.fix}")
    sys.stdout.write("\n".join(lines) + "\n")
