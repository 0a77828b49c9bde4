"""The key lifecycle commands: ``add`` (guided walkthrough), ``list``, ``show``, ``rotate``,
``remove``, ``check``, ``import`` and ``journal``.

``list`` and ``check`` read the metadata database only and write plain text, without
rich: they must stay quick with a thousand keys, and they run from cron.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cfakey.cli.options import CFA_OPTION, JSON_OPTION, OPCO_ARG

if TYPE_CHECKING:
    from datetime import datetime

    from cfakey.context import AppContext
    from cfakey.core.keys import CleanKey, Expiry, KeyRow, Overview, Saved
    from cfakey.metadata import CfaRecord, KeyRecord
    from cfakey.registry.model import Opco
    from cfakey.stores.base import KeyStore

YES_OPTION = typer.Option("--yes", "-y", help="Répond oui aux confirmations (pour les scripts).")

# Short column labels for the matrix, so that 11 OPCOs fit an 80-column terminal.
SHORT_LABELS = {
    "afdas": "Afdas",
    "akto": "AKTO",
    "atlas": "Atlas",
    "constructys": "Const",
    "opcommerce": "Opcom",
    "ocapiat": "Ocap",
    "opco2i": "2i",
    "opcoep": "EP",
    "mobilites": "Mobil",
    "sante": "Santé",
    "uniformation": "Unif",
}
ACTION_LABELS = {
    "added": "ajoutée",
    "rotated": "renouvelée",
    "imported": "importée",
    "exported": "exportée",
    "revealed": "affichée",
    "verified": "vérifiée",
    "removed": "supprimée",
    "cfa_added": "CFA ajouté",
    "cfa_removed": "CFA retiré",
    "store_password_changed": "mot de passe du magasin changé",
    "oauth_secret_set": "secret OAuth2 enregistré",
    "oauth_secret_removed": "secret OAuth2 effacé",
}
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
    """Add the key lifecycle commands to ``app``."""
    app.command("add")(add)
    app.command("list")(list_keys)
    app.command("show")(show)
    app.command("rotate")(rotate)
    app.command("remove")(remove)
    app.command("check")(check)
    app.command("import")(import_keys)
    app.command("journal")(journal)


# Terminal dialogue ---------------------------------------------------------------------------


def _say(text: str = "") -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _bold(text: str) -> str:
    from cfakey.cli.output import use_colour  # noqa: PLC0415

    return f"\x1b[1m{text}\x1b[0m" if use_colour(sys.stderr) else text


def _warn(text: str) -> None:
    from cfakey.cli.output import use_colour  # noqa: PLC0415

    line = f"⚠ {text}"
    _say(f"\x1b[33m{line}\x1b[0m" if use_colour(sys.stderr) else line)


class Dialogue:
    """Questions on stderr, answers from stdin; never echoes a key.

    ``interactive`` decides whether the walkthrough pauses and asks: by default when
    stdin is a terminal. Without it, every answer must come from an option.
    """

    def __init__(self, interactive: bool | None, *, assume_yes: bool) -> None:
        stdin = sys.stdin
        self.tty = stdin is not None and not stdin.closed and stdin.isatty()
        self.interactive = self.tty if interactive is None else interactive
        self.assume_yes = assume_yes

    def _readline(self, question: str) -> str:
        sys.stderr.write(question)
        sys.stderr.flush()
        stdin = sys.stdin
        line = "" if stdin is None or stdin.closed else stdin.readline()
        if not line:
            sys.stderr.write("\n")
            raise _no_terminal(question.strip().rstrip(":").strip())
        return line.rstrip("\r\n")

    def pause(self) -> None:
        """Wait for Enter in the walkthrough."""
        if self.interactive:
            self._readline("  [Entrée pour continuer] ")

    def ask(self, question: str, *, needed: str) -> str:
        """A visible answer; ``needed`` names the option that replaces it in scripts."""
        if not self.interactive:
            from cfakey.errors import UsageError  # noqa: PLC0415

            raise UsageError(
                f"Pas de terminal pour demander : {question.strip().rstrip(':').strip()}.",
                hint=f"En mode script, indiquez {needed}.",
            )
        return self._readline(question).strip()

    def confirm(self, question: str, *, default: bool = False, needed: str = "--yes") -> bool:
        """Yes or no; ``--yes`` answers yes without asking."""
        if self.assume_yes:
            return True
        choices = "[O/n]" if default else "[o/N]"
        answer = self.ask(f"{question} {choices} ", needed=needed).casefold()
        if not answer:
            return default
        return answer in {"o", "oui", "y", "yes"}

    def secret(self, question: str) -> str:
        """The key: hidden on a terminal, else read from stdin (all of it in scripts)."""
        if self.tty:
            import getpass  # noqa: PLC0415

            try:
                return getpass.getpass(question, stream=sys.stderr)
            except EOFError:
                raise _no_terminal("la clé") from None
        stdin = sys.stdin
        if self.interactive:
            return self._readline(question)
        text = "" if stdin is None or stdin.closed else stdin.read()
        if not text:
            from cfakey.errors import UsageError  # noqa: PLC0415

            raise UsageError(
                "Aucune clé reçue : l'entrée standard est vide "
                "et il n'y a pas de terminal pour la demander.",
                hint="Passez la clé sur l'entrée standard (cfakey add OPCO < fichier) "
                "ou avec --from-file.",
            )
        return text


def _no_terminal(what: str) -> Exception:
    from cfakey.errors import UsageError  # noqa: PLC0415

    return UsageError(
        f"Pas de terminal ni d'entrée standard pour répondre ({what}) : rien n'a été enregistré.",
        hint="Lancez la commande dans un terminal, ou passez les réponses en options (--help).",
    )


def _abandon() -> typer.Exit:
    _say("Abandon : rien n'a été enregistré.")
    return typer.Exit(1)


# Shared helpers -------------------------------------------------------------------------------


def _cfa(context: AppContext, query: str | None) -> CfaRecord:
    from cfakey.core.cfas import resolve_cfa  # noqa: PLC0415

    return resolve_cfa(context.metadata(), query)


def _stored_key(
    context: AppContext, opco_name: str, cfa: str | None
) -> tuple[Opco, CfaRecord, KeyRecord]:
    """The OPCO, the CFA and the metadata of the key asked for, or a French "not found"."""
    from cfakey.errors import NotFoundError  # noqa: PLC0415

    opco = context.resolve_opco(opco_name)
    record_cfa = _cfa(context, cfa)
    record = context.metadata().get_key(record_cfa.siret, opco.id)
    if record is None:
        raise NotFoundError(
            f"Aucune clé {opco.name} enregistrée pour le CFA {record_cfa.siret}.",
            hint=f"Pour l'ajouter : cfakey add {opco.id} --cfa {record_cfa.siret}.",
        )
    return opco, record_cfa, record


def _store(context: AppContext) -> KeyStore:
    return context.key_store()


def _prepared_store(context: AppContext) -> KeyStore:
    store = context.key_store()
    store.prepare()
    return store


def _date(moment: datetime | None, form: str = "%d/%m/%Y") -> str:
    from cfakey.expiry import local_time  # noqa: PLC0415 - never overflows on a stored value

    return "—" if moment is None else local_time(moment).strftime(form)


def _read_key_file(path: Path) -> str:
    from cfakey.errors import UsageError  # noqa: PLC0415

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"Fichier introuvable : {path}.") from None
    except OSError as error:
        raise UsageError(f"Fichier illisible : {path} ({error.strerror}).") from None
    if len(data) > 65536:
        raise UsageError(
            f"Le fichier {path} est trop gros pour contenir une clé : est-ce le bon fichier ?"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise UsageError(f"Le fichier {path} n'est pas un fichier texte UTF-8.") from None


# add / rotate -----------------------------------------------------------------------------------


def add(  # noqa: PLR0917 - typer passes each option as a parameter
    ctx: typer.Context,
    opco_name: Annotated[str, OPCO_ARG],
    cfa: Annotated[str | None, CFA_OPTION] = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file", metavar="FICHIER", help="Lit la clé dans un fichier (le .txt d'OPCO EP)."
        ),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            metavar="DATE",
            help="Date d'expiration : JJ/MM/AAAA ou AAAA-MM-JJ, HH:MM permis.",
        ),
    ] = None,
    lifetime_months: Annotated[
        int | None,
        typer.Option(
            "--lifetime-months",
            metavar="N",
            help="Durée de vie choisie sur le portail (Ocapiat : 1 à 6).",
        ),
    ] = None,
    yes: Annotated[bool, YES_OPTION] = False,
    interactive: Annotated[
        bool | None,
        typer.Option(
            "--interactive/--no-interactive",
            help="Force (ou supprime) les questions et les pauses ; "
            "par défaut : si l'entrée est un terminal.",
        ),
    ] = None,
) -> None:
    """Guide pas à pas l'obtention d'une clé sur le portail de l'OPCO, puis l'enregistre."""
    given = KeyInput(cfa, from_file, expires, lifetime_months, yes, interactive)
    _lifecycle(ctx.obj, opco_name, given, rotation=False)


def rotate(  # noqa: PLR0917 - typer passes each option as a parameter
    ctx: typer.Context,
    opco_name: Annotated[str, OPCO_ARG],
    cfa: Annotated[str | None, CFA_OPTION] = None,
    from_file: Annotated[
        Path | None,
        typer.Option("--from-file", metavar="FICHIER", help="Lit la nouvelle clé dans un fichier."),
    ] = None,
    expires: Annotated[
        str | None,
        typer.Option("--expires", metavar="DATE", help="Date d'expiration de la nouvelle clé."),
    ] = None,
    lifetime_months: Annotated[
        int | None,
        typer.Option(
            "--lifetime-months", metavar="N", help="Durée de vie choisie (Ocapiat : 1 à 6)."
        ),
    ] = None,
    yes: Annotated[bool, YES_OPTION] = False,
    interactive: Annotated[
        bool | None,
        typer.Option(
            "--interactive/--no-interactive",
            help="Force (ou supprime) les questions et les pauses.",
        ),
    ] = None,
) -> None:
    """Renouvelle une clé : avertissement de révocation, étapes, nouvelle clé, journal."""
    given = KeyInput(cfa, from_file, expires, lifetime_months, yes, interactive)
    _lifecycle(ctx.obj, opco_name, given, rotation=True)


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
    from cfakey.core import keys  # noqa: PLC0415
    from cfakey.errors import NotFoundError  # noqa: PLC0415
    from cfakey.expiry import parse_date  # noqa: PLC0415

    opco = context.resolve_opco(opco_name)
    metadata = context.metadata()
    cfa = _cfa(context, given.cfa)
    dialogue = Dialogue(given.interactive, assume_yes=given.yes)
    if given.expires is not None:
        parse_date(given.expires)  # an unreadable date fails before any step
    existing = metadata.get_key(cfa.siret, opco.id)
    if rotation and existing is None:
        raise NotFoundError(
            f"Aucune clé {opco.name} enregistrée pour le CFA {cfa.siret} : rien à renouveler.",
            hint=f"Pour en ajouter une : cfakey add {opco.id} --cfa {cfa.siret}.",
        )
    # Open the store and ask its password now, not after the operator went through the
    # portal; for keys that come by e-mail, only once the e-mail has arrived.
    store = _prepared_store(context) if opco.request is None else None
    if dialogue.interactive:
        verb = "Renouvellement" if rotation else "Ajout"
        _say(
            _bold(f"{verb} de la clé {opco.name} ({opco.key_label}) pour {cfa.name} ({cfa.siret})")
        )
    if existing is not None and not rotation:
        _confirm_replacement(dialogue, opco, cfa, existing, yes=given.yes)
    if (
        given.from_file is None
        and dialogue.interactive
        and not _walkthrough(dialogue, opco, rotation=rotation)
    ):
        return
    if store is None:
        store = _prepared_store(context)
    key = _ask_key(dialogue, opco, given.from_file)
    if key.trimmed:
        _say("Espaces ou sauts de ligne retirés au début ou à la fin de la clé.")
    for warning in key.warnings:
        _warn(warning)
    expiry = _expiry(
        context, dialogue, opco, key, expires=given.expires, lifetime_months=given.lifetime_months
    )
    from cfakey.stores.base import fingerprint  # noqa: PLC0415

    conflicts = keys.find_conflicts(
        metadata, context.registry, cfa, opco.id, fingerprint(key.value)
    )
    allow_duplicate = False
    # Without a question to ask, save_key refuses with the same sentence: say it once.
    if conflicts.same_key_elsewhere and (dialogue.interactive or given.yes):
        _warn(
            "Cette clé est déjà enregistrée pour "
            f"{keys.describe_slots(conflicts.same_key_elsewhere)}."
        )
        if not dialogue.confirm("Une clé collée au mauvais endroit ? L'enregistrer quand même ?"):
            raise _abandon()
        allow_duplicate = True
    saved = keys.save_key(
        store,
        metadata,
        context.registry,
        cfa=cfa,
        opco=opco,
        key=key,
        expiry=expiry,
        obtained=context.today(),
        now=context.now(),
        replace=True,
        allow_duplicate=allow_duplicate,
        rotation=rotation,
    )
    _report_saved(context, opco, cfa, saved, expiry)


def _confirm_replacement(
    dialogue: Dialogue, opco: Opco, cfa: CfaRecord, existing: KeyRecord, *, yes: bool
) -> None:
    """``add`` over an existing key: refused in scripts without --yes, else confirmed."""
    if not dialogue.interactive and not yes:
        from cfakey.errors import AlreadyExistsError  # noqa: PLC0415

        raise AlreadyExistsError(
            f"Une clé {opco.name} est déjà enregistrée pour le CFA {cfa.siret} "
            f"(empreinte {existing.fingerprint}) : rien n'a été modifié.",
            hint="Pour la remplacer : ajoutez --yes, ou utilisez cfakey rotate.",
        )
    _say(
        f"Une clé {opco.name} est déjà enregistrée pour ce CFA "
        f"(empreinte {existing.fingerprint}, "
        f"échéance {_date(existing.expires_at)})."
    )
    if not dialogue.confirm("La remplacer (ce sera enregistré comme un renouvellement) ?"):
        raise _abandon()


def _ask_key(dialogue: Dialogue, opco: Opco, from_file: Path | None) -> CleanKey:
    """The key from the file, stdin or a hidden prompt; on a terminal, three tries."""
    from cfakey.core import keys  # noqa: PLC0415
    from cfakey.errors import UsageError  # noqa: PLC0415

    if from_file is not None:
        return keys.clean_key(_read_key_file(from_file), opco.id)
    tries = 3 if dialogue.tty else 1
    for attempt in range(1, tries + 1):
        raw = dialogue.secret("Collez la clé (saisie masquée) : ")
        try:
            return keys.clean_key(raw, opco.id)
        except UsageError as error:
            if attempt == tries:
                raise
            _warn(f"{error.message} Réessayez ({tries - attempt} essai(s) restant(s)).")
    raise AssertionError("unreachable")  # pragma: no cover


def _walkthrough(dialogue: Dialogue, opco: Opco, *, rotation: bool) -> bool:
    """The steps, one at a time; ``False`` when the operator must come back later."""
    from cfakey.registry.names import normalize  # noqa: PLC0415

    if opco.obtain == "not_published":
        _say(
            f"{opco.name} ne publie pas de procédure pour obtenir la clé : "
            "demandez-la directement à l'OPCO."
        )
        _support(opco)
        _say("Si vous l'avez déjà reçue de l'OPCO, vous pouvez l'enregistrer maintenant.")
        return True
    for warning in opco.warnings:
        _warn(warning)
    if opco.request is not None:
        request = opco.request
        _say(f"\n{_bold('Demande')} ({request.who_requests}) : {request.form.name}")
        _say(f"  {request.form.url}")
        _say("  À fournir : " + ", ".join(request.fields) + ".")
        _say(f"  Réception : {request.delivery}")
        if not dialogue.confirm("Avez-vous déjà reçu la clé par e-mail ?"):
            if dialogue.confirm(
                "Ouvrir le formulaire de demande dans le navigateur ?", default=True
            ):
                from cfakey.cli.registry_cmds import open_in_browser  # noqa: PLC0415

                open_in_browser(opco)
            command = "rotate" if rotation else "add"
            _say(f"Quand l'e-mail arrivera, revenez avec : cfakey {command} {opco.id}")
            return False
        if opco.shown_once:
            _warn(SHOWN_ONCE_WARNING)
        return True
    if opco.portal_url and dialogue.confirm(
        "Ouvrir le portail de l'OPCO dans le navigateur ?", default=True
    ):
        from cfakey.cli.registry_cmds import open_in_browser  # noqa: PLC0415

        open_in_browser(opco)
    generating = next(
        (index for index, step in enumerate(opco.steps) if "gener" in normalize(step)),
        0,
    )
    total = len(opco.steps)
    for index, step in enumerate(opco.steps):
        if index == generating and (opco.regeneration_revokes or rotation):
            _warn(REVOKE_WARNING)
        _say(f"\n{_bold(f'Étape {index + 1}/{total}')} : {step}")
        if index == generating and opco.shown_once:
            _warn(SHOWN_ONCE_WARNING)
        if index < total - 1:
            dialogue.pause()
    if opco.downloadable:
        _say(f"(Fichier téléchargé ? Relancez avec : cfakey add {opco.id} --from-file FICHIER.txt)")
    return True


def _support(opco: Opco) -> None:
    support = opco.support
    contacts = [*support.emails, *support.phones, *(link.url for link in support.web)]
    if contacts:
        _say("  Support : " + " ; ".join(contacts))


def _expiry(
    context: AppContext,
    dialogue: Dialogue,
    opco: Opco,
    key: CleanKey,
    *,
    expires: str | None,
    lifetime_months: int | None,
) -> Expiry:
    from cfakey.core import keys  # noqa: PLC0415
    from cfakey.errors import UsageError  # noqa: PLC0415

    question = keys.expiry_question(opco, key.value)
    rule = opco.expiry
    if expires is None and lifetime_months is None:
        if question == "lifetime":
            answer = dialogue.ask(
                "Durée de vie choisie sur le portail "
                f"({rule.lowest_months} à {rule.max_months} mois) : ",
                needed=f"--lifetime-months N ({rule.lowest_months} à {rule.max_months})",
            )
            if not answer.isdigit():
                raise UsageError("Durée de vie illisible : un nombre de mois est attendu.")
            lifetime_months = int(answer)
        elif question == "date":
            optional = rule.jwt_exp_precedence
            if dialogue.interactive or not optional:
                suffix = " (Entrée si le portail n'en affiche pas)" if optional else ""
                answer = dialogue.ask(
                    f"Date d'expiration affichée par le portail, JJ/MM/AAAA [HH:MM]{suffix} : ",
                    needed="--expires JJ/MM/AAAA",
                )
                if answer:
                    expires = answer
                elif not optional:
                    raise UsageError(
                        "Date d'expiration manquante : le portail l'affiche à côté de la clé."
                    )
    expiry = keys.resolve_expiry(
        opco,
        key.value,
        obtained=context.today(),
        now=context.now(),
        expires=expires,
        lifetime_months=lifetime_months,
    )
    for note in expiry.notes:
        _say(note)
    return expiry


def _report_saved(
    context: AppContext, opco: Opco, cfa: CfaRecord, saved: Saved, expiry: Expiry
) -> None:
    from cfakey.core.keys import days_until  # noqa: PLC0415

    new_fp, old_fp = saved.record.fingerprint, saved.old_fingerprint
    if old_fp is None:
        _say(f"\nClé {opco.name} enregistrée pour {cfa.name} (empreinte {new_fp}).")
    else:
        _say(f"\nClé {opco.name} renouvelée pour {cfa.name} (empreinte {old_fp} → {new_fp}).")
    if expiry.expires_at is not None:
        days = days_until(expiry.expires_at, context.now())
        sources = {
            "registry": "règle de l'OPCO",
            "jwt": "date du jeton",
            "portal": "portail",
            "operator": "saisie",
        }
        _say(
            f"Échéance : {_date(expiry.expires_at)} "
            f"({days} jours ; {sources.get(expiry.source, expiry.source)})."
        )
    else:
        rotation = opco.expiry.recommended_rotation_months
        advice = f" ; renouvellement conseillé tous les {rotation} mois" if rotation else ""
        _say(f"Échéance : aucune date connue{advice}.")
    _say(_bold("\nEt maintenant :"))
    if old_fp is not None:
        _warn(OLD_KEY_NOTICES[opco.regeneration_revokes])
    _say("  1. Recopiez la clé dans le logiciel du CFA, ou exportez-la :")
    _say(f"     cfakey export --opco {opco.id} --cfa {cfa.siret} --format env")
    _say("  2. Vérifiez qu'elle est acceptée par l'OPCO :")
    _say(f"     cfakey verify {opco.id} --cfa {cfa.siret}")


# list / check --------------------------------------------------------------------------------


def _overview(
    context: AppContext,
    cfa_query: str | None,
    opco_name: str | None,
    warn_days: int | None = None,
    crit_days: int | None = None,
) -> Overview:
    from cfakey.core import keys  # noqa: PLC0415

    keys.check_window_args(warn_days, crit_days)
    opco_id = context.resolve_opco(opco_name).id if opco_name else None
    cfa = _cfa(context, cfa_query) if cfa_query else None
    return keys.overview(
        context.metadata(),
        context.registry,
        context.config().values,
        now=context.now(),
        cfa=cfa,
        opco_id=opco_id,
        warn_days=warn_days,
        crit_days=crit_days,
    )


def list_keys(
    ctx: typer.Context,
    cfa: Annotated[str | None, CFA_OPTION] = None,
    opco_name: Annotated[
        str | None, typer.Option("--opco", metavar="OPCO", help="Seulement cet OPCO.")
    ] = None,
    as_json: Annotated[bool, JSON_OPTION] = False,
    detail: Annotated[
        bool, typer.Option("--detail", help="Une ligne par clé, même pour plusieurs CFA.")
    ] = False,
) -> None:
    """Échéances des clés, les plus urgentes d'abord (sans ouvrir le magasin de clés)."""
    context: AppContext = ctx.obj
    view = _overview(context, cfa, opco_name)
    if as_json:
        sys.stdout.write(_json_rows([row.as_json() for row in view.rows]) + "\n")
        return
    if not view.rows:
        _empty_hint(view)
        return
    several = len({row.siret for row in view.rows}) > 1
    if several and not detail and opco_name is None:
        _write(_matrix(context, view))
        _say("Jours restants avant échéance ; exp = expirée, s.d. = sans date, · = aucune clé.")
        _say("Détail d'un CFA : cfakey list --cfa SIRET ; une ligne par clé : cfakey list --detail")
    else:
        _write(_table(view.rows))
    _summary(view)


