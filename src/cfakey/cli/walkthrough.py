"""The guided walkthrough of ``add`` and ``rotate``: the portal's steps, the key, its expiry.

The walkthrough asks; :func:`cfakey.core.keys.save_key` decides and stores. Every question
goes through :class:`cfakey.cli.terminal.Dialogue`, so a script answers with options
instead, and the key is never echoed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cfakey.cli.options import CFA_OPTION, OPCO_ARG, YES_OPTION
from cfakey.cli.terminal import (
    Dialogue,
    bold,
    date_text,
    print_notice,
    print_warning,
    tries_left,
)
from cfakey.errors import AlreadyExistsError, NotFoundError, UsageError

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.core.keys import CleanKey, Expiry, Saved
    from cfakey.core.peak import Peak
    from cfakey.metadata import CfaRecord, KeyRecord
    from cfakey.registry.model import Opco
    from cfakey.stores.base import KeyStore

REVOKE_WARNING = (
    "Générer une nouvelle clé révoque l'ancienne : mettez votre logiciel à jour aussitôt."
)
#: After a replacement, by what the registry knows of the OPCO (True, unknown, False).
OLD_KEY_NOTICES = {
    True: "L'ancienne clé ne fonctionne plus : mettez à jour le logiciel du CFA sans attendre.",
    None: "L'ancienne clé a peut-être cessé de fonctionner : mettez à jour le logiciel du CFA "
    "sans attendre.",
    False: "L'ancienne clé reste valable chez cet OPCO ; mettez quand même à jour le logiciel "
    "du CFA.",
}
SHOWN_ONCE_WARNING = "La clé ne s'affiche qu'une fois : copiez-la maintenant."


def register(app: typer.Typer) -> None:
    """Add ``add`` and ``rotate`` to ``app``."""
    app.command("add")(add)
    app.command("rotate")(rotate)


FROM_FILE_OPTION = typer.Option(
    "--from-file", metavar="FICHIER", help="Lit la clé dans un fichier (le .txt d'OPCO EP)."
)
EXPIRES_OPTION = typer.Option(
    "--expires",
    metavar="DATE",
    help="Date d'expiration : JJ/MM/AAAA, JJ/MM/AA, « 21 mars 2027 » ou AAAA-MM-JJ, HH:MM permis.",
)
LIFETIME_OPTION = typer.Option(
    "--lifetime-months",
    metavar="N",
    help="Durée de vie choisie sur le portail, en mois (Ocapiat : 1 à 6).",
)
INTERACTIVE_OPTION = typer.Option(
    "--interactive/--no-interactive",
    help="Force (ou supprime) les questions et les pauses ; par défaut : si l'entrée est un "
    "terminal.",
)


def _key_command(*, rotation: bool, summary: str) -> Callable[..., None]:
    """``add`` or ``rotate``: the same options, the same walkthrough."""

    def command(  # noqa: PLR0917 - typer passes each option as a parameter
        ctx: typer.Context,
        opco_name: Annotated[str, OPCO_ARG],
        cfa: Annotated[str | None, CFA_OPTION] = None,
        from_file: Annotated[Path | None, FROM_FILE_OPTION] = None,
        expires: Annotated[str | None, EXPIRES_OPTION] = None,
        lifetime_months: Annotated[int | None, LIFETIME_OPTION] = None,
        yes: Annotated[bool, YES_OPTION] = False,
        interactive: Annotated[bool | None, INTERACTIVE_OPTION] = None,
    ) -> None:
        given = KeyInput(cfa, from_file, expires, lifetime_months, yes, interactive)
        _lifecycle(ctx.obj, opco_name, given, rotation=rotation)

    command.__doc__ = summary
    return command


add = _key_command(
    rotation=False,
    summary="Guide pas à pas l'obtention d'une clé sur le portail de l'OPCO, puis l'enregistre.",
)
rotate = _key_command(
    rotation=True,
    summary="Renouvelle une clé : avertissement de révocation, étapes, nouvelle clé, journal.",
)


@dataclass(frozen=True)
class KeyInput:
    """What ``add`` and ``rotate`` were told on the command line."""

    cfa: str | None
    from_file: Path | None
    expires: str | None
    lifetime_months: int | None
    yes: bool
    interactive: bool | None


def _lifecycle(
    context: AppContext, opco_name: str, given: KeyInput, *, rotation: bool = False
) -> None:
    from cfakey.core import keys

    opco, cfa, existing = _target(context, opco_name, given, rotation=rotation)
    dialogue = Dialogue(given.interactive, assume_yes=given.yes)
    # Open the store and ask its password now, not after the operator went through the
    # portal; for keys that come by e-mail, only once the e-mail has arrived.
    store = _prepared_store(context) if opco.request is None else None
    if dialogue.interactive:
        verb = "Renouvellement" if rotation else "Ajout"
        print_notice(
            bold(f"{verb} de la clé {opco.name} ({opco.key_label}) pour {cfa.name} ({cfa.siret})")
        )
    if existing is not None and not rotation:
        _confirm_replacement(dialogue, opco, cfa, existing, yes=given.yes)
    if dialogue.interactive and given.from_file is None:
        _peak_hint(context, opco)
    if (
        given.from_file is None
        and dialogue.interactive
        and not _walkthrough(dialogue, opco, cfa, rotation=rotation)
    ):
        return
    if store is None:
        store = _prepared_store(context)
    key = _ask_key(dialogue, opco, given.from_file)
    if key.trimmed:
        print_notice("Espaces ou sauts de ligne retirés au début ou à la fin de la clé.")
    for warning in key.warnings:
        print_warning(warning)
    expiry = _expiry(
        context, dialogue, opco, key, expires=given.expires, lifetime_months=given.lifetime_months
    )
    saved = keys.save_key(
        store,
        context.metadata(),
        context.registry,
        cfa=cfa,
        opco=opco,
        key=key,
        expiry=expiry,
        obtained=context.today(),
        now=context.now(),
        replace=True,
        allow_duplicate=_confirm_duplicate(context, dialogue, cfa, opco, key, yes=given.yes),
        rotation=rotation,
    )
    _report_saved(context, opco, cfa, saved, expiry)


def _target(
    context: AppContext, opco_name: str, given: KeyInput, *, rotation: bool
) -> tuple[Opco, CfaRecord, KeyRecord | None]:
    """The OPCO, the CFA and the key already there; what cannot work fails before any step."""
    from cfakey.core.cfas import resolve_cfa
    from cfakey.expiry import parse_date

    opco = context.resolve_opco(opco_name)
    metadata = context.settled_metadata()  # the key already there, read after recovery
    cfa = resolve_cfa(metadata, given.cfa)
    if given.expires is not None:
        parse_date(given.expires)  # an unreadable date fails before any step
    existing = metadata.get_key(cfa.siret, opco.id)
    if rotation and existing is None:
        raise NotFoundError(
            f"Aucune clé {opco.name} enregistrée pour le CFA {cfa.siret} : rien à renouveler.",
            hint=f"Pour en ajouter une : cfakey add {opco.id} --cfa {cfa.siret}.",
        )
    return opco, cfa, existing


def _prepared_store(context: AppContext) -> KeyStore:
    store = context.key_store()
    store.prepare()
    return store


def _confirm_duplicate(
    context: AppContext, dialogue: Dialogue, cfa: CfaRecord, opco: Opco, key: CleanKey, *, yes: bool
) -> bool:
    """The same key already stored elsewhere: confirmed when someone can be asked."""
    from cfakey.core import keys
    from cfakey.stores.base import fingerprint

    conflicts = keys.find_conflicts(
        context.metadata(), context.registry, cfa, opco.id, fingerprint(key.value)
    )
    # Without a question to ask, save_key refuses with the same sentence: say it once.
    if not conflicts.same_key_elsewhere or not (dialogue.interactive or yes):
        return False
    print_warning(
        f"Cette clé est déjà enregistrée pour {keys.describe_slots(conflicts.same_key_elsewhere)}."
    )
    if not dialogue.confirm("Une clé collée au mauvais endroit ? L'enregistrer quand même ?"):
        raise _abandon()
    return True


def _abandon() -> typer.Exit:
    print_notice("Abandon : rien n'a été enregistré.")
    return typer.Exit(1)


def _confirm_replacement(
    dialogue: Dialogue, opco: Opco, cfa: CfaRecord, existing: KeyRecord, *, yes: bool
) -> None:
    """``add`` over an existing key: refused in scripts without --yes, else confirmed."""
    if not dialogue.interactive and not yes:
        raise AlreadyExistsError(
            f"Une clé {opco.name} est déjà enregistrée pour le CFA {cfa.siret} "
            f"(empreinte {existing.fingerprint}) : rien n'a été modifié.",
            hint="Pour la remplacer : ajoutez --yes, ou utilisez cfakey rotate.",
        )
    print_notice(
        f"Une clé {opco.name} est déjà enregistrée pour ce CFA "
        f"(empreinte {existing.fingerprint}, "
        f"échéance {date_text(existing.expires_at)})."
    )
    if not dialogue.confirm("La remplacer (ce sera enregistré comme un renouvellement) ?"):
        raise _abandon()


def _ask_key(dialogue: Dialogue, opco: Opco, from_file: Path | None) -> CleanKey:
    """The key from the file, stdin or a hidden prompt; on a terminal, three tries."""
    from cfakey.core import keys

    if from_file is not None:
        return keys.clean_key(_read_key_file(from_file), opco)
    tries = 3 if dialogue.tty else 1
    for attempt in range(1, tries + 1):
        raw = dialogue.secret("Collez la clé (saisie masquée) : ", on_empty=_no_key)
        if dialogue.interactive and raw.strip():  # an empty paste is refused on its own
            # The length tells a truncated paste from a whole one; never a character of it.
            print_notice(f"Clé reçue : {len(raw.strip())} caractères.")
        try:
            return keys.clean_key(raw, opco)
        except UsageError as error:
            if attempt == tries:
                raise
            print_warning(f"{error.message} Réessayez ({tries_left(tries - attempt)}).")
    raise AssertionError("unreachable")  # pragma: no cover


def _no_key() -> UsageError:
    return UsageError(
        "Aucune clé reçue : l'entrée standard est vide "
        "et il n'y a pas de terminal pour la demander.",
        hint="Passez la clé sur l'entrée standard (cfakey add OPCO < fichier) ou avec --from-file.",
    )


def _walkthrough(dialogue: Dialogue, opco: Opco, cfa: CfaRecord, *, rotation: bool) -> bool:
    """The steps, one at a time; ``False`` when the operator must come back later."""
    from cfakey.registry.names import normalize

    if opco.obtain == "not_published":
        print_notice(
            f"{opco.name} ne publie pas de procédure pour obtenir la clé : "
            "demandez-la directement à l'OPCO."
        )
        _support(opco)
        print_notice("Si vous l'avez déjà reçue de l'OPCO, vous pouvez l'enregistrer maintenant.")
        return True
    _registry_warnings(opco, rotation=rotation)
    if opco.request is not None:
        request = opco.request
        print_notice(f"\n{bold('Demande')} ({request.who_requests}) : {request.form.name}")
        print_notice(f"  {request.form.url}")
        print_notice("  À fournir : " + ", ".join(request.fields) + ".")
        print_notice(f"  Réception : {request.delivery}")
        if not dialogue.confirm("Avez-vous déjà reçu la clé par e-mail ?"):
            if dialogue.confirm(
                "Ouvrir le formulaire de demande dans le navigateur ?", default=True
            ):
                from cfakey.cli.registry_cmds import open_in_browser

                open_in_browser(opco)
            target = f"{opco.id} --cfa {cfa.siret}"
            command = "rotate" if rotation else "add"
            print_notice(f"Quand l'e-mail arrivera, revenez avec : cfakey {command} {target}")
            print_notice(f"Demande envoyée ? Notez-la : cfakey request add {target}")
            return False
        if opco.shown_once:
            print_warning(SHOWN_ONCE_WARNING)
        return True
    if opco.portal_url and dialogue.confirm(
        "Ouvrir le portail de l'OPCO dans le navigateur ?", default=True
    ):
        from cfakey.cli.registry_cmds import open_in_browser

        open_in_browser(opco)
    generating = next(
        (index for index, step in enumerate(opco.steps) if "gener" in normalize(step)),
        0,
    )
    total = len(opco.steps)
    for index, step in enumerate(opco.steps):
        if index == generating and (opco.regeneration_revokes or rotation):
            said = (w for w in opco.warnings if _revokes_words(w))  # the OPCO's own words first
            print_warning(next(said, REVOKE_WARNING))
        print_notice(f"\n{bold(f'Étape {index + 1}/{total}')} : {step}")
        if index == generating and opco.shown_once:
            print_warning(SHOWN_ONCE_WARNING)
        if index < total - 1:
            dialogue.pause()
    if opco.downloadable:
        print_notice(
            f"(Fichier téléchargé ? Relancez avec : cfakey add {opco.id} --from-file FICHIER.txt)"
        )
    return True


def _registry_warnings(opco: Opco, *, rotation: bool) -> None:
    for warning in opco.warnings:
        if not _said_at_the_step(opco, warning, rotation=rotation):
            print_warning(warning)


def _said_at_the_step(opco: Opco, warning: str, *, rotation: bool) -> bool:
    """Whether a registry warning repeats :data:`REVOKE_WARNING` or :data:`SHOWN_ONCE_WARNING`,
    which the walkthrough shows where they matter: each is said once, there."""
    from cfakey.registry.names import normalize

    words = normalize(warning)
    revokes = bool(opco.regeneration_revokes or rotation) and opco.request is None
    return (revokes and _revokes_words(warning)) or (
        opco.shown_once and ("seulefois" in words or "quunefois" in words)
    )


def _revokes_words(warning: str) -> bool:
    """Whether a registry warning says a new key revokes (« écrase ») the previous one."""
    from cfakey.registry.names import normalize

    words = normalize(warning)
    return ("revoqu" in words or "ecrase" in words) and ("ancien" in words or "precedent" in words)


def _support(opco: Opco) -> None:
    support = opco.support
    contacts = [*support.emails, *support.phones, *(link.url for link in support.web)]
    if contacts:
        print_notice("  Support : " + " ; ".join(contacts))


def _expiry(
    context: AppContext,
    dialogue: Dialogue,
    opco: Opco,
    key: CleanKey,
    *,
    expires: str | None,
    lifetime_months: int | None,
) -> Expiry:
    """The key's expiry; a typed answer the rules refuse is asked again (three tries)."""
    from cfakey.core import keys
    from cfakey.expiry import parse_months

    def resolve(expires: str | None, lifetime_months: int | None) -> Expiry:
        return keys.resolve_expiry(
            opco,
            key.value,
            obtained=context.today(),
            now=context.now(),
            expires=expires,
            lifetime_months=lifetime_months,
        )

    question = keys.expiry_question(opco, key.value)
    rule = opco.expiry
    optional = rule.jwt_exp_precedence
    if expires is not None or lifetime_months is not None:
        expiry = resolve(expires, lifetime_months)
    elif question == "lifetime":
        span = f"{rule.lowest_months} à {rule.max_months}"
        expiry = dialogue.ask_until(
            f"Durée de vie choisie sur le portail ({span} mois) : ",
            lambda answer: resolve(None, parse_months(answer)),
            needed=f"--lifetime-months N ({span})",
            expected=f"un nombre de mois de {span}, par exemple {rule.max_months}",
        )
    elif question == "date" and (dialogue.interactive or not optional):
        suffix = " (Entrée si le portail n'en affiche pas)" if optional else ""
        expiry = dialogue.ask_until(
            f"Date d'expiration affichée par le portail, JJ/MM/AAAA [HH:MM]{suffix} : ",
            lambda answer: resolve(_typed_date(answer, optional=optional), None),
            needed="--expires JJ/MM/AAAA",
            expected="une date à venir, comme 21/03/2027 ou 21 mars 2027",
        )
    else:
        expiry = resolve(None, None)
    for note in expiry.notes:
        print_notice(note)
    _peak_warning(context, opco, expiry)
    return expiry


