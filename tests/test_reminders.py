"""``metrics`` and ``calendar``: reminders that reach people (issue 14).

The outputs are parsed with the libraries their readers use (prometheus_client's parser,
icalendar), on a real metadata database filled through the CLI; the clock is fixed.
"""

from __future__ import annotations

import os
import sys
from datetime import UTC, date, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cfakey.context import AppContext
from cfakey.core.codes import KeyStatus, Level, VerifyOutcome
from cfakey.core.keys import KeyRow, Overview
from cfakey.core.reminders import escape_label, metrics_text
from cfakey.errors import ExitCode
from cfakey.metadata import LastVerification
from tests.conftest import CliResult, run_cli

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
