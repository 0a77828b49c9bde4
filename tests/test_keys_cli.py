"""``cfakey add/list/show/rotate/remove/check/import/journal`` through the real CLI.

The key store is the real encrypted file of the shared fixture, the metadata a real
SQLite file. Every bad input checks its French message, its exit code, and that
nothing was stored or lost.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cfakey.cli.app import app
from cfakey.context import AppContext
from cfakey.errors import ExitCode
from cfakey.expiry import add_months
from cfakey.identifiers import with_check_digit
from cfakey.registry.loader import load_registry
from cfakey.stores.base import fingerprint
from tests.conftest import TEST_FILE_PASSWORD, CliResult
from tests.test_keys_core import jwt

SIRET = "18130002100373"
OTHER_SIRET = with_check_digit("4410000000001")
ATLAS_KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
KEY_2 = "Mb7+Nv/Cx5Za3Sd1Fg9Hj2Kl4Pq6Wt8Y"
REGISTRY = load_registry(None, None)[0]


#: "Now" for every command of this module: a fixed instant, never the wall clock.
NOW = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)


def today() -> date:
    """Today on the local calendar, as cfakey counts days."""
    return NOW.astimezone().date()


def run_cli(*args: str, input: str | None = None) -> CliResult:  # noqa: A002 - CliRunner's name
    """``cfakey ARGS`` in-process, with the clock stopped at :data:`NOW`."""
    context = AppContext(clock=lambda: NOW)
    result = CliRunner().invoke(app, list(args), input=input, obj=context, prog_name="cfakey")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def steps(opco_id: str) -> int:
    return len(REGISTRY.get(opco_id).steps)


def enters(opco_id: str) -> str:
    """One Enter per pause: every step but the last waits for it."""
    return "\n" * (steps(opco_id) - 1)


@pytest.fixture
def cfa() -> str:
    result = run_cli("cfa", "add", SIRET, "--nom", "CFA Test")
    assert result.exit_code == 0, result.stderr
    return SIRET


def listed() -> list[dict[str, object]]:
    result = run_cli("list", "--json")
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, object]] = json.loads(result.stdout)
    return rows


def in_days(days: int) -> str:
    return (today() + timedelta(days=days)).strftime("%d/%m/%Y")


# The guided walkthrough ----------------------------------------------------------------------


def test_walkthrough_atlas_step_by_step(cfa: str) -> None:
    answers = "n\n" + enters("atlas") + f"  {ATLAS_KEY} \n"
    result = run_cli("add", "atlas", "--interactive", input=answers)
    assert result.exit_code == 0, result.stderr
    total = steps("atlas")
    for number in range(1, total + 1):
        assert f"Étape {number}/{total}" in result.stderr
    assert result.stderr.count("[Entrée pour continuer]") == total - 1
    assert "retirés au début ou à la fin" in result.stderr
    assert "cfakey export --opco atlas" in result.stderr
    assert "cfakey verify atlas" in result.stderr
    assert ATLAS_KEY not in result.stdout + result.stderr
    (row,) = listed()
    assert (row["cfa"], row["opco"], row["status_label"], row["expires"]) == (
        cfa,
        "atlas",
        "sans date",
        None,
    )
    assert row["fingerprint"] == fingerprint(ATLAS_KEY)


def test_walkthrough_ocapiat_warns_before_generating_and_asks_the_lifetime(cfa: str) -> None:
    answers = "n\n" + enters("ocapiat") + f"{ATLAS_KEY}\n6\n"
    result = run_cli("add", "ocapiat", "--interactive", input=answers)
    assert result.exit_code == 0, result.stderr
    # Ocapiat's own words, said once where they matter (issue 15 item 1)
    warning = "La génération d'une nouvelle clé écrase la précédente"
    assert result.stderr.count(warning) == 1
    generating_step = next(
        i for i, s in enumerate(REGISTRY.get("ocapiat").steps, 1) if "Générer" in s
    )
    assert result.stderr.index(warning) < result.stderr.index(f"Étape {generating_step}/")
    assert result.stderr.index(warning) > result.stderr.index(f"Étape {generating_step - 1}/")
    (row,) = listed()
    assert row["expires"] == add_months(today(), 6).isoformat()


@pytest.mark.parametrize("lifetime", ["0", "7", "six"])
def test_ocapiat_lifetime_out_of_range_stores_nothing(cfa: str, lifetime: str) -> None:
    answers = "n\n" + enters("ocapiat") + f"{ATLAS_KEY}\n{lifetime}\n"
    result = run_cli("add", "ocapiat", "--interactive", input=answers)
    assert result.exit_code == ExitCode.USAGE
    assert "Durée de vie" in result.stderr
    assert listed() == []
    flag = run_cli("add", "ocapiat", "--lifetime-months", "7", input=ATLAS_KEY)
    assert flag.exit_code == ExitCode.USAGE
    assert "de 1 à 6 mois" in flag.stderr
    assert listed() == []


def test_key_pasted_at_the_lifetime_prompt_is_not_quoted_back(cfa: str) -> None:
    answers = "n\n" + enters("ocapiat") + f"{ATLAS_KEY}\n{ATLAS_KEY}\n"
    result = run_cli("add", "ocapiat", "--interactive", input=answers)
    assert result.exit_code == ExitCode.USAGE
    assert "Durée de vie illisible : un nombre de mois est attendu." in result.stderr
    assert ATLAS_KEY not in result.stdout + result.stderr
    assert listed() == []


def test_email_opco_explains_the_request_and_sends_the_operator_back_later(cfa: str) -> None:
    result = run_cli("add", "opco2i", "--interactive", input="n\nn\n")
    assert result.exit_code == 0, result.stderr
    assert "SIREN du CFA" in result.stderr  # what to send
    assert "forms.office.com" in result.stderr  # where
    assert "revenez avec : cfakey add opco2i" in result.stderr
    assert listed() == []
    later = run_cli("add", "opco2i", "--interactive", input=f"o\n{KEY_2}\n")
    assert later.exit_code == 0, later.stderr
    assert "copiez-la maintenant" in later.stderr
    assert [row["opco"] for row in listed()] == ["opco2i"]


def test_constructys_names_who_requests(cfa: str) -> None:
    result = run_cli("add", "constructys", "--interactive", input="n\nn\n")
    assert result.exit_code == 0
    assert "organisme gestionnaire" in result.stderr
    assert "cfakey add constructys" in result.stderr


@pytest.mark.parametrize("opco_id", ["akto", "uniformation"])
def test_unpublished_procedure_still_lets_the_operator_store_a_key(cfa: str, opco_id: str) -> None:
    result = run_cli("add", opco_id, "--interactive", input=f"{KEY_2}\n")
    assert result.exit_code == 0, result.stderr
    assert "ne publie pas de procédure" in result.stderr
    assert [row["opco"] for row in listed()] == [opco_id]


def test_opco_ep_shown_once_and_jwt_expiry(cfa: str, tmp_path: Path) -> None:
    exp_day = today() + timedelta(days=200)
    token = jwt(datetime.combine(exp_day, time(12)).astimezone())
    answers = "n\n" + enters("opcoep") + f"{token}\n"
    result = run_cli("add", "opcoep", "--interactive", input=answers)
    assert result.exit_code == 0, result.stderr
    assert "copiez-la maintenant" in result.stderr
    assert "Date d'expiration affichée" not in result.stderr  # the JWT says it
    (row,) = listed()
    assert (row["expires"], row["days_left"]) == (exp_day.isoformat(), 200)


# Scripted use --------------------------------------------------------------------------------


def test_scripted_add_needs_no_prompt_and_computes_the_expiry(cfa: str) -> None:
    result = run_cli("add", "mobilites", input=ATLAS_KEY + "\n")
    assert result.exit_code == 0, result.stderr
    assert "Étape" not in result.stderr
    sante = run_cli("add", "sante", "--yes", input=KEY_2)
    assert sante.exit_code == 0, sante.stderr
    rows = {row["opco"]: row for row in listed()}
    assert rows["mobilites"]["expires"] == (today() + timedelta(days=365)).isoformat()
    assert rows["sante"]["expires"] == add_months(today(), 12).isoformat()


def test_from_file_reads_the_downloaded_token(cfa: str, tmp_path: Path) -> None:
    path = tmp_path / "token.txt"
    path.write_text("jeton-sans-date-0123456789abcdef\r\n", encoding="utf-8")
    result = run_cli("add", "opcoep", "--from-file", str(path), "--expires", in_days(90))
    assert result.exit_code == 0, result.stderr
    (row,) = listed()
    assert (row["days_left"], row["status_label"]) == (90, "valide")
    missing = run_cli("add", "atlas", "--from-file", str(tmp_path / "absent.txt"))
    assert missing.exit_code == ExitCode.USAGE
    assert "Fichier introuvable" in missing.stderr


def test_portal_date_in_scripts(cfa: str) -> None:
    needed = run_cli("add", "opcommerce", input=ATLAS_KEY)
    assert needed.exit_code == ExitCode.USAGE
    assert "--expires" in needed.stderr
    ok = run_cli("add", "opcommerce", "--expires", f"{in_days(30)} 15:18", input=ATLAS_KEY)
    assert ok.exit_code == 0, ok.stderr
    assert listed()[0]["days_left"] == 30


@pytest.mark.parametrize(
    ("args", "stdin", "code", "fragment"),
    [
        (["add", "opcomerce2"], "k", ExitCode.USAGE, "OPCO inconnu"),
        (["add", "atlas", "--cfa", "99999999999999"], "k", ExitCode.USAGE, "SIRET"),
        (["add", "atlas", "--cfa", "CFA Inexistant"], "k", ExitCode.NOT_FOUND, "CFA inconnu"),
        (["add", "atlas"], "", ExitCode.USAGE, "Aucune clé reçue"),
        (["add", "atlas"], "   \n\n", ExitCode.USAGE, "La clé est vide"),
        (["add", "atlas"], "abcdefghijkl mnopqrstuvwxyz12345", ExitCode.USAGE, "espace"),
        (["add", "atlas", "--expires", "01/01/2020"], ATLAS_KEY, ExitCode.USAGE, "déjà passée"),
        (["add", "atlas", "--expires", "demain"], ATLAS_KEY, ExitCode.USAGE, "Date illisible"),
        (["add", "ocapiat"], ATLAS_KEY, ExitCode.USAGE, "--lifetime-months"),
        (["add", "atlas", "--interactive"], "", ExitCode.USAGE, "Pas de terminal"),
    ],
)
def test_bad_input_is_refused_in_french_and_stores_nothing(
    cfa: str, args: list[str], stdin: str, code: int, fragment: str
) -> None:
    result = run_cli(*args, input=stdin)
    assert result.exit_code == code, result.stderr
    assert fragment in result.stderr
    assert "Error" not in result.stderr
    assert listed() == []
    assert [e for e in json_journal() if e["action"] != "cfa_added"] == []


def json_journal() -> list[dict[str, str]]:
    result = run_cli("journal", "--csv", "--chronologique")
    assert result.exit_code == 0, result.stderr
    return list(csv.DictReader(io.StringIO(result.stdout)))


def test_no_cfa_registered_gives_the_hint() -> None:
    result = run_cli("add", "atlas", input=ATLAS_KEY)
    assert result.exit_code == ExitCode.USAGE
    assert "cfakey cfa add" in (result.stderr)


def test_existing_key_needs_confirmation_then_is_a_rotation(cfa: str) -> None:
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    again = run_cli("add", "atlas", input=KEY_2)
    assert again.exit_code == ExitCode.ALREADY_EXISTS
    assert "--yes" in again.stderr
    assert run_cli("show", "atlas", "--reveal").stdout == ATLAS_KEY + "\n"
    declined = run_cli("add", "atlas", "--interactive", input="n\n")
    assert declined.exit_code == 1
    assert "rien n'a été enregistré" in declined.stderr
    replaced = run_cli("add", "atlas", "--yes", input=KEY_2)
    assert replaced.exit_code == 0, replaced.stderr
    last = json_journal()[-1]
    assert (last["action"], last["ancienne_empreinte"], last["nouvelle_empreinte"]) == (
        "rotated",
        fingerprint(ATLAS_KEY),
        fingerprint(KEY_2),
    )
    assert run_cli("show", "atlas", "--reveal").stdout == KEY_2 + "\n"


def test_import_refuses_a_key_stored_for_another_slot_as_add_does(cfa: str, tmp_path: Path) -> None:
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    sheet = tmp_path / "cles.csv"
    sheet.write_text(f"cfa,opco,key\n{cfa},mobilites,{ATLAS_KEY}\n", encoding="utf-8")
    refused = run_cli("import", str(sheet))
    assert (
        refused.exit_code
        == ExitCode.ALREADY_EXISTS
        == run_cli("add", "mobilites", input=ATLAS_KEY).exit_code
    )
    assert (
        "ligne 2, colonne « key » : clé déjà enregistrée pour atlas du CFA "
        f"{cfa} : une clé collée au mauvais endroit ?"
    ) in refused.stderr
    assert "rien n'a été importé" in refused.stderr
    assert ATLAS_KEY not in refused.stderr
    assert [row["opco"] for row in listed()] == ["atlas"]
    confirmed = run_cli("import", str(sheet), "--yes")
    assert confirmed.exit_code == 0, confirmed.stderr
    assert sorted(str(row["opco"]) for row in listed()) == ["atlas", "mobilites"]


def test_same_key_pasted_for_another_opco_is_refused_unless_confirmed(cfa: str) -> None:
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    refused = run_cli("add", "mobilites", input=ATLAS_KEY)
    assert refused.exit_code == ExitCode.ALREADY_EXISTS
    assert "déjà enregistrée pour atlas" in refused.stderr
    assert refused.stderr.count("déjà enregistrée") == 1
    assert [row["opco"] for row in listed()] == ["atlas"]
    confirmed = run_cli("add", "mobilites", "--yes", input=ATLAS_KEY)
    assert confirmed.exit_code == 0, confirmed.stderr


# rotate, show, remove ----------------------------------------------------------------------------


def test_rotate_warns_journals_and_reminds(cfa: str) -> None:
    missing = run_cli("rotate", "afdas", input="A" * 64)
    assert missing.exit_code == ExitCode.NOT_FOUND
    assert run_cli("add", "afdas", input="A" * 64).exit_code == 0
    answers = "n\n" + enters("afdas") + "B" * 64 + "\n"
    result = run_cli("rotate", "afdas", "--interactive", input=answers)
    assert result.exit_code == 0, result.stderr
    assert "Générer un nouvel identifiant écrase le précédent" in result.stderr  # Afdas's words
    assert "L'ancienne clé ne fonctionne plus : mettez à jour le logiciel du CFA" in result.stderr
    assert f"cfakey export --opco afdas --cfa {cfa} --format env" in result.stderr
    last = json_journal()[-1]
    assert (last["action"], last["ancienne_empreinte"], last["nouvelle_empreinte"]) == (
        "rotated",
        fingerprint("A" * 64),
        fingerprint("B" * 64),
    )


def test_after_a_replacement_the_old_key_notice_says_only_what_the_registry_knows(
    cfa: str,
) -> None:
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    result = run_cli("add", "atlas", "--yes", input=KEY_2)
    assert result.exit_code == 0, result.stderr
    assert "L'ancienne clé a peut-être cessé de fonctionner" in result.stderr
    assert "ne fonctionne plus" not in result.stderr


def test_show_never_prints_the_key_unless_revealed(cfa: str) -> None:
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    shown = run_cli("show", "Atlas")
    assert shown.exit_code == 0
    assert fingerprint(ATLAS_KEY) in shown.stdout
    assert ATLAS_KEY not in shown.stdout + shown.stderr
    as_json = json.loads(run_cli("show", "atlas", "--json").stdout)
    assert as_json["fingerprint"] == fingerprint(ATLAS_KEY)
    assert [row["action"] for row in json_journal()] == ["cfa_added", "added"]
    revealed = run_cli("show", "atlas", "--reveal")
    assert revealed.stdout == ATLAS_KEY + "\n"
    last = json_journal()[-1]
    assert (last["action"], last["opco"]) == ("revealed", "atlas")
    assert last["nouvelle_empreinte"] == fingerprint(ATLAS_KEY)
    assert ATLAS_KEY not in str(json_journal())
    absent = run_cli("show", "sante")
    assert absent.exit_code == ExitCode.NOT_FOUND
    assert "Aucune clé" in absent.stderr


def test_remove_asks_then_removes_secret_and_metadata(cfa: str) -> None:
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    refused = run_cli("remove", "atlas")
    assert refused.exit_code == ExitCode.USAGE
    assert "--yes" in refused.stderr
    assert len(listed()) == 1
    removed = run_cli("remove", "atlas", "--yes")
    assert removed.exit_code == 0, removed.stderr
    assert listed() == []
    assert json_journal()[-1]["action"] == "removed"
    assert run_cli("show", "atlas", "--reveal").exit_code == ExitCode.NOT_FOUND
    assert run_cli("remove", "atlas", "--yes").exit_code == ExitCode.NOT_FOUND


# list and check ---------------------------------------------------------------------


def test_empty_store_gives_a_friendly_hint() -> None:
    result = run_cli("list")
    assert result.exit_code == 0
    assert result.stdout == ""
    assert "cfakey cfa add" in result.stderr


def test_list_sorts_by_urgency_and_shows_a_matrix_for_several_cfas(cfa: str) -> None:
    assert run_cli("cfa", "add", OTHER_SIRET, "--nom", "CFA Autre").exit_code == 0
    assert run_cli("add", "atlas", "--expires", in_days(100), input=ATLAS_KEY).exit_code == 0
    assert run_cli("add", "sante", input=KEY_2).exit_code == 0
    assert (
        run_cli(
            "add", "atlas", "--cfa", OTHER_SIRET, "--expires", in_days(5), input="C" * 32
        ).exit_code
        == 0
    )
    rows = listed()
    assert [(row["cfa"], row["opco"], row["days_left"], row["status_label"]) for row in rows] == [
        (OTHER_SIRET, "atlas", 5, "à renouveler"),
        (cfa, "atlas", 100, "valide"),
        (cfa, "sante", (add_months(today(), 12) - today()).days, "valide"),
    ]
    assert {"cfa", "opco", "expires", "days_left", "status", "fingerprint"} <= set(rows[0])
    matrix = run_cli("list")
    lines = matrix.stdout.splitlines()
    assert lines[0].split()[:4] == ["CFA", "Afdas", "AKTO", "Atlas"]
    assert lines[1].startswith("CFA Autre")  # most urgent CFA first
    assert lines[1].split()[-9] == "5"
    assert len(lines) == 3
    single = run_cli("list", "--cfa", cfa)
    assert "Échéance" in single.stdout
    assert single.stdout.index("Atlas") < single.stdout.index("OPCO Santé")
    assert run_cli("list", "--opco", "santé", "--json").stdout.count('"opco": "sante"') == 1


@pytest.mark.parametrize(
    ("flags", "code"),
    [
        (["--warn-days", "9", "--crit-days", "3"], 0),
        (["--warn-days", "10", "--crit-days", "3"], 1),
        (["--warn-days", "10", "--crit-days", "9"], 1),
        (["--warn-days", "10", "--crit-days", "10"], 2),
        ([], 2),  # default for a yearly key: critical within 14 days
    ],
)
def test_check_exit_codes_at_the_window_edges(cfa: str, flags: list[str], code: int) -> None:
    assert run_cli("add", "atlas", "--expires", in_days(10), input=ATLAS_KEY).exit_code == 0
    result = run_cli("check", *flags)
    assert result.exit_code == code, result.stdout
    assert result.stdout.splitlines()[0].startswith(("OK", "ALERTE", "CRITIQUE")[code])
    payload = json.loads(run_cli("check", "--json", *flags).stdout)
    assert payload["exit_code"] == code
    assert len(payload["problems"]) == (1 if code else 0)


def test_check_ocapiat_default_window_is_shorter(cfa: str) -> None:
    assert run_cli("add", "ocapiat", "--expires", in_days(31), input=ATLAS_KEY).exit_code == 0
    assert run_cli("check").exit_code == 0
    assert run_cli("add", "sante", "--expires", in_days(31), input=KEY_2).exit_code == 0
    result = run_cli("check")
    assert result.exit_code == 1
    assert "OPCO Santé" in result.stdout
    assert "Ocapiat" not in result.stdout
    assert run_cli("check", "--warn-days", "3", "--crit-days", "5").exit_code == 3  # UNKNOWN


# import and journal -----------------------------------------------------------------


def test_import_errors_name_the_real_line_after_blank_lines(tmp_path: Path, cfa: str) -> None:
    bad = tmp_path / "blancs.csv"
    bad.write_text(
        f'cfa,opco,key,cfa_name\n\n{cfa},atlas,{"A" * 32},"CFA\nsur deux lignes"\n'
        f"\n{cfa},opco-x,{'B' * 32},\n",
        encoding="utf-8",
    )
    result = run_cli("import", str(bad))
    assert result.exit_code == ExitCode.USAGE
    assert "ligne 3, colonne « cfa_name » : la valeur s'étend sur plusieurs" in result.stderr
    assert "ligne 6, colonne « opco »" in result.stderr, result.stderr
    assert listed() == []


def test_import_all_or_nothing_with_row_and_column(tmp_path: Path, cfa: str) -> None:
    secret = "Imp0rt+Secret/Key=$abcdefghijklm"
    bad = tmp_path / "bad.csv"
    bad.write_text(
        f"cfa,opco,key\n{cfa},atlas,{secret}\n{OTHER_SIRET},opco-x,{'D' * 32}\n"
        f"12345678901234,sante,{'E' * 32}\n{cfa},atlas,{'F' * 32}\n",
        encoding="utf-8",
    )
    result = run_cli("import", str(bad))
    assert result.exit_code == ExitCode.USAGE
    assert "ligne 3, colonne « opco »" in result.stderr
    assert "ligne 4, colonne « cfa » : SIRET invalide" in result.stderr
    assert "ligne 5, colonne « opco » : doublon" in result.stderr
    assert secret not in result.stdout + result.stderr
    assert listed() == []
    good = tmp_path / "good.csv"
    good.write_text(
        f"cfa;opco;key;cfa_name\n{cfa};atlas;{secret};\n"
        f"{OTHER_SIRET};sante;{'G' * 32};CFA Nouveau\n",
        encoding="utf-8",
    )
    imported = run_cli("import", str(good))
    assert imported.exit_code == 0, imported.stderr
    assert "2 clé(s) importée(s)" in imported.stderr
    assert len(listed()) == 2
    assert run_cli("show", "atlas", "--reveal").stdout == secret + "\n"
    cfas = json.loads(run_cli("cfa", "list", "--json").stdout)
    assert "CFA Nouveau" in [c["name"] for c in cfas]


def test_journal_filters_and_csv(cfa: str) -> None:
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    assert run_cli("add", "sante", input=KEY_2).exit_code == 0
    table = run_cli("journal", "--opco", "atlas")
    assert "ajoutée" in table.stdout
    assert "sante" not in table.stdout
    rows = json_journal()
    assert list(rows[0]) == [
        "date",
        "utilisateur",
        "cfa",
        "opco",
        "action",
        "ancienne_empreinte",
        "nouvelle_empreinte",
        "detail",
    ]
    tomorrow = (today() + timedelta(days=1)).isoformat()
    assert run_cli("journal", "--since", tomorrow).stderr.startswith("Journal vide")
    assert run_cli("journal", "--since", "hier").exit_code == ExitCode.USAGE


def test_store_unavailable_stores_nothing(cfa: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CFAKEY_STORE", "keyring")  # the fixture's keyring is the "fail" backend
    result = run_cli("add", "atlas", input=ATLAS_KEY)
    assert result.exit_code == ExitCode.STORE_UNAVAILABLE, result.stderr
    assert listed() == []


def test_wrong_store_password_changes_nothing_and_list_still_works(
    cfa: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", "pas-le-bon-mot-de-passe")
    locked = run_cli("add", "sante", input=KEY_2)
    assert locked.exit_code == ExitCode.STORE_UNAVAILABLE, locked.stderr
    assert run_cli("remove", "atlas", "--yes").exit_code == ExitCode.STORE_UNAVAILABLE
    assert [row["opco"] for row in listed()] == ["atlas"]  # metadata only: no password needed
    assert run_cli("check").exit_code == 0
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", TEST_FILE_PASSWORD)
    assert run_cli("show", "atlas", "--reveal").stdout == ATLAS_KEY + "\n"


def test_waiting_for_an_email_does_not_unlock_the_store(
    cfa: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run_cli("add", "atlas", input=ATLAS_KEY).exit_code == 0
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", "pas-le-bon-mot-de-passe")
    result = run_cli("add", "constructys", "--interactive", input="n\nn\n")
    assert result.exit_code == 0, result.stderr
    assert "cfakey add constructys" in result.stderr
    received = run_cli("add", "constructys", "--interactive", input=f"o\n{KEY_2}\n")
    assert received.exit_code == ExitCode.STORE_UNAVAILABLE
    assert [row["opco"] for row in listed()] == ["atlas"]


def test_show_historique_on_a_local_store_lists_the_key_s_journal_never_a_key(
    isolated_home: Path,
) -> None:
    """Issue 12 item 3 on the encrypted file: the versions come from this home's journal."""
    from cfakey.stores.base import fingerprint

    first, second = "Cle+historique+1/0123456789abcdef=", "Cle+historique+2/0123456789abcdef="
    assert run_cli("cfa", "add", "13002526500013", "--nom", "CFA").exit_code == 0
    assert run_cli("add", "atlas", "--yes", input=first).exit_code == 0
    assert run_cli("rotate", "atlas", "--yes", input=second).exit_code == 0
    shown = run_cli("show", "atlas", "--historique", "--json")
    assert shown.exit_code == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["source"] == "journal"
    assert [(v["action"], v["fingerprint"], v["state"]) for v in document["versions"]] == [
        ("rotated", fingerprint(second), "current"),
        ("added", fingerprint(first), "kept"),
    ]
    refused = run_cli("show", "atlas", "--historique", "--reveal")
    assert refused.exit_code == 2
    for result in (shown, refused):
        assert first not in result.stdout + result.stderr
        assert second not in result.stdout + result.stderr