def _json_rows(rows: list[dict[str, Any]]) -> str:
    """A JSON list with one object per line: readable, and written by the C encoder
    (``indent`` would switch json to its pure-Python encoder, 50 ms for 1,100 keys)."""
    import json  # noqa: PLC0415

    if not rows:
        return "[]"
    return "[\n" + ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows) + "\n]"


def _empty_hint(view: Overview) -> None:
    if view.filtered:
        _say("Aucune clé ne correspond à ces critères.")
    elif not view.cfas:
        _say(
            "Aucune clé enregistrée. Commencez par déclarer votre CFA : "
            'cfakey cfa add SIRET --nom "Nom du CFA"'
        )
        _say("puis ajoutez une clé : cfakey add OPCO (la liste des OPCO : cfakey opcos).")
    else:
        _say(
            "Aucune clé enregistrée pour l'instant. "
            "Ajoutez-en une : cfakey add OPCO (liste : cfakey opcos)."
        )


def _write(lines: list[str]) -> None:
    sys.stdout.write("\n".join(lines) + "\n")


_COLOURS = {"expirée": "31", "à renouveler": "33", "valide": "32", "sans date": "2"}


def _paint(text: str, status: str, colour: bool) -> str:
    return f"\x1b[{_COLOURS[status]}m{text}\x1b[0m" if colour else text


