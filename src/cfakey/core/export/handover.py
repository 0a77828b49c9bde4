"""The three use-cases that hand keys out: ``export``, ``inject`` and ``exec``.

Each reads its keys the same way: selection, expiry flags (``--strict`` refuses before
the store is unlocked), secrets read in one store session under the shared data lock,
then one ``exported`` journal entry per key, committed with the file written (or before
the text reaches stdout, or once the child really started).
"""

from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, ExitStack, contextmanager, nullcontext
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfakey.core.codes import JournalAction
from cfakey.core.export.formats import formula_risks, render
from cfakey.core.export.selection import (
    VARIABLE_PREFIX,
    ExpiryFlag,
    ExportedKey,
    KeyPlan,
    ProgressCallback,
    expiry_flags,
    key_variable,
    plan_export,
    read_planned,
    refuse_if_strict,
)
from cfakey.core.export.templates import fill_planned, plan_template, read_template
from cfakey.errors import AlreadyExistsError, CfakeyError, UsageError, os_reason

if TYPE_CHECKING:
    import subprocess
    from datetime import datetime
    from types import FrameType

    from cfakey.metadata import Metadata
    from cfakey.registry.model import Registry
    from cfakey.stores.base import KeyStore

    Handler = Callable[[int, FrameType | None], object] | int | None

COMMAND_NOT_FOUND = 127
COMMAND_NOT_EXECUTABLE = 126


def _no_progress(_total: int) -> AbstractContextManager[ProgressCallback | None]:
    return nullcontext(None)


@dataclass(frozen=True)
class Sources:
    """Where a hand-over reads from: metadata, registry, settings, the clock, the key store.

    Each is opened on first use only: a mistake found first (a missing template, an
    existing output file, no command for ``exec``) opens nothing, and ``--strict`` or a
    mistake in a template never unlocks the store.
    """

    open_metadata: Callable[[], Metadata]
    load_registry: Callable[[], Registry]
    load_settings: Callable[[], Mapping[str, Any]]
    now: Callable[[], datetime]
    open_store: Callable[[], KeyStore]
    #: Where files being written are recorded (``Paths.pending_outputs``); ``None``: nowhere.
    pending_outputs: Path | None = None

    @cached_property
    def metadata(self) -> Metadata:
        """The metadata database, opened on first use."""
        return self.open_metadata()

    @cached_property
    def registry(self) -> Registry:
        """The OPCO registry, loaded on first use."""
        return self.load_registry()

    @cached_property
    def settings(self) -> Mapping[str, Any]:
        """The user's settings (per-OPCO warning windows), read on first use."""
        return self.load_settings()


@dataclass(frozen=True)
class Hooks:
    """How the CLI follows a hand-over: flags before any unlock, progress while reading."""

    on_flags: Callable[[Sequence[ExpiryFlag]], None] = lambda _flags: None
    progress: Callable[[int], AbstractContextManager[ProgressCallback | None]] = _no_progress
    #: Temporary files (holding keys) that killed writers left, removed before starting.
    on_removed: Callable[[Sequence[Path]], None] = lambda _paths: None


@dataclass(frozen=True)
class Selection:
    """``--cfa``, ``--toutes-cfa`` and ``--opco``."""

    cfa_query: str | None = None
    all_cfas: bool = False
    opco_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class Exported:
    """``export``: the text (for stdout when ``output`` is ``None``) and the keys it holds."""

    keys: tuple[ExportedKey, ...]
    fmt: str
    output: Path | None
    text: str = field(repr=False)

    @property
    def formula_risks(self) -> list[ExportedKey]:
        """In ``csv``: keys a spreadsheet would take for a formula."""
        return formula_risks(self.keys) if self.fmt == "csv" else []


@dataclass(frozen=True)
class Injected:
    """``inject``: the file written from the template, and the keys it holds."""

    keys: tuple[ExportedKey, ...]
    output: Path
    template: Path


@dataclass(frozen=True)
class Ran:
    """``exec``: the child's exit code as a shell gives it (128 + N for signal N)."""

    returncode: int
    keys: tuple[ExportedKey, ...]


