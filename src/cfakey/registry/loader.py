"""Find, validate and cache the OPCO registry, with an optional user overlay merged on top.

The shipped ``opco_registry.yaml`` sits inside the wheel (``cfakey/opco_registry.yaml``)
or, in a source checkout and an editable install, at the repository root. An overlay
(``--registry PATH`` or ``CFAKEY_REGISTRY``) is merged over it by OPCO id.

Validation imports pydantic, which costs more than the rest of a command's start-up, so
the validated registry is cached in the cache directory together with the identity
(path, size, modification time) of both files and cfakey's version: any edit or
reinstall invalidates it.

The cache is JSON naming only the model's own frozen dataclasses, so reading it cannot run
code (a pickle could: anyone able to write to the cache directory would run code as the
user). It is also ignored unless owned by the user and writable by no one else, since it
holds the API addresses keys are sent to.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, fields, is_dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfakey import __version__
from cfakey.errors import RegistryError
from cfakey.paths import atomic_write, ensure_private_dir
from cfakey.registry import model
from cfakey.registry.model import Registry

if TYPE_CHECKING:
    from pydantic import ValidationError

REGISTRY_FILENAME = "opco_registry.yaml"
CACHE_FILENAME = "registry.json"
# Bump when the model classes change shape, so that old caches are rebuilt.
_CACHE_FORMAT = 4  # 4: strict numbers, checked addresses (older caches may hold neither)
# The only classes a cache may name.
_MODEL_CLASSES: dict[str, type] = {
    name: value
    for name, value in vars(model).items()
    if isinstance(value, type) and is_dataclass(value) and value.__module__ == model.__name__
}


@dataclass(frozen=True)
class RegistrySource:
    """Where the registry in use came from, as ``doctor`` and ``opcos`` report it."""

    shipped: Path
    overlay: Path | None


def shipped_registry_path() -> Path:
    """The registry shipped with cfakey: in the package, else at the source tree's root."""
    package_dir = Path(__file__).resolve().parent.parent
    in_package = package_dir / REGISTRY_FILENAME
    if in_package.is_file():
        return in_package
    # src/cfakey/registry/loader.py -> repository root, for editable installs and checkouts.
    in_checkout = package_dir.parent.parent / REGISTRY_FILENAME
    if in_checkout.is_file():
        return in_checkout
    raise RegistryError(
        f"Le registre des OPCO est introuvable (cherché dans {in_package} et {in_checkout}) : "
        "réinstallez cfakey."
    )


def load_registry(overlay: Path | None, cache_dir: Path | None) -> tuple[Registry, RegistrySource]:
    """Return the validated registry (shipped, then ``overlay`` merged over it)."""
    shipped = shipped_registry_path()
    source = RegistrySource(shipped=shipped, overlay=overlay)
    cache_file = cache_dir / CACHE_FILENAME if cache_dir is not None else None
    # Path, size and modification time of both files: any edit or reinstall changes them.
    cache_key = (__version__, _CACHE_FORMAT, _file_identity(shipped), _file_identity(overlay))
    if cache_file is not None:
        cached = _read_cache(cache_file, cache_key)
        if cached is not None:
            return cached, source

    overlay_bytes = _read(overlay) if overlay is not None else b""
    registry = _build(shipped, _read(shipped), overlay, overlay_bytes)
    if cache_file is not None:
        _write_cache(cache_file, cache_key, registry)
    return registry, source


def _file_identity(path: Path | None) -> tuple[str, int, int] | None:
    if path is None:
        return None
    try:
        stat = path.stat()
    except OSError:
        return (str(path), -1, -1)  # unreadable: the build below reports it
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


