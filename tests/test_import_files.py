"""``cfakey import`` of the files people really have (issue 15, item 3).

French headers, Excel's Windows-1252 and its empty ``;;;;`` rows, tab-separated pastes,
spreadsheet dates, a SIRET in scientific notation, an expired key, a simulation that
changes nothing, and the round trip of cfakey's own exports. Real CLI, real SQLite file,
real encrypted file store.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from cfakey.core.import_text import date_text, normal_header
from cfakey.core.imports import COLUMN_NAMES, match_columns
from cfakey.errors import ExitCode
from cfakey.identifiers import with_check_digit
from cfakey.paths import Paths
from tests.test_import_hardening import database_text
from tests.test_keys_cli import ATLAS_KEY, KEY_2, OTHER_SIRET, SIRET, listed, run_cli

CANARY = "Canary+Key/0123456789abcdefghij"
FRENCH_HEADER = "N° SIRET;Nom du CFA;OPCO;Clé API;Date d'expiration;Remarques"


def data_bytes() -> dict[str, str]:
    """A digest of every file cfakey keeps (database, store...): proof nothing changed."""
    root = Paths.from_env().data_dir
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.name.endswith("-shm")  # SQLite's shared memory
    }


def slots() -> set[tuple[object, object]]:
    return {(row["cfa"], row["opco"]) for row in listed()}


@pytest.mark.parametrize(
    ("header", "field"),
    [
        ("SIRET", "cfa"),
        ("N° SIRET", "cfa"),
        ("  n°  siret ", "cfa"),
        ("OPCO", "opco"),
        ("Clé", "key"),
        ("Cle", "key"),
        ("CLÉ API", "key"),
        ("Key", "key"),
        ("Date d'expiration", "expires"),
        ("Échéance", "expires"),
        ("echeance", "expires"),
        ("Expire le", "expires"),
        ("Nom du CFA", "cfa_name"),
        ("Site", "cfa_name"),
        ("Établissement", "cfa_name"),
    ],
)
def test_french_and_english_headers_match_without_case_accents_or_spaces(
    header: str, field: str
) -> None:
    assert COLUMN_NAMES[normal_header(header)] == field


def test_cfa_is_the_siret_alone_and_the_name_beside_a_siret_column() -> None:
    assert match_columns(["cfa", "opco", "key"], "f").fields == ("cfa", "opco", "key")
    assert match_columns(["SIRET", "CFA", "OPCO", "Clé"], "f").fields == (
        "cfa",
        "cfa_name",
        "opco",
        "key",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15/01/27", "15/01/2027"),
        ("30/06/2027 00:00:00", "30/06/2027 00:00"),
        ("30/06/2027 14:05", "30/06/2027 14:05"),
        ("2027-06-30", "2027-06-30"),
        ("46568", "30/06/2027 00:00"),  # Excel's serial number of 30/06/2027
        ("46568,5", "30/06/2027 12:00"),
        ("99999", "99999"),  # beyond 2099: left for parse_date to refuse
        ("12", "12"),
    ],
)
def test_spreadsheet_dates_become_dates_cfakey_reads(text: str, expected: str) -> None:
    assert date_text(text) == expected


def test_a_french_excel_file_imports(tmp_path: Path) -> None:
    """Windows-1252, ``;``, French headers, JJ/MM/AA dates, a notes column, ``;;;;`` rows."""
    lines = [
        FRENCH_HEADER,
        f"{SIRET};Établissement Saint-Étienne;Atlas;{ATLAS_KEY};15/01/27;à renouveler",
        f"{OTHER_SIRET};Site Nord;opcommerce;{KEY_2};30/06/2027 00:00:00;",
        ";;;;;",
        ";;;;;",
    ]
    path = tmp_path / "cles.csv"
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode("cp1252"))

    result = run_cli("import", str(path))

    assert result.exit_code == 0, result.stderr
    assert "2 clé(s) importée(s)" in result.stderr
    assert "Colonne ignorée : Remarques." in result.stderr
    assert slots() == {(SIRET, "atlas"), (OTHER_SIRET, "opcommerce")}
    names = {row["cfa"]: row for row in listed()}
    assert str(names[OTHER_SIRET]["expires_at"]).startswith("2027-06-")
    assert ATLAS_KEY not in result.stdout + result.stderr + database_text()


def test_a_tab_separated_paste_in_utf8_with_bom_imports(tmp_path: Path) -> None:
    path = tmp_path / "collé.csv"
    text = f"Siret\tOpco\tKey\tÉchéance\n{SIRET}\tatlas\t{ATLAS_KEY}\t46568\n"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))

    result = run_cli("import", str(path))

    assert result.exit_code == 0, result.stderr
    assert slots() == {(SIRET, "atlas")}


def test_an_encoding_given_with_encodage_is_used(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_bytes(
        f"SIRET;OPCO;Clé;Nom du CFA\n{SIRET};atlas;{ATLAS_KEY};Cité\n".encode("latin-1")
    )

    unknown = run_cli("import", str(path), "--encodage", "klingon")
    result = run_cli("import", str(path), "--encodage", "latin-1")

    assert unknown.exit_code == ExitCode.USAGE
    assert "Encodage inconnu pour --encodage." in unknown.stderr
    assert result.exit_code == 0, result.stderr
    assert listed()[0]["cfa_name"] == "Cité"


def test_a_siret_in_scientific_notation_says_to_format_the_column_as_text(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(f"SIRET;OPCO;Clé\n8,12346E+13;atlas;{CANARY}\n", encoding="utf-8")

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE
    assert "SIRET en notation scientifique" in result.stderr
    assert "formatez la colonne en « Texte »" in result.stderr
    assert CANARY not in result.stderr + database_text()
    assert listed() == []


def test_an_expired_key_is_reported_and_never_stored(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(
        f"SIRET;OPCO;Clé;Échéance\n{SIRET};atlas;{ATLAS_KEY};15/01/25\n"
        f"{OTHER_SIRET};atlas;{KEY_2};15/01/27\n",
        encoding="utf-8",
    )

    refused = run_cli("import", str(path))
    kept = run_cli("import", str(path), "--ignorer-invalides")

    assert refused.exit_code == ExitCode.USAGE
    assert "ligne 2, colonne « Échéance » : date d'échéance déjà passée" in refused.stderr
    assert kept.exit_code == 0, kept.stderr
    assert "1 erreur(s) : ligne(s) écartée(s), non importée(s) :" in kept.stderr
    assert "ligne 2, colonne « Échéance » : date d'échéance déjà passée" in kept.stderr
    assert slots() == {(OTHER_SIRET, "atlas")}


def test_ignorer_invalides_with_no_valid_row_imports_nothing(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(f"SIRET;OPCO;Clé\n{SIRET};inconnu;{CANARY}\n", encoding="utf-8")

    result = run_cli("import", str(path), "--ignorer-invalides")

    assert result.exit_code == ExitCode.USAGE
    assert "rien n'a été importé" in result.stderr
    assert listed() == []


def test_reimporting_the_same_key_is_unchanged_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(f"SIRET;OPCO;Clé\n{SIRET};atlas;{ATLAS_KEY}\n", encoding="utf-8")
    assert run_cli("import", str(path)).exit_code == 0

    again = run_cli("import", str(path))
    journal = run_cli("journal")

    assert again.exit_code == 0, again.stderr
    assert "0 clé(s) importée(s)" in again.stderr
    assert "0 clé(s) remplacée(s), 1 inchangée(s)" in again.stderr
    assert journal.stdout.count("import") == 1


def test_dry_run_shows_the_plan_and_changes_no_byte(tmp_path: Path) -> None:
    first = tmp_path / "avant.csv"
    first.write_text(f"SIRET;OPCO;Clé\n{SIRET};atlas;{ATLAS_KEY}\n", encoding="utf-8")
    assert run_cli("import", str(first)).exit_code == 0
    path = tmp_path / "cles.csv"
    path.write_text(
        f"SIRET;OPCO;Clé;Échéance\n{SIRET};atlas;{ATLAS_KEY};\n"
        f"{OTHER_SIRET};atlas;{KEY_2};\n{SIRET};afdas;{CANARY};15/01/25\n",
        encoding="utf-8",
    )
    before = data_bytes()

    result = run_cli("import", str(path), "--dry-run", "--ignorer-invalides")

    assert result.exit_code == 0, result.stderr
    assert "Simulation : rien n'a été enregistré." in result.stdout
    assert f"ligne 3 : {OTHER_SIRET} atlas : serait importée" in result.stdout
    assert f"{SIRET} atlas : inchangée (même clé)" in result.stdout
    assert "ligne 4, colonne « Échéance » : date d'échéance déjà passée" in result.stdout
    assert "1 à importer, 0 à remplacer, 1 inchangée(s), 1 écartée(s) ; 1 CFA à ajouter." in (
        result.stdout
    )
    assert data_bytes() == before
    assert CANARY not in result.stdout + result.stderr
    assert ATLAS_KEY not in result.stdout + result.stderr


def test_dry_run_in_a_new_home_creates_no_database(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(f"SIRET;OPCO;Clé\n{SIRET};atlas;{ATLAS_KEY}\n", encoding="utf-8")

    result = run_cli("import", str(path), "--simulation")

    assert result.exit_code == 0, result.stderr
    assert "1 à importer, 0 à remplacer, 0 inchangée(s), 0 écartée(s) ; 1 CFA à ajouter." in (
        result.stdout
    )
    assert not Paths.from_env().metadata_db.exists()
    assert not Paths.from_env().encrypted_store.exists()


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_an_export_imports_back_on_another_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fmt: str
) -> None:
    """Export, then import into an empty home: the same keys, names and dates."""
    path = tmp_path / "source.csv"
    path.write_text(
        f"SIRET;Nom du CFA;OPCO;Clé;Échéance\n{SIRET};CFA Nord;atlas;{ATLAS_KEY};15/01/27\n"
        f"{OTHER_SIRET};CFA Sud;opcommerce;{KEY_2};30/06/2027\n",
        encoding="utf-8",
    )
    assert run_cli("import", str(path)).exit_code == 0
    before = sorted(
        (row["cfa"], row["opco"], row["cfa_name"], row["expires_at"]) for row in listed()
    )
    backup = tmp_path / f"sauvegarde.{fmt}"
    exported = run_cli("export", "--format", fmt, "--toutes-cfa", "--output", str(backup))
    assert exported.exit_code == 0, exported.stderr
    monkeypatch.setenv("CFAKEY_HOME", str(tmp_path / "autre-machine"))
    assert listed() == []

    result = run_cli("import", str(backup))

    assert result.exit_code == 0, result.stderr
    assert "Colonne ignorée" not in result.stderr
    after = sorted(
        (row["cfa"], row["opco"], row["cfa_name"], row["expires_at"]) for row in listed()
    )
    assert after == before
    shown = run_cli("show", "--cfa", SIRET, "atlas", "--reveal")
    assert ATLAS_KEY in shown.stdout


# Bad input ------------------------------------------------------------------------------


def refused(path: Path, *args: str) -> str:
    """Import ``path``: refused with exit 2, nothing stored; the French message."""
    result = run_cli("import", str(path), *args)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert listed() == []
    assert CANARY not in result.stdout + result.stderr + database_text()
    return result.stderr


def test_a_nul_byte_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_bytes(f"SIRET;OPCO;Clé\n{SIRET};atlas;{CANARY}\x00\n".encode())
    assert "ligne 2, colonne « Clé » : la clé contient des caractères invisibles" in refused(path)


def test_a_ten_megabyte_field_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(f"SIRET;OPCO;Clé\n{SIRET};atlas;{CANARY}{'A' * 10_000_000}\n")
    assert "valeur de plus de 131 072 caractères" in refused(path)


@pytest.mark.slow
def test_a_hundred_thousand_rows_are_all_checked(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    rows = "".join(f"{SIRET};opco-{n};{CANARY}\n" for n in range(100_000))
    path.write_text("SIRET;OPCO;Clé\n" + rows, encoding="utf-8")
    message = refused(path)
    assert "100000 erreur(s) dans le fichier ; rien n'a été importé" in message
    assert "… et 99980 autre(s)" in message


def test_mixed_separators_name_the_lines(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(
        f"SIRET;OPCO;Clé\n{SIRET};atlas;{ATLAS_KEY}\n{OTHER_SIRET},sante,{CANARY}\n",
        encoding="utf-8",
    )
    assert "ligne 3, colonne « * » : séparateur différent de celui de l'en-tête (« ; »)" in (
        refused(path)
    )


def test_a_header_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_text("SIRET;OPCO;Clé\n;;\n", encoding="utf-8")
    assert "Le fichier ne contient aucune ligne à importer." in refused(path)


def test_two_columns_meaning_the_key_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_text(f"SIRET;OPCO;Clé;Key\n{SIRET};atlas;{CANARY};{CANARY}\n", encoding="utf-8")
    assert "la colonne « key » apparaît deux fois (colonnes 3 et 4)" in refused(path)


@pytest.mark.parametrize(
    ("name", "head"), [("cles.xlsx", b"PK\x03\x04rest"), ("cles.csv", b"PK\x03\x04rest")]
)
def test_a_workbook_says_to_save_as_csv(tmp_path: Path, name: str, head: bytes) -> None:
    path = tmp_path / name
    path.write_bytes(head + CANARY.encode())
    message = refused(path)
    assert "est un classeur (Excel ou LibreOffice), pas un fichier CSV" in message
    assert "Enregistrer sous > « CSV UTF-8" in message


def test_a_file_in_neither_utf8_nor_windows_1252_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cles.csv"
    path.write_bytes(b"SIRET;OPCO;Cl\x81\n" + f"{SIRET};atlas;{CANARY}\n".encode())
    assert "n'est ni en UTF-8 ni en Windows-1252" in refused(path)


def test_a_json_export_document_reads_nested_names() -> None:
    assert match_columns(["cfa.siret", "cfa.name", "opco.id", "opco.name", "key"], "f").fields == (
        "cfa",
        "cfa_name",
        "opco",
        None,
        "key",
    )
    assert with_check_digit("4410000000001") == OTHER_SIRET


def test_errors_name_the_column_as_the_file_writes_it(tmp_path: Path) -> None:
    """« N° SIRET » and « Échéance », not cfakey's own field names « cfa » and « expires »."""
    path = tmp_path / "cles.csv"
    path.write_text(
        f"N° SIRET;OPCO;Clé;Échéance\n18130002100374;atlas;{CANARY};15/01/27\n"
        f"{OTHER_SIRET};afdas;{KEY_2};15/01/25\n",
        encoding="utf-8",
    )

    message = refused(path)  # exit 2, nothing stored, no key shown

    assert "ligne 2, colonne « N° SIRET » : " in message
    assert "ligne 3, colonne « Échéance » : date d'échéance déjà passée" in message
    assert "« cfa »" not in message
    assert "« expires »" not in message