class CommandNotStartedError(CfakeyError):
    """``exec``: the command could not be started; exits 127 or 126 as a shell does."""

    def __init__(self, message: str, *, returncode: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.returncode = returncode


# Shared steps --------------------------------------------------------------------------


def _flag(sources: Sources, plan: KeyPlan, hooks: Hooks, *, strict: bool) -> None:
    """Expired or soon-expiring keys told through ``hooks``; ``--strict`` refuses them."""
    flags = expiry_flags(plan.keys, sources.registry, sources.settings, sources.now())
    hooks.on_flags(flags)
    if strict:
        refuse_if_strict(flags)


def _read(sources: Sources, plan: KeyPlan, hooks: Hooks) -> list[ExportedKey]:
    """Every planned secret, read under the shared data lock: store writers wait meanwhile."""
    store = sources.open_store()
    with sources.metadata.lock(shared=True), hooks.progress(len(plan.keys)) as on_progress:
        return read_planned(store, plan, on_progress=on_progress)


def journal_export(metadata: Metadata, keys: Sequence[ExportedKey], detail: str) -> None:
    """One ``exported`` journal entry per key: fingerprint and destination, never the key."""
    for key in keys:
        metadata.log(
            JournalAction.EXPORTED.id,
            siret=key.siret,
            opco_id=key.opco_id,
            new_fingerprint=key.fingerprint,
            detail=detail,
        )


def journal_exec(metadata: Metadata, keys: Sequence[ExportedKey], program: str) -> None:
    """One ``exported`` entry per ``exec`` run, listing its keys by OPCO, SIRET, fingerprint.

    The CFA and OPCO columns are filled when all the keys share them, so that
    ``journal --cfa`` and ``--opco`` still find the run.
    """
    sirets = {key.siret for key in keys}
    opcos = {key.opco_id for key in keys}
    listed = ", ".join(f"{key.opco_id} {key.siret} ({key.fingerprint})" for key in keys)
    metadata.log(
        JournalAction.EXPORTED.id,
        siret=next(iter(sirets)) if len(sirets) == 1 else None,
        opco_id=next(iter(opcos)) if len(opcos) == 1 else None,
        new_fingerprint=keys[0].fingerprint if len(keys) == 1 else None,
        detail=f"exec de {program} : {len(keys)} clé(s) : {listed}",
    )


def _refused_existing(path: Path) -> AlreadyExistsError:
    return AlreadyExistsError(
        f"Le fichier {path} existe déjà : rien n'a été écrit.",
        hint="Ajoutez --force pour le remplacer.",
    )


def check_destination(path: Path, *, force: bool) -> None:
    """Fail early, before any store is unlocked, when ``path`` cannot receive the export."""
    if path.is_dir():
        raise UsageError(f"{path} est un dossier : indiquez un nom de fichier.")
    if path.exists() and not force:
        raise _refused_existing(path)
    parent = path.parent
    if not parent.exists():
        raise CfakeyError(f"Le dossier {parent} n'existe pas : rien n'a été écrit.")
    if not parent.is_dir():
        raise CfakeyError(f"{parent} n'est pas un dossier : rien n'a été écrit.")


def removed_temporary_message(path: Path) -> str:
    """What the operator reads for each temporary file a killed writer left and we removed."""
    return f"Fichier temporaire abandonné supprimé : {path} (il contenait des clés)."


def remove_abandoned_outputs(records: Path | None) -> list[Path]:
    """The temporary files killed ``export``/``inject`` runs left where they wrote, removed."""
    from cfakey.paths import remove_abandoned_outputs as remove

    return remove(records) if records is not None else []


@contextmanager
def _recording(records: Path | None, path: Path) -> Iterator[None]:
    """Where ``path`` is written, recorded first (see ``paths.pending_output``)."""
    from cfakey.paths import pending_output

    with ExitStack() as stack:
        try:
            if records is not None:
                stack.enter_context(pending_output(records, path.resolve()))
        except OSError as error:
            raise CfakeyError(
                f"Impossible de noter l'écriture en cours dans {records} "
                f"({os_reason(error)}) : rien n'a été écrit.",
                hint="Vérifiez l'espace disque et les droits du dossier de données de cfakey.",
            ) from None
        yield


def write_output(path: Path, text: str, *, force: bool, records: Path | None = None) -> None:
    """Create ``path`` (0600, atomically), refusing to replace it without ``force``.

    With ``records``, where it is written is recorded there first, so that the temporary
    file of a killed writer is found by the next ``export``/``inject`` or ``doctor``.
    """
    from cfakey.paths import write_new_file

    try:
        with _recording(records, path):
            write_new_file(path, text.encode("utf-8"), replace=force)
    except FileExistsError:
        raise _refused_existing(path) from None
    except FileNotFoundError:
        raise CfakeyError(f"Le dossier {path.parent} n'existe pas : rien n'a été écrit.") from None
    except OSError as error:
        raise CfakeyError(
            f"Impossible d'écrire dans {path.parent} ({os_reason(error)}) : rien n'a été écrit.",
            hint="Vérifiez les droits du dossier ou choisissez-en un autre.",
        ) from None


def _journal_and_write(
    sources: Sources,
    keys: Sequence[ExportedKey],
    detail: str,
    *,
    output: Path | None,
    text: str,
    force: bool,
) -> None:
    """The journal entries and the file in one transaction: both, or neither."""
    with sources.metadata.transaction():
        journal_export(sources.metadata, keys, detail)
        if output is not None:
            write_output(output, text, force=force, records=sources.pending_outputs)


def _remove_abandoned(sources: Sources, hooks: Hooks) -> None:
    """Before writing: what killed writers left wherever they wrote, removed and told."""
    removed = remove_abandoned_outputs(sources.pending_outputs)
    if removed:
        hooks.on_removed(removed)


def _plan(sources: Sources, selection: Selection) -> KeyPlan:
    return plan_export(sources.metadata, sources.registry, **dataclasses.asdict(selection))


# The use-cases -------------------------------------------------------------------------


def export_keys(
    sources: Sources,
    selection: Selection,
    fmt: str,
    *,
    output: Path | None = None,
    force: bool = False,
    strict: bool = False,
    hooks: Hooks = Hooks(),
) -> Exported:
    """``cfakey export``: the selection rendered in ``fmt``, journalled, written to ``output``.

    Without ``output`` the text is returned for stdout, journalled first: even a reader
    that stops early may have received keys.
    """
    if output is not None:
        _remove_abandoned(sources, hooks)
        check_destination(output, force=force)
    plan = _plan(sources, selection)
    _flag(sources, plan, hooks, strict=strict)
    keys = _read(sources, plan, hooks)
    exported_at = sources.now().replace(microsecond=0)
    text = render(keys, fmt, qualified=plan.qualified, exported_at=exported_at)
    destination = "stdout" if output is None else str(output.resolve())
    detail = f"export {fmt} vers {destination}"
    _journal_and_write(sources, keys, detail, output=output, text=text, force=force)
    return Exported(tuple(keys), fmt, output, text)


def inject_template(
    sources: Sources,
    template: Path,
    output: Path,
    *,
    cfa_query: str | None = None,
    force: bool = False,
    strict: bool = False,
    hooks: Hooks = Hooks(),
) -> Injected:
    """``cfakey inject``: ``output`` (0600) filled from ``template``, journalled with it."""
    _remove_abandoned(sources, hooks)
    parsed = read_template(template)
    check_destination(output, force=force)
    planned = plan_template(parsed, sources.metadata, sources.registry, cfa_query=cfa_query)
    _flag(sources, planned.plan, hooks, strict=strict)
    keys = _read(sources, planned.plan, hooks)
    text = fill_planned(planned, keys)
    detail = f"inject vers {output.resolve()} (modèle {template.resolve()})"
    _journal_and_write(sources, keys, detail, output=output, text=text, force=force)
    return Injected(tuple(keys), output, template)


def run_with_keys(
    sources: Sources,
    selection: Selection,
    command: Sequence[str],
    *,
    environment: Mapping[str, str],
    strict: bool = False,
    hooks: Hooks = Hooks(),
) -> Ran:
    """``cfakey exec``: run ``command`` with the keys in its environment and wait for it.

    The journal entry commits only if the command really started.
    """
    if not command:
        raise UsageError(
            "Aucune commande à lancer.",
            hint="Exemple : cfakey exec --opco atlas -- mon-logiciel --synchroniser",
        )
    plan = _plan(sources, selection)
    _flag(sources, plan, hooks, strict=strict)
    keys = _read(sources, plan, hooks)
    withheld = sources.open_store().unlocking_variables
    child_environment = exec_environment(
        environment, keys, qualified=plan.qualified, withheld=withheld
    )
    with sources.metadata.transaction():
        journal_exec(sources.metadata, keys, Path(command[0]).name)
        process = _start(list(command), child_environment)
    with _signals_to(process):
        returncode = process.wait()
    return Ran(128 - returncode if returncode < 0 else returncode, tuple(keys))


# exec's child --------------------------------------------------------------------------


def exec_environment(
    base: Mapping[str, str],
    keys: Sequence[ExportedKey],
    *,
    qualified: bool,
    withheld: Sequence[str] = (),
) -> dict[str, str]:
    """The child's environment: ours plus one variable per key (names as in ``env``).

    The child gets the keys asked for and nothing else that opens a key: the variables
    cfakey reads a secret from (the file store's password) are removed, so are
    ``withheld`` (the store in service's token, see ``KeyStore.unlocking_variables``) and
    ``CFA_KEY_*`` variables inherited from our own environment, which would pass for
    keys of this selection.
    """
    from cfakey.stores.file_store import SECRET_ENV_VARIABLES

    refused = {*SECRET_ENV_VARIABLES, *(name.upper() for name in withheld)}

    def kept(name: str) -> bool:
        upper = name.upper()  # Windows names ignore case
        return upper not in refused and not upper.startswith(f"{VARIABLE_PREFIX}_")

    environment = {name: value for name, value in base.items() if kept(name)}
    for key in keys:
        if "\0" in key.secret:
            raise UsageError(
                f"La clé {key.opco_name} du CFA {key.siret} contient un caractère nul : "
                "impossible de la passer dans l'environnement."
            )
        environment[key_variable(key, qualified=qualified)] = key.secret
    return environment


def _start(command: list[str], environment: dict[str, str]) -> subprocess.Popen[bytes]:
    """The child, started; a French error carrying the shell's exit code if it cannot be."""
    try:
        return subprocess.Popen(command, env=environment)  # noqa: S603 - the operator's own command
    except FileNotFoundError:
        raise CommandNotStartedError(
            f"Commande introuvable : « {command[0]} ».",
            returncode=COMMAND_NOT_FOUND,
            hint="Vérifiez son nom et le PATH.",
        ) from None
    except PermissionError:
        raise CommandNotStartedError(
            f"La commande « {command[0]} » n'est pas exécutable.",
            returncode=COMMAND_NOT_EXECUTABLE,
        ) from None
    except OSError as error:
        raise CommandNotStartedError(
            f"Impossible de lancer « {command[0]} » ({error.strerror}).",
            returncode=COMMAND_NOT_EXECUTABLE,
        ) from None


@contextmanager
def _signals_to(process: subprocess.Popen[bytes]) -> Iterator[None]:
    """While the child runs: Ctrl-C and Ctrl-\\ reach it from the terminal, so cfakey ignores
    them; a SIGTERM or SIGHUP sent to cfakey alone is passed on to the child."""

    def forward(signum: int, _frame: FrameType | None) -> None:
        process.send_signal(signum)

    handlers: dict[signal.Signals, Handler] = {
        signal.SIGINT: signal.SIG_IGN,
        signal.SIGTERM: forward,
    }
    if sys.platform != "win32":  # Windows has neither Ctrl-\ (SIGQUIT) nor SIGHUP
        handlers[signal.SIGQUIT] = signal.SIG_IGN
        handlers[signal.SIGHUP] = forward
    previous: dict[signal.Signals, Handler] = {}
    try:
        for signum, handler in handlers.items():
            previous[signum] = signal.signal(signum, handler)
    except ValueError:  # not the main thread: leave signals as they are
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
