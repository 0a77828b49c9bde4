"""Handing keys to the CFA's software: selection, file formats, variable names, templates.

Everything here returns values; the CLI decides where they go. Each format quotes a key
so that its own reader gets back exactly the stored characters, whatever they are.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfakey.errors import (
    AlreadyExistsError,
    CfakeyError,
    NotFoundError,
    UsageError,
    os_reason,
)

if TYPE_CHECKING:
    from cfakey.metadata import CfaRecord, KeyRecord, Metadata
    from cfakey.registry.model import Registry
    from cfakey.stores.base import KeyStore

FORMATS = ("env", "dotenv", "json", "yaml", "csv")
VARIABLE_PREFIX = "CFA_KEY"
KEY_HEADER = "X-API-KEY"
SOFTWARE_HEADERS = ("EDITEUR", "LOGICIEL", "VERSION")
DEFAULT_WARN_DAYS = 30
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
TEMPLATE_FILTERS = ("json", "xml")
TEMPLATE_ATTRIBUTES = ("key", "expires", "fingerprint", "siret")
# Characters a spreadsheet reads as the start of a formula (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ExportedKey:
    """One key on its way out, with what an integrator needs to use it."""

    siret: str
    cfa_name: str
    opco_id: str
    opco_name: str
    expires_at: datetime | None
    fingerprint: str
    oauth_client_required: bool
    secret: str = field(repr=False)

    @property
    def siren(self) -> str:
        """The legal unit of the CFA."""
        return self.siret[:9]


@dataclass(frozen=True)
class ExpiryFlag:
    """A key that has expired, or will within its OPCO's warning window."""

    siret: str
    cfa_name: str
    opco_id: str
    opco_name: str
    expires_at: datetime
    expired: bool

    def message(self) -> str:
        """One French line for stderr."""
        when = self.expires_at.astimezone().strftime("%d/%m/%Y")
        verb = "a expiré" if self.expired else "expire"
        key = f"la clé {self.opco_name} de « {self.cfa_name} » ({self.siret})"
        return f"Attention : {key} {verb} le {when}."


@dataclass(frozen=True)
class PlannedKey:
    """A key chosen for export, before its secret is read from the store."""

    cfa: CfaRecord
    record: KeyRecord
    opco_name: str
    oauth_client_required: bool


@dataclass(frozen=True)
class KeyPlan:
    """The keys a selection designates, and whether names must carry the SIRET."""

    keys: tuple[PlannedKey, ...]
    qualified: bool


class StrictExpiryError(CfakeyError):
    """``--strict`` and an expired or soon-expiring key in the selection."""


# Names ---------------------------------------------------------------------------------


def variable_name(opco_id: str, siret: str | None = None) -> str:
    """``CFA_KEY_<OPCO>`` for one CFA, ``CFA_KEY_<SIRET>_<OPCO>`` when several are exported."""
    opco_part = re.sub(r"[^A-Z0-9]", "_", opco_id.upper())
    if siret is None:
        return f"{VARIABLE_PREFIX}_{opco_part}"
    return f"{VARIABLE_PREFIX}_{siret}_{opco_part}"


def key_variable(key: ExportedKey, *, qualified: bool) -> str:
    """The variable that carries ``key`` in ``env``, ``dotenv`` and ``exec``."""
    return variable_name(key.opco_id, key.siret if qualified else None)


# Selection -----------------------------------------------------------------------------


def check_format(name: str) -> str:
    """The format, or a French error listing the known ones."""
    if name not in FORMATS:
        raise UsageError(f"Format inconnu : formats disponibles : {', '.join(FORMATS)}.")
    return name


