"""Read an import file (CSV or JSON) into rows whose every field passed its own check.

Nothing read from the operator's file may reach a name, a message or the journal before
it is known to be one line of reasonable length made of printable characters: a stray
``"`` in a CSV otherwise swallows the following rows, keys included, into one field. A
field that spans lines or is too long is an error naming its line; no error quotes a value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cfakey.errors import ExitCode, UsageError
from cfakey.identifiers import CFA_NAME_MAX

IMPORT_COLUMNS = ("cfa", "opco", "key")
OPTIONAL_COLUMNS = ("expires", "obtained", "cfa_name")

#: Longest value accepted in each column, in characters. A key is opaque and may be a long
#: JWT; every other value is a short identifier, date or name.
FIELD_LIMITS: dict[str, int] = {
    "cfa": 32,
    "opco": 64,
    "key": 16_384,
    "expires": 32,
    "obtained": 32,
    "cfa_name": CFA_NAME_MAX,
}
#: Columns cfakey does not read (notes...) are ignored, but must still look like a field.
OTHER_FIELD_LIMIT = 1_000
PROBLEM_PREFIX = "!"
# Characters that end a line for str.splitlines(), beside \n and \r.
_LINE_BREAKS = frozenset("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")


@dataclass(frozen=True)
class ImportProblem:
    """Why a row cannot be imported (never quoting a value: it may be a key)."""

    row: int
    column: str
    message: str
    unit: str = "ligne"  # "élément" in a JSON list
    #: The row collides with a key already stored (``add`` would refuse it with exit 6).
    conflict: bool = False

    def __str__(self) -> str:
        return f"{self.unit} {self.row}, colonne « {self.column} » : {self.message}"


class ImportRowsError(UsageError):
    """Rows that failed validation; nothing was imported."""

    def __init__(self, problems: Sequence[ImportProblem]) -> None:
        shown = "\n".join(f"  {problem}" for problem in problems[:20])
        more = f"\n  … et {len(problems) - 20} autre(s)" if len(problems) > 20 else ""
        super().__init__(
            f"{len(problems)} erreur(s) dans le fichier ; rien n'a été importé :\n{shown}{more}",
            hint="Corrigez le fichier puis relancez cfakey import.",
        )
        self.problems = tuple(problems)
        if all(problem.conflict for problem in problems):
            # Only collisions with stored keys: the same refusal, and code, as ``add``.
            self.exit_code = ExitCode.ALREADY_EXISTS


def problem_field(column: str) -> str:
    """The name, in a row, under which the problem of ``column``'s value is recorded."""
    return PROBLEM_PREFIX + column


def recorded_problems(row: Mapping[str, str], number: int) -> list[ImportProblem]:
    """The problems :func:`read_import_file` recorded in ``row``."""
    return [
        ImportProblem(number, name.removeprefix(PROBLEM_PREFIX), message)
        for name, message in row.items()
        if name.startswith(PROBLEM_PREFIX)
    ]


def field_problem(column: str, value: str) -> str | None:
    """What is wrong with one raw value of ``column``, in French, or ``None``."""
    if any(char in _LINE_BREAKS for char in value):
        return "la valeur s'étend sur plusieurs lignes (guillemet « \" » non refermé ?)"
    limit = FIELD_LIMITS.get(column, OTHER_FIELD_LIMIT)
    if len(value) > limit:
        return f"valeur trop longue ({len(value)} caractères, au plus {limit} attendus)"
    if column != "key" and not value.replace("\t", " ").isprintable():
        # The key's own check explains its invisible characters better; a tab is a space.
        return "la valeur contient des caractères invisibles ou de contrôle"
    return None