def _table(rows: tuple[KeyRow, ...]) -> list[str]:
    from cfakey.cli.output import use_colour  # noqa: PLC0415

    colour = use_colour(sys.stdout)
    headers = ("CFA", "SIRET", "OPCO", "Échéance", "Jours", "Statut", "Empreinte")
    cells = [
        (
            row.cfa_name[:30],
            row.siret,
            row.opco_name,
            _date(row.expires_at)
            if row.expires_at
            else (f"(rot. {row.rotation_due:%d/%m/%Y})" if row.rotation_due else "—"),
            "—" if row.days_left is None else str(row.days_left),
            row.status,
            row.fingerprint,
        )
        for row in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row, cell in zip(rows, cells, strict=True):
        text = "  ".join(
            c.rjust(w) if i == 4 else c.ljust(w)
            for i, (c, w) in enumerate(zip(cell, widths, strict=True))
        )
        lines.append(_paint(text.rstrip(), row.status, colour))
    return lines


def _matrix(context: AppContext, view: Overview) -> list[str]:
    """One line per CFA, one column per OPCO, days left in each cell, most urgent CFA first."""
    import shutil  # noqa: PLC0415

    from cfakey.cli.output import use_colour  # noqa: PLC0415

    colour = use_colour(sys.stdout)
    opco_ids = [opco.id for opco in context.registry.opcos]
    by_cfa: dict[str, dict[str, KeyRow]] = {}
    order: list[str] = []
    for row in view.rows:  # already sorted by urgency: first seen = most urgent CFA
        if row.siret not in by_cfa:
            by_cfa[row.siret] = {}
            order.append(row.siret)
        by_cfa[row.siret][row.opco_id] = row
    names = {row.siret: row.cfa_name for row in view.rows}
    cell_width = 5
    width = shutil.get_terminal_size((100, 24)).columns
    name_width = max(14, min(40, width - (cell_width + 1) * len(opco_ids) - 1))
    header = "CFA".ljust(name_width) + "".join(
        " " + SHORT_LABELS.get(opco_id, opco_id[:cell_width]).rjust(cell_width)
        for opco_id in opco_ids
    )
    lines = [header]
    for siret in order:
        name = names[siret]
        label = (name if len(name) <= name_width else name[: name_width - 1] + "…").ljust(
            name_width
        )
        cells = []
        for opco_id in opco_ids:
            cell = by_cfa[siret].get(opco_id)
            if cell is None:
                cells.append(" " + "·".rjust(cell_width))
                continue
            if cell.status == "expirée":
                text = "exp"
            elif cell.days_left is None:
                text = "s.d."
            else:
                text = str(cell.days_left)
            cells.append(" " + _paint(text.rjust(cell_width), cell.status, colour))
        lines.append(label + "".join(cells))
    return lines


def _summary(view: Overview) -> None:
    counts: dict[str, int] = {}
    for row in view.rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    plurals = {"expirée": "expirées", "valide": "valides"}
    parts = [
        f"{counts[status]} {plurals.get(status, status) if counts[status] > 1 else status}"
        for status in ("expirée", "à renouveler", "valide", "sans date")
        if counts.get(status)
    ]
    _say(f"{len(view.rows)} clé(s) : " + ", ".join(parts) + ".")


def check(
    ctx: typer.Context,
    warn_days: Annotated[
        int | None,
        typer.Option(
            "--warn-days", metavar="N", help="Alerte à N jours de l'échéance (tous les OPCO)."
        ),
    ] = None,
    crit_days: Annotated[
        int | None,
        typer.Option(
            "--crit-days", metavar="M", help="Critique à M jours de l'échéance (tous les OPCO)."
        ),
    ] = None,
    cfa: Annotated[str | None, CFA_OPTION] = None,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Pour cron et la supervision (convention Nagios) : 0 tout va bien, 1 alerte, 2 critique."""
    from cfakey.core import keys  # noqa: PLC0415

    context: AppContext = ctx.obj
    view = _overview(context, cfa, None, warn_days, crit_days)
    result = keys.check(view)
    if as_json:
        import json  # noqa: PLC0415

        problems = _json_rows([{**row.as_json(), "level": row.level} for row in result.problems])
        head = json.dumps(
            {
                "status": ("ok", "warning", "critical")[result.level],
                "exit_code": result.level,
                "checked": result.checked,
            },
            ensure_ascii=False,
        )
        sys.stdout.write(f'{head[:-1]}, "problems": {problems}}}\n')
    else:
        lines = [_check_summary(result)]
        labels = ("OK", "ALERTE", "CRITIQUE")
        for row in result.problems:
            lines.append(
                f"{labels[row.level]} {row.cfa_name} ({row.siret}) "
                f"{row.opco_name} : {_problem(row)}"
            )
        _write(lines)
    raise typer.Exit(result.level)


def _check_summary(result: Any) -> str:
    if result.checked == 0:
        return "OK : aucune clé enregistrée."
    if not result.problems:
        return f"OK : {result.checked} clé(s) valide(s) ou sans date."
    critical = sum(1 for row in result.problems if row.level == 2)
    warning = len(result.problems) - critical
    return (
        f"{result.label} : {critical} critique(s), {warning} en alerte, "
        f"sur {result.checked} clé(s)."
    )


def _problem(row: KeyRow) -> str:
    if row.status == "expirée":
        return f"expirée le {_date(row.expires_at)}"
    if row.days_left is None and row.rotation_due is not None:
        return (
            f"renouvellement conseillé le {row.rotation_due:%d/%m/%Y} "
            f"(clé obtenue le {row.obtained_on:%d/%m/%Y})"
        )
    return f"expire le {_date(row.expires_at)}, dans {row.days_left} jour(s)"


# show / remove --------------------------------------------------------------------------------


def show(
    ctx: typer.Context,
    opco_name: Annotated[str, OPCO_ARG],
    cfa: Annotated[str | None, CFA_OPTION] = None,
    reveal: Annotated[
        bool,
        typer.Option("--reveal", help="Affiche la clé elle-même, seule, sur la sortie standard."),
    ] = False,
    as_json: Annotated[bool, JSON_OPTION] = False,
) -> None:
    """Métadonnées et empreinte d'une clé ; la clé elle-même seulement avec --reveal."""
    from cfakey.core import keys  # noqa: PLC0415

    context: AppContext = ctx.obj
    opco, record_cfa, record = _stored_key(context, opco_name, cfa)
    if reveal:
        from cfakey.core.storage import read_key  # noqa: PLC0415
        from cfakey.stores.base import fingerprint  # noqa: PLC0415

        secret = read_key(_store(context), record.siret, record.opco_id, recorded_in=record.store)
        context.metadata().log(
            "revealed",
            siret=record.siret,
            opco_id=record.opco_id,
            new_fingerprint=fingerprint(secret),  # the key shown, even if rotated meanwhile
            detail="cfakey show --reveal",
        )
        sys.stdout.write(secret + "\n")
        return
    window = keys.window_for(opco, opco.id, context.config().values)
    row = keys.classify(
        record, opco=opco, cfa_name=record_cfa.name, window=window, now=context.now()
    )
    if as_json:
        import json  # noqa: PLC0415

        data = {
            **row.as_json(),
            "stored_at": record.stored_at.isoformat(),
            "os_user": record.os_user,
            "store": record.store,
        }
        sys.stdout.write(json.dumps(data, ensure_ascii=False, indent=2) + "\n")
        return
    sources = {
        "registry": "règle de l'OPCO",
        "jwt": "date « exp » du jeton",
        "portal": "date du portail",
        "opco_api": "réponse de l'OPCO",
        "operator": "saisie",
        "none": "aucune",
    }
    days = "" if row.days_left is None else f" ({row.days_left} jours)"
    lines = [
        f"CFA           : {record_cfa.name} ({record.siret})",
        f"OPCO          : {opco.name} ({opco.id})",
        f"Statut        : {row.status}",
        (
            f"Échéance      : {_date(record.expires_at)}{days} ; "
            f"source : {sources.get(record.expiry_source, record.expiry_source)}"
        ),
        f"Obtenue le    : {record.obtained_on:%d/%m/%Y}",
        f"Enregistrée le: {_date(record.stored_at, '%d/%m/%Y %H:%M')} par {record.os_user}",
        f"Magasin       : {record.store}",
        f"Empreinte     : {record.fingerprint}",
    ]
    if row.rotation_due is not None:
        lines.insert(4, f"Rotation      : conseillée le {row.rotation_due:%d/%m/%Y}")
    _write(lines)


def remove(
    ctx: typer.Context,
    opco_name: Annotated[str, OPCO_ARG],
    cfa: Annotated[str | None, CFA_OPTION] = None,
    yes: Annotated[bool, YES_OPTION] = False,
) -> None:
    """Supprime une clé : le secret et ses métadonnées ensemble, inscrit au journal."""
    from cfakey.core.storage import remove_key  # noqa: PLC0415

    context: AppContext = ctx.obj
    opco, record_cfa, record = _stored_key(context, opco_name, cfa)
    metadata = context.metadata()
    dialogue = Dialogue(None, assume_yes=yes)
    question = (
        f"Supprimer la clé {opco.name} de {record_cfa.name} (empreinte {record.fingerprint}) ?"
    )
    if not dialogue.tty and not yes:
        from cfakey.errors import UsageError  # noqa: PLC0415

        raise UsageError(
            "Pas de terminal pour confirmer la suppression : rien n'a été supprimé.",
            hint="Ajoutez --yes.",
        )
    if not dialogue.confirm(question):
        _say("Abandon : rien n'a été supprimé.")
        raise typer.Exit(1)
    remove_key(_store(context), metadata, record_cfa.siret, opco.id)
    _say(f"Clé {opco.name} de {record_cfa.name} supprimée (empreinte {record.fingerprint}).")
    _say("Pensez à la révoquer aussi sur le portail de l'OPCO si elle ne doit plus servir.")


# import / journal -------------------------------------------------------------------------------


def import_keys(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FICHIER",
            help="CSV (, ou ;) ou JSON : cfa, opco, key [, expires, obtained, cfa_name].",
        ),
    ],
    yes: Annotated[
        bool, typer.Option("--yes", "-y", help="Remplace les clés déjà enregistrées.")
    ] = False,
) -> None:
    """Importe des clés depuis un tableur : tout ou rien, chaque ligne vérifiée d'abord."""
    import time  # noqa: PLC0415

    from cfakey.core import keys  # noqa: PLC0415

    context: AppContext = ctx.obj
    started = time.monotonic()
    rows = keys.read_import_file(file)
    metadata = context.metadata()
    now = context.now()
    plan = keys.plan_import(rows, metadata, context.registry, now=now, replace=yes)
    warned = sum(1 for row in plan.rows if row.key.warnings)
    result = keys.run_import(_store(context), metadata, plan, now=now)
    _say(
        f"{result.imported} clé(s) importée(s) en {time.monotonic() - started:.1f} s"
        f" ; {result.new_cfas} CFA ajouté(s), {result.replaced} clé(s) remplacée(s)."
    )
    if warned:
        _warn(f"{warned} clé(s) de forme inhabituelle : vérifiez-les (cfakey verify).")
    _say("Échéances : cfakey list")


