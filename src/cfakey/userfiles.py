"""Reading a file the operator names (template, key file, import file): one rule, one exit code.

A file that is not there, is a folder or cannot be read is a usage error (exit code 2,
``USAGE``): the operator typed a path that does not designate a readable file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cfakey.errors import UsageError, os_reason

if TYPE_CHECKING:
    from pathlib import Path


def read_user_file(path: Path, what: str) -> bytes:
    """The bytes of ``path``; ``what`` names the file in the error (« Modèle », « Fichier »).

    Errors (all :class:`UsageError`, exit code 2) never quote the content, only the path:
    « {what} introuvable : {path}. », « {what} illisible : {path} est un dossier. »,
    « {what} illisible : {path} ({raison}). ».
    """
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError(_problem(error, path, what)) from None


def _problem(error: OSError, path: Path, what: str) -> str:
    if isinstance(error, FileNotFoundError):
        return f"{what} introuvable : {path}."
    if isinstance(error, IsADirectoryError):
        return f"{what} illisible : {path} est un dossier, pas un fichier."
    return f"{what} illisible : {path} ({os_reason(error)})."
