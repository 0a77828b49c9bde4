"""Hostile input files, dates and settings (issue 10, items 1, 14, 16, 17).

Every case runs the real CLI against a real SQLite file and the real encrypted store,
and checks the French message, the exit code, and that nothing was stored or written.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from cfakey.identifiers import with_check_digit
from cfakey.paths import Paths
from tests.conftest import run_cli
from tests.test_keys_cli import ATLAS_KEY, KEY_2, SIRET, in_days, listed

CANARY = "Canary+Key/0123456789abcdefghij"


@pytest.fixture
def cfa() -> str:
    result = run_cli("cfa", "add", SIRET, "--nom", "CFA Test")
    assert result.exit_code == 0, result.stderr
    return SIRET


def journal_text() -> str:
    with sqlite3.connect(Paths.from_env().metadata_db) as db:
        return "\n".join(str(row) for row in db.execute("SELECT * FROM journal"))


def database_text() -> str:
    with sqlite3.connect(Paths.from_env().metadata_db) as db:
        cfas = db.execute("SELECT * FROM cfa").fetchall()
        keys = db.execute("SELECT * FROM key").fetchall()
    return f"{cfas}\n{keys}\n{journal_text()}"


def assert_nothing_imported(result_text: str) -> None:
    assert CANARY not in result_text
    assert CANARY not in database_text()
    assert listed() == []


# Item 1: a stray quote must not turn the rest of the file into a CFA name --------------


def test_a_stray_quote_in_a_csv_is_an_error_naming_its_line(tmp_path: Path, cfa: str) -> None:
    rows = [f"{SIRET},atlas,{ATLAS_KEY},CFA Nord"]
    rows.append(f'{SIRET},afdas,{"A" * 64},"CFA Saint-Jean')  # the quote is never closed
    rows += [f"{SIRET},sante,{CANARY}{n},CFA {n}" for n in range(50)]
    path = tmp_path / "cles.csv"
    path.write_text("cfa,opco,key,cfa_name\n" + "\n".join(rows) + "\n", encoding="utf-8")

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE
    assert "ligne 3, colonne « cfa_name » : la valeur s'étend sur plusieurs lignes" in (
        result.stderr
    )
    assert "rien n'a été importé" in result.stderr
    assert_nothing_imported(result.stdout + result.stderr)


def test_a_quoted_field_closed_later_is_still_refused(tmp_path: Path, cfa: str) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(
        f'cfa;opco;key;cfa_name\n{SIRET};atlas;{ATLAS_KEY};"CFA\n{SIRET};sante;{CANARY};x"\n',
        encoding="utf-8",
    )

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE
    assert "ligne 2, colonne « cfa_name »" in result.stderr
    assert_nothing_imported(result.stdout + result.stderr)


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("cfa_name", "N" * 151, "colonne « cfa_name » : valeur trop longue (151 caractères"),
        ("cfa_name", "CFA\x1b[31m rouge", "colonne « cfa_name » : la valeur contient des"),
        ("expires", CANARY * 2, "colonne « expires » : valeur trop longue"),
        ("notes", "n" * 1001, "colonne « n° 4 » : valeur trop longue"),
    ],
)
def test_a_field_failing_its_check_is_refused_and_never_stored(
    tmp_path: Path, cfa: str, column: str, value: str, message: str
) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(f"cfa;opco;key;{column}\n{SIRET};atlas;{ATLAS_KEY};{value}\n", encoding="utf-8")

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE
    assert f"ligne 2, {message}" in result.stderr, result.stderr
    assert value not in result.stderr
    assert_nothing_imported(result.stdout + result.stderr)


def test_an_accepted_cfa_name_is_one_clean_line(tmp_path: Path, cfa: str) -> None:
    other = with_check_digit("4410000000001")
    path = tmp_path / "cles.csv"
    path.write_text(
        f"cfa,opco,key,cfa_name\n{other},atlas,{ATLAS_KEY},  CFA   du  Port  \n",
        encoding="utf-8",
    )

    result = run_cli("import", str(path))

    assert result.exit_code == 0, result.stderr
    assert "'CFA du Port'" in database_text()


# Item 16: sizes that used to crash the reader ----------------------------------------------


def test_a_131072_character_csv_field_is_an_error_naming_the_line(tmp_path: Path, cfa: str) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(
        f"cfa,opco,key,cfa_name\n{SIRET},atlas,{ATLAS_KEY},ok\n"
        f"{SIRET},sante,{KEY_2},{'x' * 131_072}\n",
        encoding="utf-8",
    )

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE
    assert "ligne 3" in result.stderr
    assert "erreur inattendue" not in result.stderr
    assert listed() == []


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            '[{"cfa": ' + "9" * 5000 + ', "opco": "atlas", "key": "K"}]',
            "élément 1, colonne « cfa »",
        ),
        ("[" * 100_000 + "]" * 100_000, "imbrication trop profonde"),
        ('{"keys": [{"cfa": {"a": 1}, "opco": "atlas", "key": "K"}]}', "un texte ou un nombre"),
        ('[{"cfa": "x", "opco": "atlas", "key": "K", "expires": NaN}]', "colonne « expires »"),
    ],
)
def test_hostile_json_is_a_french_error(
    tmp_path: Path, cfa: str, document: str, message: str
) -> None:
    path = tmp_path / "cles.json"
    path.write_text(document, encoding="utf-8")

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert message in result.stderr
    assert "erreur inattendue" not in result.stderr
    assert listed() == []


# Item 14: dates at the edge, at every entry point ------------------------------------------


def jwt_with_exp(exp: float) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'exp': exp})}.c2lnbmF0dXJl"


ZONES = ("Europe/Paris", "Pacific/Kiritimati", "Pacific/Pago_Pago")


@pytest.fixture(params=ZONES)
def zone(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("expires", ["31/12/9999", "0001-01-01", "01/01/2100", "31/12/1999"])
def test_typed_dates_outside_the_range_are_refused(cfa: str, zone: str, expires: str) -> None:
    result = run_cli("add", "atlas", "--expires", expires, input=ATLAS_KEY)

    assert result.exit_code == ExitCode.USAGE
    assert "hors de la plage acceptée : les dates vont du 01/01/2000 au 31/12/2099" in (
        result.stderr
    )
    assert listed() == []


def test_import_dates_outside_the_range_are_refused(tmp_path: Path, cfa: str, zone: str) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(
        f"cfa,opco,key,expires,obtained\n{SIRET},atlas,{ATLAS_KEY},,01/01/0001\n"
        f"{SIRET},sante,{KEY_2},9999-12-31,\n",
        encoding="utf-8",
    )

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE
    assert "ligne 2, colonne « obtained » : date hors de la plage acceptée" in result.stderr
    assert "ligne 3, colonne « expires » : date hors de la plage acceptée" in result.stderr
    assert listed() == []


def test_a_dotnet_never_expiring_jwt_is_saved_without_a_date(cfa: str, zone: str) -> None:
    key = jwt_with_exp(253402300799)  # 9999-12-31T23:59:59Z, .NET's DateTime.MaxValue

    result = run_cli("add", "opcoep", input=key)

    assert result.exit_code == 0, result.stderr
    assert "La date « exp » du jeton est hors de la plage acceptée" in result.stderr
    (row,) = listed()
    assert row["expires"] is None
    for command in (("list",), ("check",), ("show", "opcoep"), ("export", "--format", "env")):
        assert run_cli(*command).exit_code in {0, 1, 2}, command


@pytest.mark.parametrize("stored", ["9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+00:00"])
def test_overview_commands_survive_any_stored_date(cfa: str, zone: str, stored: str) -> None:
    assert run_cli("add", "atlas", "--expires", in_days(200), input=ATLAS_KEY).exit_code == 0
    with sqlite3.connect(Paths.from_env().metadata_db) as db:
        db.execute(
            "UPDATE key SET expires_at = ?, stored_at = ?, obtained_on = ?",
            (stored, stored, stored[:10]),
        )
        db.execute(
            "INSERT INTO journal (at, user, action, detail) VALUES (?, 'u', 'verified', '')",
            (stored,),
        )

    outputs = [
        run_cli(*command)
        for command in (
            ("list",),
            ("list", "--json"),
            ("check",),
            ("show", "atlas"),
            ("show", "atlas", "--json"),
            ("export", "--format", "env"),
            ("journal",),
        )
    ]

    for result in outputs:
        assert result.exit_code in {0, 1}, result.stderr
        assert "erreur inattendue" not in result.stderr
    (row,) = listed()
    assert row["expires"] is None  # no usable date, not a crash


# Item 17: settings that used to be accepted ----------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"opco.atlas.warn_days": Infinity}',
        b'{"opco.atlas.crit_days": -3}',
        b'{"opco.atlas.warn_days": 1e300}',
        b'{"opco.atlas.warn_days": true}',
    ],
)
def test_impossible_windows_in_the_settings_are_refused(cfa: str, content: bytes) -> None:
    assert run_cli("add", "atlas", "--expires", in_days(200), input=ATLAS_KEY).exit_code == 0
    config = Paths.from_env().config_file
    config.write_bytes(content)

    results = [run_cli("list"), run_cli("check"), run_cli("export", "--format", "env")]

    for result in results:
        if result is results[1]:  # check: a monitoring plugin, UNKNOWN (issue 14)
            assert result.exit_code == 3, result.stderr
            assert result.stdout.startswith("INCONNU : "), result.stdout
        else:
            assert result.exit_code in {ExitCode.USAGE, ExitCode.DATA_CORRUPTED}, result.stderr
        assert "erreur inattendue" not in result.stderr
        assert (
            "Paramètre « opco.atlas." in result.stderr
            or "Fichier de configuration" in result.stderr
        ), result.stderr


def test_a_binary_config_file_is_a_french_error(cfa: str) -> None:
    Paths.from_env().config_file.write_bytes(b"\xff\xfe\x00binary\x80")

    result = run_cli("list")

    assert result.exit_code == ExitCode.DATA_CORRUPTED
    assert "Fichier de configuration" in result.stderr
    assert "ce n'est pas du texte UTF-8" in result.stderr


@pytest.mark.parametrize("value", ["-3", "Infinity", "99999999999", "4000", "1.5"])
def test_config_set_refuses_impossible_windows(value: str) -> None:
    result = run_cli("config", "set", "--", "opco.atlas.crit_days", value)

    assert result.exit_code == ExitCode.USAGE
    assert "un nombre entier de jours de 0 à 3650 est attendu" in result.stderr
    assert not Paths.from_env().config_file.exists()


# Round 2, new 2: every column is read once, or named in an error or a warning ---------------


@pytest.mark.parametrize(
    "header",
    ["cfa;opco;key;key", "cfa;opco;key; KEY ", "cfa;opco;expires;key;Expires"],
)
def test_a_column_named_twice_is_an_error_naming_it(tmp_path: Path, cfa: str, header: str) -> None:
    repeated = "expires" if header.lower().count("expires") == 2 else "key"
    values = {"cfa": SIRET, "opco": "atlas", "key": CANARY, "expires": in_days(30)}
    row = ";".join(values[name.strip().lower()] for name in header.split(";"))
    path = tmp_path / "cles.csv"
    path.write_text(f"{header}\n{row}\n", encoding="utf-8")

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE
    assert f"la colonne « {repeated} » apparaît deux fois" in result.stderr
    assert "rien n'a été importé" in result.stderr
    assert_nothing_imported(result.stdout + result.stderr)


def test_a_json_object_naming_a_field_twice_is_an_error_naming_it(tmp_path: Path, cfa: str) -> None:
    path = tmp_path / "cles.json"
    path.write_text(
        f'[{{"cfa": "{SIRET}", "opco": "atlas", "key": "{CANARY}", "Key": "{ATLAS_KEY}"}}]',
        encoding="utf-8",
    )

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE
    assert "élément 1 : la colonne « key » apparaît deux fois" in result.stderr
    assert_nothing_imported(result.stdout + result.stderr)


def test_an_unknown_column_is_a_warning_when_the_import_succeeds(tmp_path: Path, cfa: str) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(f"cfa;opco;key;expire\n{SIRET};atlas;{ATLAS_KEY};{in_days(30)}\n")

    result = run_cli("import", str(path))

    assert result.exit_code == 0, result.stderr
    assert "Colonne ignorée : expire." in result.stderr
    assert [row["opco"] for row in listed()] == ["atlas"]


def test_a_trailing_separator_is_not_reported_as_a_column(tmp_path: Path, cfa: str) -> None:
    path = tmp_path / "cles.csv"  # some spreadsheets end every line with a separator
    path.write_text(f"cfa;opco;key;notes;\n{SIRET};atlas;{ATLAS_KEY};à vérifier;\n")

    result = run_cli("import", str(path))

    assert result.exit_code == 0, result.stderr
    assert "Colonne ignorée : notes." in result.stderr
    assert "n° 5" not in result.stderr


def test_a_key_needing_a_portal_date_is_refused_without_one_as_add_does(
    tmp_path: Path, cfa: str
) -> None:
    added = run_cli("add", "opcommerce", "--yes", input=CANARY)
    assert added.exit_code == ExitCode.USAGE  # add refuses it in a script: so does import
    path = tmp_path / "cles.csv"
    path.write_text(
        f"cfa;opco;key;expire\n{SIRET};opcommerce;{CANARY};{in_days(30)}\n"
        f"{SIRET};atlas;{ATLAS_KEY};{in_days(30)}\n",
        encoding="utf-8",
    )

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE
    assert (
        "ligne 2, colonne « expires » : date d'échéance requise pour cet OPCO (colonne expires)"
        in result.stderr
    )
    assert "colonne ignorée : expire" in result.stderr
    assert_nothing_imported(result.stdout + result.stderr)


def test_a_key_whose_portal_date_is_optional_is_imported_without_one_as_add_does(
    tmp_path: Path, cfa: str
) -> None:
    # OPCO EP reads the date in its JWT, and ``add opcoep --yes`` saves a key without one.
    path = tmp_path / "cles.csv"
    path.write_text(f"cfa;opco;key\n{SIRET};opcoep;{ATLAS_KEY}\n", encoding="utf-8")

    result = run_cli("import", str(path))

    assert result.exit_code == 0, result.stderr
    assert [(row["opco"], row["status"]) for row in listed()] == [("opcoep", "undated")]


@pytest.fixture
def pago_pago(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Pacific/Pago_Pago")  # UTC-11: 31/12/2099 23:59 is 2100 in UTC
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def paris(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Paris")  # UTC+1: 31/12/2099 23:59:59 UTC is 2100 here
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_the_last_accepted_day_is_on_the_local_calendar(cfa: str, pago_pago: None) -> None:
    result = run_cli("add", "atlas", "--expires", "31/12/2099 23:59", input=ATLAS_KEY)

    assert result.exit_code == 0, result.stderr
    (row,) = listed()
    assert row["expires"] == "2099-12-31"
    assert row["expires_at"] == "2100-01-01T10:59:00+00:00"
    assert "31/12/2099" in run_cli("show", "atlas").stdout


def test_a_jwt_ending_on_a_local_2100_is_no_usable_date(cfa: str, paris: None) -> None:
    key = jwt_with_exp(4102444799)  # 2099-12-31T23:59:59Z: 01/01/2100 at 00:59 in Paris

    result = run_cli("add", "opcoep", input=key)

    assert result.exit_code == 0, result.stderr
    assert "La date « exp » du jeton est hors de la plage acceptée" in result.stderr
    (row,) = listed()
    assert row["expires"] is None
    assert "01/01/2100" not in run_cli("list").stdout