def read_import_file(path: Path) -> list[dict[str, str]]:
    """Rows of a CSV (``,`` or ``;``) or JSON file as dictionaries of checked strings.

    A field that fails :func:`field_problem` is left out of its row, and the problem is
    recorded under :func:`problem_field` of its column instead, so that the import lists it
    with every other problem of the file.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UsageError(f"Fichier introuvable : {path}.") from None
    except UnicodeDecodeError:
        raise UsageError(
            f"Le fichier {path} n'est pas en UTF-8 : enregistrez-le en UTF-8 (CSV UTF-8)."
        ) from None
    except OSError as error:
        raise UsageError(f"Fichier illisible : {path} ({error.strerror}).") from None
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith(("[", "{")):
        return _json_rows(path, text)
    return _csv_rows(path, text)


def _json_rows(path: Path, text: str) -> list[dict[str, str]]:
    import json  # noqa: PLC0415

    try:
        # Numbers are kept as written: a 5,000-digit integer is then just a long value.
        data = json.loads(text, parse_int=str, parse_float=str, parse_constant=str)
    except json.JSONDecodeError as error:
        raise UsageError(f"JSON invalide dans {path} (ligne {error.lineno}).") from None
    except RecursionError:
        raise UsageError(f"JSON invalide dans {path} : imbrication trop profonde.") from None
    if isinstance(data, dict) and isinstance(data.get("keys"), list):
        data = data["keys"]
    if not isinstance(data, list):
        raise UsageError(f"{path} : une liste d'objets JSON est attendue.")
    rows: list[dict[str, str]] = []
    for number, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            raise UsageError(f"{path} : l'élément {number} n'est pas un objet JSON.")
        row: dict[str, str] = {"__row__": str(number)}
        for name, value in item.items():
            column = str(name).strip().lower()
            text_value = _json_scalar(value)
            problem = (
                "un texte ou un nombre est attendu"
                if text_value is None
                else field_problem(column, text_value)
            )
            if problem is not None:
                label = column if column in FIELD_LIMITS else "(non reconnue)"
                row[problem_field(label)] = problem
            elif column in FIELD_LIMITS:
                row[column] = text_value or ""
        rows.append(row)
    return rows


def _json_scalar(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return None  # an object or a list


def _csv_rows(path: Path, text: str) -> list[dict[str, str]]:
    import csv  # noqa: PLC0415
    import io  # noqa: PLC0415

    first_line = text.split("\n", 1)[0]
    delimiter = ";" if first_line.count(";") > first_line.count(",") else ","
    # A file object, not split lines: line_num then counts the file's real lines, so that
    # a quoted value spanning lines is reported at the line where it starts.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise UsageError(f"Le fichier {path} est vide.")
        columns = [name.strip().lower() for name in header]
        _require_columns(path, columns)
        rows: list[dict[str, str]] = []
        start = reader.line_num + 1  # each record starts on the line after the previous one
        for values in reader:
            if values:  # a blank line is an empty record
                rows.append(_csv_row(columns, values, start))
            start = reader.line_num + 1
    except csv.Error:
        raise UsageError(
            f"{path}, ligne {reader.line_num} : CSV illisible (caractère nul, "
            'guillemet « " » non refermé ou valeur de plus de 131 072 caractères).'
        ) from None
    return rows


def _require_columns(path: Path, columns: Sequence[str]) -> None:
    missing = [column for column in IMPORT_COLUMNS if column not in columns]
    if missing:
        raise UsageError(
            f"{path} : colonne(s) manquante(s) : {', '.join(missing)}.",
            hint=f"Colonnes attendues : {', '.join(IMPORT_COLUMNS)} ; "
            f"facultatives : {', '.join(OPTIONAL_COLUMNS)}.",
        )


def _csv_row(columns: Sequence[str], values: Sequence[str], line: int) -> dict[str, str]:
    """One CSV record as a row of checked values and of the problems found."""
    row = {"__line__": str(line)}
    if len(values) > len(columns):
        row["__extra__"] = "1"
    for position, (column, value) in enumerate(zip(columns, values, strict=False), start=1):
        problem = field_problem(column, value)
        if problem is not None:
            label = column if column in FIELD_LIMITS else f"n° {position}"
            row[problem_field(label)] = problem
        elif column in FIELD_LIMITS:
            row[column] = value
    return row
