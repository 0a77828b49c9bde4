"""Every ``--json`` output (list, check, show, cfa list, doctor, verify, journal, request
list): a contract.

Each test pins the exact key set of one output, and that every enumerated value is an
ASCII identifier with its French label beside it (``"status": "expiring"``,
``"status_label": "à renouveler"``; verify's results say ``status`` and ``label``).
"Today" is fixed by the context's clock. Change a shape only with a changelog entry.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cfakey.cli.app import app
from cfakey.context import AppContext
from cfakey.core import verify as engine
from cfakey.core.codes import (
    DatabaseCheck,
    DataPath,
    ExpirySource,
    JournalAction,
    KeyStatus,
    Level,
    RequestStatus,
    VerifyOutcome,
)
from cfakey.stores.kinds import STORE_KINDS
from cfakey.stores.selection import ORIGINS
from tests.conftest import CliResult, run_cli
from tests.fake_opco import FakeOpco, running_fake_opco
from tests.test_verify import KEY_ATLAS, seed, set_url
from tests.test_verify import SIRET as VERIFY_SIRET

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SIRET = "18130002100373"
ATLAS_KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
MOBILITES_KEY = "Mb7+Nv/Cx5Za3Sd1Fg9Hj2Kl4Pq6Wt8Y"

ROW_KEYS = {
    "cfa",
    "cfa_name",
    "opco",
    "opco_name",
    "expires",
    "expires_at",
    "days_left",
    "status",
    "status_label",
    "fingerprint",
    "obtained",
    "expiry_source",
    "expiry_source_label",
    "rotation_due",
    "verification",
    "verification_due",
    "peak_renewal",
}
#: ``peak_renewal`` of a key expiring in, or just before, the contract peak (else null).
PEAK_RENEWAL_KEYS = {"remind_on", "peak_start", "peak_end", "due", "label"}


def run_at(now: datetime, *args: str, stdin: str | None = None) -> CliResult:
    """``cfakey ARGS`` with the clock stopped at ``now``."""
    context = AppContext(clock=lambda: now)
    result = CliRunner().invoke(app, list(args), input=stdin, obj=context, prog_name="cfakey")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def two_keys() -> None:
    """An Atlas key without date, and a Mobilités key 10 days from expiry (critical)."""
    assert run_at(NOW, "cfa", "add", SIRET, "--nom", "CFA Test").exit_code == 0
    added = run_at(NOW, "add", "atlas", "--no-interactive", stdin=ATLAS_KEY)
    assert added.exit_code == 0, added.stderr
    expires = (NOW + timedelta(days=10)).astimezone().strftime("%d/%m/%Y")
    added = run_at(
        NOW, "add", "mobilites", "--no-interactive", "--expires", expires, stdin=MOBILITES_KEY
    )
    assert added.exit_code == 0, added.stderr


def is_identifier(value: str) -> bool:
    return value.isascii() and value.replace("_", "").isalnum() and value.islower()


def check_codes(row: dict[str, Any]) -> None:
    assert is_identifier(row["status"])
    assert row["status_label"] == KeyStatus(row["status"]).label
    assert row["expiry_source_label"] == ExpirySource(row["expiry_source"]).label


@pytest.mark.usefixtures("two_keys")
def test_list_json_pins_its_keys_and_labels_every_status() -> None:
    result = run_at(NOW, "list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [set(row) for row in rows] == [ROW_KEYS, ROW_KEYS]
    for row in rows:
        check_codes(row)
    assert [(row["opco"], row["status"], row["status_label"]) for row in rows] == [
        ("mobilites", "expiring", "à renouveler"),
        ("atlas", "undated", "sans date"),
    ]
    assert (rows[0]["expiry_source"], rows[0]["expiry_source_label"]) == (
        "operator",
        "saisie",
    )


@pytest.mark.usefixtures("two_keys")
def test_check_json_pins_its_keys_and_labels_every_level() -> None:
    result = run_at(NOW, "check", "--json")
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert set(data) == {"status", "status_label", "exit_code", "checked", "problems"}
    assert (data["status"], data["status_label"], data["exit_code"], data["checked"]) == (
        "critical",
        "CRITIQUE",
        2,
        2,
    )
    (problem,) = data["problems"]
    assert set(problem) == ROW_KEYS | {"level", "level_label"}
    check_codes(problem)
    assert (problem["opco"], problem["level"], problem["level_label"]) == (
        "mobilites",
        "critical",
        "CRITIQUE",
    )


def test_peak_renewal_is_pinned_in_list_check_and_show() -> None:
    """A key expiring 15/09/2027, seen on 20/07/2027: past its reminder (18/07/2027)."""
    late = datetime(2027, 7, 20, 12, 0, tzinfo=UTC)
    assert run_at(late, "cfa", "add", SIRET, "--nom", "CFA Test").exit_code == 0
    added = run_at(late, "add", "atlas", "--expires", "15/09/2027", "--yes", stdin=ATLAS_KEY)
    assert added.exit_code == 0, added.stderr
    expected = {
        "remind_on": "2027-07-18",
        "peak_start": "2027-09-01",
        "peak_end": "2027-10-31",
        "due": True,
        "label": "à renouveler avant la rentrée",
    }
    (row,) = json.loads(run_at(late, "list", "--json").stdout)
    (problem,) = json.loads(run_at(late, "check", "--json").stdout)["problems"]
    shown = json.loads(run_at(late, "show", "atlas", "--json").stdout)
    for data in (row, problem, shown):
        assert set(data["peak_renewal"]) == PEAK_RENEWAL_KEYS
        assert data["peak_renewal"] == expected
    assert (problem["level"], row["status"]) == ("warning", "valid")


def test_check_json_with_nothing_stored_is_ok() -> None:
    data = json.loads(run_at(NOW, "check", "--json").stdout)
    assert data == {
        "status": "ok",
        "status_label": "OK",
        "exit_code": 0,
        "checked": 0,
        "problems": [],
    }


@pytest.mark.usefixtures("two_keys")
def test_show_json_pins_its_keys() -> None:
    result = run_at(NOW, "show", "atlas", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert set(data) == ROW_KEYS | {"stored_at", "os_user", "store"}
    check_codes(data)
    assert (data["status"], data["status_label"], data["store"]) == ("undated", "sans date", "file")


@pytest.mark.usefixtures("two_keys")
def test_show_historique_json_pins_its_keys() -> None:
    """``show --historique --json``: the key's versions, never the key (issue 12 item 3)."""
    result = run_at(NOW, "show", "atlas", "--historique", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"cfa", "opco", "source", "versions"}
    assert (data["cfa"], data["opco"], data["source"]) == (SIRET, "atlas", "journal")
    (version,) = data["versions"]
    assert set(version) == {
        "version", "written_at", "fingerprint", "user", "state", "state_label", "action",
    }  # fmt: skip
    assert (version["version"], version["state"], version["state_label"]) == (
        1,
        "current",
        "actuelle",
    )
    assert ATLAS_KEY not in result.stdout