def journal(
    ctx: typer.Context,
    cfa: Annotated[str | None, CFA_OPTION] = None,
    opco_name: Annotated[
        str | None, typer.Option("--opco", metavar="OPCO", help="Seulement cet OPCO.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since", metavar="DATE", help="Depuis cette date (JJ/MM/AAAA ou AAAA-MM-JJ)."
        ),
    ] = None,
    as_csv: Annotated[
        bool, typer.Option("--csv", help="Sortie CSV (pour un tableur ou un audit).")
    ] = False,
) -> None:
    """Le registre d'audit : qui a ajouté, renouvelé, exporté ou supprimé quelle clé, et quand."""
    from cfakey.core import keys  # noqa: PLC0415

    context: AppContext = ctx.obj
    opco_id = context.resolve_opco(opco_name).id if opco_name else None
    record_cfa = _cfa(context, cfa) if cfa else None
    entries = keys.query_journal(context.metadata(), cfa=record_cfa, opco_id=opco_id, since=since)
    headers = (
        "date",
        "utilisateur",
        "cfa",
        "opco",
        "action",
        "ancienne_empreinte",
        "nouvelle_empreinte",
        "detail",
    )
    rows = [
        (
            _date(entry.at, "%Y-%m-%d %H:%M:%S"),
            entry.user,
            entry.siret or "",
            entry.opco_id or "",
            entry.action if as_csv else ACTION_LABELS.get(entry.action, entry.action),
            entry.old_fingerprint or "",
            entry.new_fingerprint or "",
            entry.detail,
        )
        for entry in entries
    ]
    if as_csv:
        import csv  # noqa: PLC0415

        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows(rows)
        return
    if not rows:
        _say("Journal vide pour ces critères.")
        return
    titles = ("Date", "Utilisateur", "CFA", "OPCO", "Action", "Ancienne", "Nouvelle", "Détail")
    widths = [max(len(t), *(len(r[i]) for r in rows)) for i, t in enumerate(titles)]
    lines = ["  ".join(t.ljust(w) for t, w in zip(titles, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    _write(lines)
