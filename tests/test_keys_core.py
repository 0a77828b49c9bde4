"""Key lifecycle use-cases without the CLI: validation, expiry rules, windows, import, rotation."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from cfakey.core import imports, keys
from cfakey.errors import AlreadyExistsError, NotFoundError, UsageError
from cfakey.expiry import local_midnight
from cfakey.identifiers import with_check_digit
from cfakey.metadata import KeyRecord, Metadata
from cfakey.paths import Paths
from cfakey.registry.loader import load_registry
from cfakey.registry.model import Registry
from cfakey.stores.base import entry_name, fingerprint
from tests.store_contract import MemoryStore

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ATLAS_KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
SHIPPED = load_registry(None, None)[0]


SIRET_A = with_check_digit("1813000210037")
SIRET_B = with_check_digit("1813000210099")  # same SIREN as A
SIRET_C = with_check_digit("4410000000001")


def jwt(exp: datetime) -> str:
    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return (
        f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'exp': int(exp.timestamp())})}.c2lnbmF0dXJl"
    )


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return load_registry(None, tmp_path / "cache")[0]


@pytest.fixture
def metadata(isolated_home: Path) -> Iterator[Metadata]:
    with Metadata.open(Paths.from_env()) as opened:
        opened.add_cfa(SIRET_A, "CFA Alpha", None)
        opened.add_cfa(SIRET_B, "CFA Alpha site B", None)
        opened.add_cfa(SIRET_C, "CFA Gamma", None)
        yield opened


# Key text -------------------------------------------------------------------------------


def test_clean_key_trims_and_says_so() -> None:
    cleaned = keys.clean_key(f"  {ATLAS_KEY}\r\n", SHIPPED.get("atlas"))
    assert cleaned.value == ATLAS_KEY
    assert cleaned.trimmed
    assert cleaned.warnings == ()


@pytest.mark.parametrize("ending", ["\n", "\r\n", ""])
def test_one_final_line_end_is_not_reported_as_trimmed(ending: str) -> None:
    cleaned = keys.clean_key(ATLAS_KEY + ending, SHIPPED.get("atlas"))
    assert cleaned.value == ATLAS_KEY
    assert not cleaned.trimmed


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("", "vide"),
        ("   \n", "vide"),
        ("abcdefgh ijklmnopqrst", "espace"),
        ("abcdefghij\nklmnopqrst", "saut de ligne"),
        ("abcdefghij\x07klmnopqrst", "caractères invisibles"),
    ],
)
def test_clean_key_refuses_what_cannot_be_a_key(raw: str, fragment: str) -> None:
    with pytest.raises(UsageError) as caught:
        keys.clean_key(raw, SHIPPED.get("atlas"))
    assert fragment in caught.value.message
    assert "rien n'a été enregistré" in caught.value.message.lower()
    stripped = raw.strip()
    if stripped:
        assert stripped not in caught.value.message


def test_clean_key_warns_but_accepts_unusual_shapes() -> None:
    short = keys.clean_key("abc123", SHIPPED.get("mobilites"))
    assert short.value == "abc123"
    assert any("courte" in warning for warning in short.warnings)
    odd_atlas = keys.clean_key("x" * 40, SHIPPED.get("atlas"))
    assert any("Forme inhabituelle" in warning for warning in odd_atlas.warnings)
    assert "x" * 40 not in " ".join(odd_atlas.warnings)
    assert keys.clean_key("A" * 64, SHIPPED.get("afdas")).warnings == ()
    assert keys.clean_key(jwt(NOW + timedelta(days=9)), SHIPPED.get("opcoep")).warnings == ()


# Expiry rules ---------------------------------------------------------------------------


def resolve(
    registry: Registry, opco_id: str, key: str = ATLAS_KEY, **kwargs: object
) -> keys.Expiry:
    options: dict[str, object] = {"obtained": NOW.date(), "now": NOW, **kwargs}
    return keys.resolve_expiry(registry.get(opco_id), key, **options)  # type: ignore[arg-type]


def local_day(moment: datetime | None) -> date:
    assert moment is not None
    return moment.astimezone().date()


def test_mobilites_is_365_days(registry: Registry) -> None:
    expiry = resolve(registry, "mobilites", obtained=date(2026, 11, 1))
    assert local_day(expiry.expires_at) == date(2027, 11, 1)
    assert expiry.source == "registry"
    leap = resolve(registry, "mobilites", obtained=date(2027, 3, 1))
    assert local_day(leap.expires_at) == date(2028, 2, 29)  # 365 days, not one year


def test_sante_is_twelve_calendar_months(registry: Registry) -> None:
    assert local_day(resolve(registry, "sante", obtained=date(2026, 8, 31)).expires_at) == date(
        2027, 8, 31
    )
    assert local_day(resolve(registry, "sante", obtained=date(2026, 2, 28)).expires_at) == date(
        2027, 2, 28
    )


def test_ocapiat_lifetime_is_chosen_between_one_and_six_months(registry: Registry) -> None:
    expiry = resolve(registry, "ocapiat", obtained=date(2026, 8, 31), lifetime_months=6)
    assert local_day(expiry.expires_at) == date(2027, 2, 28)
    assert local_day(resolve(registry, "ocapiat", lifetime_months=1).expires_at) == date(
        2026, 12, 22
    )
    for wrong in (0, 7):
        with pytest.raises(UsageError, match="1 à 6 mois"):
            resolve(registry, "ocapiat", lifetime_months=wrong)
    assert keys.expiry_question(registry.get("ocapiat")) == "lifetime"


def test_portal_dates_accept_french_and_iso_with_time(registry: Registry) -> None:
    french = resolve(registry, "opcommerce", expires="21/03/2027 15:18")
    iso = resolve(registry, "opcommerce", expires="2027-03-21T15:18")
    assert french.expires_at == iso.expires_at
    assert french.expires_at is not None
    assert french.expires_at.astimezone().strftime("%d/%m/%Y %H:%M") == "21/03/2027 15:18"
    assert french.source == "portal"
    assert keys.expiry_question(registry.get("opcommerce")) == "date"


def test_opco_ep_jwt_exp_wins_over_the_typed_date(registry: Registry) -> None:
    exp = datetime(2027, 6, 30, 10, 0, tzinfo=UTC)
    token = jwt(exp)
    expiry = resolve(registry, "opcoep", token, expires="01/01/2027")
    assert expiry.expires_at == exp
    assert expiry.source == "jwt"
    assert expiry.notes
    assert keys.expiry_question(registry.get("opcoep"), token) == "none"
    assert keys.expiry_question(registry.get("opcoep"), "not-a-jwt-key-0123") == "date"
    undated = resolve(registry, "opcoep", "not-a-jwt-key-0123")
    assert undated.expires_at is None
    assert undated.source == "none"


def test_a_typed_date_equal_to_the_jwt_date_is_not_called_ignored_east_of_utc(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TZ", "Europe/Paris")
    time.tzset()
    try:
        token = jwt(datetime(2027, 3, 21, 15, 0, tzinfo=UTC))
        same_day = resolve(registry, "opcoep", token, expires="21/03/2027")
        other_day = resolve(registry, "opcoep", token, expires="22/03/2027")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert same_day.source == other_day.source == "jwt"
    assert same_day.notes == ()
    assert other_day.notes


@pytest.mark.parametrize(
    "opco_id", ["afdas", "atlas", "constructys", "opco2i", "akto", "uniformation"]
)
def test_rules_without_lifetime_store_no_date(registry: Registry, opco_id: str) -> None:
    expiry = resolve(registry, opco_id)
    assert (expiry.expires_at, expiry.source) == (None, "none")
    operator = resolve(registry, opco_id, expires="2027-01-15")
    assert local_day(operator.expires_at) == date(2027, 1, 15)
    assert operator.source == "operator"


def test_past_or_unreadable_dates_are_refused(registry: Registry) -> None:
    with pytest.raises(UsageError, match="déjà passée"):
        resolve(registry, "opcommerce", expires="01/01/2020")
    with pytest.raises(UsageError, match="Date illisible"):
        resolve(registry, "opcommerce", expires="31/02/2027")
    with pytest.raises(UsageError, match="déjà passée"):
        resolve(registry, "opcoep", jwt(NOW - timedelta(days=1)))
    with pytest.raises(UsageError, match="déjà passée"):
        resolve(registry, "mobilites", obtained=date(2025, 1, 1))
    with pytest.raises(UsageError, match="--lifetime-months ne s'applique pas"):
        resolve(registry, "sante", lifetime_months=3)


# Windows and statuses -------------------------------------------------------------------


def test_default_windows_follow_key_lifetimes(registry: Registry) -> None:
    assert keys.default_window(registry.get("ocapiat")) == keys.Window(30, 7)
    for opco_id in ("mobilites", "sante", "opcommerce", "opcoep", "afdas"):
        assert keys.default_window(registry.get(opco_id)) == keys.Window(45, 14)
    settings = {"opco.ocapiat.warn_days": 60, "opco.ocapiat.crit_days": "10"}
    assert keys.window_for(registry.get("ocapiat"), "ocapiat", settings) == keys.Window(60, 10)
    assert keys.window_for(
        registry.get("ocapiat"), "ocapiat", settings, warn_days=5, crit_days=2
    ) == keys.Window(5, 2)
    with pytest.raises(UsageError):
        keys.check_window_args(5, 9)


def record(
    opco_id: str, expires_at: datetime | None, *, siret: str = SIRET_A, obtained: date | None = None
) -> KeyRecord:
    return KeyRecord(
        siret=siret,
        opco_id=opco_id,
        obtained_on=obtained or NOW.date(),
        stored_at=NOW,
        expires_at=expires_at,
        expiry_source="registry" if expires_at else "none",
        fingerprint="0123456789ab",
        os_user="test",
        store="file",
    )


def at_days(days: int) -> datetime:
    """Local midnight ``days`` after NOW's local date: whole days left, as in ``list``."""
    return local_midnight(NOW.astimezone().date() + timedelta(days=days))