def _peak_window(context: AppContext, opco: Opco) -> tuple[Peak, int]:
    """The contract peak of the settings, and the OPCO's warning window (its lead)."""
    from cfakey.core.keys import window_for
    from cfakey.core.peak import configured_peak

    settings = context.config().values
    return configured_peak(settings), window_for(opco, opco.id, settings).warn_days


def _peak_hint(context: AppContext, opco: Opco) -> None:
    """Before the steps: the lifetime to choose on the portal to miss the peak (Ocapiat)."""
    from cfakey.core.peak import lifetime_hint

    peak, lead = _peak_window(context, opco)
    hint = lifetime_hint(opco, obtained=context.today(), peak=peak, lead_days=lead)
    if hint is not None:
        print_warning(hint)


def _peak_warning(context: AppContext, opco: Opco, expiry: Expiry) -> None:
    """A key that would expire in (or just before) the peak: said, never refused."""
    from cfakey.core.peak import peak_warning
    from cfakey.expiry import local_date

    if expiry.expires_at is None:
        return
    peak, lead = _peak_window(context, opco)
    warning = peak_warning(
        opco,
        local_date(expiry.expires_at),
        obtained=context.today(),
        peak=peak,
        lead_days=lead,
    )
    if warning is not None:
        print_warning(warning)


