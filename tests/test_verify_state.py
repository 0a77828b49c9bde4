"""The last verification kept with each key (issue 13, item 1) and only real checks
journalled (item 2): what ``verify`` finds is what ``list``, ``show`` and ``check`` say."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator

import pytest

from cfakey.context import AppContext
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from tests.conftest import CliResult, run_cli
from tests.fake_opco import FakeOpco, running_fake_opco
from tests.test_verify import KEY_ATLAS, SIRET, journal_details, key_record, seed, set_url

NOW = dt.datetime(2026, 11, 22, 12, 0, tzinfo=dt.UTC)
NEW_KEY = "Nq4+Wd/Ht7Pm2Lx9Cv5Bz1Rk8Fj3Gs6Y="


@pytest.fixture
def opco() -> Iterator[FakeOpco]:
    with running_fake_opco() as server:
        server.state.valid_keys[KEY_ATLAS] = "2027-06-30"
        server.state.valid_keys[NEW_KEY] = "2027-09-30"
        yield server


def at(now: dt.datetime, *args: str, stdin: str | None = None) -> CliResult:
    """``cfakey ARGS`` with the clock stopped at ``now``."""
    return run_cli(*args, input=stdin, context=AppContext(clock=lambda: now))


def list_row(now: dt.datetime = NOW) -> dict[str, object]:
    (row,) = json.loads(at(now, "list", "--json").stdout)
    assert isinstance(row, dict)
    return row


def test_a_refused_key_is_refused_in_list_show_and_check(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("forbidden"))

    assert at(NOW, "verify", "atlas").exit_code == 10

    row = list_row()
    assert (row["status"], row["status_label"]) == ("refused", "refusée")
    assert row["verification"] == {
        "checked_at": "2026-11-22T12:00:00+00:00",
        "outcome": "cle_refusee",
        "outcome_label": "clé refusée",
        "http_status": 403,
        "opco_expiry": None,
    }
    assert row["verification_due"] is False
    listed = at(NOW, "list")
    assert "refusée" in listed.stdout
    assert "1 clé(s) : 1 refusée." in listed.stderr
    shown = at(NOW, "show", "atlas")
    assert "Vérification  : 22/11/2026" in shown.stdout
    assert "clé refusée ; HTTP 403" in shown.stdout
    shown_json = json.loads(at(NOW, "show", "atlas", "--json").stdout)
    assert shown_json["verification"] == row["verification"]
    checked = at(NOW, "check")
    assert checked.exit_code == 2
    assert "CRITIQUE" in checked.stdout
    assert "refusée par l'OPCO le 22/11/2026" in checked.stdout
    data = json.loads(at(NOW, "check", "--json").stdout)
    (problem,) = data["problems"]
    assert (problem["status"], problem["level"]) == ("refused", "critical")
    assert problem["verification"]["outcome"] == "cle_refusee"
    for output in (listed, shown, checked):
        assert KEY_ATLAS not in output.stdout + output.stderr


def test_a_refused_key_comes_before_an_expired_one(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    seed((SIRET, "akto", NEW_KEY), expires=NOW - dt.timedelta(days=3))
    set_url("atlas", opco.base_url("forbidden"))
    assert at(NOW, "verify", "atlas").exit_code == 10

    rows = json.loads(at(NOW, "list", "--json").stdout)

    assert [(row["opco"], row["status"]) for row in rows] == [
        ("atlas", "refused"),
        ("akto", "expired"),
    ]


def test_a_replaced_key_starts_clean(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("forbidden"))
    assert at(NOW, "verify", "atlas").exit_code == 10

    rotated = at(NOW, "rotate", "atlas", "--yes", "--expires", "30/09/2027", stdin=NEW_KEY)
    assert rotated.exit_code == 0, rotated.stderr

    row = list_row()
    assert row["verification"] is None
    assert row["status"] == "valid"
    # The rotation kept every other fact of the key, and its journal.
    assert len(journal_details("atlas")) == 1


def test_a_valid_result_keeps_the_opco_end_date(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("ok"))

    assert at(NOW, "verify", "atlas").exit_code == 0

    verification = list_row()["verification"]
    assert verification == {
        "checked_at": "2026-11-22T12:00:00+00:00",
        "outcome": "valide",
        "outcome_label": "valide",
        "http_status": 200,
        "opco_expiry": "2027-06-30",
    }
    assert "fin de validité annoncée le 30/06/2027" in at(NOW, "show", "atlas").stdout


def test_a_key_not_verified_for_long_warns_only_where_an_api_is_known(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    # No API address for Atlas: nothing to expect of verify.
    assert at(NOW, "check").exit_code == 0
    assert list_row()["verification_due"] is False

    set_url("atlas", opco.base_url("ok"))
    never = at(NOW, "check")
    assert never.exit_code == 1
    assert "ALERTE" in never.stdout
    assert "jamais vérifiée auprès de l'OPCO (cfakey verify atlas)" in never.stdout

    assert at(NOW, "verify", "atlas").exit_code == 0
    assert at(NOW + dt.timedelta(days=30), "check").exit_code == 0
    late = at(NOW + dt.timedelta(days=31), "check")
    assert late.exit_code == 1
    assert "dernière vérification auprès de l'OPCO le 22/11/2026" in late.stdout

    assert run_cli("config", "set", "verify.max_age_days", "60").exit_code == 0
    assert at(NOW + dt.timedelta(days=31), "check").exit_code == 0


@pytest.mark.parametrize("value", ["-1", "3651", "dix", "1.5"])
def test_max_age_setting_is_checked_like_the_windows(value: str) -> None:
    result = run_cli("config", "set", "--", "verify.max_age_days", value)

    assert result.exit_code == 2
    assert "Paramètre « verify.max_age_days » invalide" in result.stderr
    assert value not in result.stderr.replace("3650", "")


def test_a_run_that_sent_nothing_is_reported_not_journalled(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))  # no API address for Atlas

    result = at(NOW, "verify", "atlas", "--json")

    assert result.exit_code == 2
    (first,) = json.loads(result.stdout)["results"]
    assert (first["status"], first["sent"]) == ("url_absente", False)
    assert journal_details("atlas") == []
    record = key_record(SIRET, "atlas")
    assert record is not None
    assert record.verification is None
    assert opco.requests == []


def test_an_oauth_client_missing_is_not_journalled(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("oauth"))
    assert run_cli("config", "set", "opco.atlas.oauth.token_url", opco.token_url).exit_code == 0

    result = at(NOW, "verify", "atlas")

    assert result.exit_code == 2
    assert "incomplet" in result.stderr
    assert journal_details("atlas") == []
    assert opco.requests == []


def test_a_schema_2_database_is_migrated_with_its_keys_unverified(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))
    path = Paths.from_env().metadata_db
    connection = sqlite3.connect(path)
    for column in ("verified_at", "verify_outcome", "verify_http_status", "verify_opco_expiry"):
        connection.execute(f"ALTER TABLE key DROP COLUMN {column}")
    connection.execute("DROP TABLE request")  # schema 4: a schema 2 file never had it
    for table in ("sync_state", "sync_cfa", "team_interrupted", "team_journal"):  # nor 5
        connection.execute(f"DROP TABLE {table}")
    connection.execute("ALTER TABLE cfa DROP COLUMN shared")
    connection.execute("PRAGMA user_version = 2")
    connection.commit()
    connection.close()

    with Metadata.open(Paths.from_env()) as metadata:
        record = metadata.get_key(SIRET, "atlas")
    assert record is not None
    assert record.verification is None
    assert record.fingerprint


def _closed_port_url() -> str:
    """An address on 127.0.0.1 where nothing listens: the OPCO unreachable."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/ApiEchangeCFA"