@pytest.mark.parametrize(
    ("days", "status", "level"),
    [
        (46, "valide", 0),
        (45, "à renouveler", 1),
        (15, "à renouveler", 1),
        (14, "à renouveler", 2),
        (1, "à renouveler", 2),
    ],
)
def test_status_at_the_window_edges(registry: Registry, days: int, status: str, level: int) -> None:
    row = keys.classify(
        record("mobilites", at_days(days)),
        opco=registry.get("mobilites"),
        cfa_name="A",
        window=keys.Window(45, 14),
        now=NOW,
    )
    assert (row.days_left, row.status.label, row.level) == (days, status, level)


def test_expired_and_undated_statuses(registry: Registry) -> None:
    window = keys.Window(45, 14)
    expired = keys.classify(
        record("sante", NOW - timedelta(hours=1)),
        opco=registry.get("sante"),
        cfa_name="A",
        window=window,
        now=NOW,
    )
    assert (expired.status.label, expired.level) == ("expirée", 2)
    undated = keys.classify(
        record("atlas", None), opco=registry.get("atlas"), cfa_name="A", window=window, now=NOW
    )
    assert (undated.status.label, undated.level, undated.days_left) == ("sans date", 0, None)
    old_ep = record("opcoep", None, obtained=NOW.date() - timedelta(days=340))
    advice = keys.classify(
        old_ep, opco=registry.get("opcoep"), cfa_name="A", window=window, now=NOW
    )
    assert (advice.status.label, advice.level) == ("à renouveler", 1)
    assert advice.rotation_due == date(2026, 12, 17)
    assert advice.as_json()["expires"] is None


