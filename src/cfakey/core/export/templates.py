"""``cfakey inject``: templates with ``{{ cfakey:OPCO }}`` references, planned then filled."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cfakey.core.export.selection import (
    ExportedKey,
    KeyPlan,
    PlannedKey,
    ProgressCallback,
    planned_key,
    read_planned,
)
from cfakey.errors import CfakeyError, NotFoundError, UsageError

if TYPE_CHECKING:
    from cfakey.metadata import CfaRecord, Metadata
    from cfakey.registry.model import Registry
    from cfakey.stores.base import KeyStore

TEMPLATE_FILTERS = ("json", "xml")
TEMPLATE_ATTRIBUTES = ("key", "expires", "fingerprint", "siret")

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
    from cfakey.core.cfas import resolve_cfa, the_cfa
    from cfakey.registry.names import resolve

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
                    f"aucune clé {opco.name} n'est enregistrée pour {the_cfa(cfa.name)}.",
                ),
                hint=f"Ajoutez-la : cfakey add {opco.id} --cfa {cfa.siret}.",
            )
        wanted.setdefault((cfa.siret, opco.id), planned_key(registry, cfa, record))
        targets.append((cfa.siret, opco.id))
    return TemplatePlan(template, KeyPlan(tuple(wanted.values()), qualified=True), tuple(targets))


def fill_template(
    planned: TemplatePlan,
    store: KeyStore,
    *,
    on_progress: ProgressCallback | None = None,
) -> Filled:
    """Read the planned keys in one store session and fill the template with them."""
    keys = read_planned(store, planned.plan, on_progress=on_progress)
    return Filled(fill_planned(planned, keys), tuple(keys))


def fill_planned(planned: TemplatePlan, keys: Sequence[ExportedKey]) -> str:
    """The template's text with each reference replaced by the key (or attribute) it names."""
    by_id = {(key.siret, key.opco_id): key for key in keys}
    out: list[str] = []
    references = iter(planned.targets)
    for part in planned.template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        key = by_id[next(references)]
        out.append(_apply_filter(_attribute(key, part.attribute), part.filter))
    return "".join(out)


def _attribute(key: ExportedKey, attribute: str) -> str:
    if attribute == "expires":
        return "" if key.expires_at is None else key.expires_at.astimezone().date().isoformat()
    if attribute == "fingerprint":
        return key.fingerprint
    if attribute == "siret":
        return key.siret
    return key.secret


def read_template(path: Path) -> Template:
    """Read and parse a template file (see :func:`cfakey.userfiles.read_user_file`)."""
    from cfakey.userfiles import read_user_file

    raw = read_user_file(path, "Modèle")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"Le modèle {path} n'est pas un texte UTF-8.") from None
    return parse_template(text, str(path))
