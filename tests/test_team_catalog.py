"""Issue 12 item 2: everything a teammate needs lives in the engine, and the local cache
never shows stale data as current. Two homes on one real ``bao server -dev``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cfakey.core import team_sync
from cfakey.errors import ExitCode
from cfakey.stores import openbao_catalog
from cfakey.stores.base import fingerprint
from tests.conftest import CliResult, run_cli
from tests.openbao import OpenBao
from tests.store_contract import SIRET_A, SIRET_B

KEY = "Cle+d+alice/0123456789abcdef=="
KEY_2 = "Cle+d+alice+tour+2/0123456789=="


class Homes:
    """Two teammates' ``CFAKEY_HOME``s on one engine; ``as_a`` / ``as_b`` run cfakey."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.a, self.b = root / "alice", root / "bob"
        self._monkeypatch = monkeypatch

    def run(self, home: Path, *args: str, input: str | None = None) -> CliResult:  # noqa: A002
        self._monkeypatch.setenv("CFAKEY_HOME", str(home))
        return run_cli(*args, input=input)

    def as_a(self, *args: str, input: str | None = None) -> CliResult:  # noqa: A002
        return self.run(self.a, *args, input=input)

    def as_b(self, *args: str, input: str | None = None) -> CliResult:  # noqa: A002
        return self.run(self.b, *args, input=input)


@pytest.fixture
def homes(openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, isolated_home: Path) -> Homes:
    openbao.use_with_cfakey(monkeypatch)
    team = Homes(isolated_home.parent, monkeypatch)
    for home in (team.a, team.b):
        use = team.run(
            home, "store", "use", "openbao", "--url", openbao.url, "--mount", openbao.mount
        )
        assert use.exit_code == 0, use.stderr
    return team


class RequestCounter:
    """Every HTTP request cfakey's engine client sends, by path (counted, then sent)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import requests

        self.paths: list[str] = []
        send = requests.Session.send

        def counted(session: requests.Session, request: requests.PreparedRequest, **kw: object):  # type: ignore[no-untyped-def]
            self.paths.append(str(request.path_url))
            return send(session, request, **kw)

        monkeypatch.setattr(requests.Session, "send", counted)

    def key_reads(self) -> int:
        """Reads of the one key's metadata (a resync costs one per key; LISTs aside)."""
        read = f"/metadata/cfakey/keys/{SIRET_A}/atlas"
        return sum(1 for path in self.paths if path.endswith(read))


def _listed(result: CliResult) -> dict[str, dict[str, object]]:
    assert result.exit_code in (0, 1, 2), result.stderr
    rows = json.loads(result.stdout)
    return {row["opco"]: row for row in rows}