def test_overview_sorts_by_urgency_and_check_takes_the_worst(
    metadata: Metadata, registry: Registry
) -> None:
    metadata.put_key(record("atlas", None))
    metadata.put_key(record("sante", at_days(200)))
    metadata.put_key(record("mobilites", at_days(30), siret=SIRET_C))
    view = keys.overview(metadata, registry, {}, now=NOW)
    assert [row.opco_id for row in view.rows] == ["mobilites", "sante", "atlas"]
    assert keys.check(view).level == 1
    metadata.put_key(record("ocapiat", at_days(7), siret=SIRET_C))
    result = keys.check(keys.overview(metadata, registry, {}, now=NOW))
    assert (result.level, result.label, len(result.problems)) == (2, "CRITIQUE", 2)
    assert (
        keys.check(keys.overview(metadata, registry, {}, now=NOW, warn_days=0, crit_days=0)).level
        == 0
    )


# Add, rotate, duplicates ----------------------------------------------------------------------


def save(  # noqa: PLR0917 - reads like the call it wraps
    metadata: Metadata,
    registry: Registry,
    store: MemoryStore,
    siret: str,
    opco_id: str,
    key: str,
    **kwargs: bool,
) -> keys.Saved:
    opco = registry.get(opco_id)
    cfa = metadata.get_cfa(siret)
    assert cfa is not None
    cleaned = keys.clean_key(key, opco)
    expiry = keys.resolve_expiry(
        opco,
        cleaned.value,
        obtained=NOW.date(),
        now=NOW,
        lifetime_months=3 if opco_id == "ocapiat" else None,
    )
    options = {"replace": False, "allow_duplicate": False, **kwargs}
    return keys.save_key(
        store,
        metadata,
        registry,
        cfa=cfa,
        opco=opco,
        key=cleaned,
        expiry=expiry,
        obtained=NOW.date(),
        now=NOW,
        **options,
    )