def plan_export(
    metadata: Metadata,
    registry: Registry,
    *,
    cfa_query: str | None,
    all_cfas: bool,
    opco_ids: Sequence[str] = (),
) -> KeyPlan:
    """The keys of the chosen CFA(s) and OPCO(s), in registry order, or a French error."""
    from cfakey.core.cfas import resolve_cfa  # noqa: PLC0415
    from cfakey.registry.names import resolve  # noqa: PLC0415

    if all_cfas and cfa_query is not None:
        raise UsageError("--cfa et --toutes-cfa s'excluent : choisissez l'un ou l'autre.")
    wanted = [resolve(registry, name).id for name in opco_ids]
    if all_cfas:
        cfas = metadata.list_cfas()
        if not cfas:
            from cfakey.core.cfas import ADD_HINT  # noqa: PLC0415

            raise UsageError("Aucun CFA n'est enregistré.", hint=ADD_HINT)
    else:
        cfas = [resolve_cfa(metadata, cfa_query)]
    order = {opco.id: index for index, opco in enumerate(registry.opcos)}
    planned: list[PlannedKey] = []
    for cfa in sorted(cfas, key=lambda item: item.siret):
        records = [r for r in metadata.list_keys(cfa.siret) if not wanted or r.opco_id in wanted]
        for record in sorted(records, key=lambda r: (order.get(r.opco_id, len(order)), r.opco_id)):
            planned.append(_planned(registry, cfa, record))
    if not planned:
        raise NotFoundError(
            _nothing_selected(cfas, all_cfas=all_cfas, opco_ids=wanted), hint="Voir : cfakey list."
        )
    return KeyPlan(keys=tuple(planned), qualified=all_cfas)


def _planned(registry: Registry, cfa: CfaRecord, record: KeyRecord) -> PlannedKey:
    try:
        opco = registry.get(record.opco_id)
    except KeyError:
        return PlannedKey(cfa, record, record.opco_id, oauth_client_required=False)
    return PlannedKey(cfa, record, opco.name, oauth_client_required=opco.api.oauth_client_required)


def _nothing_selected(cfas: Sequence[CfaRecord], *, all_cfas: bool, opco_ids: Sequence[str]) -> str:
    where = (
        "aucun CFA"
        if not cfas
        else ("les CFA enregistrés" if all_cfas else f"le CFA {cfas[0].name}")
    )
    if opco_ids:
        return f"Aucune clé ne correspond à la sélection ({', '.join(opco_ids)}) pour {where}."
    return f"Aucune clé n'est enregistrée pour {where}."


