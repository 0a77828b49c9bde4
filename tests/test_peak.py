"""The contract peak, « la rentrée » (issue 14, item 4): the ``peak.months`` setting, the
flag in ``list``, ``check``, ``calendar`` and ``metrics``, and the warning of ``add``.

Every date is fixed: the clock is passed to each command, never read from the wall.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar, Event
from prometheus_client.parser import text_string_to_metric_families

from cfakey.context import AppContext
from cfakey.core.peak import (
    PEAK_LABEL,
    Peak,
    avoiding_lifetime,
    lifetime_hint,
    parse_peak_months,
    peak_renewal,
)
from cfakey.errors import ExitCode, UsageError
from cfakey.expiry import local_midnight
from cfakey.registry.model import Opco
from tests.conftest import CliResult, run_cli

SIRET = "18130002100373"
ATLAS_KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
SANTE_KEY = "Mb7+Nv/Cx5Za3Sd1Fg9Hj2Kl4Pq6Wt8Y"
OCAPIAT_KEY = "Qa1+Ws2/Ed3Rf4Tg5Yh6Uj7Ik8Ol9Pm0="
#: Before the 2027 peak's reminder date for Atlas (45 days before 01/09/2027: 18/07/2027).
EARLY = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)
#: After it: the renewal is due now.
LATE = datetime(2027, 7, 20, 10, 0, tzinfo=UTC)
UNKNOWN = 3


def at(now: datetime, *args: str, stdin: str | None = None) -> CliResult:
    return run_cli(*args, input=stdin, context=AppContext(clock=lambda: now))


def ocapiat() -> Opco:
    return AppContext().registry.get("ocapiat")


# The setting --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "months"),
    [
        ("9,10", (9, 10)),
        (" 8 ", (8,)),
        ("11, 12, 1", (11, 12, 1)),
        ([9, 10], (9, 10)),  # a hand-edited file
        ("7,8,9,10,11,12", (7, 8, 9, 10, 11, 12)),
    ],
)
def test_peak_months_accepts_consecutive_months_even_across_the_year(
    value: object, months: tuple[int, ...]
) -> None:
    assert parse_peak_months(value) == months


@pytest.mark.parametrize(
    "value",
    ["", "9,11", "10,9", "9,9", "13", "0", "sept", "9;10", "1,2,3,4,5,6,7", True, 9, 9.5, None],
)
def test_peak_months_refuses_anything_else_without_quoting_it(value: object) -> None:
    with pytest.raises(UsageError) as raised:
        parse_peak_months(value)
    assert "« peak.months » invalide" in raised.value.message
    assert "mois consécutifs" in raised.value.message
    assert raised.value.exit_code == ExitCode.USAGE


def test_config_set_normalises_the_peak_and_get_shows_the_default(isolated_home: Path) -> None:
    shown = at(EARLY, "config", "get", "peak.months")
    assert (shown.exit_code, shown.stdout.strip()) == (0, "9,10")
    assert "valeur par défaut" in shown.stderr
    assert at(EARLY, "config", "set", "peak.months", "11, 12,1").exit_code == 0
    saved = json.loads((isolated_home / "config.json").read_text(encoding="utf-8"))
    assert saved["peak.months"] == "11,12,1"


def test_a_bad_peak_setting_exits_2_in_french_and_writes_nothing(isolated_home: Path) -> None:
    assert at(EARLY, "config", "set", "peak.months", "8").exit_code == 0
    config = isolated_home / "config.json"
    before = config.read_bytes()
    result = at(EARLY, "config", "set", "peak.months", "9,11")
    assert result.exit_code == ExitCode.USAGE
    assert "Paramètre « peak.months » invalide" in result.stderr
    assert "9,11" not in result.stderr  # the value typed is never quoted
    assert config.read_bytes() == before


def test_a_hand_edited_bad_peak_is_an_error_and_check_unknown(isolated_home: Path) -> None:
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.json").write_text('{"peak.months": "9,12"}', encoding="utf-8")
    listed = at(EARLY, "list")
    assert listed.exit_code == ExitCode.USAGE
    assert "« peak.months » invalide" in listed.stderr
    checked = at(EARLY, "check")
    assert checked.exit_code == UNKNOWN
    assert checked.stdout.startswith("INCONNU")


# The rule -----------------------------------------------------------------------------------

START = date(2027, 9, 1)


@pytest.mark.parametrize(
    ("expiry", "flagged"),
    [
        (START - timedelta(days=46), False),  # before the warning window ahead of the peak
        (START - timedelta(days=45), True),  # its first day: the reminder date itself
        (START - timedelta(days=1), True),  # the day before the peak starts
        (START, True),  # first day
        (date(2027, 10, 31), True),  # last day
        (date(2027, 11, 1), False),  # the day after
    ],
)
def test_the_peak_boundaries(expiry: date, *, flagged: bool) -> None:
    renewal = peak_renewal(expiry, Peak(), 45)
    assert (renewal is not None) is flagged
    if renewal is not None:
        assert renewal.remind_on == date(2027, 7, 18)
        assert (renewal.starts, renewal.ends) == (START, date(2027, 10, 31))
        assert renewal.season == "septembre–octobre"


def test_a_peak_across_the_new_year_and_a_one_month_peak() -> None:
    winter = Peak((11, 12, 1))
    assert winter.label == "novembre–janvier"
    renewal = peak_renewal(date(2028, 1, 31), winter, 30)
    assert renewal is not None
    assert (renewal.starts, renewal.ends, renewal.remind_on) == (
        date(2027, 11, 1),
        date(2028, 1, 31),
        date(2027, 10, 2),
    )
    assert peak_renewal(date(2028, 2, 1), winter, 30) is None
    assert peak_renewal(date(2027, 10, 2), winter, 30) is not None
    assert peak_renewal(date(2027, 10, 1), winter, 30) is None
    august = Peak((8,))
    assert august.label == "août"
    assert peak_renewal(date(2027, 8, 31), august, 0) is not None
    assert peak_renewal(date(2027, 7, 31), august, 0) is None  # no window: only the peak


def test_the_lifetime_that_avoids_the_peak_is_the_longest_one_not_flagged() -> None:
    opco = ocapiat()
    peak = Peak()
    # 15/04 + 6, 5, 4 months: October, September, August (Ocapiat warns 30 days ahead).
    assert avoiding_lifetime(opco, obtained=date(2027, 4, 15), peak=peak, lead_days=30) == 3
    assert avoiding_lifetime(opco, obtained=date(2027, 2, 10), peak=peak, lead_days=30) == 5
    hint = lifetime_hint(opco, obtained=date(2027, 4, 15), peak=peak, lead_days=30)
    assert hint == (
        "Rentrée (septembre–octobre) : une clé de 6 mois générée aujourd'hui expirerait le "
        "15/10/2027, pendant la rentrée ou juste avant ; choisissez plutôt 3 mois sur le portail."
    )
    assert lifetime_hint(opco, obtained=date(2027, 6, 1), peak=peak, lead_days=30) is None


# list, check, calendar, metrics ------------------------------------------------------------


@pytest.fixture
def peak_keys() -> None:
    """Atlas expiring 15/09/2027 (in the peak), OPCO Santé 01/11/2027 (the day after)."""
    assert at(EARLY, "cfa", "add", SIRET, "--nom", "CFA Test").exit_code == 0
    dated = (("atlas", "15/09/2027", ATLAS_KEY), ("sante", "01/11/2027", SANTE_KEY))
    for opco, expires, key in dated:
        added = at(EARLY, "add", opco, "--expires", expires, "--no-interactive", stdin=key)
        assert added.exit_code == 0, added.stderr


@pytest.mark.usefixtures("peak_keys")
def test_list_flags_the_key_in_the_peak_with_its_reminder_date() -> None:
    listed = at(EARLY, "list")
    assert listed.exit_code == 0, listed.stderr
    heading = "Clés à renouveler avant la rentrée (septembre–octobre, pic des contrats) :"
    assert heading in listed.stderr
    assert (
        "CFA Test (18130002100373), Atlas : expire le 15/09/2027 ; renouvelez-la à partir du "
        "18/07/2027, avant le 01/09/2027"
    ) in listed.stderr
    assert "OPCO Santé : expire le" not in listed.stderr
    rows = {row["opco"]: row for row in json.loads(at(EARLY, "list", "--json").stdout)}
    assert rows["atlas"]["peak_renewal"] == {
        "remind_on": "2027-07-18",
        "peak_start": "2027-09-01",
        "peak_end": "2027-10-31",
        "due": False,
        "label": PEAK_LABEL,
    }
    assert rows["sante"]["peak_renewal"] is None
    assert rows["atlas"]["status"] == "valid"


@pytest.mark.usefixtures("peak_keys")
def test_check_stays_ok_while_the_reminder_is_far_ahead_and_says_it() -> None:
    """Flagged in check too, never paged: OK, one RENTRÉE line, the alert date named."""
    checked = at(EARLY, "check")
    assert checked.exit_code == 0, checked.stdout
    first, *rest = checked.stdout.splitlines()
    assert first.startswith(
        "OK : 2 clé(s) valide(s) ou sans date, dont 1 à renouveler avant la rentrée. | "
    )
    assert rest == [
        (
            "RENTRÉE CFA Test (18130002100373) Atlas : expire le 15/09/2027, pendant la rentrée "
            "(septembre–octobre) ou juste avant ; à renouveler avant la rentrée, à partir du "
            "18/07/2027 (ALERTE à cette date)"
        )
    ]
    data = json.loads(at(EARLY, "check", "--json").stdout)
    assert data["status"] == "ok"
    assert data["peak_ahead"] == [
        {
            "cfa": "18130002100373",
            "opco": "atlas",
            "remind_on": "2027-07-18",
            "peak_start": "2027-09-01",
            "peak_end": "2027-10-31",
            "due": False,
            "label": PEAK_LABEL,
        }
    ]
    # From the reminder date it is an alert, no longer « ahead ».
    assert "peak_ahead" not in json.loads(at(LATE, "check", "--json").stdout)


@pytest.mark.usefixtures("peak_keys")
def test_check_warns_from_the_reminder_date_and_says_what_to_do() -> None:
    checked = at(LATE, "check")
    assert checked.exit_code == 1, checked.stdout
    lines = checked.stdout.splitlines()
    assert lines[0].startswith("ALERTE : 0 critique(s), 1 en alerte, sur 2 clé(s).")
    assert lines[1] == (
        "ALERTE CFA Test (18130002100373) Atlas : expire le 15/09/2027, dans 57 jour(s), "
        "pendant la rentrée (septembre–octobre) ou juste avant : à renouveler avant la "
        "rentrée (avant le 01/09/2027) ; à faire : cfakey rotate atlas --cfa 18130002100373"
    )
    data = json.loads(at(LATE, "check", "--json").stdout)
    (problem,) = data["problems"]
    assert (problem["opco"], problem["level"]) == ("atlas", "warning")
    assert problem["peak_renewal"]["due"] is True
    listed = at(LATE, "list")
    assert PEAK_LABEL in listed.stdout  # the status column
    assert "1 à renouveler avant la rentrée, 1 valide." in listed.stderr


@pytest.mark.usefixtures("peak_keys")
def test_a_custom_peak_moves_the_flag(isolated_home: Path) -> None:
    assert at(EARLY, "config", "set", "peak.months", "11,12,1").exit_code == 0
    rows = {row["opco"]: row for row in json.loads(at(EARLY, "list", "--json").stdout)}
    assert rows["atlas"]["peak_renewal"] is None
    assert rows["sante"]["peak_renewal"]["peak_start"] == "2027-11-01"
    assert rows["sante"]["peak_renewal"]["peak_end"] == "2028-01-31"


@pytest.mark.usefixtures("peak_keys")
def test_calendar_has_a_peak_event_with_its_own_uid_and_alarm() -> None:
    result = at(EARLY, "calendar")
    assert result.exit_code == 0, result.stderr
    events = {str(e["uid"]): e for e in Calendar.from_ical(result.stdout).walk("VEVENT")}
    event: Event = events[f"{SIRET}-atlas-peak@cfakey"]
    assert f"{SIRET}-sante-peak@cfakey" not in events
    assert event.decoded("dtstart") == date(2027, 7, 18)
    assert event.decoded("dtend") == date(2027, 7, 19)
    assert str(event["summary"]) == f"Clé API Atlas – CFA Test : {PEAK_LABEL}"
    description = str(event["description"])
    assert "est à renouveler le 18/07/2027." in description
    assert (
        "Elle expire le 15/09/2027, pendant la rentrée (septembre–octobre, le pic des "
        "contrats d'apprentissage) ou juste avant : renouvelez-la avant le 01/09/2027."
    ) in description
    assert f"cfakey rotate atlas --cfa {SIRET}" in description
    (alarm,) = event.walk("VALARM")
    assert str(alarm["action"]) == "DISPLAY"
    assert alarm.decoded("trigger") == timedelta(0)
    assert str(alarm["description"]) == f"Aujourd'hui : Clé API Atlas – CFA Test : {PEAK_LABEL}"
    assert ATLAS_KEY not in result.stdout


@pytest.mark.usefixtures("peak_keys")
def test_metrics_publish_the_peak_reminder_for_flagged_keys_only() -> None:
    result = at(EARLY, "metrics")
    assert result.exit_code == 0, result.stderr
    families = {f.name: f for f in text_string_to_metric_families(result.stdout)}
    family = families["cfakey_key_peak_renewal_timestamp_seconds"]
    assert family.type == "gauge"
    samples = [(s.labels, s.value) for s in family.samples]
    assert samples == [
        (
            {"siret": SIRET, "cfa": "CFA Test", "opco": "atlas"},
            local_midnight(date(2027, 7, 18)).timestamp(),
        )
    ]


# add and rotate ----------------------------------------------------------------------------


@pytest.fixture
def cfa() -> None:
    assert at(EARLY, "cfa", "add", SIRET, "--nom", "CFA Test").exit_code == 0


@pytest.mark.usefixtures("cfa")
def test_add_warns_of_a_lifetime_ending_in_the_peak_and_suggests_one_and_keeps_it() -> None:
    april = datetime(2027, 4, 15, 9, 0, tzinfo=UTC)
    added = at(
        april, "add", "ocapiat", "--lifetime-months", "6", "--no-interactive", stdin=OCAPIAT_KEY
    )
    assert added.exit_code == 0, added.stderr
    assert (
        "Cette clé expire le 15/10/2027, pendant la rentrée (septembre–octobre) ou juste "
        "avant, quand tous les CFA envoient leurs contrats : renouvelez-la à partir du "
        "02/08/2027 (rappel dans list, check et calendar). Une durée de 3 mois "
        "l'éviterait (échéance le 15/07/2027) : choisissez-la sur le portail à la prochaine "
        "génération, ou gardez cette date."
    ) in " ".join(added.stderr.split())
    (row,) = json.loads(at(april, "list", "--json").stdout)
    assert row["expires"] == "2027-10-15"  # a warning, not a refusal: the date is kept
    assert OCAPIAT_KEY not in added.stderr + added.stdout


@pytest.mark.usefixtures("cfa")
def test_rotate_warns_of_a_portal_date_in_the_peak_without_a_lifetime_to_suggest() -> None:
    added = at(EARLY, "add", "atlas", "--expires", "30/06/2027", "--yes", stdin=ATLAS_KEY)
    assert added.exit_code == 0, added.stderr
    assert "rentrée" not in added.stderr
    rotated = at(
        EARLY, "rotate", "atlas", "--expires", "01/09/2027", "--no-interactive", stdin=SANTE_KEY
    )
    assert rotated.exit_code == 0, rotated.stderr
    said = " ".join(rotated.stderr.split())
    assert "Cette clé expire le 01/09/2027, pendant la rentrée (septembre–octobre)" in said
    assert "à partir du 18/07/2027" in said
    assert "Une durée de" not in said


@pytest.mark.usefixtures("cfa")
def test_the_interactive_walkthrough_suggests_the_lifetime_before_the_portal_steps() -> None:
    april = datetime(2027, 4, 15, 9, 0, tzinfo=UTC)
    added = at(
        april,
        "add",
        "ocapiat",
        "--interactive",
        stdin="n\n" + "\n" * 5 + OCAPIAT_KEY + "\n3\n",  # no browser, 5 pauses
    )
    assert added.exit_code == 0, added.stderr
    said = " ".join(added.stderr.split())
    hint = said.index("choisissez plutôt 3 mois sur le portail")
    assert hint < said.index("Étape 1/")
    (row,) = json.loads(at(april, "list", "--json").stdout)
    assert row["expires"] == "2027-07-15"
    assert row["peak_renewal"] is None


@pytest.mark.usefixtures("cfa")
def test_the_last_accepted_date_with_a_peak_across_the_new_year() -> None:
    """31/12/2099, the last day cfakey accepts, in a November–January peak ending in 2100."""
    assert at(EARLY, "config", "set", "peak.months", "11,12,1").exit_code == 0
    added = at(EARLY, "add", "atlas", "--expires", "31/12/2099", "--yes", stdin=ATLAS_KEY)
    assert added.exit_code == 0, added.stderr
    assert "Cette clé expire le 31/12/2099, pendant la rentrée (novembre–janvier)" in " ".join(
        added.stderr.split()
    )
    (row,) = json.loads(at(EARLY, "list", "--json").stdout)
    assert (row["peak_renewal"]["remind_on"], row["peak_renewal"]["peak_end"]) == (
        "2099-09-17",
        "2100-01-31",
    )
    calendar = Calendar.from_ical(at(EARLY, "calendar").stdout)
    (event,) = [e for e in calendar.walk("VEVENT") if str(e["uid"]).endswith("-peak@cfakey")]
    assert event.decoded("dtstart") == date(2099, 9, 17)
    metrics = at(EARLY, "metrics").stdout
    (family,) = [
        f
        for f in text_string_to_metric_families(metrics)
        if f.name == "cfakey_key_peak_renewal_timestamp_seconds"
    ]
    assert [s.value for s in family.samples] == [local_midnight(date(2099, 9, 17)).timestamp()]


@pytest.mark.parametrize(
    ("name", "value"),
    [("peak.months", "²"), ("peak.months", "9,¹⁰"), ("opco.atlas.warn_days", "²")],
)
def test_digits_that_are_not_ascii_are_a_french_usage_error(name: str, value: str) -> None:
    """str.isdigit() accepts « ² », which int() refuses: it crashed (ValueError)."""
    refused = run_cli("config", "set", name, value)
    assert refused.exit_code == 2, refused.stderr
    assert f"Paramètre « {name} » invalide" in refused.stderr
    assert "inattendue" not in refused.stderr