def test_add_then_rotate_journals_both_fingerprints(metadata: Metadata, registry: Registry) -> None:
    store = MemoryStore()
    first = save(metadata, registry, store, SIRET_A, "atlas", ATLAS_KEY)
    assert first.action == "added"
    assert store.secrets[entry_name(SIRET_A, "atlas")] == ATLAS_KEY
    with pytest.raises(AlreadyExistsError, match="déjà enregistrée"):
        save(metadata, registry, store, SIRET_A, "atlas", "Another+Key/0123456789abcdefghijk=")
    new_key = "Another+Key/0123456789abcdefghijk="
    rotated = save(
        metadata, registry, store, SIRET_A, "atlas", new_key, replace=True, rotation=True
    )
    assert (rotated.action, rotated.old_fingerprint) == ("rotated", fingerprint(ATLAS_KEY))
    entry = metadata.journal(opco_id="atlas")[-1]
    assert (entry.action, entry.old_fingerprint, entry.new_fingerprint) == (
        "rotated",
        fingerprint(ATLAS_KEY),
        fingerprint(new_key),
    )
    with pytest.raises(NotFoundError):
        save(metadata, registry, store, SIRET_A, "afdas", "A" * 64, rotation=True)
    with pytest.raises(UsageError, match="identique à l'ancienne"):
        save(metadata, registry, store, SIRET_A, "atlas", new_key, replace=True, rotation=True)