def _typed_date(answer: str, *, optional: bool) -> str | None:
    """The date typed at the prompt; an empty answer is no date when the portal may show none."""
    if answer:
        return answer
    if optional:
        return None
    raise UsageError("Date d'expiration manquante : le portail l'affiche à côté de la clé.")


def _report_saved(
    context: AppContext, opco: Opco, cfa: CfaRecord, saved: Saved, expiry: Expiry
) -> None:
    from cfakey.core.codes import source_label
    from cfakey.core.keys import days_until

    new_fp, old_fp = saved.record.fingerprint, saved.old_fingerprint
    if old_fp is None:
        print_notice(f"\nClé {opco.name} enregistrée pour {cfa.name} (empreinte {new_fp}).")
    else:
        print_notice(
            f"\nClé {opco.name} renouvelée pour {cfa.name} (empreinte {old_fp} → {new_fp})."
        )
    if expiry.expires_at is not None:
        days = days_until(expiry.expires_at, context.now())
        print_notice(
            f"Échéance : {date_text(expiry.expires_at)} "
            f"({days} jours ; {source_label(expiry.source)})."
        )
    else:
        rotation = opco.expiry.recommended_rotation_months
        advice = f" ; renouvellement conseillé tous les {rotation} mois" if rotation else ""
        print_notice(f"Échéance : aucune date connue{advice}.")
    print_notice(bold("\nEt maintenant :"))
    if old_fp is not None:
        print_warning(OLD_KEY_NOTICES[opco.regeneration_revokes])
    for number, (what, command) in enumerate(next_steps(context, opco, cfa), start=1):
        print_notice(f"  {number}. {what}")
        if command:
            print_notice(f"     {command}")


