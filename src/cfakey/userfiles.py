"""Reading what the operator hands cfakey (files, standard input): one rule, one cap each.

A file that is not there, is a folder or cannot be read is a usage error (exit code 2,
``USAGE``): the operator typed a path that does not designate a readable file.

Every read is bounded and made in chunks: input that never ends (``/dev/zero``, ``yes |``,
the wrong device) stops at its cap with « Entrée trop longue » (exit 2) instead of filling
the memory, and a SIGTERM or Ctrl-C is handled between two chunks (exit 130). The caps
are documented in docs/commands.md (« Tailles maximales »).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, BinaryIO, TextIO

from cfakey.errors import UsageError, os_reason

if TYPE_CHECKING:
    from pathlib import Path

KIB = 1024
MIB = 1024 * KIB
#: A key typed, piped or read with ``--from-file`` (a JWT is a few KiB).
KEY_LIMIT = 64 * KIB
#: An import file: 100,000 rows, or a 10 MB field to be refused by its own check.
IMPORT_LIMIT = 64 * MIB
#: An ``inject`` template, a registry overlay (YAML).
TEMPLATE_LIMIT = 4 * MIB
REGISTRY_LIMIT = 4 * MIB
#: ``config.json``: a few settings.
CONFIG_LIMIT = 1 * MIB

_CHUNK = 1 * MIB
#: How errors name standard input.
STDIN = "l'entrée standard"


class InputTooLongError(UsageError):
    """Input over its cap: never read further. The message says nothing of saving (a
    read-only command saves nothing); a caller that could have written adds it
    (:meth:`nothing_saved`)."""

    def __init__(self, source: str, limit: int, *, suffix: str = ".") -> None:
        super().__init__(f"Entrée trop longue : {source} dépasse {size_text(limit)}{suffix}")
        self.source, self.limit = source, limit

    def nothing_saved(self) -> InputTooLongError:
        """The same error, saying that the command it stopped recorded nothing."""
        return InputTooLongError(self.source, self.limit, suffix=" ; rien n'a été enregistré.")


def size_text(limit: int) -> str:
    """A cap in French units (« 64 Kio », « 64 Mio »)."""
    return f"{limit // MIB} Mio" if limit >= MIB else f"{limit // KIB} Kio"


def read_bounded(stream: BinaryIO, limit: int, source: str) -> bytes:
    """All of ``stream``, read in chunks, or :class:`InputTooLongError` past ``limit`` bytes.

    ``source`` names the input in the error (a path, « l'entrée standard »).
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise InputTooLongError(source, limit)


def read_bounded_text(stream: TextIO, *, whole: bool, limit: int = KEY_LIMIT) -> str:
    """A line (with its end) or, with ``whole``, all of a text stream (standard input),
    at most ``limit`` characters besides the line end; else :class:`InputTooLongError`."""
    text = stream.read(limit + 1) if whole else stream.readline(limit + 2)
    if len(text.rstrip("\r\n")) > limit:
        # Standard input is read only for an answer to a command that records it.
        raise InputTooLongError(STDIN, limit).nothing_saved()
    return text


def read_user_file(path: Path, what: str, *, limit: int = TEMPLATE_LIMIT) -> bytes:
    """The bytes of ``path``, at most ``limit``; ``what`` names the file (« Modèle », « Fichier »).

    Errors (all :class:`UsageError`, exit code 2) never quote the content, only the path:
    « {what} introuvable : {path}. », « {what} illisible : {path} est un dossier. »,
    « {what} illisible : {path} ({raison}). », « Entrée trop longue : {path} dépasse … ».
    """
    try:
        with path.open("rb") as handle:
            return read_bounded(handle, limit, str(path))
    except OSError as error:
        raise UsageError(_problem(error, path, what)) from None


def _problem(error: OSError, path: Path, what: str) -> str:
    if isinstance(error, FileNotFoundError):
        return f"{what} introuvable : {path}."
    if isinstance(error, IsADirectoryError):
        return f"{what} illisible : {path} est un dossier, pas un fichier."
    return f"{what} illisible : {path} ({os_reason(error)})."
