"""``metrics`` and ``calendar``: reminders that reach people (issue 14).

The outputs are parsed with the libraries their readers use (prometheus_client's parser,
icalendar), on a real metadata database filled through the CLI; the clock is fixed.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import sqlite3
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar, Event
from prometheus_client.parser import text_string_to_metric_families

from cfakey.context import AppContext
from cfakey.core.codes import KeyStatus, Level, RequestStatus, VerifyOutcome
from cfakey.core.keys import KeyRow, Overview, Window
from cfakey.core.reminders import calendar_ics, escape_label, fold, metrics_text, reminders
from cfakey.core.requests import RequestRow
from cfakey.errors import ExitCode
from cfakey.metadata import LastVerification
from tests.conftest import CliResult, run_cli
from tests.fake_opco import FakeOpco, running_fake_opco

SIRET = "18130002100373"
NOW = datetime(2026, 11, 22, 10, 30, tzinfo=UTC)
ATLAS_KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
SANTE_KEY = "Mb7+Nv/Cx5Za3Sd1Fg9Hj2Kl4Pq6Wt8Y"
#: The most hostile name ``cfa add`` accepts (no line break: names are kept on one line).
HOSTILE = 'CFA "Les \\ Métiers", Nord; Sud 🎓'


def cli(*args: str, input: str | None = None) -> CliResult:  # noqa: A002
    return run_cli(*args, input=input, context=AppContext(clock=lambda: NOW))


@pytest.fixture
def stored() -> None:
    assert cli("cfa", "add", SIRET, "--nom", HOSTILE).exit_code == 0
    for args, key in (
        (["atlas", "--expires", "31/12/2035"], ATLAS_KEY),
        (["sante", "--expires", "01/12/2026"], SANTE_KEY),
        (["opcoep"], "E" * 40),
    ):
        added = cli("add", *args, input=key)
        assert added.exit_code == 0, added.stderr


def families(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    return {
        family.name: [(sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_metrics_of_an_empty_store_parse_with_zero_counts() -> None:
    result = cli("metrics")
    assert result.exit_code == 0, result.stderr
    parsed = families(result.stdout)
    assert parsed["cfakey_key_expiry_timestamp_seconds"] == []
    assert sorted(labels["status"] for labels, _ in parsed["cfakey_keys"]) == sorted(
        status.id for status in KeyStatus
    )
    assert all(value == 0 for _, value in parsed["cfakey_keys"])
    assert parsed["cfakey_metrics_generated_timestamp_seconds"] == [({}, NOW.timestamp())]


def test_metrics_publish_expiry_as_unix_time_with_the_hostile_name_intact(stored: None) -> None:
    result = cli("metrics")
    assert result.exit_code == 0, result.stderr
    parsed = families(result.stdout)
    expiries = {
        labels["opco"]: (labels, value)
        for labels, value in parsed["cfakey_key_expiry_timestamp_seconds"]
    }
    assert set(expiries) == {"atlas", "sante"}  # the undated opcoep key is left out
    labels, value = expiries["atlas"]
    assert labels == {"siret": SIRET, "cfa": HOSTILE, "opco": "atlas"}
    assert datetime.fromtimestamp(value, UTC).year == 2035
    counts = {labels["status"]: value for labels, value in parsed["cfakey_keys"]}
    assert counts == {"valid": 1, "expiring": 1, "undated": 1, "expired": 0, "refused": 0}
    for secret in (ATLAS_KEY, SANTE_KEY, "E" * 40):
        assert secret not in result.stdout + result.stderr
    shown = cli("list", "--json").stdout
    assert '"fingerprint"' in shown
    for fingerprint in (row.split('"')[0] for row in shown.split('"fingerprint": "')[1:]):
        assert fingerprint not in result.stdout


def _row(name: str, verification: LastVerification | None) -> KeyRow:
    return KeyRow(
        siret=SIRET,
        cfa_name=name,
        opco_id="atlas",
        opco_name="Atlas",
        expires_at=datetime(2099, 1, 1, tzinfo=UTC),
        days_left=1,
        status=KeyStatus.REFUSED,
        level=Level.CRITICAL,
        fingerprint="sha256:ab12cd34ef56",
        obtained_on=date(2026, 1, 1),
        expiry_source="portal",
        verification=verification,
    )


def test_a_line_break_in_a_label_and_the_last_verification_are_escaped_and_kept() -> None:
    # The name check keeps names on one line; the exposition escapes one anyway.
    name = 'a\\b"c\nd, e; 🎓'
    checked = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    refused = LastVerification(checked, VerifyOutcome.KEY_REFUSED.id, 401, None)
    view = Overview(rows=(_row(name, refused),), cfas=(), filtered=False)
    text = metrics_text(view, now=NOW)
    assert 'cfa="a\\\\b\\"c\\nd, e; 🎓"' in text
    assert "sha256:ab12cd34ef56" not in text
    parsed = families(text)
    assert parsed["cfakey_key_last_verification_refused"] == [
        ({"siret": SIRET, "cfa": name, "opco": "atlas"}, 1.0)
    ]
    assert parsed["cfakey_key_last_verification_timestamp_seconds"][0][1] == checked.timestamp()
    assert escape_label('\\"\n') == '\\\\\\"\\n'


def test_textfile_is_written_whole_and_readable_by_node_exporter(stored: None, tmp_path) -> None:
    target = tmp_path / "textfile"
    target.mkdir()
    result = cli("metrics", "--textfile", str(target))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert "cfakey.prom" in result.stderr
    written = target / "cfakey.prom"
    assert families(written.read_text(encoding="utf-8"))["cfakey_keys"]
    if sys.platform != "win32":
        assert written.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in target.iterdir()] == ["cfakey.prom"]


def test_textfile_in_a_missing_directory_is_a_french_error_and_writes_nothing(tmp_path) -> None:
    missing = tmp_path / "absent"
    result = cli("metrics", "--textfile", str(missing))
    assert result.exit_code == ExitCode.ERROR
    assert "n'existe pas : rien n'a été écrit" in result.stderr
    assert not missing.exists()


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes anywhere")
def test_textfile_in_a_read_only_directory_leaves_no_partial_file(tmp_path) -> None:
    target = tmp_path / "lecture-seule"
    target.mkdir()
    target.chmod(0o500)
    try:
        result = cli("metrics", "--textfile", str(target))
    finally:
        target.chmod(0o700)
    assert result.exit_code == ExitCode.ERROR
    assert "Impossible d'écrire dans" in result.stderr
    assert list(target.iterdir()) == []


def test_metrics_refuse_cfa_with_toutes_cfa() -> None:
    result = cli("metrics", "--cfa", SIRET, "--toutes-cfa")
    assert result.exit_code == ExitCode.USAGE
    assert "s'excluent" in result.stderr


def test_textfile_that_cannot_be_replaced_leaves_no_temporary_file(tmp_path) -> None:
    # Runs as root too: a directory in the way of cfakey.prom makes the rename fail.
    target = tmp_path / "textfile"
    (target / "cfakey.prom").mkdir(parents=True)
    result = cli("metrics", "--textfile", str(target))
    assert result.exit_code == ExitCode.ERROR
    assert "Impossible d'écrire dans" in result.stderr
    assert "rien n'a été écrit" in result.stderr
    assert [p.name for p in target.iterdir()] == ["cfakey.prom"]
    assert (target / "cfakey.prom").is_dir()


def test_textfile_naming_a_file_is_refused(tmp_path) -> None:
    plain = tmp_path / "fichier"
    plain.write_text("x")
    result = cli("metrics", "--textfile", str(plain))
    assert result.exit_code == ExitCode.ERROR
    assert "n'est pas un dossier : rien n'a été écrit" in result.stderr
    assert plain.read_text() == "x"


def parse_calendar(data: str | bytes) -> Calendar:
    return Calendar.from_ical(data)


def events(calendar: Calendar) -> dict[str, Event]:
    return {str(event["UID"]): event for event in calendar.walk("VEVENT")}


def test_calendar_of_an_empty_store_is_a_valid_empty_vcalendar() -> None:
    result = cli("calendar")
    assert result.exit_code == 0, result.stderr
    calendar = parse_calendar(result.stdout)
    assert calendar.name == "VCALENDAR"
    assert calendar.walk("VEVENT") == []
    # RFC 5545 3.6: at least one component; a time zone adds nothing to an agenda.
    assert [part.name for part in calendar.subcomponents] == ["VTIMEZONE"]
    assert str(calendar.subcomponents[0]["TZID"]) == "Europe/Paris"


def test_calendar_events_have_full_alarms_french_text_and_no_key(stored: None) -> None:
    result = cli("calendar")
    assert result.exit_code == 0, result.stderr
    found = events(parse_calendar(result.stdout))
    assert set(found) == {
        f"{SIRET}-atlas-expiry@cfakey",
        f"{SIRET}-sante-expiry@cfakey",
        f"{SIRET}-opcoep-rotation@cfakey",  # OPCO EP's yearly advice
    }
    atlas = found[f"{SIRET}-atlas-expiry@cfakey"]
    assert atlas.decoded("DTSTART") == date(2035, 12, 31)
    assert HOSTILE in str(atlas["SUMMARY"])
    assert "Atlas" in str(atlas["SUMMARY"])
    assert f"cfakey rotate atlas --cfa {SIRET}" in str(atlas["DESCRIPTION"])
    alarms = [alarm for event in found.values() for alarm in event.walk("VALARM")]
    assert alarms
    for alarm in alarms:
        assert str(alarm["ACTION"]) == "DISPLAY"
        assert "TRIGGER" in alarm
        assert str(alarm["DESCRIPTION"])
    triggers = sorted(alarm.decoded("TRIGGER").days for alarm in atlas.walk("VALARM"))
    assert triggers == [-45, -14]
    for secret in (ATLAS_KEY, SANTE_KEY, "E" * 40):
        assert secret not in result.stdout
    # Escaped per RFC 5545 (comma, semicolon, backslash), read back intact above.
    assert "\\;" in result.stdout
    assert "\\," in result.stdout


def test_uids_are_stable_and_sequence_rises_after_a_rotate_with_a_new_date(
    stored: None, tmp_path
) -> None:
    first = events(parse_calendar(cli("calendar").stdout))
    again = events(parse_calendar(cli("calendar").stdout))
    assert set(first) == set(again)
    uid = f"{SIRET}-sante-expiry@cfakey"
    later = AppContext(clock=lambda: NOW + timedelta(hours=2))
    rotated = run_cli(
        "rotate", "sante", "--yes", "--expires", "01/12/2027", input="R" * 40, context=later
    )
    assert rotated.exit_code == 0, rotated.stderr
    after = events(parse_calendar(run_cli("calendar", context=later).stdout))
    assert set(after) == set(first)
    assert after[uid].decoded("DTSTART") == date(2027, 12, 1)
    assert int(after[uid]["SEQUENCE"]) > int(first[uid]["SEQUENCE"])


def test_sequence_rises_with_each_new_date_even_within_one_minute(stored: None) -> None:
    uid = f"{SIRET}-sante-expiry@cfakey"
    sequences = []
    for seconds, day in ((0, 1), (20, 2), (40, 3)):  # three new dates in one minute
        moment = AppContext(clock=lambda s=seconds: NOW + timedelta(hours=3, seconds=s))
        rotated = run_cli(
            "rotate",
            "sante",
            "--yes",
            "--expires",
            f"0{day}/12/2027",
            input=f"Rot{day}" + "x" * 37,
            context=moment,
        )
        assert rotated.exit_code == 0, rotated.stderr
        event = events(parse_calendar(run_cli("calendar", context=moment).stdout))[uid]
        assert event.decoded("DTSTART") == date(2027, 12, day)
        sequences.append(int(event["SEQUENCE"]))
    assert sequences == sorted(set(sequences))  # strictly rising


def test_calendar_output_refuses_to_overwrite_without_force(stored: None, tmp_path) -> None:
    target = tmp_path / "echeances.ics"
    assert cli("calendar", "--output", str(target)).exit_code == 0
    assert events(parse_calendar(target.read_bytes()))
    target.write_text("à moi")
    refused = cli("calendar", "--output", str(target))
    assert refused.exit_code == ExitCode.ALREADY_EXISTS
    assert "existe déjà" in refused.stderr
    assert target.read_text() == "à moi"
    assert cli("calendar", "--output", str(target), "--force").exit_code == 0
    assert events(parse_calendar(target.read_bytes()))


def test_a_date_beyond_the_accepted_range_never_appears() -> None:
    beyond = dataclasses.replace(
        _row("CFA", None), expires_at=datetime(2150, 1, 1, tzinfo=UTC), status=KeyStatus.VALID
    )
    past = dataclasses.replace(beyond, siret="x", expires_at=datetime(1900, 1, 1, tzinfo=UTC))
    view = Overview(rows=(beyond, past), cfas=(), filtered=False)
    assert reminders(view, {"atlas": Window(45, 14)}) == []
    assert "cfakey_key_expiry_timestamp_seconds{" not in metrics_text(view, now=NOW)


def at(moment: datetime, *args: str, input: str | None = None) -> CliResult:  # noqa: A002
    return run_cli(*args, input=input, context=AppContext(clock=lambda: moment))


def calendar_at(moment: datetime, *args: str) -> dict[str, Event]:
    result = at(moment, "calendar", *args)
    assert result.exit_code == 0, result.stderr
    return events(parse_calendar(result.stdout))


def test_an_open_request_gets_a_follow_up_event_until_its_key_arrives(stored: None) -> None:
    assert cli("config", "set", "request.follow_up_days", "15").exit_code == 0
    sent = cli("request", "add", "constructys", "--le", "10/11/2026", "--a", "cles@constructys.fr")
    assert sent.exit_code == 0, sent.stderr
    found = calendar_at(NOW)
    uid = f"{SIRET}-constructys-request@cfakey"
    event = found[uid]
    assert event.decoded("DTSTART") == date(2026, 11, 25)  # sent on 10/11 + 15 days
    assert event.decoded("DTEND") == date(2026, 11, 26)
    summary, description = str(event["SUMMARY"]), str(event["DESCRIPTION"])
    assert summary == f"Clé API Constructys – {HOSTILE} : relancer la demande"
    assert "demandée le 10/11/2026 à cles@constructys.fr" in description
    assert "relancez Constructys" in description
    assert f"cfakey add constructys --cfa {SIRET}" in description
    assert "https://www.constructys.fr/" in description
    (alarm,) = event.walk("VALARM")
    assert str(alarm["ACTION"]) == "DISPLAY"
    assert alarm.decoded("TRIGGER") == timedelta(0)
    assert str(alarm["DESCRIPTION"]) == f"Aujourd'hui : {summary}"
    assert uid not in calendar_at(NOW, "--opco", "atlas")
    assert uid in calendar_at(NOW, "--cfa", SIRET, "--opco", "constructys")
    arrived = cli("add", "constructys", input="C" * 40)
    assert arrived.exit_code == 0, arrived.stderr
    assert uid not in calendar_at(NOW)
    assert "C" * 40 not in at(NOW, "calendar").stdout


def test_a_request_sent_again_raises_its_sequence(stored: None) -> None:
    assert cli("request", "add", "opco2i", "--le", "01/11/2026").exit_code == 0
    uid = f"{SIRET}-opco2i-request@cfakey"
    first = calendar_at(NOW + timedelta(hours=1))[uid]
    assert int(calendar_at(NOW + timedelta(hours=2))[uid]["SEQUENCE"]) == int(first["SEQUENCE"])
    later = NOW + timedelta(hours=3)
    assert at(later, "request", "add", "opco2i", "--le", "20/11/2026").exit_code == 0
    again = calendar_at(later)[uid]
    assert again.decoded("DTSTART") == date(2026, 11, 30)
    assert int(again["SEQUENCE"]) > int(first["SEQUENCE"])


@pytest.fixture
def fake_atlas() -> Iterator[FakeOpco]:
    """The fake OPCO server, announcing 30/06/2036 for the Atlas key, for ``verify``."""
    with running_fake_opco() as server:
        server.state.valid_keys[ATLAS_KEY] = "2036-06-30"
        yield server


def test_sequence_rises_when_verify_changes_the_date_and_only_then(
    stored: None, fake_atlas: FakeOpco
) -> None:
    assert cli("config", "set", "opco.atlas.api_url", fake_atlas.base_url("ok")).exit_code == 0
    uid, other = f"{SIRET}-atlas-expiry@cfakey", f"{SIRET}-sante-expiry@cfakey"
    before = calendar_at(NOW + timedelta(hours=1))
    assert {u: int(e["SEQUENCE"]) for u, e in calendar_at(NOW + timedelta(hours=5)).items()} == {
        u: int(e["SEQUENCE"]) for u, e in before.items()
    }
    verified = at(NOW + timedelta(hours=2), "verify", "atlas")
    assert verified.exit_code == 0, verified.stdout + verified.stderr
    after = calendar_at(NOW + timedelta(hours=3))
    assert after[uid].decoded("DTSTART") == date(2036, 6, 30)
    assert int(after[uid]["SEQUENCE"]) > int(before[uid]["SEQUENCE"])
    assert int(after[other]["SEQUENCE"]) == int(before[other]["SEQUENCE"])
    # Verified again, the same date: the event has not changed, nor its SEQUENCE.
    assert at(NOW + timedelta(hours=4), "verify", "atlas").exit_code == 0
    again = calendar_at(NOW + timedelta(hours=6))
    assert int(again[uid]["SEQUENCE"]) == int(after[uid]["SEQUENCE"])


def test_renaming_the_cfa_raises_the_sequence_of_its_events(stored: None) -> None:
    before = calendar_at(NOW)
    renamed = at(NOW + timedelta(hours=1), "cfa", "edit", SIRET, "--nom", "CFA Nouveau")
    assert renamed.exit_code == 0, renamed.stderr
    after = calendar_at(NOW + timedelta(hours=1))
    for uid, event in after.items():
        assert "CFA Nouveau" in str(event["SUMMARY"])
        assert int(event["SEQUENCE"]) > int(before[uid]["SEQUENCE"])


def test_calendar_lines_are_folded_crlf_and_hostile_text_reads_back_intact() -> None:
    name = 'CFA "É\\cole", Nord;\r\nSud\x07 ' + "🎓é" * 40
    row = dataclasses.replace(_row(name, None), status=KeyStatus.VALID)
    found = reminders(Overview(rows=(row,), cfas=(), filtered=False), {"atlas": Window(45, 14)})
    data = calendar_ics(found, AppContext().registry, {}, now=NOW)
    lines = data.split(b"\r\n")
    assert lines[-1] == b""
    assert all(len(line) <= 75 for line in lines)
    assert b"\n" not in data.replace(b"\r\n", b"")
    for line in lines:
        line.decode("utf-8")  # never folded inside a character
    (event,) = parse_calendar(data).walk("VEVENT")
    assert (
        str(event["SUMMARY"])
        == f"Clé API Atlas – {name.replace(chr(13), '').replace(chr(7), ' ')} : échéance"
    )


def test_a_request_dated_out_of_range_never_appears() -> None:
    old = RequestRow(
        SIRET,
        "CFA",
        "constructys",
        "Constructys",
        date(1980, 1, 1),
        None,
        date(1980, 1, 11),
        RequestStatus.FOLLOW_UP,
    )
    data = calendar_ics([], AppContext().registry, {}, now=NOW, requests=[old])
    assert parse_calendar(data).walk("VEVENT") == []


@pytest.mark.parametrize("line", ["a" * 200, "é" * 200, "x" * 74 + "é" * 3, "🎓" * 40, "b" * 75])
def test_fold_cuts_at_75_octets_never_inside_a_character(line: str) -> None:
    parts = fold(line).split("\r\n ")
    assert "".join(parts) == line
    assert [len(part.encode()) <= (75 if i == 0 else 74) for i, part in enumerate(parts)] == [
        True
    ] * len(parts)


def test_an_unreadable_journal_date_stops_calendar_naming_the_database(
    stored: None, isolated_home: Path
) -> None:
    gc.collect()  # the connections of the commands run in this process
    with sqlite3.connect(isolated_home / "cfakey.sqlite3") as connection:
        connection.execute(
            "INSERT INTO journal (at, user, siret, action, detail)"
            " VALUES ('pas une date', 'x', ?, 'cfa_edited', '')",
            (SIRET,),
        )
    connection.close()
    result = cli("calendar")
    assert result.exit_code == ExitCode.DATA_CORRUPTED, result.stderr
    assert "Traceback" not in result.stderr
    assert "cfakey.sqlite3" in result.stderr
    assert result.stdout == ""


def test_a_team_row_dated_by_a_teammate_s_verify_raises_the_sequence(stored: None) -> None:
    """A teammate's verify reaches this home as the row itself (this home's journal has
    no entry): for a team row whose date came from the OPCO, the verification counts."""
    from cfakey.metadata import Metadata
    from cfakey.paths import Paths

    uid = f"{SIRET}-atlas-expiry@cfakey"
    before = int(calendar_at(NOW + timedelta(hours=1))[uid]["SEQUENCE"])
    metadata = Metadata.open(Paths.from_env())
    later = NOW + timedelta(days=2)
    check = LastVerification(later, VerifyOutcome.VALID.id, 200, date(2036, 6, 30))
    with metadata.transaction():
        metadata._db.execute("UPDATE key SET store = 'openbao' WHERE opco_id = 'atlas'")
        record = metadata.get_key(SIRET, "atlas")
        assert record is not None
        metadata.set_verification(SIRET, "atlas", record.fingerprint, check)
        metadata.set_expiry(SIRET, "atlas", datetime(2036, 6, 29, 22, tzinfo=UTC), "opco_api")
    metadata.close()
    after = int(calendar_at(NOW + timedelta(days=3))[uid]["SEQUENCE"])
    assert after == int(later.timestamp()) - 1_577_836_800 > before
