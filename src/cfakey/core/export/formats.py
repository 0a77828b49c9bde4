"""The export formats, as a table: one renderer per format, each quoting for its own reader.

Adding a format is one renderer and one line of :data:`FORMAT_TABLE`; ``--format``, its
help and the error for an unknown name are built from the table.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from cfakey.core.export.selection import ExportedKey, key_variable
from cfakey.errors import UsageError

KEY_HEADER = "X-API-KEY"
SOFTWARE_HEADERS = ("EDITEUR", "LOGICIEL", "VERSION")
EXPORT_SCHEMA = "cfakey-export/1"
CSV_COLUMNS = (
    "variable",
    "siret",
    "cfa",
    "opco_id",
    "opco",
    "cle",
    "en_tete",
    "expiration",
    "empreinte",
)
# Characters a spreadsheet reads as the start of a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class Renderer(Protocol):
    """Writes the whole export as text, quoting each key so its own reader gets it back."""

    def __call__(
        self, keys: Sequence[ExportedKey], *, qualified: bool, exported_at: datetime
    ) -> str: ...


@dataclass(frozen=True)
class ExportFormat:
    """One ``--format``: its name, what it is (French, for the help) and its renderer."""

    name: str
    label: str
    render: Renderer


# Quoting -------------------------------------------------------------------------------


def shell_quote(value: str) -> str:
    """POSIX single quotes: everything literal, a ``'`` written as ``'\\''``."""
    return "'" + value.replace("'", "'\\''") + "'"


def dotenv_quote(value: str, *, what: str = "la valeur") -> str:
    """Double quotes as python-dotenv reads them: ``\\`` and ``"`` escaped, line breaks as ``\\n``.

    python-dotenv expands ``${NAME}`` even inside quotes and has no escape for it, so a
    value holding ``${`` cannot be written faithfully: refused rather than corrupted.
    """
    if "${" in value:
        raise UsageError(
            f"{what} contient « ${{ », que les lecteurs de fichiers .env remplacent "
            "par une variable : format dotenv impossible.",
            hint="Utilisez --format env, json ou yaml, ou cfakey exec.",
        )
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    )
    return f'"{escaped}"'


def _comment(text: str) -> str:
    """A one-line comment body: no line break can escape the ``#``."""
    return " ".join(text.split())


def _expiry_text(expires_at: datetime | None) -> str:
    if expires_at is None:
        return "échéance inconnue"
    return "expire le " + expires_at.astimezone().strftime("%d/%m/%Y")


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


# Renderers -----------------------------------------------------------------------------


def _variables(
    keys: Sequence[ExportedKey],
    assignment: Callable[[str, ExportedKey], str],
    *,
    qualified: bool,
    exported_at: datetime,
) -> str:
    """A commented list of ``NAME=value`` lines, each written by ``assignment``."""
    when = exported_at.astimezone()
    lines = [f"# Clés CFA exportées par cfakey le {when:%d/%m/%Y à %H:%M} : ne pas diffuser."]
    for key in keys:
        about = f"# {key.opco_name}, {key.cfa_name} ({key.siret}), {_expiry_text(key.expires_at)}"
        lines.append(_comment(about))
        lines.append(assignment(key_variable(key, qualified=qualified), key))
    return "\n".join(lines) + "\n"


def render_env(keys: Sequence[ExportedKey], *, qualified: bool, exported_at: datetime) -> str:
    """``export NAME='key'`` lines for a POSIX shell (``. fichier``)."""
    return _variables(
        keys,
        lambda name, key: f"export {name}={shell_quote(key.secret)}",
        qualified=qualified,
        exported_at=exported_at,
    )


def render_dotenv(keys: Sequence[ExportedKey], *, qualified: bool, exported_at: datetime) -> str:
    """``NAME="key"`` lines as python-dotenv and docker compose read them."""

    def assignment(name: str, key: ExportedKey) -> str:
        what = f"La clé {key.opco_name} du CFA {key.siret}"
        return f"{name}={dotenv_quote(key.secret, what=what)}"

    return _variables(keys, assignment, qualified=qualified, exported_at=exported_at)


def export_document(
    keys: Sequence[ExportedKey], *, qualified: bool, exported_at: datetime
) -> dict[str, Any]:
    """The ``json``/``yaml`` structure: a contract for integrators (``docs/export.md``)."""
    return {
        "schema": EXPORT_SCHEMA,
        "exported_at": exported_at.isoformat(),
        "api": {
            "key_header": KEY_HEADER,
            "software_headers": list(SOFTWARE_HEADERS),
            "usage": (
                f"Chaque requête porte l'en-tête {KEY_HEADER} avec la clé de l'OPCO, "
                "et les en-têtes EDITEUR, LOGICIEL et VERSION qui nomment le logiciel."
            ),
        },
        "keys": [
            {
                "variable": key_variable(key, qualified=qualified),
                "cfa": {"siret": key.siret, "siren": key.siren, "name": key.cfa_name},
                "opco": {"id": key.opco_id, "name": key.opco_name},
                "key": key.secret,
                "header": KEY_HEADER,
                "expires_at": _iso(key.expires_at),
                "fingerprint": key.fingerprint,
                "oauth_client_required": key.oauth_client_required,
            }
            for key in keys
        ],
    }


def render_json(keys: Sequence[ExportedKey], *, qualified: bool, exported_at: datetime) -> str:
    """:func:`export_document` as indented UTF-8 JSON."""
    document = export_document(keys, qualified=qualified, exported_at=exported_at)
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def render_yaml(keys: Sequence[ExportedKey], *, qualified: bool, exported_at: datetime) -> str:
    """:func:`export_document` as block YAML (every string quoted where YAML needs it)."""
    import yaml

    document = export_document(keys, qualified=qualified, exported_at=exported_at)
    text: str = yaml.safe_dump(
        document, allow_unicode=True, sort_keys=False, default_flow_style=False, width=1000
    )
    return text


def render_csv(keys: Sequence[ExportedKey], *, qualified: bool, exported_at: datetime) -> str:
    """One quoted row per key under :data:`CSV_COLUMNS`, CRLF line ends (RFC 4180)."""
    import csv

    del exported_at  # a spreadsheet has no place for it
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for key in keys:
        writer.writerow(
            (
                key_variable(key, qualified=qualified),
                key.siret,
                key.cfa_name,
                key.opco_id,
                key.opco_name,
                key.secret,
                KEY_HEADER,
                _iso(key.expires_at) or "",
                key.fingerprint,
            )
        )
    return buffer.getvalue()


def formula_risks(keys: Sequence[ExportedKey]) -> list[ExportedKey]:
    """Keys a spreadsheet would take for a formula if the column is not imported as text."""
    return [key for key in keys if key.secret.startswith(FORMULA_STARTS)]


# The table -----------------------------------------------------------------------------

FORMAT_TABLE: dict[str, ExportFormat] = {
    fmt.name: fmt
    for fmt in (
        ExportFormat("env", "variables d'un shell POSIX", render_env),
        ExportFormat("dotenv", "fichier .env de python-dotenv ou docker compose", render_dotenv),
        ExportFormat("json", "document JSON", render_json),
        ExportFormat("yaml", "document YAML", render_yaml),
        ExportFormat("csv", "tableau CSV pour tableur", render_csv),
    )
}
FORMATS = tuple(FORMAT_TABLE)


def format_help() -> str:
    """The ``--format`` help, from the table: each name with what it is."""
    return "Format : " + " ; ".join(f"{f.name} ({f.label})" for f in FORMAT_TABLE.values()) + "."


def check_format(name: str) -> ExportFormat:
    """The format called ``name``, or a French error listing the known ones."""
    fmt = FORMAT_TABLE.get(name)
    if fmt is None:
        raise UsageError(f"Format inconnu : formats disponibles : {', '.join(FORMATS)}.")
    return fmt


def render(keys: Sequence[ExportedKey], fmt: str, *, qualified: bool, exported_at: datetime) -> str:
    """The whole export in ``fmt`` (one of :data:`FORMATS`)."""
    return check_format(fmt).render(keys, qualified=qualified, exported_at=exported_at)