def test_check_json_names_the_cfas_a_team_token_cannot_read() -> None:
    """``unreadable_cfas`` appears only when the team engine's policy hides known CFAs."""
    from cfakey.core.keys import CheckResult, Level

    assert "unreadable_cfas" not in CheckResult(Level.OK, (), 0).as_json()
    shown = CheckResult(Level.OK, (), 0, unreadable=(SIRET,)).as_json()
    assert set(shown) == {
        "status", "status_label", "exit_code", "checked", "problems", "unreadable_cfas",
    }  # fmt: skip
    assert shown["unreadable_cfas"] == [SIRET]


@pytest.mark.usefixtures("two_keys")
def test_cfa_list_json_pins_its_keys() -> None:
    (row,) = json.loads(run_at(NOW, "cfa", "list", "--json").stdout)
    assert row == {
        "siret": SIRET,
        "siren": SIRET[:9],
        "name": "CFA Test",
        "uai": None,
        "default": True,
        "keys": 2,
    }


DOCTOR_KEYS = {
    "store", "store_label", "store_origin", "store_origin_label", "store_reason",
    "store_description", "keyring_backend", "keyring_chosen_by", "keyring_usable",
    "keyring_reason", "keyring_rejected", "paths", "registry_shipped", "registry_overlay",
    "registry_version", "registry_opcos", "keys_checked", "missing_secrets", "orphan_entries",
    "database_check", "database_check_label", "problems", "mismatched", "recovered",
    "elsewhere", "removed_temporaries", "healthy",
}  # fmt: skip