def test_an_inconclusive_check_never_wipes_a_refusal(opco: FakeOpco) -> None:
    """Issue 13: a 403 stays the key's state through a 500 and an unreachable OPCO; those
    are journalled as what they are, and only a later conclusive answer replaces it."""
    seed((SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("forbidden"))
    assert at(NOW, "verify", "atlas").exit_code == 10

    later = NOW + dt.timedelta(days=1)
    set_url("atlas", opco.base_url("e500"))
    assert at(later, "verify", "atlas").exit_code == 12
    set_url("atlas", _closed_port_url())
    assert at(later + dt.timedelta(days=40), "verify", "atlas").exit_code == 12

    # 40 days after the refusal: no inconclusive run counted as "verified recently".
    when = later + dt.timedelta(days=40)
    row = list_row(when)
    assert (row["status"], row["status_label"]) == ("refused", "refusée")
    assert row["verification"]["checked_at"] == "2026-11-22T12:00:00+00:00"  # type: ignore[index]
    assert row["verification"]["outcome"] == "cle_refusee"  # type: ignore[index]
    assert row["verification_due"] is True
    assert "refusée" in at(when, "list").stdout
    checked = at(when, "check")
    assert checked.exit_code == 2
    assert "refusée par l'OPCO le 22/11/2026" in checked.stdout
    details = journal_details("atlas")
    assert len(details) == 3
    assert sum("opco_indisponible" in detail for detail in details) == 2

    set_url("atlas", opco.base_url("ok"))
    assert at(when, "verify", "atlas").exit_code == 0
    row = list_row(when)
    assert row["status"] != "refused"
    assert row["verification"]["outcome"] == "valide"  # type: ignore[index]
    assert at(when, "check").exit_code == 0