def test_same_key_for_another_opco_or_cfa_is_refused_unless_confirmed(
    metadata: Metadata, registry: Registry
) -> None:
    store = MemoryStore()
    save(metadata, registry, store, SIRET_A, "atlas", ATLAS_KEY)
    with pytest.raises(AlreadyExistsError) as caught:
        save(metadata, registry, store, SIRET_A, "mobilites", ATLAS_KEY)
    assert "atlas du CFA" in caught.value.message
    assert ATLAS_KEY not in caught.value.message
    assert metadata.get_key(SIRET_A, "mobilites") is None
    assert entry_name(SIRET_A, "mobilites") not in store.secrets
    save(metadata, registry, store, SIRET_C, "atlas", ATLAS_KEY, allow_duplicate=True)
    assert metadata.get_key(SIRET_C, "atlas") is not None


def test_a_siren_wide_key_may_repeat_across_sirets_of_the_siren(
    metadata: Metadata, registry: Registry
) -> None:
    store = MemoryStore()
    save(metadata, registry, store, SIRET_A, "afdas", "B" * 64)
    save(
        metadata, registry, store, SIRET_B, "afdas", "B" * 64
    )  # same SIREN: no confirmation needed
    with pytest.raises(AlreadyExistsError):
        save(metadata, registry, store, SIRET_C, "afdas", "B" * 64)


# Import ------------------------------------------------------------------------------------


