"""What real spreadsheets put in an import file: encodings, separators, headers and dates.

The operator's file comes from Excel or LibreOffice far more often than from cfakey: a
French Excel writes Windows-1252 with ``;``, a paste from a sheet is tab-separated, dates
come as ``15/01/27``, ``30/06/2027 00:00:00`` or a serial number, headers are in French
with accents. Each is turned here into the one form :mod:`cfakey.core.imports` reads.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta
from pathlib import Path

from cfakey.errors import UsageError

#: Separators a CSV may use, most likely first when the header has as many of each.
SEPARATORS = (";", ",", "\t")
#: Workbook files (not text) and the program that wrote them.
_WORKBOOK_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".ods")
_ZIP_MAGIC = b"PK\x03\x04"
_OLE_MAGIC = b"\xd0\xcf\x11\xe0"
# Excel's day 0 (its serials count from 1899-12-30, the 1900 leap-year bug included).
_EXCEL_EPOCH = date(1899, 12, 30)
#: Excel serials cfakey reads as dates: 01/01/2000 to 31/12/2099, nothing else.
EXCEL_SERIALS = ((date(2000, 1, 1) - _EXCEL_EPOCH).days, (date(2099, 12, 31) - _EXCEL_EPOCH).days)
_SERIAL = re.compile(r"\d{5}(?:[.,]\d+)?")
_SHORT_YEAR = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{2})((?:\s.*)?)")
_SECONDS = re.compile(r"(\d{1,2}/\d{1,2}/\d{4}\s+\d{1,2}:\d{2}):\d{2}")
_SCIENTIFIC = re.compile(r"\d+(?:[.,]\d+)?[eE]\+?\d+")


def normal_header(name: str) -> str:
    """A header name without case, accents, spaces or punctuation: ``N° SIRET`` → ``nsiret``."""
    decomposed = unicodedata.normalize("NFKD", str(name))
    return "".join(char for char in decomposed.casefold() if char.isalnum() and char.isascii())


def refuse_workbook(path: Path, head: bytes) -> None:
    """A French error for an Excel or LibreOffice workbook, which is not a CSV."""
    if path.suffix.lower() in _WORKBOOK_SUFFIXES or head.startswith((_ZIP_MAGIC, _OLE_MAGIC)):
        raise UsageError(
            f"{path} est un classeur (Excel ou LibreOffice), pas un fichier CSV : "
            "rien n'a été importé.",
            hint="Dans le tableur : Fichier > Enregistrer sous > « CSV UTF-8 (délimité par "
            "des points-virgules) », puis cfakey import avec ce fichier .csv.",
        )


def decode(path: Path, data: bytes, encoding: str | None) -> str:
    """The file's text: ``encoding`` when given, else UTF-8 (BOM or not), else Windows-1252."""
    if encoding is not None:
        import codecs

        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            raise UsageError(
                "Encodage inconnu pour --encodage.", hint="Exemples : utf-8, cp1252, latin-1."
            ) from None
        try:
            return data.decode(name).removeprefix("\ufeff")
        except UnicodeDecodeError:
            raise UsageError(
                f"Le fichier {path} n'est pas lisible dans l'encodage demandé ({name}).",
                hint="Essayez sans --encodage : cfakey reconnaît UTF-8 et Windows-1252.",
            ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252")  # what a French Excel writes for « CSV (séparateur: ;) »
    except UnicodeDecodeError:
        raise UsageError(
            f"Le fichier {path} n'est ni en UTF-8 ni en Windows-1252.",
            hint="Enregistrez-le en « CSV UTF-8 », ou donnez son encodage avec --encodage.",
        ) from None


def separator(header_line: str) -> str:
    """The separator the header uses most (``;`` wins a tie: French Excel's)."""
    return max(SEPARATORS, key=header_line.count)


def date_text(text: str) -> str:
    """A spreadsheet's date in a form :func:`cfakey.expiry.parse_date` reads.

    ``15/01/27`` is 2027; ``30/06/2027 00:00:00`` drops its seconds; an ISO moment with
    an offset (what ``export`` writes) becomes the operator's local time; an Excel serial
    between 2000 and 2099 becomes its date. Anything else is returned unchanged, for
    ``parse_date`` to accept or refuse.
    """
    cleaned = text.strip()
    if _SERIAL.fullmatch(cleaned):
        days = float(cleaned.replace(",", "."))
        if EXCEL_SERIALS[0] <= days < EXCEL_SERIALS[1] + 1:
            moment = datetime.combine(_EXCEL_EPOCH, datetime.min.time()) + timedelta(days=days)
            return moment.strftime("%d/%m/%Y %H:%M")
        return cleaned
    short = _SHORT_YEAR.fullmatch(cleaned)
    if short is not None:
        day, month, year, rest = short.groups()
        cleaned = f"{day}/{month}/20{year}{rest}"
    seconds = _SECONDS.match(cleaned)
    if seconds is not None:
        cleaned = seconds.group(1) + cleaned[seconds.end() :]
    if len(cleaned) > 19 and cleaned[10:11] in {"T", " "} and cleaned[:4].isdigit():
        try:
            moment = datetime.fromisoformat(cleaned)
        except ValueError:
            return cleaned
        if moment.tzinfo is not None:
            return moment.astimezone().strftime("%d/%m/%Y %H:%M")
    return cleaned


def scientific_number(text: str) -> bool:
    """Whether ``text`` is a number Excel showed in scientific notation (``8,12346E+13``)."""
    return _SCIENTIFIC.fullmatch(text.strip()) is not None