@pytest.mark.usefixtures("two_keys")
def test_doctor_json_pins_its_keys_and_labels_every_code() -> None:
    result = run_at(NOW, "doctor", "--json")
    assert result.exit_code == 0, result.stdout
    data = json.loads(result.stdout)
    assert set(data) == DOCTOR_KEYS
    assert list(data).index("store_label") == list(data).index("store") + 1
    assert (data["store"], data["store_label"]) == ("file", STORE_KINDS["file"].noun)
    assert (data["store_origin"], data["store_origin_label"]) == ("env", ORIGINS["env"])
    assert (data["database_check"], data["database_check_label"]) == (
        "ok",
        DatabaseCheck.OK.label,
    )
    assert [(item["name"], item["label"]) for item in data["paths"]] == [
        (place.value, place.label) for place in DataPath
    ]
    assert {key for item in data["paths"] for key in item} == {
        "name", "label", "path", "exists", "mode", "private",
    }  # fmt: skip
    assert data["keyring_rejected"]
    assert {key for item in data["keyring_rejected"] for key in item} == {"name", "reason"}
    for field in (
        "mismatched", "recovered", "elsewhere", "missing_secrets", "problems",
        "removed_temporaries",
    ):  # fmt: skip
        assert data[field] == [], field
    assert data["keys_checked"] == 2
    assert data["healthy"] is True


@pytest.mark.usefixtures("two_keys")
def test_doctor_json_problems_have_a_message_and_a_fix(isolated_home: Path) -> None:
    isolated_home.chmod(0o755)  # readable by others: a problem with its chmod
    data = json.loads(run_at(NOW, "doctor", "--json").stdout)
    assert data["healthy"] is False
    assert {key for problem in data["problems"] for key in problem} == {"message", "fix"}


# -- verify --json ------------------------------------------------------------------------------

IDENTIFIER = re.compile(r"[a-z][a-z0-9_]*")
VERIFY_RESULT_KEYS = {
    "siret", "cfa", "opco", "opco_name", "status", "label", "exit_code", "detail", "advice",
    "endpoint", "http_status", "base_url", "opco_expiry", "recorded_expiry", "expiry_changed",
    "checked_at", "duration_ms", "sent",
}  # fmt: skip


@pytest.fixture
def opco() -> Iterator[FakeOpco]:
    with running_fake_opco() as server:
        server.state.valid_keys[KEY_ATLAS] = "2027-06-30"
        yield server


def test_every_outcome_is_an_ascii_identifier_with_a_french_label() -> None:
    values = [outcome.value for outcome in engine.Outcome]

    assert len(set(values)) == len(values)
    for outcome in engine.Outcome:
        assert IDENTIFIER.fullmatch(outcome.value), outcome
        assert outcome.label.strip(), outcome
    assert set(engine.RESULT_JSON_KEYS) == VERIFY_RESULT_KEYS


VERIFICATION_KEYS = {"checked_at", "outcome", "outcome_label", "http_status", "opco_expiry"}


