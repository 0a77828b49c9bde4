"""The ``import`` use-case: read a CSV or JSON file, validate every row, store all or nothing.

Reading turns the file into rows whose every field passed its own check;
:func:`plan_import` validates each row against the registry and what is stored, and
:func:`run_import` stores the plan in one store session and one metadata transaction.

Nothing read from the operator's file may reach a name, a message or the journal before
it is known to be one line of reasonable length made of printable characters: a stray
``"`` in a CSV otherwise swallows the following rows, keys included, into one field. A
field that spans lines or is too long is an error naming its line; no error quotes a value.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfakey.core.codes import JournalAction
from cfakey.core.import_text import date_text, normal_header
from cfakey.core.keys import (
    CleanKey,
    Expiry,
    clean_key,
    date_required,
    describe_slots,
    resolve_expiry,
    same_key_elsewhere,
)
from cfakey.errors import ExitCode, UsageError
from cfakey.expiry import parse_date
from cfakey.identifiers import CFA_NAME_MAX

if TYPE_CHECKING:
    from cfakey.metadata import Metadata
    from cfakey.registry.model import Opco, Registry
    from cfakey.stores.base import KeyStore

IMPORT_COLUMNS = ("cfa", "opco", "key")
OPTIONAL_COLUMNS = ("expires", "obtained", "cfa_name")
#: The header names (as :func:`normal_header` writes them) of each field, French and
#: English; ``cfa`` is the SIRET, as in cfakey's own files, unless a SIRET column exists.
_ALIASES: dict[str, tuple[str, ...]] = {
    "cfa": ("cfa", "siret", "nsiret", "nosiret", "numerosiret", "siretducfa", "cfasiret"),
    "opco": ("opco", "opcoid", "nomdelopco"),
    "key": ("key", "cle", "cleapi", "apikey", "cledapi", "cfakey", "x-api-key"),
    "expires": (
        "expires",
        "expiresat",
        "expiration",
        "dateexpiration",
        "datedexpiration",
        "echeance",
        "dateecheance",
        "datedecheance",
        "expirele",
    ),
    "obtained": ("obtained", "obtention", "dateobtention", "datedobtention", "obtenuele"),
    "cfa_name": ("cfaname", "nomducfa", "nomcfa", "site", "etablissement", "cfa", "nom"),
}
#: Every header name cfakey reads (normalised), and the field it means.
COLUMN_NAMES: dict[str, str] = {
    normal_header(alias): column
    for column, aliases in reversed(_ALIASES.items())
    for alias in aliases
}
#: Columns of cfakey's own exports that import does not need: skipped without a warning.
EXPORT_ONLY_COLUMNS = frozenset(
    normal_header(name)
    for name in (
        "variable",
        "en_tete",
        "header",
        "empreinte",
        "fingerprint",
        "cfa.siren",
        "opco.name",
        "oauth_client_required",
    )
)
#: Longest name of an ignored column quoted in a warning; a longer one is given by position.
SHOWN_NAME_MAX = 40

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
#: The problem of a row without the date its OPCO's portal shows (``add`` asks for it).
DATE_REQUIRED = "date d'échéance requise pour cet OPCO (colonne expires)"
#: A SIRET Excel showed as ``8,12346E+13``: its last digits are lost, the sheet must change.
SCIENTIFIC_SIRET = (
    "SIRET en notation scientifique (Excel l'a pris pour un nombre) : formatez la colonne "
    "en « Texte » et ressaisissez les SIRET"
)
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

    def __init__(self, problems: Sequence[ImportProblem], notes: Sequence[str] = ()) -> None:
        shown = "\n".join(f"  {problem}" for problem in problems[:20])
        more = f"\n  … et {len(problems) - 20} autre(s)" if len(problems) > 20 else ""
        noted = "".join(f"\n  {note}" for note in notes)
        super().__init__(
            f"{len(problems)} erreur(s) dans le fichier ; rien n'a été importé :"
            f"\n{shown}{more}{noted}",
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


@dataclass(frozen=True)
class Columns:
    """What a header means: the field of each column (``None``: not read), the ignored ones."""

    fields: tuple[str | None, ...]
    ignored: tuple[str, ...]
    #: Each read field's column as the file writes it (« N° SIRET »): what errors name.
    written: Mapping[str, str] = field(default_factory=dict)


def match_columns(names: Sequence[str], where: str) -> Columns:
    """The field each header name means, the one place a name becomes a field.

    Names match without regard to case, accents, spaces or punctuation, in French or
    English (:data:`COLUMN_NAMES`). A field given by two columns is an error naming it
    (``where`` says which file or JSON element): keeping either value silently could store
    the wrong key. A column cfakey does not read (a typo such as ``expire``) is named in
    :attr:`Columns.ignored`; an unnamed one (a separator at the end of each line) and the
    columns only cfakey's exports write are not.
    """
    normals = [normal_header(name) for name in names]
    found_fields = [_field_of(normal, normals) for normal in normals]
    written = {  # a name matched to a field is one of its aliases: never a key
        found: " ".join(str(name).split())
        for name, found in zip(names, found_fields, strict=True)
        if found is not None
    }
    fields: list[str | None] = []
    ignored: list[str] = []
    for position, (name, normal, found) in enumerate(
        zip(names, normals, found_fields, strict=True), start=1
    ):
        if found is not None and found in fields:
            raise UsageError(
                f"{where} : la colonne « {found} » apparaît deux fois (colonnes "
                f"{fields.index(found) + 1} et {position}) : rien n'a été importé.",
                hint="Gardez une seule colonne par champ, puis relancez cfakey import.",
            )
        fields.append(found)
        export_only = normal in EXPORT_ONLY_COLUMNS or (normal == "opco" and "opcoid" in normals)
        if found is None and normal and not export_only:
            shown = " ".join(str(name).split())
            fits = len(shown) <= SHOWN_NAME_MAX and shown.isprintable()
            ignored.append(shown if fits else f"n° {position}")
    return Columns(tuple(fields), tuple(ignored), written)


def _field_of(normal: str, normals: Sequence[str]) -> str | None:
    """The field of one header, knowing the others: in cfakey's exports, ``cfa`` is the
    CFA's name beside a ``siret`` column, and ``opco`` the OPCO's name beside ``opco_id``."""
    if normal == "cfa" and any(COLUMN_NAMES.get(name) == "cfa" != name for name in normals):
        return "cfa_name"
    if normal == "opco" and "opcoid" in normals:
        return None
    return COLUMN_NAMES.get(normal)


def ignored_note(column: str) -> str:
    """The French warning for a column cfakey does not read."""
    return f"colonne ignorée : {column}"


@dataclass(frozen=True)
class ImportFile:
    """The rows of an import file, and the columns it has that cfakey does not read."""

    rows: list[dict[str, str]]
    ignored: tuple[str, ...] = ()
    #: Each field's column as the file writes it (CSV), for the errors to name it so.
    written: Mapping[str, str] = field(default_factory=dict)


def read_import_file(path: Path, encoding: str | None = None) -> list[dict[str, str]]:
    """Rows of a CSV (``;``, ``,`` or tab) or JSON file as dictionaries of checked strings."""
    return read_import(path, encoding).rows


def read_import(path: Path, encoding: str | None = None) -> ImportFile:
    """The rows of a CSV (``;``, ``,`` or tab) or JSON file, as dictionaries of checked strings.

    The encoding is ``encoding``, else detected (:func:`cfakey.core.import_text.decode`); a
    workbook is refused with what to do. A field that fails :func:`field_problem` is left
    out of its row, and the problem is recorded under :func:`problem_field` of its column
    instead, so that the import lists it with every other problem of the file.
    """
    from cfakey.core.import_text import decode, refuse_workbook
    from cfakey.userfiles import IMPORT_LIMIT, InputTooLongError, read_user_file

    try:
        data = read_user_file(path, "Fichier", limit=IMPORT_LIMIT)
    except InputTooLongError as error:
        raise error.nothing_saved() from None
    refuse_workbook(path, data[:8])
    text = decode(path, data, encoding)
    stripped = text.lstrip()
    if path.suffix.lower() == ".json" or stripped.startswith(("[", "{")):
        return _json_rows(path, text)
    return _csv_rows(path, text)


class _JsonObject(dict[str, Any]):
    """A JSON object that keeps every name it was given (a plain dict keeps the last).

    An object inside it (``"cfa": {"siret": …, "name": …}`` in cfakey's JSON export) is
    read as the columns ``cfa.siret`` and ``cfa.name`` when cfakey knows every such name;
    any other object stays one value, refused as such.
    """

    def __init__(self, pairs: list[tuple[str, Any]]) -> None:
        flat: list[tuple[str, Any]] = []
        for name, value in pairs:
            inner = (
                [(f"{name}.{part}", item) for part, item in value.pairs]
                if isinstance(value, _JsonObject)
                else []
            )
            if inner and all(_known_column(flat_name) for flat_name, _ in inner):
                flat.extend(inner)
            else:
                flat.append((name, value))
        super().__init__(flat)
        self.pairs: list[tuple[str, Any]] = flat
        self.names = [name for name, _ in flat]


def _known_column(name: str) -> bool:
    normal = normal_header(name)
    return normal in COLUMN_NAMES or normal in EXPORT_ONLY_COLUMNS


def _json_rows(path: Path, text: str) -> ImportFile:
    import json

    try:
        # Numbers are kept as written: a 5,000-digit integer is then just a long value.
        data = json.loads(
            text,
            parse_int=str,
            parse_float=str,
            parse_constant=str,
            object_pairs_hook=_JsonObject,
        )
    except json.JSONDecodeError as error:
        raise UsageError(f"JSON invalide dans {path} (ligne {error.lineno}).") from None
    except RecursionError:
        raise UsageError(f"JSON invalide dans {path} : imbrication trop profonde.") from None
    if isinstance(data, dict) and isinstance(data.get("keys"), list):
        data = data["keys"]
    if not isinstance(data, list):
        raise UsageError(f"{path} : une liste d'objets JSON est attendue.")
    rows: list[dict[str, str]] = []
    ignored: dict[str, None] = {}  # ordered, once each
    for number, item in enumerate(data, start=1):
        if not isinstance(item, _JsonObject):
            raise UsageError(f"{path} : l'élément {number} n'est pas un objet JSON.")
        columns = match_columns(item.names, f"{path}, élément {number}")
        ignored.update(dict.fromkeys(columns.ignored))
        row: dict[str, str] = {"__row__": str(number)}
        for column, (_, value) in zip(columns.fields, item.pairs, strict=True):
            text_value = _json_scalar(value)
            problem = (
                "un texte ou un nombre est attendu"
                if text_value is None
                else field_problem(column or "", text_value)
            )
            if problem is not None:
                row[problem_field(column or "(non reconnue)")] = problem
            elif column is not None:
                row[column] = text_value or ""
        rows.append(row)
    return ImportFile(rows, tuple(ignored))


def _json_scalar(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return None  # an object or a list


def _csv_rows(path: Path, text: str) -> ImportFile:
    import csv
    import io

    from cfakey.core.import_text import separator

    delimiter = separator(text.split("\n", 1)[0])
    # A file object, not split lines: line_num then counts the file's real lines, so that
    # a quoted value spanning lines is reported at the line where it starts.
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise UsageError(f"Le fichier {path} est vide.")
        columns = match_columns(header, str(path))
        _require_columns(path, columns.fields)
        rows: list[dict[str, str]] = []
        start = reader.line_num + 1  # each record starts on the line after the previous one
        for values in reader:
            if any(value.strip() for value in values):  # not a blank line nor Excel's ;;;;
                rows.append(_csv_row(columns.fields, values, start, delimiter))
            start = reader.line_num + 1
    except csv.Error:
        raise UsageError(
            f"{path}, ligne {reader.line_num} : CSV illisible (caractère nul, "
            'guillemet « " » non refermé ou valeur de plus de 131 072 caractères).'
        ) from None
    return ImportFile(rows, columns.ignored, columns.written)


def _require_columns(path: Path, columns: Sequence[str | None]) -> None:
    missing = [column for column in IMPORT_COLUMNS if column not in columns]
    if missing:
        raise UsageError(
            f"{path} : colonne(s) manquante(s) : {', '.join(missing)}.",
            hint=f"Colonnes attendues : {', '.join(IMPORT_COLUMNS)} ; "
            f"facultatives : {', '.join(OPTIONAL_COLUMNS)}.",
        )


def _csv_row(
    columns: Sequence[str | None], values: Sequence[str], line: int, delimiter: str
) -> dict[str, str]:
    """One CSV record as a row of checked values and of the problems found."""
    from cfakey.core.import_text import SEPARATORS

    row = {"__line__": str(line)}
    if len(values) > len(columns):
        row["__extra__"] = "plus de valeurs que de colonnes"
    elif len(values) == 1 < len(columns) and any(sep in values[0] for sep in SEPARATORS):
        shown = "tabulation" if delimiter == "\t" else delimiter
        row["__extra__"] = f"séparateur différent de celui de l'en-tête (« {shown} »)"
        return row
    for position, (column, value) in enumerate(zip(columns, values, strict=False), start=1):
        problem = field_problem(column or "", value)
        if problem is not None:
            row[problem_field(column or f"n° {position}")] = problem
        elif column is not None:
            row[column] = value
    return row


# Plan and run ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ImportRow:
    """One validated row, ready to store."""

    number: int
    siret: str
    cfa_name: str | None
    opco: Opco
    key: CleanKey
    expiry: Expiry
    obtained: date


@dataclass(frozen=True)
class ImportPlan:
    """Every row of the file, validated; nothing is stored until :func:`run_import`."""

    rows: tuple[ImportRow, ...]
    new_cfas: tuple[tuple[str, str], ...]
    replaced: tuple[tuple[str, str], ...]
    warnings: tuple[str, ...] = field(default_factory=tuple)
    #: Rows whose very key is already stored in their slot: nothing to do (« inchangée »).
    unchanged: tuple[tuple[str, str], ...] = ()
    #: Invalid rows left out (``--ignorer-invalides``), each with why.
    skipped: tuple[ImportProblem, ...] = ()


def plan_import(
    rows: Sequence[Mapping[str, str]],
    metadata: Metadata,
    registry: Registry,
    *,
    now: datetime,
    replace: bool,
    ignored: Sequence[str] = (),
    skip_invalid: bool = False,
    written: Mapping[str, str] | None = None,
) -> ImportPlan:
    """Validate every row; raise one error listing every problem, or return the plan.

    ``ignored`` names the columns cfakey does not read: warnings of the plan, or notes of
    the error (a typo such as ``expire`` often explains the problems). With
    ``skip_invalid`` the invalid rows are left out and listed in :attr:`ImportPlan.skipped`,
    unless no row at all can be imported. ``written`` names each field's column as the
    file writes it (« N° SIRET » rather than « cfa »), in the problems.
    """
    notes = tuple(ignored_note(column) for column in ignored)
    if not rows:
        raise UsageError("Le fichier ne contient aucune ligne à importer.")
    checker = _RowChecker(metadata, registry, now=now, replace=replace)
    for index, raw in enumerate(rows):
        checker.check(int(raw.get("__row__") or raw.get("__line__") or index + 2), raw)
    unit = "élément" if "__row__" in rows[0] else "ligne"
    names = written or {}
    checker.problems = [
        dataclasses.replace(problem, unit=unit, column=names.get(problem.column, problem.column))
        for problem in checker.problems
    ]
    if checker.problems and not (skip_invalid and (checker.planned or checker.unchanged)):
        raise ImportRowsError(checker.problems, notes)
    return ImportPlan(
        tuple(checker.planned),
        tuple(checker.new_cfas.items()),
        tuple(checker.replaced),
        warnings=notes,
        unchanged=tuple(checker.unchanged),
        skipped=tuple(checker.problems),
    )


class _RowChecker:
    """Validates import rows one by one, remembering what earlier rows used."""

    def __init__(
        self, metadata: Metadata, registry: Registry, *, now: datetime, replace: bool
    ) -> None:
        self.metadata = metadata
        self.registry = registry
        self.now = now
        self.today = now.astimezone().date()
        self.replace = replace
        self.known_cfas = {record.siret for record in metadata.list_cfas()}
        self.problems: list[ImportProblem] = []
        self.planned: list[ImportRow] = []
        self.new_cfas: dict[str, str] = {}
        self.replaced: list[tuple[str, str]] = []
        self.unchanged: list[tuple[str, str]] = []
        self.seen_slots: dict[tuple[str, str], int] = {}
        self.seen_keys: dict[str, tuple[int, str, str]] = {}

    def check(self, number: int, raw: Mapping[str, str]) -> None:
        if "__extra__" in raw:
            self.problems.append(ImportProblem(number, "*", raw["__extra__"]))
            return
        recorded = recorded_problems(raw, number)
        found: list[ImportProblem] = []
        siret = self._siret(number, raw, found)
        opco = self._opco(number, raw, found)
        cfa_name = self._cfa_name(number, raw, found)
        key: CleanKey | None = None
        try:
            key = clean_key(raw.get("key") or "", opco)
        except UsageError as error:
            found.append(ImportProblem(number, "key", _first_sentence(error.message)))
        obtained = self._obtained(number, raw, found)
        expiry: Expiry | None = None
        expires_text = self._expires_text(number, raw, found)
        if opco is not None and key is not None:
            expiry = self._expiry(number, opco, key, obtained, expires_text, found)
        if recorded:
            # A field that failed its own check was left out: say why, not that it is missing.
            bad = {problem.column for problem in recorded}
            found = recorded + [problem for problem in found if problem.column not in bad]
        if found or opco is None or key is None or expiry is None:
            self.problems.extend(found)
            return
        if self._duplicate(number, siret, opco, key) or self._stored_elsewhere(
            number, siret, opco, key
        ):
            return
        if siret not in self.known_cfas:
            self.new_cfas.setdefault(siret, cfa_name or f"CFA {siret}")
        elif not self._slot_free(number, siret, opco, key):
            return
        self.planned.append(ImportRow(number, siret, cfa_name, opco, key, expiry, obtained))

    def _slot_free(self, number: int, siret: str, opco: Opco, key: CleanKey) -> bool:
        """Whether the row's key goes in its slot: empty, or to replace (``--yes``).

        The very key already stored there is « inchangée »: nothing to write or replace.
        """
        from cfakey.stores.base import fingerprint

        stored = self.metadata.get_key(siret, opco.id)
        if stored is None:
            return True
        if stored.fingerprint == fingerprint(key.value):
            self.unchanged.append((siret, opco.id))
            return False
        if not self.replace:
            message = (
                f"une clé {opco.id} est déjà enregistrée pour ce CFA (--yes pour la remplacer)"
            )
            self.problems.append(ImportProblem(number, "opco", message, conflict=True))
            return False
        self.replaced.append((siret, opco.id))
        return True

    def _stored_elsewhere(self, number: int, siret: str, opco: Opco, key: CleanKey) -> bool:
        """The key is already stored for another slot: refused as ``add`` does, unless --yes."""
        from cfakey.stores.base import fingerprint

        others = same_key_elsewhere(
            self.metadata, self.registry, siret, opco.id, fingerprint(key.value)
        )
        if not others or self.replace:
            return False
        message = (
            f"clé déjà enregistrée pour {describe_slots(others)} : une clé collée au mauvais "
            "endroit ? (--yes pour l'enregistrer quand même)"
        )
        self.problems.append(ImportProblem(number, "key", message, conflict=True))
        return True

    def _siret(self, number: int, raw: Mapping[str, str], found: list[ImportProblem]) -> str:
        from cfakey.core.import_text import scientific_number
        from cfakey.identifiers import validate_siret

        text = raw.get("cfa") or ""
        if scientific_number(text):
            found.append(ImportProblem(number, "cfa", SCIENTIFIC_SIRET))
            return ""
        try:
            return validate_siret(text)
        except UsageError as error:
            found.append(ImportProblem(number, "cfa", _first_sentence(error.message)))
            return ""

    def _opco(self, number: int, raw: Mapping[str, str], found: list[ImportProblem]) -> Opco | None:
        from cfakey.registry.names import resolve

        try:
            return resolve(self.registry, raw.get("opco") or "")
        except UsageError as error:
            found.append(ImportProblem(number, "opco", _first_sentence(error.message)))
            return None

    def _cfa_name(
        self, number: int, raw: Mapping[str, str], found: list[ImportProblem]
    ) -> str | None:
        from cfakey.identifiers import clean_cfa_name

        text = raw.get("cfa_name") or ""
        if not text.strip():
            return None
        try:
            return clean_cfa_name(text)
        except UsageError as error:
            found.append(ImportProblem(number, "cfa_name", _first_sentence(error.message)))
            return None

    def _obtained(self, number: int, raw: Mapping[str, str], found: list[ImportProblem]) -> date:
        text = date_text(raw.get("obtained") or "")
        if not text:
            return self.today
        try:
            obtained = parse_date(text).date()
        except UsageError as error:
            found.append(ImportProblem(number, "obtained", _first_sentence(error.message)))
            return self.today
        if obtained > self.today:
            found.append(ImportProblem(number, "obtained", "date d'obtention dans le futur"))
        return obtained

    def _expires_text(
        self, number: int, raw: Mapping[str, str], found: list[ImportProblem]
    ) -> str | None:
        text = date_text(raw.get("expires") or "") or None
        if text is not None:
            try:
                parse_date(text)
            except UsageError as error:
                found.append(ImportProblem(number, "expires", _first_sentence(error.message)))
                return None
        return text

    def _expiry(  # noqa: PLR0917 - the row's parts, checked one by one above
        self,
        number: int,
        opco: Opco,
        key: CleanKey,
        obtained: date,
        expires: str | None,
        found: list[ImportProblem],
    ) -> Expiry | None:
        """The key's expiry by the rule ``add`` applies, or ``None`` and the problem."""
        if expires is None and date_required(opco, key.value):
            if all(problem.column != "expires" for problem in found):  # not unreadable
                found.append(ImportProblem(number, "expires", DATE_REQUIRED))
            return None
        try:
            return resolve_expiry(opco, key.value, obtained=obtained, now=self.now, expires=expires)
        except UsageError as error:
            found.append(ImportProblem(number, "expires", _first_sentence(error.message)))
            return None

    def _duplicate(self, number: int, siret: str, opco: Opco, key: CleanKey) -> bool:
        from cfakey.stores.base import fingerprint

        slot = (siret, opco.id)
        if slot in self.seen_slots:
            message = f"doublon : même CFA et même OPCO qu'à la ligne {self.seen_slots[slot]}"
            self.problems.append(ImportProblem(number, "opco", message))
            return True
        self.seen_slots[slot] = number
        fp = fingerprint(key.value)
        other = self.seen_keys.get(fp)
        # A SIREN-wide key (Afdas, OPCO Santé...) is rightly repeated for each SIRET of the SIREN.
        if other is not None and not (
            other[2] == opco.id and opco.scope == "siren" and other[1][:9] == siret[:9]
        ):
            self.problems.append(ImportProblem(number, "key", f"même clé qu'à la ligne {other[0]}"))
            return True
        self.seen_keys.setdefault(fp, (number, siret, opco.id))
        return False


def _first_sentence(message: str) -> str:
    head = message.split(" : rien n'a été", 1)[0].split(". ", 1)[0].rstrip(".")
    if head[1:2].isupper():  # an acronym: SIRET, OPCO
        return head
    return head[:1].lower() + head[1:]


@dataclass(frozen=True)
class ImportResult:
    """What the import stored (or, in a simulation, would store), and what it left."""

    imported: int
    new_cfas: int
    replaced: int
    unusual: int = 0
    #: What the operator should know although the import succeeded (ignored columns).
    warnings: tuple[str, ...] = ()
    unchanged: int = 0
    skipped: tuple[ImportProblem, ...] = ()
    #: The plan, row by row (what ``--dry-run`` shows).
    plan: ImportPlan | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class ImportOptions:
    """How to read and store the file: the operator's choices on the command line."""

    replace: bool = False
    encoding: str | None = None
    skip_invalid: bool = False
    dry_run: bool = False


def import_file(
    path: Path,
    open_store: Callable[[], KeyStore],
    metadata: Metadata,
    registry: Registry,
    *,
    now: datetime,
    replace: bool = False,
    options: ImportOptions | None = None,
) -> ImportResult:
    """Read, validate and store every key of ``path``; the store is opened once all is valid.

    In a simulation (``options.dry_run``) nothing is opened nor written: the plan is returned.
    """
    options = options or ImportOptions(replace=replace)
    read = read_import(path, options.encoding)
    plan = plan_import(
        read.rows,
        metadata,
        registry,
        now=now,
        replace=options.replace,
        ignored=read.ignored,
        skip_invalid=options.skip_invalid,
        written=read.written,
    )
    if options.dry_run:
        result = ImportResult(len(plan.rows), len(plan.new_cfas), len(plan.replaced))
    else:
        result = (
            run_import(open_store(), metadata, plan, now=now)
            if plan.rows
            else ImportResult(0, 0, 0)
        )
    return dataclasses.replace(
        result,
        unusual=sum(1 for row in plan.rows if row.key.warnings),
        warnings=plan.warnings,
        unchanged=len(plan.unchanged),
        skipped=plan.skipped,
        plan=plan,
        dry_run=options.dry_run,
    )


def run_import(
    store: KeyStore, metadata: Metadata, plan: ImportPlan, *, now: datetime
) -> ImportResult:
    """Store every planned key in one store session, then all metadata in one transaction.

    Each entry's intent is recorded first (:func:`cfakey.core.storage.apply_changes`): if
    the metadata cannot be written the store entries are put back and checked, and what
    cannot be put back is resolved by the next command.
    """
    from cfakey.core.storage import Change, apply_changes
    from cfakey.metadata import KeyRecord, current_user
    from cfakey.stores.base import fingerprint

    user = current_user()
    stored_at = now.astimezone(UTC).replace(microsecond=0)
    for row in plan.rows:  # a key the store cannot hold stops the import before any write
        store.check_secret(row.key.value)
    new_cfas = dict(plan.new_cfas)
    changes = [
        Change(
            row.siret,
            row.opco.id,
            JournalAction.IMPORTED.id,
            row.key.value,
            KeyRecord(
                siret=row.siret,
                opco_id=row.opco.id,
                obtained_on=row.obtained,
                stored_at=stored_at,
                expires_at=row.expiry.expires_at,
                expiry_source=row.expiry.source,
                fingerprint=fingerprint(row.key.value),
                os_user=user,
                store=store.kind,
            ),
            detail=f"ligne {row.number}",
            cfa_name=new_cfas.get(row.siret),
        )
        for row in plan.rows
    ]
    apply_changes(store, metadata, changes)
    return ImportResult(
        imported=len(plan.rows), new_cfas=len(plan.new_cfas), replaced=len(plan.replaced)
    )