def test_b_sees_a_s_add_rotate_and_remove_on_the_very_next_command(
    homes: Homes, openbao: OpenBao
) -> None:
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA des Tests").exit_code == 0
    added = homes.as_a(
        "add", "atlas", "--cfa", SIRET_A, "--yes", "--expires", "2027-03-31", input=KEY
    )
    assert added.exit_code == 0, added.stderr
    # B never ran cfa add: the CFA and the key come from the engine.
    seen = _listed(homes.as_b("list", "--json"))
    assert seen["atlas"]["fingerprint"] == fingerprint(KEY)
    assert seen["atlas"]["cfa_name"] == "CFA des Tests"
    shown = homes.as_b("show", "atlas", "--cfa", SIRET_A, "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["fingerprint"] == fingerprint(KEY)
    # B's add of the same slot is no silent replacement: B's home knows A's key now, so
    # the usual path applies (« déjà enregistrée », then, with --yes, a knowing rotation).
    again = homes.as_b("add", "atlas", "--cfa", SIRET_A, "--yes", input="cle-de-bob")
    assert again.exit_code == 0, again.stderr
    assert f"déjà enregistrée pour ce CFA (empreinte {fingerprint(KEY)}" in again.stderr
    last = openbao.journal(SIRET_A)[-1]
    assert (last["action"], last["old_fingerprint"]) == ("rotated", fingerprint(KEY))
    rotated = homes.as_a("rotate", "atlas", "--cfa", SIRET_A, "--yes", input=KEY_2)
    assert rotated.exit_code == 0, rotated.stderr
    assert _listed(homes.as_b("list", "--json"))["atlas"]["fingerprint"] == fingerprint(KEY_2)
    checked = homes.as_b("check", "--json")
    assert json.loads(checked.stdout)["checked"] == 1
    journal = homes.as_b("journal", "--json", "--chronologique")
    assert journal.exit_code == 0, journal.stderr
    entries = json.loads(journal.stdout)
    actions = [entry["action"] for entry in entries]
    assert actions == ["cfa_added", "added", "rotated", "rotated"]
    ids = [entry["id"] for entry in entries]
    assert len(set(ids)) == len(ids)  # the engine's entries never reuse a local id
    assert all(entry_id < 0 for entry_id in ids)
    removed = homes.as_a("remove", "atlas", "--cfa", SIRET_A, "--yes")
    assert removed.exit_code == 0, removed.stderr
    assert "atlas" not in _listed(homes.as_b("list", "--json"))
    for result in (added, seen and shown, again, rotated, checked, journal, removed):
        assert KEY not in result.stdout + result.stderr
        assert KEY_2 not in result.stdout + result.stderr


def test_the_cache_is_trusted_after_a_lease_and_never_within_it(
    homes: Homes, monkeypatch: pytest.MonkeyPatch, openbao: OpenBao
) -> None:
    """Counted requests: within the lease of a write every reader reads the catalog again;
    once the lease has passed with no new write, one request (the generation) suffices."""
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert homes.as_a("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY).exit_code == 0
    counter = RequestCounter(monkeypatch)
    for _ in range(2):  # within the 60 s lease of A's write: never trusted
        before = counter.key_reads()
        assert "atlas" in _listed(homes.as_b("list", "--json"))
        assert counter.key_reads() == before + 1
    # As if a lease had passed since A's last write (by the server's clock, whose Date
    # has a one-second precision): no waiting a minute in a test.
    monkeypatch.setattr(openbao_catalog, "LEASE_SECONDS", -3)
    assert "atlas" in _listed(homes.as_b("list", "--json"))  # resynced from now on
    before, requests_before = counter.key_reads(), len(counter.paths)
    assert "atlas" in _listed(homes.as_b("list", "--json"))
    assert counter.key_reads() == before  # trusted: no key read again
    assert [p for p in counter.paths[requests_before:] if "/cfakey/" in p] == [
        f"/v1/{openbao.mount}/metadata/cfakey/generation"
    ]
    # A's next write raises the generation: B's very next list reads the catalog again.
    assert homes.as_a("rotate", "atlas", "--cfa", SIRET_A, "--yes", input=KEY_2).exit_code == 0
    before = counter.key_reads()
    assert _listed(homes.as_b("list", "--json"))["atlas"]["fingerprint"] == fingerprint(KEY_2)
    assert counter.key_reads() == before + 1


def test_trust_needs_the_same_generation_and_a_read_begun_a_lease_after_its_write() -> None:
    from datetime import UTC, datetime, timedelta

    from cfakey.metadata import SyncState
    from cfakey.stores.openbao_catalog import LEASE_SECONDS, Generation

    written = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    lease = timedelta(seconds=LEASE_SECONDS)
    generation = Generation(7, written, written + 2 * lease)
    where = "http://bao|secret|cfakey"
    assert team_sync.trusted(SyncState(where, 7, written + lease), generation, where)
    assert not team_sync.trusted(SyncState(where, 7, written + lease / 2), generation, where)
    assert not team_sync.trusted(SyncState(where, 6, written + 2 * lease), generation, where)
    assert not team_sync.trusted(SyncState("ailleurs", 7, written + lease), generation, where)
    assert not team_sync.trusted(None, generation, where)


def test_a_cfa_is_kept_with_the_same_generation_read_a_lease_after_its_write() -> None:
    from datetime import UTC, datetime, timedelta

    from cfakey.stores.openbao_catalog import LEASE_SECONDS, Generation

    written = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    lease = timedelta(seconds=LEASE_SECONDS)
    mark = Generation(3, written, written + 2 * lease)
    assert team_sync.cfa_trusted((3, written + lease), mark)
    assert not team_sync.cfa_trusted((3, written + lease / 2), mark)  # within its lease
    assert not team_sync.cfa_trusted((2, written + 2 * lease), mark)  # written since
    assert not team_sync.cfa_trusted(None, mark)  # new to this home
    never = Generation(0, datetime(1970, 1, 1, tzinfo=UTC), written)
    assert not team_sync.cfa_trusted((0, written), never)  # written by no cfakey: reread


def _interrupt_a_rotation(openbao: OpenBao, secret: str) -> None:
    """What a writer killed between the data and the metadata leaves: the generation
    raised, a new data version, the metadata still describing the previous one."""
    openbao.server.request("POST", f"{openbao.mount}/data/cfakey/generation", {"data": {"n": "1"}})
    held = openbao.read(f"cfakey/keys/{SIRET_A}/atlas") or {}
    body = {"data": {"secret": secret}, "options": {"cas": held["metadata"]["version"]}}
    openbao.server.request("POST", f"{openbao.mount}/data/cfakey/keys/{SIRET_A}/atlas", body)


def test_a_writer_stopped_between_data_and_metadata_shows_interrupted_then_doctor_repairs(
    homes: Homes, openbao: OpenBao
) -> None:
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert homes.as_a("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY).exit_code == 0
    _interrupt_a_rotation(openbao, KEY_2)
    listed = homes.as_b("list")
    assert "opération interrompue" in listed.stderr
    checked = homes.as_b("check", "--json")
    assert checked.exit_code == 1  # WARNING: a row may be wrong until it is repaired
    assert json.loads(checked.stdout)["interrupted"] == [
        {"siret": SIRET_A, "opco_id": "atlas", "action": "written"}
    ]
    doctor = homes.as_b("doctor")
    assert "décrivent de nouveau la version actuelle" in doctor.stdout + doctor.stderr
    after = homes.as_b("check", "--json")
    assert "interrupted" not in json.loads(after.stdout)
    assert _listed(homes.as_a("list", "--json"))["atlas"]["fingerprint"] == fingerprint(KEY_2)
    described = openbao.metadata(f"cfakey/keys/{SIRET_A}/atlas")["custom_metadata"]
    assert described["version"] == "2"
    assert described["fingerprint"] == fingerprint(KEY_2)
    for result in (listed, checked, doctor, after):
        assert KEY_2 not in result.stdout + result.stderr


def test_the_engine_holds_no_key_outside_the_secrets(homes: Homes, openbao: OpenBao) -> None:
    """custom_metadata, CFA records, journal and generation: fingerprints, never a key."""
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert homes.as_a("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY).exit_code == 0
    assert homes.as_a("rotate", "atlas", "--cfa", SIRET_A, "--yes", input=KEY_2).exit_code == 0
    assert homes.as_b("journal").exit_code == 0
    everything = openbao.walk()
    assert f"cfakey/keys/{SIRET_A}/atlas" in everything
    assert "cfakey/generation" in everything
    assert f"cfakey/cfas/{SIRET_A}" in everything
    assert any(path.startswith(f"cfakey/journal/{SIRET_A}/") for path in everything)
    for path in everything:
        described = json.dumps(openbao.metadata(path))
        assert KEY not in described
        assert KEY_2 not in described
        if not path.startswith("cfakey/keys/"):
            held = json.dumps(openbao.read(path))
            assert KEY not in held
            assert KEY_2 not in held
    history = openbao.metadata(f"cfakey/keys/{SIRET_A}/atlas")["custom_metadata"]
    assert history["h1"].split("|")[1] == fingerprint(KEY)
    assert history["h2"].split("|")[1] == fingerprint(KEY_2)


def test_a_journal_entry_is_created_once_never_overwritten(homes: Homes, openbao: OpenBao) -> None:
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    (name,) = openbao.listed(f"cfakey/journal/{SIRET_A}")
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as refused:
        openbao.server.request(
            "POST",
            f"{openbao.mount}/data/cfakey/journal/{SIRET_A}/{name}",
            {"data": {"action": "falsifié"}, "options": {"cas": 0}},
        )
    assert refused.value.code == 400  # check-and-set 0: only a creation is accepted
    assert openbao.journal(SIRET_A)[0]["action"] == "cfa_added"


def test_a_verification_by_a_is_what_b_sees(homes: Homes) -> None:
    from tests.fake_opco import running_fake_opco

    key = "Zm9vYmFyQmF6cXV4K2Jhci9xdXV4MTIzNDU2Nzg="
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert homes.as_a("add", "atlas", "--cfa", SIRET_A, "--yes", input=key).exit_code == 0
    with running_fake_opco() as opco:
        opco.state.valid_keys[key] = "2027-06-30"
        url = opco.base_url("ok")
        assert homes.as_a("config", "set", "opco.atlas.api_url", url).exit_code == 0
        verified = homes.as_a("verify", "atlas", "--cfa", SIRET_A)
        assert verified.exit_code == 0, verified.stderr
    row = _listed(homes.as_b("list", "--json"))["atlas"]
    assert row["expires"] == "2027-06-30"
    assert row["expiry_source"] == "opco_api"
    assert isinstance(row["verification"], dict)
    assert row["verification"]["outcome"] == "valide"


def test_show_historique_lists_the_engine_versions_never_a_key(homes: Homes) -> None:
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert homes.as_a("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY).exit_code == 0
    assert homes.as_a("rotate", "atlas", "--cfa", SIRET_A, "--yes", input=KEY_2).exit_code == 0
    shown = homes.as_b("show", "atlas", "--cfa", SIRET_A, "--historique", "--json")
    assert shown.exit_code == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["source"] == "openbao"
    versions = [(v["version"], v["fingerprint"], v["state"]) for v in document["versions"]]
    assert versions == [(2, fingerprint(KEY_2), "current"), (1, fingerprint(KEY), "kept")]
    text = homes.as_b("show", "atlas", "--cfa", SIRET_A, "--historique")
    assert text.exit_code == 0, text.stderr
    assert "actuelle" in text.stdout
    assert "remplacée" in text.stdout
    for result in (shown, text):
        assert KEY not in result.stdout + result.stderr
        assert KEY_2 not in result.stdout + result.stderr


@pytest.mark.parametrize("command", [("--version",), ("opcos",), ("guide", "atlas"), ("--help",)])
def test_commands_that_read_no_metadata_never_contact_the_engine(
    command: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    """With the team store chosen and its engine unreachable, they work all the same."""
    monkeypatch.setenv("CFAKEY_STORE", "openbao")
    monkeypatch.setenv("BAO_ADDR", "http://127.0.0.1:9")
    monkeypatch.setenv("BAO_TOKEN", "jeton-de-test")
    result = run_cli(*command)
    assert result.exit_code == 0, result.stderr
    listed = run_cli("list")  # one that reads metadata does contact it, and says so
    assert listed.exit_code == ExitCode.STORE_UNAVAILABLE
    assert "injoignable" in listed.stderr


def test_the_stopped_writer_s_next_command_describes_its_key_in_full(
    homes: Homes, openbao: OpenBao
) -> None:
    """A's rotate was killed after the data write: A's home keeps the intent (never the
    key); A's next command finishes it, the engine metadata included, dates and all."""
    from datetime import UTC, date, datetime

    from cfakey.metadata import KeyRecord, Metadata, PendingWrite
    from cfakey.paths import Paths

    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert homes.as_a("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY).exit_code == 0
    stored = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
    record = KeyRecord(
        SIRET_A, "atlas", date(2026, 11, 30), stored, datetime(2028, 1, 31, tzinfo=UTC),
        "operator", fingerprint(KEY_2), "alice", "openbao",
    )  # fmt: skip
    intent = PendingWrite(SIRET_A, "atlas", "rotated", fingerprint(KEY), record, "openbao")
    with Metadata.open(Paths.from_env({"CFAKEY_HOME": str(homes.a)})) as home_a:
        home_a.add_pending(intent)
    _interrupt_a_rotation(openbao, KEY_2)
    assert "opération interrompue" in homes.as_b("list").stderr
    resumed = homes.as_a("list")
    assert "Opération interrompue reprise" in resumed.stderr
    row = _listed(homes.as_b("list", "--json"))["atlas"]
    assert (row["fingerprint"], row["expires"]) == (fingerprint(KEY_2), "2028-01-31")
    assert "interrupted" not in json.loads(homes.as_b("check", "--json").stdout)
    last = openbao.journal(SIRET_A)[-1]
    assert (last["action"], last["new_fingerprint"]) == ("rotated", fingerprint(KEY_2))


def test_the_team_journal_reads_each_entry_once(
    homes: Homes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journal entries never change: a second `journal` reads only the new ones."""
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert homes.as_a("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY).exit_code == 0
    counter = RequestCounter(monkeypatch)

    def entries_read() -> int:
        return sum(1 for path in counter.paths if "/data/cfakey/journal/" in path)

    assert homes.as_b("journal").exit_code == 0
    assert entries_read() == 2  # cfa_added, added
    assert homes.as_b("journal").exit_code == 0
    assert entries_read() == 2  # nothing new: nothing read
    assert homes.as_a("rotate", "atlas", "--cfa", SIRET_A, "--yes", input=KEY_2).exit_code == 0
    before = entries_read()
    assert "rotated" in homes.as_b("journal", "--json").stdout
    assert entries_read() == before + 1


def test_a_database_of_schema_4_gains_the_team_cache(isolated_home: Path) -> None:
    """Migration 5 on a file of the previous cfakey: CFAs and keys kept, all local."""
    import sqlite3

    from cfakey.metadata import MIGRATIONS, Metadata, _split_sql
    from cfakey.paths import Paths

    path = Paths.from_env().metadata_db
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as db:
        for number in (1, 2, 3, 4):
            for statement in _split_sql(MIGRATIONS[number]):
                db.execute(statement)
        db.execute("PRAGMA user_version = 4")
        db.execute(
            "INSERT INTO cfa VALUES (?, 'CFA Ancien', NULL, 1, '2026-01-01T00:00:00+00:00')",
            (SIRET_A,),
        )
    with Metadata.open(Paths.from_env()) as metadata:
        assert [cfa.name for cfa in metadata.list_cfas()] == ["CFA Ancien"]
        assert not metadata.is_cfa_shared(SIRET_A)
        assert metadata.sync_state() is None
        assert metadata.team_interrupted() == []
        assert metadata.journal(team=True) == []


def test_the_team_journal_keeps_this_home_s_exports_and_cfa_changes_reach_b(
    homes: Homes,
) -> None:
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert homes.as_a("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY).exit_code == 0
    exported = homes.as_a("export", "--cfa", SIRET_A, "--format", "env")
    assert exported.exit_code == 0, exported.stderr
    journal = homes.as_a("journal", "--json", "--chronologique")
    actions = [entry["action"] for entry in json.loads(journal.stdout)]
    assert actions == ["cfa_added", "added", "exported"]  # each once, the export kept
    assert homes.as_a("cfa", "edit", SIRET_A, "--nom", "CFA renommé").exit_code == 0
    (cfa,) = json.loads(homes.as_b("cfa", "list", "--json").stdout)
    assert (cfa["siret"], cfa["name"], cfa["keys"]) == (SIRET_A, "CFA renommé", 1)
    removed = homes.as_a("cfa", "remove", SIRET_A, "--force")
    assert removed.exit_code == 0, removed.stderr
    assert json.loads(homes.as_b("cfa", "list", "--json").stdout) == []
    assert _listed(homes.as_b("list", "--json")) == {}


def test_doctor_with_the_engine_unreachable_still_checks_the_database(
    monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    monkeypatch.setenv("CFAKEY_STORE", "openbao")
    monkeypatch.setenv("BAO_ADDR", "http://127.0.0.1:9")
    monkeypatch.setenv("BAO_TOKEN", "jeton-de-test")
    doctor = run_cli("doctor")
    out = doctor.stdout + doctor.stderr
    assert "intégrité  : vérifiée, sans anomalie" in out
    assert (
        "Magasin de clés inutilisable : Le coffre OpenBao http://127.0.0.1:9 est injoignable" in out
    )
    assert "jeton-de-test" not in out


def test_cfa_add_of_a_cfa_the_engine_has_takes_it_as_it_is(
    homes: Homes, openbao: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A staff home, which may not list every CFA, registers its CFA once: the team's
    record is taken, never overwritten, and its keys appear."""
    from tests.test_openbao_policies import DOC_SIRET, token_for

    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA des Tests").exit_code == 0
    assert homes.as_a("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY).exit_code == 0
    journalled = len(openbao.journal(SIRET_A))
    monkeypatch.setenv("BAO_TOKEN", token_for(openbao, f"cfakey-cfa-{DOC_SIRET}", SIRET_A))
    assert _listed(homes.as_b("list", "--json")) == {}  # B knows no SIRET yet
    taken = homes.as_b("cfa", "add", SIRET_A, "--nom", "Autre nom")
    assert taken.exit_code == 0, taken.stderr
    assert "CFA des Tests" in taken.stderr
    assert "Le coffre de l'équipe connaissait déjà ce CFA" in taken.stderr  # not silently
    assert openbao.metadata(f"cfakey/cfas/{SIRET_A}")["custom_metadata"]["name"] == "CFA des Tests"
    assert len(openbao.journal(SIRET_A)) == journalled  # nothing written to the engine
    assert "atlas" in _listed(homes.as_b("list", "--json"))


@pytest.mark.slow
def test_two_teammates_rotating_at_once_one_wins_the_other_is_told_exit_6(
    homes: Homes, openbao: OpenBao
) -> None:
    """B's rotation starts (B reads the catalog, then waits for the key at the prompt),
    A rotates meanwhile: B's write is refused (exit 6), A's key stays, nothing half-written."""
    import os
    import sys

    pexpect = pytest.importorskip("pexpect")
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA des Tests").exit_code == 0
    added = homes.as_a("add", "atlas", "--yes", "--expires", "2027-03-31", input=KEY)
    assert added.exit_code == 0, added.stderr
    env = {**os.environ, "CFAKEY_HOME": str(homes.b), "TERM": "dumb"}
    bob = pexpect.spawn(
        sys.executable,
        ["-m", "cfakey", "rotate", "atlas", "--yes", "--no-interactive", "--expires", "2028-01-31"],
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    bob.expect("Collez la clé \\(saisie masquée\\) : ")
    rotated = homes.as_a("rotate", "atlas", "--yes", "--expires", "2028-02-29", input=KEY_2)
    assert rotated.exit_code == 0, rotated.stderr
    bob.sendline("Cle+de+bob/0123456789abcdef==")
    bob.expect(pexpect.EOF)
    said = bob.before
    bob.close()
    assert bob.exitstatus == ExitCode.ALREADY_EXISTS, said
    assert "a changé entre-temps dans le coffre partagé" in said
    assert "Cle+de+bob" not in said
    assert KEY_2 not in said
    held = openbao.read(f"cfakey/keys/{SIRET_A}/atlas") or {}
    assert held["data"] == {"secret": KEY_2}  # A's rotation is kept
    assert held["metadata"]["version"] == 2
    assert [entry["action"] for entry in openbao.journal(SIRET_A)] == [
        "cfa_added",
        "added",
        "rotated",
    ]
    seen = _listed(homes.as_b("list", "--json"))["atlas"]
    assert seen["fingerprint"] == fingerprint(KEY_2)


def test_what_anyone_wrote_in_the_engine_reaches_no_terminal_unchecked(
    homes: Homes, openbao: OpenBao
) -> None:
    """Whoever holds a token may write the engine: control characters, escape sequences
    and names cfakey never writes are neutralised or left out before any output."""
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA des Tests").exit_code == 0
    added = homes.as_a("add", "atlas", "--yes", "--expires", "2027-03-31", input=KEY)
    assert added.exit_code == 0, added.stderr
    hostile = "\x1b]0;pirate\x07\x1b[2J\nligne\rcachée\x00"
    # custom_metadata: the engine itself refuses control characters, not length.
    long_text = "pirate " * 70
    api, mount = openbao.server.request, openbao.mount
    described = openbao.metadata(f"cfakey/keys/{SIRET_A}/atlas")["custom_metadata"]
    described |= {"os_user": long_text, "h1": f"2027-01-01T00:00:00+00:00|{'z' * 12}|x"}
    api("POST", f"{mount}/metadata/cfakey/keys/{SIRET_A}/atlas", {"custom_metadata": described})
    cfa = {"name": long_text, "uai": "pas-un-uai", "created_at": "2026-01-01T00:00:00+00:00"}
    api("POST", f"{mount}/metadata/cfakey/cfas/{SIRET_A}", {"custom_metadata": cfa})
    entry = {"at": "2026-11-30T10:00:00+00:00", "user": hostile, "siret": SIRET_A}
    entry |= {"opco_id": "atlas", "action": hostile, "detail": hostile * 200}
    api("POST", f"{mount}/data/cfakey/journal/{SIRET_A}/20261130T100000Z-aa", {"data": entry})
    for slot in ("12345/atlas", f"{SIRET_A}/ATLAS;rm"):  # not cfakey's names
        api("POST", f"{mount}/data/cfakey/keys/{slot}", {"data": {"secret": "x"}})
        api("POST", f"{mount}/metadata/cfakey/keys/{slot}", {"custom_metadata": described})
    api("POST", f"{mount}/data/cfakey/generation", {"data": {"n": "hostile"}})
    outputs = [
        homes.as_b("list"),
        homes.as_b("list", "--json"),
        homes.as_b("check"),
        homes.as_b("journal"),
        homes.as_b("journal", "--json"),
        homes.as_b("show", "atlas", "--historique"),
        homes.as_b("show", "atlas", "--historique", "--json"),
        homes.as_b("calendar"),
        homes.as_b("metrics"),
    ]
    for result in outputs:
        assert result.exit_code in (0, 1), result.stderr
        text = result.stdout + result.stderr
        assert "\x1b" not in text
        assert "\x07" not in text
        assert "\x00" not in text
        assert "ATLAS;rm" not in text
        assert "12345" not in text
        assert long_text not in text
    rows = json.loads(outputs[1].stdout)
    assert [(row["cfa"], row["opco"]) for row in rows] == [(SIRET_A, "atlas")]
    assert rows[0]["cfa_name"] == SIRET_A  # an unusable name: the SIRET names the CFA
    journal = json.loads(outputs[4].stdout)
    odd = [line for line in journal if line["action"] == "inconnu"]
    assert len(odd) == 1
    assert len(odd[0]["detail"]) <= team_sync.TEXT_MAX
    versions = json.loads(outputs[6].stdout)["versions"]
    assert versions[-1]["fingerprint"] is None  # « zzz… » is no fingerprint


KEY_B = "Cle+de+bob/fedcba9876543210=="


@pytest.mark.slow
@pytest.mark.parametrize(
    ("a_does", "b_does"),
    [
        (("rotate", "atlas", "--yes"), ("rotate", "atlas", "--yes")),
        (("add", "sante", "--yes"), ("add", "sante", "--yes")),
        (("remove", "atlas", "--yes"), ("rotate", "atlas", "--yes")),
    ],
    ids=["rotate-rotate", "add-add", "remove-rotate"],
)
def test_a_teammate_s_write_between_my_read_and_my_write_is_kept_and_i_am_told(
    homes: Homes,
    openbao: OpenBao,
    monkeypatch: pytest.MonkeyPatch,
    a_does: tuple[str, ...],
    b_does: tuple[str, ...],
) -> None:
    """A reads the key, B's whole command lands, then A's check-and-set is refused: A is
    told (exit 6) and B's key stays in the engine, described, with no intent left over.
    Before the fix A's rollback put the old key back (or deleted B's) over B's write."""
    import os
    import subprocess
    import sys

    from cfakey.stores.openbao_store import OpenBaoStore

    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA des Tests").exit_code == 0
    assert homes.as_a("add", "atlas", "--yes", input=KEY).exit_code == 0
    assert homes.as_b("list").exit_code == 0  # B knows A's key
    opco = a_does[1]
    real_put, real_delete = OpenBaoStore.put, OpenBaoStore.delete
    teammate = {**os.environ, "CFAKEY_HOME": str(homes.b)}
    landed: list[int] = []

    def b_first() -> None:
        if not landed:
            done = subprocess.run(
                [sys.executable, "-m", "cfakey", *b_does],
                input=KEY_B,
                env=teammate,
                capture_output=True,
                text=True,
                check=False,
            )
            landed.append(done.returncode)

    def put(store: OpenBaoStore, entry: str, secret: str) -> None:
        b_first()
        real_put(store, entry, secret)

    def delete(store: OpenBaoStore, entry: str) -> bool:
        b_first()
        return real_delete(store, entry)

    monkeypatch.setattr(OpenBaoStore, "put", put)
    monkeypatch.setattr(OpenBaoStore, "delete", delete)
    mine = homes.as_a(*a_does, input="Cle+d+alice+perdue/0123456789==")
    monkeypatch.setattr(OpenBaoStore, "put", real_put)
    monkeypatch.setattr(OpenBaoStore, "delete", real_delete)
    assert landed == [0]
    assert mine.exit_code == ExitCode.ALREADY_EXISTS, mine.stderr
    assert "a changé entre-temps" in mine.stderr
    assert "perdue" not in mine.stdout + mine.stderr
    held = openbao.read(f"cfakey/keys/{SIRET_A}/{opco}") or {}
    assert held["data"] == {"secret": KEY_B}  # B's write survives A's refusal
    described = openbao.metadata(f"cfakey/keys/{SIRET_A}/{opco}")["custom_metadata"]
    assert described["fingerprint"] == fingerprint(KEY_B)
    assert described["version"] == str(held["metadata"]["version"])
    for run in (homes.as_a, homes.as_b):
        seen = _listed(run("list", "--json"))
        assert seen[opco]["fingerprint"] == fingerprint(KEY_B)
    # Nothing left stuck: A's next rotation starts from B's key and succeeds.
    again = homes.as_a("rotate", opco, "--yes", input=KEY_2)
    assert again.exit_code == 0, again.stderr
    assert (openbao.read(f"cfakey/keys/{SIRET_A}/{opco}") or {})["data"] == {"secret": KEY_2}


def test_a_write_killed_before_a_teammate_s_is_resolved_in_their_favour(
    homes: Homes, openbao: OpenBao
) -> None:
    """A's intent was recorded, A was killed, B rotated since: A's next command drops the
    intent and says that B's key is kept (not « une clé inattendue … doctor »)."""
    import dataclasses
    from datetime import UTC, datetime

    from cfakey.metadata import Metadata, PendingWrite
    from cfakey.paths import Paths

    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA des Tests").exit_code == 0
    assert homes.as_a("add", "atlas", "--yes", input=KEY).exit_code == 0
    home_a = Metadata.open(Paths.from_env({"CFAKEY_HOME": str(homes.a)}))
    record = home_a.get_key(SIRET_A, "atlas")
    assert record is not None
    lost = dataclasses.replace(
        record,
        fingerprint=fingerprint("Cle+jamais+ecrite/0123456789=="),
        stored_at=datetime(2026, 11, 30, 9, tzinfo=UTC),
    )
    intent = PendingWrite(SIRET_A, "atlas", "rotated", fingerprint(KEY), lost, "openbao", pid=1)
    with home_a.transaction():
        home_a.add_pending(intent)
    home_a.close()
    assert homes.as_b("rotate", "atlas", "--yes", input=KEY_2).exit_code == 0
    shown = homes.as_a("show", "atlas", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert "un collègue a écrit depuis une autre clé dans le coffre partagé" in shown.stderr
    assert "inattendue" not in shown.stderr
    assert json.loads(shown.stdout)["fingerprint"] == fingerprint(KEY_2)
    assert (openbao.read(f"cfakey/keys/{SIRET_A}/atlas") or {})["data"] == {"secret": KEY_2}
    assert homes.as_a("doctor").exit_code == 0


# The cache, per CFA and per reader (issue 12, round 5) ---------------------------------


def _two_cfas_with_a_key_each(homes: Homes) -> None:
    for siret, name in ((SIRET_A, "CFA des Tests"), (SIRET_B, "CFA voisin")):
        assert homes.as_a("cfa", "add", siret, "--nom", name).exit_code == 0
        added = homes.as_a("add", "atlas", "--cfa", siret, "--yes", input=KEY)
        assert added.exit_code == 0, added.stderr


def test_after_a_write_to_one_cfa_a_reader_reads_only_that_cfa_again(
    homes: Homes, monkeypatch: pytest.MonkeyPatch, openbao: OpenBao
) -> None:
    """Right after A's rotation in one CFA, B's list reads that CFA's keys again, never
    the other CFA's; a CFA removed meanwhile is gone from B's list and cfa list."""
    _two_cfas_with_a_key_each(homes)
    monkeypatch.setattr(openbao_catalog, "LEASE_SECONDS", -3)  # as if the lease had passed
    assert set(_listed(homes.as_b("list", "--json"))) == {"atlas"}
    counter = RequestCounter(monkeypatch)
    assert homes.as_a("rotate", "atlas", "--cfa", SIRET_A, "--yes", input=KEY_2).exit_code == 0
    start = len(counter.paths)
    rows = json.loads(homes.as_b("list", "--json").stdout)
    assert {(r["cfa"], r["fingerprint"]) for r in rows} == {
        (SIRET_A, fingerprint(KEY_2)),
        (SIRET_B, fingerprint(KEY)),
    }
    read = [p for p in counter.paths[start:] if "/metadata/cfakey/keys/" in p]
    assert [p for p in read if SIRET_B in p] == []  # the other CFA: its generation only
    assert [p for p in read if p.endswith(f"keys/{SIRET_A}/atlas")] != []
    # A removes CFA B (its key, then its record): B's next commands forget it.
    assert homes.as_a("remove", "atlas", "--cfa", SIRET_B, "--yes").exit_code == 0
    assert homes.as_a("cfa", "remove", SIRET_B).exit_code == 0
    rows = json.loads(homes.as_b("list", "--json").stdout)
    assert [(r["cfa"], r["fingerprint"]) for r in rows] == [(SIRET_A, fingerprint(KEY_2))]
    assert SIRET_B not in homes.as_b("cfa", "list").stdout


def _staff_after_root(homes: Homes, openbao: OpenBao, monkeypatch: pytest.MonkeyPatch) -> None:
    """B's home filled with the root token (two CFAs), then B uses CFA A's staff token."""
    from tests.test_openbao_policies import DOC_SIRET, token_for

    _two_cfas_with_a_key_each(homes)
    assert len(_listed(homes.as_b("list", "--json"))) == 1  # atlas, twice, by (cfa, opco)
    monkeypatch.setenv("BAO_TOKEN", token_for(openbao, f"cfakey-cfa-{DOC_SIRET}", SIRET_A))


HIDDEN = f"1 CFA connu(s) que ce jeton ne peut pas lire ({SIRET_B})"


def test_a_token_limited_to_one_cfa_keeps_saying_what_it_cannot_read(
    homes: Homes, openbao: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    _staff_after_root(homes, openbao, monkeypatch)
    for _ in range(2):  # the first command resyncs, the next ones still say it
        listed = homes.as_b("list", "--json")
        assert HIDDEN in " ".join(listed.stderr.split())
        assert [row["cfa"] for row in json.loads(listed.stdout)] == [SIRET_A]
        checked = json.loads(homes.as_b("check", "--json").stdout)
        assert (checked["checked"], checked["unreadable_cfas"]) == (1, [SIRET_B])
    assert SIRET_B in homes.as_b("cfa", "list").stdout  # still known
    for reminder in (("calendar",), ("metrics",)):  # the reminders say it too
        reminded = homes.as_b(*reminder)
        assert reminded.exit_code == 0, reminded.stderr
        assert HIDDEN in " ".join(reminded.stderr.split())
        assert SIRET_B not in reminded.stdout
    journal = homes.as_b("journal")
    assert "1 CFA connu(s) dont ce jeton ne peut pas lire le journal" in journal.stderr
    for command in (
        ("show", "atlas", "--cfa", SIRET_B),
        ("list", "--cfa", SIRET_B),
        ("rotate", "atlas", "--cfa", SIRET_B, "--yes"),
        ("remove", "atlas", "--cfa", SIRET_B, "--yes"),
        ("export", "--cfa", SIRET_B, "--format", "env", "--output", str(homes.b / "x.env")),
    ):
        refused = homes.as_b(*command, input=KEY_2)
        assert refused.exit_code == ExitCode.STORE_UNAVAILABLE, (command, refused.stderr)
        text = " ".join(refused.stderr.split())
        assert f"refuse à ce jeton l'accès aux clés du CFA {SIRET_B} (403)" in text
        assert KEY not in refused.stdout + refused.stderr
    assert openbao.read(f"cfakey/keys/{SIRET_B}/atlas") is not None  # nothing removed
    assert not (homes.b / "x.env").exists()


def test_the_cache_belongs_to_the_token_that_filled_it(
    homes: Homes, openbao: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Filled with the root token, then read with CFA A's staff token after the lease:
    never trusted (another reader), so no key of CFA B is shown, and export --toutes-cfa
    exports CFA A and says CFA B is hidden."""
    monkeypatch.setattr(openbao_catalog, "LEASE_SECONDS", -3)  # trusted, were it the same token
    _staff_after_root(homes, openbao, monkeypatch)
    listed = homes.as_b("list", "--json")
    assert [row["cfa"] for row in json.loads(listed.stdout)] == [SIRET_A]
    assert HIDDEN in " ".join(listed.stderr.split())
    target = homes.b / "toutes.json"
    export = homes.as_b("export", "--toutes-cfa", "--format", "json", "--output", str(target))
    assert export.exit_code == 0, export.stderr
    assert HIDDEN in " ".join(export.stderr.split())
    assert [k["cfa"]["siret"] for k in json.loads(target.read_text())["keys"]] == [SIRET_A]
    from tests.openbao import ROOT_TOKEN

    for database in homes.b.rglob("*.db"):  # a fingerprint of the token, never the token
        assert ROOT_TOKEN.encode() not in database.read_bytes()


def test_a_damaged_config_never_shows_the_team_cache_as_current(homes: Homes) -> None:
    """Without the config nothing says the store is shared: the cache is not shown."""
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA des Tests").exit_code == 0
    assert homes.as_a("add", "atlas", "--yes", input=KEY).exit_code == 0
    config = homes.a / "config.json"
    config.write_text(config.read_text(encoding="utf-8")[:-3], encoding="utf-8")
    for command in (("list",), ("cfa", "list"), ("journal",)):
        shown = homes.as_a(*command)
        assert shown.exit_code == ExitCode.DATA_CORRUPTED, (command, shown.stdout)
        assert "config.json invalide" in shown.stderr
        assert shown.stdout == ""


def test_a_history_name_with_non_ascii_digits_in_the_engine_is_ignored(
    homes: Homes, openbao: OpenBao
) -> None:
    """« h² » passes str.isdigit() but not int(): the next rotation must not crash."""
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA des Tests").exit_code == 0
    assert homes.as_a("add", "atlas", "--yes", input=KEY).exit_code == 0
    path = f"{openbao.mount}/metadata/cfakey/keys/{SIRET_A}/atlas"
    described = openbao.metadata(f"cfakey/keys/{SIRET_A}/atlas")["custom_metadata"]
    openbao.server.request("POST", path, {"custom_metadata": {**described, "h²": "x"}})
    rotated = homes.as_b("rotate", "atlas", "--yes", input=KEY_2)
    assert rotated.exit_code == 0, rotated.stderr
    assert "h²" not in openbao.metadata(f"cfakey/keys/{SIRET_A}/atlas")["custom_metadata"]


#: A's command, B's command, what A is told (exit code, words), what the engine keeps.
_PROMPT_RACES = {
    "rotate-while-removed": (
        ("rotate", "atlas"),
        ("remove", "atlas", "--yes"),
        (ExitCode.ALREADY_EXISTS, "a été supprimée entre-temps"),
        None,
    ),
    "rotate-while-rotated": (
        ("rotate", "atlas"),
        ("rotate", "atlas", "--yes"),
        (ExitCode.ALREADY_EXISTS, "a changé entre-temps"),
        KEY_B,
    ),
    "add-while-added": (
        ("add", "sante"),
        ("add", "sante", "--yes", "--expires", "2028-02-29"),
        (ExitCode.ALREADY_EXISTS, "a été enregistrée entre-temps"),
        KEY_B,
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("refreshed", [False, True], ids=["alone", "home-refreshed"])
@pytest.mark.parametrize("race", _PROMPT_RACES)
def test_a_teammate_s_change_while_i_am_at_the_prompt_is_never_undone(
    homes: Homes, openbao: OpenBao, race: str, refreshed: bool
) -> None:
    """A's command starts (catalog read), A sits at the key prompt, B's remove, rotate or
    add lands: A's key is refused (exit 6) and B's change stays. Before, A's write went
    through, bringing a removed key back or overwriting B's new one, with exit 0; and when
    another command of A's home refreshed its rows meanwhile (``refreshed``: cron's
    check, a list in another terminal), A's command compared the engine with those."""
    import os
    import sys

    pexpect = pytest.importorskip("pexpect")
    a_does, b_does, (code, said), engine_holds = _PROMPT_RACES[race]
    if refreshed and race == "rotate-while-removed":  # A now sees the key is gone
        code, said = ExitCode.NOT_FOUND, "rien à renouveler"
    assert homes.as_a("cfa", "add", SIRET_A, "--nom", "CFA des Tests").exit_code == 0
    assert homes.as_a("add", "atlas", "--yes", "--expires", "2027-03-31", input=KEY).exit_code == 0
    env = {**os.environ, "CFAKEY_HOME": str(homes.a), "TERM": "dumb"}
    alice = pexpect.spawn(
        sys.executable,
        ["-m", "cfakey", *a_does, "--yes", "--no-interactive", "--expires", "2028-01-31"],
        env=env,
        encoding="utf-8",
        timeout=30,
    )
    alice.expect("Collez la clé \\(saisie masquée\\) : ")
    b_did = homes.as_b(*b_does, input=KEY_B)
    assert b_did.exit_code == 0, b_did.stderr
    if refreshed:
        assert homes.as_a("check").exit_code in (0, 1, 2)
    alice.sendline("Cle+d+alice+trop+tard/0123456789==")
    alice.expect(pexpect.EOF)
    transcript = alice.before
    alice.close()
    assert alice.exitstatus == code, transcript
    assert said in transcript
    assert "trop+tard" not in transcript
    held = openbao.read(f"cfakey/keys/{SIRET_A}/{a_does[1]}")
    assert (held or {}).get("data") == ({"secret": engine_holds} if engine_holds else None)
    seen = _listed(homes.as_a("list", "--json"))
    if engine_holds is None:
        assert a_does[1] not in seen
    else:
        assert seen[a_does[1]]["fingerprint"] == fingerprint(engine_holds)