def test_list_show_check_json_carry_the_last_verification(opco: FakeOpco) -> None:
    seed((VERIFY_SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("forbidden"))
    assert run_at(NOW, "verify", "atlas").exit_code == 10

    (row,) = json.loads(run_at(NOW, "list", "--json").stdout)
    shown = json.loads(run_at(NOW, "show", "atlas", "--json").stdout)
    (problem,) = json.loads(run_at(NOW, "check", "--json").stdout)["problems"]

    for data in (row, shown, problem):
        check_codes(data)
        assert set(data["verification"]) == VERIFICATION_KEYS
        outcome = data["verification"]["outcome"]
        assert is_identifier(outcome)
        assert data["verification"]["outcome_label"] == VerifyOutcome(outcome).label
        assert (data["status"], data["verification_due"]) == ("refused", False)


def test_verify_json_key_set_is_pinned(opco: FakeOpco) -> None:
    seed((VERIFY_SIRET, "atlas", KEY_ATLAS))
    set_url("atlas", opco.base_url("ok"))

    result = run_cli("verify", "atlas", "--json")

    assert result.exit_code == 0, result.stderr
    payload = json.loads(result.stdout)
    assert set(payload) == {"results", "summary"}
    assert set(payload["summary"]) == {"total", "counts", "exit_code"}
    (first,) = payload["results"]
    assert set(first) == VERIFY_RESULT_KEYS
    assert (first["status"], first["label"]) == ("valide", "valide")
    assert all(IDENTIFIER.fullmatch(name) for name in payload["summary"]["counts"])


def test_nothing_to_verify_has_the_same_envelope() -> None:
    payload = json.loads(run_cli("verify", "--all", "--json").stdout)

    assert payload == {"results": [], "summary": {"total": 0, "counts": {}, "exit_code": 0}}


REQUEST_KEYS = {
    "cfa",
    "cfa_name",
    "opco",
    "opco_name",
    "sent_on",
    "sent_to",
    "follow_up_on",
    "status",
    "status_label",
}


def test_request_list_json_pins_its_keys_and_labels_every_status() -> None:
    assert run_at(NOW, "cfa", "add", SIRET, "--nom", "CFA Test").exit_code == 0
    assert run_at(NOW, "request", "add", "constructys", "--le", "01/11/2026").exit_code == 0
    assert run_at(NOW, "request", "add", "opco2i", "--a", "cles@opco2i.fr").exit_code == 0

    result = run_at(NOW, "request", "list", "--json")

    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)
    assert [set(row) for row in rows] == [REQUEST_KEYS, REQUEST_KEYS]
    assert [(row["opco"], row["status"], row["status_label"]) for row in rows] == [
        ("constructys", "follow_up", "à relancer"),
        ("opco2i", "waiting", "demandée"),
    ]
    for row in rows:
        assert row["status_label"] == RequestStatus(row["status"]).label


JOURNAL_KEYS = {
    "id",
    "at",
    "user",
    "cfa",
    "opco",
    "action",
    "action_label",
    "old_fingerprint",
    "new_fingerprint",
    "detail",
}


@pytest.mark.usefixtures("two_keys")
def test_journal_json_pins_its_keys_and_labels_every_action() -> None:
    result = run_at(NOW, "journal", "--json")

    assert result.exit_code == 0, result.stderr
    entries = json.loads(result.stdout)
    assert [set(entry) for entry in entries] == [JOURNAL_KEYS] * 3
    assert [(entry["action"], entry["action_label"]) for entry in entries] == [
        ("added", "ajoutée"),
        ("added", "ajoutée"),
        ("cfa_added", "CFA ajouté"),
    ]
    assert entries[0]["id"] > entries[1]["id"]  # newest first
    for entry in entries:
        assert entry["action_label"] == JournalAction(entry["action"]).label


# -- the code tables ------------------------------------------------------------------------------


def test_every_code_is_an_ascii_identifier_with_a_french_label() -> None:
    for table in (KeyStatus, ExpirySource, JournalAction, DatabaseCheck, DataPath, RequestStatus):
        for member in table:
            assert is_identifier(member.value), member
            assert member.label, member
            assert member.label != member.value, member
    # The outcomes of verify, kept with each key: one table, shared by both outputs.
    assert [member.value for member in VerifyOutcome] == [o.value for o in engine.Outcome]
    for outcome in engine.Outcome:
        assert VerifyOutcome(outcome.value).label == outcome.label
    assert [(level.id, level.label) for level in Level] == [
        ("ok", "OK"),
        ("warning", "ALERTE"),
        ("critical", "CRITIQUE"),
    ]