def next_steps(context: AppContext, opco: Opco, cfa: CfaRecord) -> list[tuple[str, str | None]]:
    """What to do after ``add`` or ``rotate``, each command runnable as printed, here.

    The export names its file (a terminal refuses keys on screen); verification is
    offered once the OPCO's API address is known, after the setting that gives it.
    """
    from cfakey.core.verify.plan import base_url_for

    steps: list[tuple[str, str | None]] = [
        (
            "Recopiez la clé dans le logiciel du CFA, ou exportez-la dans un fichier :",
            (
                f"cfakey export --opco {opco.id} --cfa {cfa.siret} --format env "
                f"--output {opco.id}-{cfa.siret}.env"
            ),
        )
    ]
    base_url, setting = base_url_for(opco, context.config(), recette=False)
    if base_url is None:
        steps.append(
            (
                (
                    "Pour la vérifier, indiquez l'adresse de l'API de l'OPCO "
                    "(donnée par l'éditeur du logiciel ou par l'OPCO) :"
                ),
                f"cfakey config set {setting} URL",
            )
        )
    oauth = f"opco.{opco.id}.oauth"
    if opco.api.oauth_client_required and not (
        context.config_value(f"{oauth}.token_url") and context.config_value(f"{oauth}.client_id")
    ):
        steps.append(
            (
                (
                    f"{opco.name} exige aussi le client OAuth2 de l'éditeur du logiciel : "
                    "voir « Client OAuth2 » dans docs/verify.md."
                ),
                None,
            )
        )
    else:
        then = "Vérifiez" if base_url is not None else "Puis vérifiez"
        steps.append(
            (
                f"{then} qu'elle est acceptée par l'OPCO :",
                f"cfakey verify {opco.id} --cfa {cfa.siret}",
            )
        )
    return steps


def _read_key_file(path: Path) -> str:
    from cfakey.userfiles import KEY_LIMIT, read_user_file

    data = read_user_file(path, "Fichier", limit=KEY_LIMIT)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"Le fichier {path} n'est pas un fichier texte UTF-8.") from None
