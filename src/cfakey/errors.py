"""Exit codes and the error hierarchy shared by every command.

Core code raises a subclass of :class:`CfakeyError` carrying a French message meant for
the operator; only the CLI layer turns it into a line on stderr and an exit code.
"""

from __future__ import annotations

import errno
from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes, documented in ``docs/exit-codes.md``."""

    OK = 0
    ERROR = 1
    USAGE = 2
    NOT_FOUND = 3
    STORE_UNAVAILABLE = 4
    DATA_CORRUPTED = 5
    ALREADY_EXISTS = 6
    BUSY = 7
    KEY_REFUSED = 10
    UNSUPPORTED = 11
    OPCO_UNAVAILABLE = 12
    RATE_LIMITED = 13
    BAD_RESPONSE = 14
    INTERRUPTED = 130


_OS_REASONS = {
    errno.EACCES: "permission refusée",
    errno.EPERM: "opération non permise",
    errno.ENOSPC: "plus de place sur le disque",
    errno.EDQUOT: "quota disque dépassé",
    errno.EROFS: "système de fichiers en lecture seule",
    errno.ENOTDIR: "un élément du chemin n'est pas un dossier",
    errno.EEXIST: "un fichier porte déjà ce nom",
    errno.EIO: "erreur d'entrée-sortie",
}


def os_reason(error: OSError) -> str:
    """The French for the usual reasons a file cannot be read or written."""
    return _OS_REASONS.get(error.errno or 0, error.strerror or type(error).__name__)


_ELSEWHERE = "ou choisissez un autre dossier avec CFAKEY_HOME"
#: What to do when the disk, not a file of cfakey, is at fault, by ``errno``.
_DISK_ADVICE = {
    errno.ENOSPC: f"Libérez de la place sur le disque, {_ELSEWHERE}, puis relancez.",
    errno.EDQUOT: f"Libérez de la place dans votre quota, {_ELSEWHERE}, puis relancez.",
    errno.EROFS: f"Remontez le disque en écriture, {_ELSEWHERE}, puis relancez.",
    errno.EACCES: f"Vérifiez les droits du dossier, {_ELSEWHERE}, puis relancez.",
}


def disk_hint(error: OSError) -> str:
    """What to do when writing in the data directory failed (full, read-only, forbidden)."""
    return _DISK_ADVICE.get(error.errno or 0, _DISK_ADVICE[errno.EACCES])


class CfakeyError(Exception):
    """An error the operator can act on; ``str(error)`` is one French sentence."""

    exit_code: ExitCode = ExitCode.ERROR

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(CfakeyError):
    """Bad arguments or input: wrong value, unknown name, invalid file."""

    exit_code = ExitCode.USAGE


class RegistryError(UsageError):
    """The registry (shipped or overlay) cannot be read or is invalid."""


class UnknownOpcoError(UsageError):
    """The name given matches no OPCO of the registry."""


class NotFoundError(CfakeyError):
    """The thing asked for (a key, a CFA) does not exist."""

    exit_code = ExitCode.NOT_FOUND


class StoreUnavailableError(CfakeyError):
    """The key store cannot be used: no keyring, locked, wrong password, no terminal."""

    exit_code = ExitCode.STORE_UNAVAILABLE


class StoreUnreachableError(StoreUnavailableError):
    """A remote store refused the connection or did not answer in time: reading it back
    now would wait as long again."""


class DataCorruptedError(CfakeyError):
    """A local file (encrypted store, metadata database) is damaged or too new."""

    exit_code = ExitCode.DATA_CORRUPTED


class AlreadyExistsError(CfakeyError):
    """Refusing to overwrite something without an explicit ``--force`` or ``--yes``."""

    exit_code = ExitCode.ALREADY_EXISTS


class ConcurrentChangeError(AlreadyExistsError):
    """A shared store's entry changed between reading it and writing it (check-and-set)."""


class BusyError(CfakeyError):
    """Another cfakey has held the metadata database for longer than the wait allows."""

    exit_code = ExitCode.BUSY