def write_csv(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_import_validates_every_row_and_stores_nothing_on_error(
    tmp_path: Path, metadata: Metadata, registry: Registry
) -> None:
    secret = "Secret+Key/With=Dollar$0123456789"
    new_siret = with_check_digit("5520000000001")
    path = write_csv(
        tmp_path / "cles.csv",
        [
            "cfa;opco;key;expires;cfa_name",
            f"{SIRET_A};atlas;{secret};;",
            f"{new_siret};santé;{'C' * 40};;Nouveau CFA",
            f"12345678901234;atlas;{'D' * 32};;",
            f"{SIRET_C};opco inconnu;{'E' * 32};;",
            f"{SIRET_C};sante;{'F' * 32};01/01/2020;",
            f"{SIRET_A};atlas;{'G' * 32};;",
            f"{SIRET_C};mobilites;{secret};;",
            f"{SIRET_C};afdas;with space inside;;",
            f"{SIRET_C};ocapiat;{'H' * 32};{secret};",
        ],
    )
    rows = imports.read_import_file(path)
    store = MemoryStore()
    with pytest.raises(imports.ImportRowsError) as caught:
        imports.plan_import(rows, metadata, registry, now=NOW, replace=False)
    text = caught.value.message
    assert "ligne 4, colonne « cfa » : SIRET invalide" in text
    assert "ligne 5, colonne « opco » : OPCO inconnu" in text
    assert "ligne 6, colonne « expires »" in text
    assert "ligne 7, colonne « opco » : doublon" in text
    assert "ligne 8, colonne « key » : même clé qu'à la ligne 2" in text
    assert "ligne 9, colonne « key »" in text
    assert "ligne 10, colonne « expires » : valeur trop longue (33 caractères" in text
    assert secret not in text
    assert store.secrets == {}
    assert metadata.get_cfa(new_siret) is None


def test_import_registers_cfas_in_one_store_session(
    tmp_path: Path, metadata: Metadata, registry: Registry
) -> None:
    sirets = [with_check_digit(f"77{index:011d}") for index in range(30)]
    lines = ["cfa,opco,key,expires,obtained,cfa_name"]
    for index, siret in enumerate(sirets):
        for opco in registry.opcos:
            expires = "2027-05-01" if opco.id in {"opcommerce", "ocapiat"} else ""
            lines.append(
                f"{siret},{opco.id},K{index:03d}{opco.id}+/=0123456789abcdef,{expires},,CFA {index}"
            )
    rows = imports.read_import_file(write_csv(tmp_path / "cles.csv", lines))
    plan = imports.plan_import(rows, metadata, registry, now=NOW, replace=False)
    store = MemoryStore()
    result = imports.run_import(store, metadata, plan, now=NOW)
    assert (result.imported, result.new_cfas, result.replaced) == (330, 30, 0)
    assert store.batches == 1
    assert len(store.secrets) == 330
    assert metadata.get_cfa(sirets[3]) is not None
    assert metadata.get_cfa(sirets[3]).name == "CFA 3"  # type: ignore[union-attr]
    sante_key = metadata.get_key(sirets[0], "sante")
    assert sante_key is not None
    assert sante_key.expiry_source == "registry"
    assert len([entry for entry in metadata.journal() if entry.action == "imported"]) == 330


def test_import_reads_json_and_refuses_existing_keys_without_yes(
    tmp_path: Path, metadata: Metadata, registry: Registry
) -> None:
    store = MemoryStore()
    save(metadata, registry, store, SIRET_A, "atlas", ATLAS_KEY)
    path = tmp_path / "cles.json"
    path.write_text(
        json.dumps([{"cfa": SIRET_A, "opco": "Atlas", "key": "J" * 32}]), encoding="utf-8"
    )
    rows = imports.read_import_file(path)
    with pytest.raises(
        imports.ImportRowsError, match="élément 1, colonne « opco » : une clé atlas est déjà"
    ):
        imports.plan_import(rows, metadata, registry, now=NOW, replace=False)
    plan = imports.plan_import(rows, metadata, registry, now=NOW, replace=True)
    imports.run_import(store, metadata, plan, now=NOW)
    assert store.secrets[entry_name(SIRET_A, "atlas")] == "J" * 32
    assert metadata.journal(opco_id="atlas")[-1].old_fingerprint == fingerprint(ATLAS_KEY)


# Reveal, CFA removal, local midnight -----------------------------------------------------


def test_reveal_returns_the_key_and_journals_it_at_the_callers_clock(
    metadata: Metadata, registry: Registry
) -> None:
    store = MemoryStore()
    save(metadata, registry, store, SIRET_A, "atlas", ATLAS_KEY)
    record = metadata.get_key(SIRET_A, "atlas")
    assert record is not None
    shown_at = NOW + timedelta(days=3, seconds=7)
    assert keys.reveal_key(store, metadata, record, now=shown_at) == ATLAS_KEY
    entry = metadata.journal()[-1]
    assert (entry.action, entry.new_fingerprint, entry.at) == (
        "revealed",
        fingerprint(ATLAS_KEY),
        shown_at,
    )
    assert ATLAS_KEY not in repr(metadata.journal())


def test_the_journal_is_stamped_by_the_metadata_clock(metadata: Metadata) -> None:
    metadata.clock = lambda: NOW + timedelta(microseconds=500)
    metadata.log("verified", siret=SIRET_A, opco_id="atlas")
    assert metadata.journal()[-1].at == NOW


def test_removing_a_cfa_with_keys_needs_force_then_takes_its_keys(
    metadata: Metadata, registry: Registry
) -> None:
    from cfakey.core import cfas

    store = MemoryStore()
    save(metadata, registry, store, SIRET_C, "atlas", ATLAS_KEY)
    with pytest.raises(AlreadyExistsError, match="a encore 1 clé"):
        cfas.remove_cfa(metadata, SIRET_C, open_store=None)
    assert metadata.get_cfa(SIRET_C) is not None
    assert store.secrets
    removed = cfas.remove_cfa(metadata, SIRET_C, open_store=lambda: store)
    assert (removed.cfa.siret, removed.removed_keys) == (SIRET_C, 1)
    assert metadata.get_cfa(SIRET_C) is None
    assert not store.secrets
    assert [(entry.action, entry.detail) for entry in metadata.journal(siret=SIRET_C)][-2:] == [
        ("removed", "cfa remove --force"),
        ("cfa_removed", ""),
    ]


def test_local_midnight_is_the_start_of_the_day_on_the_operators_clock() -> None:
    midnight = local_midnight(date(2027, 6, 30))
    assert midnight.tzinfo is UTC
    assert midnight.astimezone().timetuple()[:6] == (2027, 6, 30, 0, 0, 0)
