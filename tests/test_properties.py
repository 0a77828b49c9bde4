"""Property-based tests of every parser of user input (issue 10: hypothesis on every parser).

Each parser either returns a value that passed its checks or raises a ``CfakeyError``
with a French message: never another exception, never a value out of range, and never
the input quoted back. Inputs carry the marker ``Qz`` (in no French message of cfakey),
so that a message quoting any part of them around the marker is caught.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cfakey.config import MAX_WINDOW_DAYS, Config, window_days
from cfakey.core.imports import FIELD_LIMITS, field_problem, read_import_file
from cfakey.errors import CfakeyError, DataCorruptedError, UnknownOpcoError, UsageError
from cfakey.expiry import EARLIEST_DATE, LATEST_DATE, jwt_expiry, parse_date
from cfakey.identifiers import (
    CFA_NAME_MAX,
    clean_cfa_name,
    is_valid_siren,
    is_valid_siret,
    is_valid_uai,
    validate_siren,
    validate_siret,
    validate_uai,
    with_check_digit,
)
from cfakey.registry.loader import load_registry
from cfakey.registry.names import resolve

# Fast enough for the inner loop: the whole file runs in a few seconds.
FAST = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
MARKER = "Qz"
T = TypeVar("T")
REGISTRY = load_registry(None, None)[0]

any_text = st.text(max_size=60)
marked_text = st.builds(lambda a, b: f"{a}{MARKER}{b}", st.text(max_size=20), st.text(max_size=20))
in_range_days = st.dates(min_value=EARLIEST_DATE, max_value=LATEST_DATE)


def attempt(call: Callable[[], T]) -> T | CfakeyError:
    """What ``call`` returns, or the French error it raises (any other exception escapes)."""
    try:
        return call()
    except CfakeyError as error:
        return error


def assert_not_quoted(error: CfakeyError) -> None:
    assert MARKER not in error.message
    assert MARKER not in (error.hint or "")


# Dates -------------------------------------------------------------------------------------


@FAST
@given(any_text)
def test_parse_date_returns_a_date_in_range_or_a_french_error(text: str) -> None:
    moment = attempt(lambda: parse_date(text))
    if isinstance(moment, CfakeyError):
        assert isinstance(moment, UsageError)
        assert moment.message.startswith("Date ")
    else:
        assert EARLIEST_DATE <= moment.date() <= LATEST_DATE


@FAST
@given(marked_text)
def test_parse_date_never_quotes_its_input(text: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_date(text)
    assert_not_quoted(caught.value)


@FAST
@given(st.dates(), st.sampled_from(["%d/%m/%Y", "%Y-%m-%d"]))
def test_parse_date_reads_back_what_it_accepts(day: date, form: str) -> None:
    text = (
        f"{day.day:02d}/{day.month:02d}/{day.year:04d}" if form == "%d/%m/%Y" else day.isoformat()
    )
    parsed = attempt(lambda: parse_date(text))
    if isinstance(parsed, CfakeyError):
        assert not EARLIEST_DATE <= day <= LATEST_DATE
        assert "hors de la plage acceptée" in parsed.message
    else:
        assert parsed == datetime(day.year, day.month, day.day)  # noqa: DTZ001 - local wall clock


def jwt_with(claims: object) -> str:
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJIUzI1NiJ9.{payload}.c2ln"


json_numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([253402300799, -62135596800, 0, 2**63, -(2**63)]),
)


@FAST
@given(json_numbers)
def test_jwt_expiry_is_none_or_in_range(exp: float) -> None:
    moment = jwt_expiry(jwt_with({"exp": exp}))
    assert moment is None or EARLIEST_DATE <= moment.date() <= LATEST_DATE


@FAST
@given(st.text(max_size=200))
def test_jwt_expiry_never_raises(key: str) -> None:
    moment = jwt_expiry(key)
    assert moment is None or EARLIEST_DATE <= moment.date() <= LATEST_DATE
    moment = jwt_expiry(f"eyJ{key}.{key}.x")
    assert moment is None or EARLIEST_DATE <= moment.date() <= LATEST_DATE


# Identifiers -------------------------------------------------------------------------------


@FAST
@given(st.text(alphabet="0123456789", min_size=13, max_size=13))
def test_a_siret_with_its_check_digit_is_accepted_with_spaces(digits: str) -> None:
    siret = with_check_digit(digits)
    spaced = f" {siret[:3]} {siret[3:6]} {siret[6:9]} {siret[9:]} "
    assert validate_siret(spaced) == siret
    assert validate_siren(siret[:9] if is_valid_siren(siret[:9]) else with_check_digit(digits[:8]))


@FAST
@given(any_text)
def test_identifier_checks_never_raise_anything_but_a_french_error(text: str) -> None:
    for check in (is_valid_siret, is_valid_siren, is_valid_uai):
        assert isinstance(check(text), bool)
    for validate in (validate_siret, validate_siren, validate_uai):
        try:
            value = validate(text)
        except UsageError:
            continue
        assert value.isascii()
        assert value.isalnum()


@FAST
@given(marked_text)
def test_identifier_errors_never_quote_the_input(text: str) -> None:
    for validate in (validate_siret, validate_siren, validate_uai):
        with pytest.raises(UsageError) as caught:
            validate(text)
        assert_not_quoted(caught.value)


@FAST
@given(st.integers(min_value=0, max_value=9_999_999))
def test_a_uai_with_its_check_letter_is_accepted(number: int) -> None:
    digits = f"{number:07d}"
    letter = "ABCDEFGHJKLMNPRSTUVWXYZ"[number % 23]
    assert validate_uai(f"{digits}{letter.lower()}") == f"{digits}{letter}"


@FAST
@given(any_text)
def test_a_cfa_name_is_one_clean_line_or_refused(text: str) -> None:
    name = attempt(lambda: clean_cfa_name(text))
    if isinstance(name, CfakeyError):
        assert_not_quoted(name)
        return
    assert name == " ".join(name.split())
    assert name.isprintable()
    assert 0 < len(name) <= CFA_NAME_MAX


# OPCO names --------------------------------------------------------------------------------


@FAST
@given(marked_text)
def test_an_unknown_opco_name_is_a_french_error_that_does_not_quote_it(text: str) -> None:
    with pytest.raises(UnknownOpcoError) as caught:
        resolve(REGISTRY, text)
    assert_not_quoted(caught.value)


@FAST
@given(
    st.sampled_from([(opco.id, s) for opco in REGISTRY.opcos for s in (opco.name, *opco.aliases)]),
    st.lists(st.booleans(), min_size=40, max_size=40),
    st.sampled_from(["", " ", "  ", "\t"]),
)
def test_every_spelling_resolves_whatever_its_case_and_surrounding_space(
    spelling: tuple[str, str], upper: list[bool], space: str
) -> None:
    opco_id, name = spelling
    varied = "".join(c.upper() if up else c.lower() for c, up in zip(name, upper, strict=False))
    assert resolve(REGISTRY, f"{space}{varied}{name[40:]}{space}").id == opco_id


# Settings ----------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | json_numbers | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=8,
)


@FAST
@given(json_values)
def test_a_window_setting_is_a_bounded_day_count_or_refused(value: object) -> None:
    days = attempt(lambda: window_days("opco.atlas.warn_days", value))
    if isinstance(days, CfakeyError):
        assert "opco.atlas.warn_days" in days.message
        return
    assert isinstance(days, int)
    assert 0 <= days <= MAX_WINDOW_DAYS


@FAST
@given(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
def test_any_config_file_loads_or_is_a_french_error(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "config.json"
    path.write_bytes(content)
    config = attempt(lambda: Config.load(path))
    if isinstance(config, CfakeyError):
        assert isinstance(config, DataCorruptedError)
        assert str(path) in config.message
        return
    assert isinstance(config.values, dict)


# Import files ------------------------------------------------------------------------------

field_text = st.text(max_size=40) | st.sampled_from(['"', '"x', "a\nb", "a;b", "a,b", "\x00"])


@FAST
@given(
    st.lists(st.lists(field_text, min_size=1, max_size=6), max_size=6),
    st.sampled_from([",", ";"]),
)
def test_any_csv_reads_as_checked_rows_or_a_french_error(
    tmp_path: Path, records: list[list[str]], delimiter: str
) -> None:
    body = "\n".join(delimiter.join(record) for record in records)
    path = tmp_path / "cles.csv"
    path.write_text(f"cfa{delimiter}opco{delimiter}key{delimiter}cfa_name\n{body}\n", "utf-8")
    try:
        rows = read_import_file(path)
    except UsageError:
        return
    for row in rows:
        for column, value in row.items():
            if column in FIELD_LIMITS:
                assert field_problem(column, value) is None, (column, value)


@FAST
@given(
    st.lists(
        st.fixed_dictionaries(
            {column: st.text(max_size=30) for column in ("cfa", "opco", "key", "cfa_name")}
        ),
        min_size=1,
        max_size=5,
    )
)
def test_a_csv_written_by_a_spreadsheet_reads_back_or_names_each_bad_field(
    tmp_path: Path, records: list[dict[str, str]]
) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["cfa", "opco", "key", "cfa_name"])
    writer.writeheader()
    writer.writerows(records)
    path = tmp_path / "cles.csv"
    path.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    try:
        rows = read_import_file(path)
    except UsageError:
        return  # a structural error (NUL byte...)
    # A row with nothing in it (Excel's ``,,,`` at the bottom of a sheet) is skipped.
    records = [record for record in records if any(value.strip() for value in record.values())]
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        for column, value in record.items():
            problem = field_problem(column, value)
            if problem is None:
                assert row[column] == value
            else:
                assert row[f"!{column}"] == problem
                assert column not in row


@FAST
@given(json_values)
def test_any_json_reads_as_checked_rows_or_a_french_error(tmp_path: Path, document: object) -> None:
    path = tmp_path / "cles.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    try:
        rows = read_import_file(path)
    except UsageError:
        return
    for row in rows:
        for column, value in row.items():
            if column in FIELD_LIMITS:
                assert field_problem(column, value) is None


# Registry overlays -------------------------------------------------------------------------


@settings(FAST, max_examples=25)
@given(
    st.sampled_from([opco.id for opco in REGISTRY.opcos]),
    st.lists(
        st.sampled_from([s for opco in REGISTRY.opcos for s in (opco.id, opco.name)])
        | st.text(min_size=1, max_size=12),
        max_size=3,
    ),
    st.integers(min_value=1, max_value=10**15),
)
def test_an_overlay_loads_with_unambiguous_names_or_is_refused(
    tmp_path: Path, opco_id: str, aliases: list[str], days: int
) -> None:
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(
        json.dumps(
            {
                "opcos": [
                    {"id": opco_id, "aliases": aliases},
                    {"id": "mobilites", "expiry": {"days": days}},
                ]
            }
        ),
        encoding="utf-8",
    )
    loaded = attempt(lambda: load_registry(overlay, None))
    if isinstance(loaded, CfakeyError):
        assert str(overlay) in loaded.message
        return
    registry, _ = loaded
    for opco in registry.opcos:
        for spelling in (opco.id, opco.name, *opco.aliases):
            assert resolve(registry, spelling).id == opco.id


#: Overlay fields a hostile or careless value may land in, as a path of names.
OVERLAY_FIELDS = (
    ("expiry", "days"),
    ("expiry", "recommended_rotation_months"),
    ("shown_once",),
    ("regeneration_revokes",),
    ("api", "base_url"),
    ("api", "oauth_client_required"),
    ("portals",),
    ("support", "emails"),
    ("support", "web"),
    ("name",),
    ("connection", "as_of"),
    ("scope",),
)
plain_values = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**6), max_value=10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | st.sampled_from(
        ["javascript:alert(1)", "http://x.fr/", "https://ok.fr/", "a@b.fr", "a@@b", "30", "oui"]
    )
)
overlay_values = st.recursive(
    plain_values,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["name", "url", "x"]), inner, max_size=3)
    ),
    max_leaves=6,
)


def _nested(path: tuple[str, ...], value: object) -> object:
    return value if not path else {path[0]: _nested(path[1:], value)}


def _safe_url(url: str | None) -> bool:
    return url is None or url.startswith(("https://", "http://127.0.0.1", "http://localhost"))


@settings(FAST, max_examples=80)
@given(st.sampled_from(OVERLAY_FIELDS), overlay_values)
def test_an_overlay_value_is_taken_exactly_or_refused_in_french(
    tmp_path: Path, path: tuple[str, ...], value: object
) -> None:
    import yaml

    from tests.test_registry import assert_french

    overlay = tmp_path / "overlay.yaml"
    entry = {"id": "mobilites", **_nested(path, value)}  # type: ignore[dict-item]
    overlay.write_text(yaml.safe_dump({"opcos": [entry]}), encoding="utf-8")
    loaded = attempt(lambda: load_registry(overlay, None))
    if isinstance(loaded, CfakeyError):
        assert f"Registre {overlay}" in loaded.message
        assert_french(loaded.message)
        return
    opco = loaded[0].get("mobilites")
    rule = opco.expiry
    for number in (rule.days, rule.months, rule.recommended_rotation_months):
        assert number is None or type(number) is int
    for flag in (opco.shown_once, opco.regeneration_revokes, opco.api.oauth_client_required):
        assert flag is None or type(flag) is bool
    links = (*opco.portals, *opco.links, *opco.support.web)
    assert all(_safe_url(url) for url in (opco.api.base_url, *(link.url for link in links)))
    assert all(address.count("@") == 1 for address in opco.support.emails)


# Click's own messages ----------------------------------------------------------------------

CLICK_MESSAGES = (
    "No such option: {v}",
    "No such command {v!r}.",
    "Got unexpected extra argument ({v})",
    "Got unexpected extra arguments ({v} {v})",
    "Invalid value for '--warn-days': {v!r} is not a valid integer.",
    "Invalid value for '--format': {v!r} is not one of 'env', 'json'.",
    "Invalid value for 'FICHIER': Path {v!r} does not exist.",
    "Invalid value for '--concurrency': {v} is not in the range 1<=x<=32.",
    "Invalid value: {v!r} is not a valid boolean. Recognized values: 1, 0",
    "{v}",
)


@FAST
@given(st.sampled_from(CLICK_MESSAGES), marked_text)
def test_click_messages_never_keep_a_typed_value(template: str, value: str) -> None:
    from cfakey.cli.french import translate_usage

    assert MARKER not in translate_usage(template.format(v=value))