def _build(
    shipped: Path, shipped_bytes: bytes, overlay: Path | None, overlay_bytes: bytes
) -> Registry:
    base = _parse_yaml(shipped, shipped_bytes)
    _check_ids(shipped, base)
    registry = _validate(shipped, base, blame_ids=None)
    _check_names(shipped, registry)
    if overlay is None:
        return registry
    extra = _parse_yaml(overlay, overlay_bytes)
    unknown_top = set(extra) - {"opcos", "version", "updated", "schema_version"}
    if unknown_top:
        field = sorted(unknown_top)[0]
        raise RegistryError(
            f"Registre {overlay} : champ inconnu « {field} » à la racine du fichier."
        )
    overlay_ids = _check_ids(overlay, extra)
    merged = _merge_overlay(base, extra)
    registry = _validate(overlay, merged, blame_ids=overlay_ids)
    _check_names(overlay, registry)
    return registry


def _check_names(path: Path, registry: Registry) -> None:
    """Every id, name and alias designates one OPCO, or no name lookup could work."""
    from cfakey.registry.names import name_index  # only on a cache miss

    try:
        name_index(registry)
    except ValueError as error:
        raise RegistryError(
            f"Registre {path} : {error} ; un nom, un identifiant ou un alias ne peut "
            "désigner qu'un seul OPCO."
        ) from None


def _read(path: Path) -> bytes:
    from cfakey.userfiles import REGISTRY_LIMIT, read_bounded

    try:
        with path.open("rb") as handle:
            return read_bounded(handle, REGISTRY_LIMIT, str(path))
    except FileNotFoundError:
        raise RegistryError(f"Le fichier de registre {path} n'existe pas.") from None
    except IsADirectoryError:
        raise RegistryError(f"Le registre {path} est un dossier, pas un fichier YAML.") from None
    except OSError as error:
        raise RegistryError(
            f"Le fichier de registre {path} est illisible : {error.strerror}."
        ) from None


def _parse_yaml(path: Path, raw: bytes) -> dict[str, Any]:
    import yaml  # only on a cache miss

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader, C or Python
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f", ligne {mark.line + 1}, colonne {mark.column + 1}" if mark else ""
        problem = yaml_problem(error.problem or error.context or "")
        raise RegistryError(f"Registre {path}{where} : YAML invalide ({problem}).") from None
    except UnicodeDecodeError:
        raise RegistryError(
            f"Registre {path} : YAML invalide (ce n'est pas du texte UTF-8)."
        ) from None
    except yaml.YAMLError:
        raise RegistryError(f"Registre {path} : YAML invalide (syntaxe YAML invalide).") from None
    if not isinstance(data, dict) or not isinstance(data.get("opcos"), list):
        raise RegistryError(f"Registre {path} : le fichier doit contenir une liste « opcos ».")
    return data


def _check_ids(path: Path, data: dict[str, Any]) -> list[str]:
    """Every entry needs an id, and each id appears once in a file."""
    seen: list[str] = []
    for position, entry in enumerate(data["opcos"], start=1):
        opco_id = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(opco_id, str) or not opco_id:
            raise RegistryError(
                f"Registre {path} : l'entrée n° {position} n'a pas de champ « id »."
            )
        if opco_id in seen:
            raise RegistryError(f"Registre {path} : l'OPCO « {opco_id} » est déclaré deux fois.")
        seen.append(opco_id)
    return seen