def read_planned(
    store: KeyStore,
    plan: KeyPlan,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> list[ExportedKey]:
    """Read every planned secret in one store session (one unlock, one decryption).

    Each key's fingerprint is computed from the secret read, not taken from the plan:
    exports and the journal name the key actually handed out, even if it was replaced
    since the plan was made.
    """
    from cfakey.core.storage import read_key  # noqa: PLC0415
    from cfakey.stores.base import fingerprint  # noqa: PLC0415

    keys: list[ExportedKey] = []
    total = len(plan.keys)
    with store.batch():
        for done, item in enumerate(plan.keys, start=1):
            secret = read_key(
                store, item.cfa.siret, item.record.opco_id, recorded_in=item.record.store
            )
            keys.append(
                ExportedKey(
                    siret=item.cfa.siret,
                    cfa_name=item.cfa.name,
                    opco_id=item.record.opco_id,
                    opco_name=item.opco_name,
                    expires_at=item.record.expires_at,
                    fingerprint=fingerprint(secret),
                    oauth_client_required=item.oauth_client_required,
                    secret=secret,
                )
            )
            if on_progress is not None:
                on_progress(done, total)
    return keys


# Expiry --------------------------------------------------------------------------------


def expiry_flags(
    keys: Iterable[ExportedKey | PlannedKey],
    now: datetime,
    window: Callable[[str], int] = lambda _opco: DEFAULT_WARN_DAYS,
) -> list[ExpiryFlag]:
    """Keys already expired or expiring within their OPCO's window."""
    from cfakey.expiry import usable_moment  # noqa: PLC0415

    flags: list[ExpiryFlag] = []
    for key in keys:
        if isinstance(key, PlannedKey):
            siret, name, opco_id, opco_name = (
                key.cfa.siret,
                key.cfa.name,
                key.record.opco_id,
                key.opco_name,
            )
            expires_at = key.record.expires_at
        else:
            siret, name, opco_id, opco_name, expires_at = (
                key.siret,
                key.cfa_name,
                key.opco_id,
                key.opco_name,
                key.expires_at,
            )
        # Bounded again here: a flag must never overflow on a stored year 1 or 9999.
        expires_at = usable_moment(expires_at)
        if expires_at is None:
            continue
        expired = expires_at <= now
        if expired or expires_at <= now + timedelta(days=window(opco_id)):
            flags.append(ExpiryFlag(siret, name, opco_id, opco_name, expires_at, expired))
    return flags


def refuse_if_strict(flags: Sequence[ExpiryFlag]) -> None:
    """``--strict``: any flagged key stops the export before anything is written."""
    if flags:
        names = ", ".join(f"{flag.opco_name} ({flag.siret})" for flag in flags)
        raise StrictExpiryError(
            f"Export refusé (--strict) : clé(s) expirée(s) ou proche(s) de l'échéance : {names}.",
            hint="Renouvelez ces clés (cfakey guide OPCO) ou exportez sans --strict.",
        )


# Formats -------------------------------------------------------------------------------


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


def render(keys: Sequence[ExportedKey], fmt: str, *, qualified: bool, exported_at: datetime) -> str:
    """The whole export in ``fmt`` (one of :data:`FORMATS`)."""
    check_format(fmt)
    if fmt in ("env", "dotenv"):
        return _render_variables(keys, fmt, qualified=qualified, exported_at=exported_at)
    if fmt == "csv":
        return _render_csv(keys, qualified=qualified)
    document = export_document(keys, qualified=qualified, exported_at=exported_at)
    if fmt == "json":
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    import yaml  # noqa: PLC0415

    text: str = yaml.safe_dump(
        document, allow_unicode=True, sort_keys=False, default_flow_style=False, width=1000
    )
    return text


def _render_variables(
    keys: Sequence[ExportedKey], fmt: str, *, qualified: bool, exported_at: datetime
) -> str:
    when = exported_at.astimezone()
    lines = [f"# Clés CFA exportées par cfakey le {when:%d/%m/%Y à %H:%M} : ne pas diffuser."]
    for key in keys:
        name = key_variable(key, qualified=qualified)
        lines.append(
            _comment(
                f"# {key.opco_name}, {key.cfa_name} ({key.siret}), " + _expiry_text(key.expires_at)
            )
        )
        if fmt == "env":
            lines.append(f"export {name}={shell_quote(key.secret)}")
        else:
            what = f"La clé {key.opco_name} du CFA {key.siret}"
            lines.append(f"{name}={dotenv_quote(key.secret, what=what)}")
    return "\n".join(lines) + "\n"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


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


def _render_csv(keys: Sequence[ExportedKey], *, qualified: bool) -> str:
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


# Templates -----------------------------------------------------------------------------

_REFERENCE_START = re.compile(r"\{\{\s*cfakey\b")
_REFERENCE_BODY = re.compile(
    r"""\s*cfakey\s*:\s*
    (?:(?P<cfa>[^\s/|{}][^/|{}]*?)\s*/\s*)?
    (?P<opco>[^\s./|{}][^./|{}]*?)
    (?:\.(?P<attribute>[A-Za-z_]+))?
    \s*(?:\|\s*(?P<filter>[A-Za-z0-9_]+)\s*)?$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Reference:
    """``{{ cfakey:[CFA/]OPCO[.attribute] [| filter] }}`` found at ``line`` of a template."""

    line: int
    text: str
    cfa: str | None
    opco: str
    attribute: str
    filter: str | None


@dataclass(frozen=True)
class Template:
    """A template cut into literal text and references, in order."""

    name: str
    parts: tuple[str | Reference, ...]

    @property
    def references(self) -> list[Reference]:
        """The references, in order of appearance."""
        return [part for part in self.parts if isinstance(part, Reference)]


class TemplateError(UsageError):
    """A template that cannot be filled; the message names the file and the line."""


def _at(name: str, line: int, message: str) -> str:
    return f"{name}, ligne {line} : {message}"


def parse_template(text: str, name: str) -> Template:
    """Cut ``text`` into literal parts and references; any malformed reference is an error.

    Only ``{{ cfakey...}}`` is a reference: other ``{{ }}`` (Jinja, Go templates) are left
    alone. A reference must open and close on the same line.
    """
    parts: list[str | Reference] = []
    literal: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if number > 1:
            literal.append("\n")
        position = 0
        for match in _REFERENCE_START.finditer(line):
            if match.start() < position:
                continue
            end = line.find("}}", match.end())
            if end < 0:
                raise TemplateError(
                    _at(name, number, "accolades non fermées : « }} » manque après « {{ cfakey ».")
                )
            inner = line[match.start() + 2 : end]
            literal.append(line[position : match.start()])
            parts.extend(["".join(literal)] if any(literal) else [])
            literal = []
            parts.append(_reference(name, number, line[match.start() : end + 2], inner))
            position = end + 2
        literal.append(line[position:])
    tail = "".join(literal)
    if tail:
        parts.append(tail)
    return Template(name, tuple(parts))


def _reference(name: str, line: int, text: str, inner: str) -> Reference:
    body = _REFERENCE_BODY.fullmatch(inner)
    if body is None or "{{" in inner:
        raise TemplateError(
            _at(name, line, f"référence illisible : « {text} »."),
            hint="Forme attendue : {{ cfakey:OPCO }}, {{ cfakey:SIRET/OPCO }}, "
            "{{ cfakey:OPCO.expires }}, {{ cfakey:OPCO | json }}.",
        )
    attribute = body["attribute"] or "key"
    if attribute not in TEMPLATE_ATTRIBUTES:
        raise TemplateError(
            _at(name, line, f"référence inconnue : « {text} » (attribut « {attribute} »)."),
            hint="Attributs possibles : " + ", ".join(TEMPLATE_ATTRIBUTES) + ".",
        )
    if body["filter"] is not None and body["filter"] not in TEMPLATE_FILTERS:
        raise TemplateError(
            _at(name, line, f"filtre inconnu : « {body['filter']} »."),
            hint="Filtres possibles : " + ", ".join(TEMPLATE_FILTERS) + ".",
        )
    cfa = body["cfa"].strip() if body["cfa"] else None
    return Reference(line, text, cfa, body["opco"].strip(), attribute, body["filter"])


def json_string_content(value: str) -> str:
    """``value`` escaped for the inside of a JSON string (without the quotes)."""
    return json.dumps(value, ensure_ascii=False)[1:-1]


def xml_escape(value: str) -> str:
    """``value`` escaped for XML text or an attribute in either kind of quotes."""
    return (
        value.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
    )


def _apply_filter(value: str, name: str | None) -> str:
    if name == "json":
        return json_string_content(value)
    if name == "xml":
        return xml_escape(value)
    return value


@dataclass(frozen=True)
class Filled:
    """A filled template and the keys it used (for the journal)."""

    text: str
    keys: tuple[ExportedKey, ...]


@dataclass(frozen=True)
class TemplatePlan:
    """A template whose references all designate stored keys, before any key is read."""

    template: Template
    plan: KeyPlan
    targets: tuple[tuple[str, str], ...]


def plan_template(
    template: Template,
    metadata: Metadata,
    registry: Registry,
    *,
    cfa_query: str | None = None,
) -> TemplatePlan:
    """Resolve every reference from the metadata alone, so that a mistake in the template
    is reported (with its line) before the store is even unlocked."""
    from cfakey.core.cfas import resolve_cfa  # noqa: PLC0415
    from cfakey.registry.names import resolve  # noqa: PLC0415

    wanted: dict[tuple[str, str], PlannedKey] = {}
    targets: list[tuple[str, str]] = []
    default_cfa: CfaRecord | None = None
    for ref in template.references:
        try:
            if ref.cfa is None:
                default_cfa = default_cfa or resolve_cfa(metadata, cfa_query)
                cfa = default_cfa
            else:
                cfa = resolve_cfa(metadata, ref.cfa)
            opco = resolve(registry, ref.opco)
        except CfakeyError as error:
            raise type(error)(
                _at(template.name, ref.line, error.message), hint=error.hint
            ) from None
        record = metadata.get_key(cfa.siret, opco.id)
        if record is None:
            raise NotFoundError(
                _at(
                    template.name,
                    ref.line,
                    f"aucune clé {opco.name} n'est enregistrée pour le CFA {cfa.name}.",
                ),
                hint=f"Ajoutez-la : cfakey add {opco.id} --cfa {cfa.siret}.",
            )
        wanted.setdefault((cfa.siret, opco.id), _planned(registry, cfa, record))
        targets.append((cfa.siret, opco.id))
    return TemplatePlan(template, KeyPlan(tuple(wanted.values()), qualified=True), tuple(targets))


def fill_template(
    planned: TemplatePlan,
    store: KeyStore,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> Filled:
    """Read the planned keys in one store session and fill the template with them."""
    keys = read_planned(store, planned.plan, on_progress=on_progress)
    by_id = {(key.siret, key.opco_id): key for key in keys}
    out: list[str] = []
    references = iter(planned.targets)
    for part in planned.template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        key = by_id[next(references)]
        out.append(_apply_filter(_attribute(key, part.attribute), part.filter))
    return Filled("".join(out), tuple(keys))


def _attribute(key: ExportedKey, attribute: str) -> str:
    if attribute == "expires":
        return "" if key.expires_at is None else key.expires_at.astimezone().date().isoformat()
    if attribute == "fingerprint":
        return key.fingerprint
    if attribute == "siret":
        return key.siret
    return key.secret


def read_template(path: Path) -> Template:
    """Read and parse a template file, with French errors for a missing or unreadable one."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"Modèle introuvable : {path}.") from None
    except IsADirectoryError:
        raise UsageError(f"Le modèle {path} est un dossier, pas un fichier.") from None
    except OSError as error:
        raise CfakeyError(f"Modèle {path} illisible : {error.strerror}.") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"Le modèle {path} n'est pas un texte UTF-8.") from None
    return parse_template(text, str(path))


# Output and journal --------------------------------------------------------------------


def check_destination(path: Path, *, force: bool) -> None:
    """Fail early, before any store is unlocked, when ``path`` cannot receive the export."""
    if path.is_dir():
        raise UsageError(f"{path} est un dossier : indiquez un nom de fichier.")
    if path.exists() and not force:
        raise AlreadyExistsError(
            f"Le fichier {path} existe déjà : rien n'a été écrit.",
            hint="Ajoutez --force pour le remplacer.",
        )
    parent = path.parent
    if not parent.exists():
        raise CfakeyError(f"Le dossier {parent} n'existe pas : rien n'a été écrit.")
    if not parent.is_dir():
        raise CfakeyError(f"{parent} n'est pas un dossier : rien n'a été écrit.")


def write_output(path: Path, text: str, *, force: bool) -> None:
    """Create ``path`` (0600, atomically), refusing to replace it without ``force``."""
    from cfakey.paths import write_new_file  # noqa: PLC0415

    try:
        write_new_file(path, text.encode("utf-8"), replace=force)
    except FileExistsError:
        raise AlreadyExistsError(
            f"Le fichier {path} existe déjà : rien n'a été écrit.",
            hint="Ajoutez --force pour le remplacer.",
        ) from None
    except FileNotFoundError:
        raise CfakeyError(f"Le dossier {path.parent} n'existe pas : rien n'a été écrit.") from None
    except OSError as error:
        raise CfakeyError(
            f"Impossible d'écrire dans {path.parent} ({os_reason(error)}) : rien n'a été écrit.",
            hint="Vérifiez les droits du dossier ou choisissez-en un autre.",
        ) from None


def journal_export(metadata: Metadata, keys: Iterable[ExportedKey], detail: str) -> None:
    """One ``exported`` journal entry per key: fingerprint and destination, never the key."""
    for key in keys:
        metadata.log(
            "exported",
            siret=key.siret,
            opco_id=key.opco_id,
            new_fingerprint=key.fingerprint,
            detail=detail,
        )


def exec_environment(
    base: Mapping[str, str], keys: Sequence[ExportedKey], *, qualified: bool
) -> dict[str, str]:
    """The child's environment: ours plus one variable per key (names as in ``env``).

    The child gets the keys asked for and nothing else that opens a key: the variables
    cfakey reads a secret from (the file store's password) are removed, and so are
    ``CFA_KEY_*`` variables inherited from our own environment, which would pass for
    keys of this selection.
    """
    from cfakey.stores.file_store import SECRET_ENV_VARIABLES  # noqa: PLC0415

    def withheld(name: str) -> bool:
        upper = name.upper()  # Windows names ignore case
        return upper in SECRET_ENV_VARIABLES or upper.startswith(f"{VARIABLE_PREFIX}_")

    environment = {name: value for name, value in base.items() if not withheld(name)}
    for key in keys:
        if "\0" in key.secret:
            raise UsageError(
                f"La clé {key.opco_name} du CFA {key.siret} contient un caractère nul : "
                "impossible de la passer dans l'environnement."
            )
        environment[key_variable(key, qualified=qualified)] = key.secret
    return environment