def _merge_overlay(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    by_id = {entry["id"]: entry for entry in base["opcos"]}
    order = list(by_id)
    for entry in overlay["opcos"]:
        opco_id = entry["id"]
        if opco_id in by_id:
            by_id[opco_id] = _deep_merge(by_id[opco_id], entry)
        else:
            by_id[opco_id] = entry
            order.append(opco_id)
    merged = {key: value for key, value in base.items() if key != "opcos"}
    merged.update({key: value for key, value in overlay.items() if key != "opcos"})
    merged["opcos"] = [by_id[opco_id] for opco_id in order]
    return merged


def _deep_merge(base: Any, update: Any) -> Any:
    """Mappings merge key by key; anything else (lists included) is replaced."""
    if isinstance(base, dict) and isinstance(update, dict):
        result = dict(base)
        for key, value in update.items():
            result[key] = _deep_merge(base.get(key), value)
        return result
    return update


def _validate(path: Path, data: dict[str, Any], blame_ids: list[str] | None) -> Registry:
    from pydantic import TypeAdapter, ValidationError  # only on a cache miss

    try:
        return TypeAdapter(Registry).validate_python(data)
    except ValidationError as error:
        raise RegistryError(_describe(path, data, error, blame_ids)) from None


def _describe(
    path: Path, data: dict[str, Any], error: ValidationError, blame_ids: list[str] | None
) -> str:
    """One French sentence naming the file, the OPCO and the field of the first error."""
    details = error.errors(include_url=False)
    first = details[0]
    loc = list(first["loc"])
    opco = ""
    if len(loc) >= 2 and loc[0] == "opcos" and isinstance(loc[1], int):
        entry = data["opcos"][loc[1]]
        opco_id = entry.get("id", f"n° {loc[1] + 1}")
        opco = f", OPCO « {opco_id} »"
        loc = loc[2:]
        if blame_ids is not None and opco_id not in blame_ids:
            opco += " (entrée du registre livré)"
    field = ".".join(str(part) for part in loc) or "(entrée entière)"
    message = _french(first["type"], first["msg"], first.get("input"), first.get("ctx"))
    more = f" ({len(details) - 1} autre(s) erreur(s))" if len(details) > 1 else ""
    return f"Registre {path}{opco}, champ « {field} » : {message}{more}."


#: PyYAML's problems (English), by the start of their text, in French.
_YAML_PROBLEMS: tuple[tuple[str, str], ...] = (
    (
        "could not determine a constructor",
        "étiquette « !! » non permise : seules les valeurs simples sont lues",
    ),
    ("mapping values are not allowed", "« : » inattendu (mettez la valeur entre guillemets)"),
    ("found character '\\t'", "tabulation interdite : indentez avec des espaces"),
    ("found a tab character", "tabulation interdite : indentez avec des espaces"),
    ("found character", "caractère interdit à cet endroit"),
    ("found undefined alias", "alias « * » sans ancre « & » correspondante"),
    ("found duplicate anchor", "ancre « & » déclarée deux fois"),
    ("found unknown escape character", "séquence d'échappement « \\ » inconnue"),
    ("found unexpected end of stream", "fin du fichier inattendue (guillemet non refermé ?)"),
    ("found unexpected ':'", "« : » inattendu (mettez la valeur entre guillemets)"),
    ("expected <block end>", "indentation incohérente"),
    ("expected a comment or a line break", "texte inattendu après la valeur"),
    ("expected alphabetic or numeric character", "nom d'ancre ou d'alias invalide"),
    ("control characters are not allowed", "caractère de contrôle interdit"),
)


def yaml_problem(english: str) -> str:
    """PyYAML's description of a syntax error, in French (never its English sentence)."""
    import re  # only on an error

    if english.startswith("did not find expected"):
        wanted = re.findall(r"'([^']+)'", english)
        if wanted:
            return " ou ".join(f"« {item} »" for item in wanted) + " attendu"
        return "syntaxe incomplète (élément attendu manquant)"
    for start, french in _YAML_PROBLEMS:
        if english.startswith(start):
            return french
    return "syntaxe YAML invalide"


#: pydantic's error types, in French: what the field expects.
_EXPECTED: dict[str, str] = {
    **dict.fromkeys(
        ("int_type", "int_parsing", "int_from_float", "int_parsing_size"),
        "un nombre entier est attendu",
    ),
    **dict.fromkeys(("float_type", "float_parsing"), "un nombre est attendu"),
    "finite_number": "un nombre fini est attendu",
    **dict.fromkeys(("bool_type", "bool_parsing"), "un booléen (true ou false) est attendu"),
    **dict.fromkeys(("string_type", "string_unicode"), "un texte est attendu"),
    **dict.fromkeys(
        (
            "date_type",
            "date_parsing",
            "date_from_datetime_parsing",
            "date_from_datetime_inexact",
        ),
        "une date AAAA-MM-JJ est attendue",
    ),
    **dict.fromkeys(
        ("tuple_type", "list_type", "iterable_type", "set_type"), "une liste est attendue"
    ),
    **dict.fromkeys(
        ("dataclass_type", "dataclass_args_type", "dict_type", "model_type"),
        "un bloc de champs (nom: valeur) est attendu",
    ),
    **dict.fromkeys(
        ("url_type", "url_parsing", "url_scheme", "url_syntax_violation"),
        "une adresse https://hôte/chemin est attendue",
    ),
    "none_required": "aucune valeur n'est attendue",
}
#: Errors that say the field itself is wrong, not its type.
_FIELD_PROBLEMS: dict[str, str] = {
    **dict.fromkeys(
        ("unexpected_keyword_argument", "unexpected_positional_argument", "extra_forbidden"),
        "champ inconnu",
    ),
    **dict.fromkeys(
        (
            "missing",
            "missing_argument",
            "missing_keyword_only_argument",
            "missing_positional_only_argument",
        ),
        "champ obligatoire manquant",
    ),
}
_SHOWN_VALUE_MAX = 40


def _french(kind: str, english: str, value: Any, context: dict[str, Any] | None = None) -> str:
    """One pydantic error in French; an unknown type gets a French sentence, never English."""
    if kind in {"value_error", "assertion_error"}:  # the model's own French messages
        return english.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in _FIELD_PROBLEMS:
        return _FIELD_PROBLEMS[kind]
    shown = repr(value)
    if len(shown) > _SHOWN_VALUE_MAX:
        shown = shown[: _SHOWN_VALUE_MAX - 1] + "…"
    if kind == "literal_error":
        allowed = str((context or {}).get("expected", "")).replace(" or ", " ou ")
        return f"valeur {shown} non reconnue (attendu : {allowed})"
    if kind in _EXPECTED:
        return f"type invalide ({shown}) : {_EXPECTED[kind]}"
    return f"valeur {shown} refusée pour ce champ"


def _read_cache(cache_file: Path, cache_key: tuple[object, ...]) -> Registry | None:
    try:
        with cache_file.open("rb") as handle:
            if not _private_to_user(os.fstat(handle.fileno())):
                return None
            raw = handle.read()
    except OSError:
        return None
    try:
        key, registry = json.loads(raw, object_hook=_decode)
    except Exception:  # noqa: BLE001 - a damaged cache is rebuilt, never fatal
        return None
    if key != _plain(cache_key) or not isinstance(registry, Registry):
        return None
    return registry


def _private_to_user(stat: os.stat_result) -> bool:
    """Owned by this user and writable by no one else (where the OS has such owners)."""
    if not hasattr(os, "getuid"):
        return True
    return stat.st_uid == os.getuid() and stat.st_mode & 0o022 == 0


def _write_cache(cache_file: Path, cache_key: tuple[object, ...], registry: Registry) -> None:
    try:
        ensure_private_dir(cache_file.parent)
        payload = json.dumps([_plain(cache_key), _encode(registry)], ensure_ascii=False)
        atomic_write(cache_file, payload.encode("utf-8"))
        (cache_file.parent / "registry.pickle").unlink(missing_ok=True)  # cfakey < 0.2
    except OSError:
        return  # a read-only cache directory only costs speed


def _plain(value: object) -> Any:
    """``value`` as JSON would give it back (tuples become lists)."""
    return json.loads(json.dumps(value))


def _encode(value: Any) -> Any:
    """The registry as JSON: each dataclass tagged with its class name, dates tagged."""
    if is_dataclass(value) and not isinstance(value, type):
        tagged = {field.name: _encode(getattr(value, field.name)) for field in fields(value)}
        return {"$": type(value).__name__, **tagged}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, tuple | list):
        return [_encode(item) for item in value]
    return value


def _decode(obj: dict[str, Any]) -> Any:
    """Inverse of :func:`_encode`: only the model's classes and dates can come out."""
    if "$date" in obj:
        return date.fromisoformat(obj["$date"])
    name = obj.pop("$", None)
    if name is None:
        return obj
    cls = _MODEL_CLASSES[name]
    return cls(
        **{key: tuple(item) if isinstance(item, list) else item for key, item in obj.items()}
    )
