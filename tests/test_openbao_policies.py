"""The policies of docs/team.md, written to a real OpenBao server, with real tokens."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from cfakey.errors import ExitCode, StoreUnavailableError
from cfakey.stores.base import entry_name, fingerprint, oauth_entry_name
from tests.conftest import run_cli
from tests.openbao import OpenBao
from tests.store_contract import SIRET_A, SIRET_B
from tests.test_openbao_store import open_store

DOC = Path(__file__).resolve().parents[1] / "docs" / "team.md"
#: The SIRET the page's examples use.
DOC_SIRET = "13002526500013"
KEY = "Cle+du+personnel/0123456789abcdef="


def documented_policy(name: str, bao: OpenBao, siret: str = SIRET_A) -> str:
    """The HCL block of docs/team.md headed ``# politique : NAME``, for this test's mount."""
    blocks = re.findall(r"```hcl\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    (block,) = [b for b in blocks if b.startswith(f"# politique : {name}\n")]
    block = block.replace('"secret/', f'"{bao.mount}/').replace(
        'mounts/secret"', f'mounts/{bao.mount}"'
    )
    return block.replace(DOC_SIRET, siret)


def token_for(bao: OpenBao, name: str, siret: str = SIRET_A) -> str:
    return bao.server.token(f"{bao.mount}-{name}", documented_policy(name, bao, siret))


def _as(home: Path, token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The next commands run in ``home`` with ``token``."""
    monkeypatch.setenv("CFAKEY_HOME", str(home))
    monkeypatch.setenv("BAO_TOKEN", token)


def _admin_adds_a_key_for(bao: OpenBao, monkeypatch: pytest.MonkeyPatch, home: Path) -> None:
    """The vendor's administrator (own home, own token) stores a key of SIRET_B."""
    _as(home, token_for(bao, "cfakey-admin"), monkeypatch)
    monkeypatch.setenv("CFAKEY_STORE", "openbao")
    use = ("store", "use", "openbao", "--url", bao.url, "--mount", bao.mount)
    assert run_cli(*use).exit_code == 0
    assert run_cli("cfa", "add", SIRET_B, "--nom", "CFA voisin").exit_code == 0
    added = run_cli("add", "akto", "--cfa", SIRET_B, "--yes", input="cle-du-cfa-voisin")
    assert added.exit_code == 0, added.stderr


def test_the_cfa_staff_token_reads_and_writes_its_siret_and_gets_a_french_403_elsewhere(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    _admin_adds_a_key_for(openbao, monkeypatch, isolated_home.parent / "admin")
    staff = token_for(openbao, f"cfakey-cfa-{DOC_SIRET}")
    _as(isolated_home, staff, monkeypatch)
    monkeypatch.setenv("CFAKEY_STORE", "openbao")
    monkeypatch.setenv("BAO_ADDR", openbao.url)
    use = ("store", "use", "openbao", "--url", openbao.url, "--mount", openbao.mount)
    assert run_cli(*use).exit_code == 0
    assert run_cli("cfa", "add", SIRET_A, "--nom", f"CFA {SIRET_A}").exit_code == 0
    # Another CFA's record is not this token's to write: refused, registered nowhere.
    other = run_cli("cfa", "add", SIRET_B, "--nom", "CFA voisin")
    assert other.exit_code == ExitCode.STORE_UNAVAILABLE
    # (the first write refused is that CFA's generation, before its record)
    assert f"cfakey/generations/{SIRET_B} (403)" in other.stderr
    assert run_cli("--store", "file", "cfa", "add", SIRET_B, "--nom", "CFA voisin").exit_code == 0
    added = run_cli("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY)
    assert added.exit_code == 0, added.stderr
    shown = run_cli("show", "atlas", "--cfa", SIRET_A, "--reveal")
    assert shown.exit_code == 0, shown.stderr
    assert KEY in shown.stdout
    rotated = run_cli("rotate", "atlas", "--cfa", SIRET_A, "--yes", input=KEY + "2")
    assert rotated.exit_code == 0, rotated.stderr
    # The key asked for is in a CFA this token may not read: a clear French refusal.
    for refused in (
        run_cli("add", "atlas", "--cfa", SIRET_B, "--yes", input="cle-d-un-autre-cfa"),
        run_cli("show", "akto", "--cfa", SIRET_B),
        run_cli("rotate", "akto", "--cfa", SIRET_B, "--yes", input="cle-d-un-autre-cfa"),
        run_cli("export", "--cfa", SIRET_B, "--format", "env"),
    ):
        assert refused.exit_code == ExitCode.STORE_UNAVAILABLE, refused.stderr
        assert f"refuse à ce jeton l'accès aux clés du CFA {SIRET_B} (403)" in refused.stderr
        assert "cle-d-un-autre-cfa" not in refused.stderr + refused.stdout
        assert staff not in refused.stderr + refused.stdout
    assert openbao.read(f"cfakey/keys/{SIRET_B}/atlas") is None  # nothing written
    assert (openbao.read(f"cfakey/keys/{SIRET_B}/akto") or {})["data"] == {
        "secret": "cle-du-cfa-voisin"
    }
    # The overview shows what this token reads, and says what it cannot (not an error).
    hidden = f"1 CFA connu(s) que ce jeton ne peut pas lire ({SIRET_B})"
    listed = run_cli("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert [row["opco"] for row in json.loads(listed.stdout)] == ["atlas"]
    assert hidden in listed.stderr
    checked = run_cli("check", "--json")
    assert json.loads(checked.stdout)["unreadable_cfas"] == [SIRET_B]
    assert json.loads(checked.stdout)["checked"] == 1
    assert hidden in run_cli("check").stdout
    exported = run_cli("export", "--toutes-cfa", "--format", "env")
    assert exported.exit_code == 0, exported.stderr
    assert KEY + "2" in exported.stdout
    assert "cle-du-cfa-voisin" not in exported.stdout
    assert hidden in exported.stderr
    journal = run_cli("journal", "--json")
    assert journal.exit_code == 0, journal.stderr
    assert {entry["cfa"] for entry in json.loads(journal.stdout)} == {SIRET_A}


def test_the_vendor_administrator_reaches_every_cfa_and_the_oauth_secrets(
    openbao: OpenBao,
) -> None:
    store = open_store(openbao, token_for(openbao, "cfakey-admin"))
    for siret in (SIRET_A, SIRET_B):
        store.put(entry_name(siret, "akto"), f"cle-{siret}")
    store.put(oauth_entry_name("akto"), "secret-client")
    assert store.get(entry_name(SIRET_B, "akto")) == f"cle-{SIRET_B}"
    assert store.entries() == sorted(
        [entry_name(SIRET_A, "akto"), entry_name(SIRET_B, "akto"), oauth_entry_name("akto")]
    )
    assert store.delete(entry_name(SIRET_A, "akto"))


def test_the_monitor_lists_metadata_and_never_reads_a_key(openbao: OpenBao) -> None:
    open_store(openbao).put(entry_name(SIRET_A, "atlas"), KEY)
    token = token_for(openbao, "cfakey-supervision")
    monitor = open_store(openbao, token)
    assert monitor.entries() == [entry_name(SIRET_A, "atlas")]
    with pytest.raises(StoreUnavailableError, match=r"refuse l'accès .*\(403\)") as refused:
        monitor.get(entry_name(SIRET_A, "atlas"))
    assert KEY not in refused.value.message
    versions = openbao.server.request(
        "GET", f"{openbao.mount}/metadata/cfakey/keys/{SIRET_A}/atlas", token=token
    )
    assert versions["data"]["current_version"] == 1


def test_the_monitor_runs_list_and_check_from_the_metadata_alone(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    _admin_adds_a_key_for(openbao, monkeypatch, isolated_home.parent / "admin")
    _as(isolated_home, token_for(openbao, "cfakey-supervision"), monkeypatch)
    monkeypatch.setenv("CFAKEY_STORE", "openbao")
    monkeypatch.setenv("BAO_ADDR", openbao.url)
    assert run_cli("config", "set", "openbao.mount", openbao.mount).exit_code == 0
    listed = run_cli("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert (row["cfa"], row["cfa_name"], row["opco"]) == (SIRET_B, "CFA voisin", "akto")
    assert row["fingerprint"] == fingerprint("cle-du-cfa-voisin")
    checked = run_cli("check", "--json")
    assert json.loads(checked.stdout)["checked"] == 1
    assert "unreadable_cfas" not in json.loads(checked.stdout)
    refused = run_cli("show", "akto", "--cfa", SIRET_B, "--reveal")
    assert refused.exit_code == ExitCode.STORE_UNAVAILABLE
    assert "(403)" in refused.stderr
    assert "cle-du-cfa-voisin" not in refused.stdout + refused.stderr
    # Its cache is validated from metadata reads alone: the global generation, then (after
    # a write) each CFA's generation, and only the changed CFA's keys are read again.
    from cfakey.stores import openbao_catalog
    from tests.test_team_catalog import RequestCounter

    monkeypatch.setattr(openbao_catalog, "LEASE_SECONDS", -3)  # as if the lease had passed
    assert run_cli("list", "--json").exit_code == 0
    counter = RequestCounter(monkeypatch)
    assert run_cli("list", "--json").exit_code == 0
    assert [p for p in counter.paths if "/cfakey/" in p] == [
        f"/v1/{openbao.mount}/metadata/cfakey/generation"
    ]
    monitor = os.environ["BAO_TOKEN"]  # the same token: the same cache
    _as(isolated_home.parent / "admin", token_for(openbao, "cfakey-admin"), monkeypatch)
    rotated = run_cli("rotate", "akto", "--cfa", SIRET_B, "--yes", input="cle-neuve-du-voisin")
    assert rotated.exit_code == 0, rotated.stderr
    _as(isolated_home, monitor, monkeypatch)
    start = len(counter.paths)
    (row,) = json.loads(run_cli("list", "--json").stdout)
    assert row["fingerprint"] == fingerprint("cle-neuve-du-voisin")
    read = [p for p in counter.paths[start:] if "/cfakey/" in p]
    assert all("/data/" not in p for p in read)
    assert f"/v1/{openbao.mount}/metadata/cfakey/generations/{SIRET_B}" in read
    # The journal's entries are data: this token cannot read them, and is told so.
    for command in (("journal",), ("journal", "--json")):
        journal = run_cli(*command)
        assert journal.exit_code == ExitCode.STORE_UNAVAILABLE, journal.stderr
        text = " ".join(journal.stderr.split())
        assert "refuse à ce jeton la lecture de 3 entrée(s) du journal (403)" in text
        assert "Journal vide" not in text
        assert journal.stdout == ""


def test_even_the_administrator_cannot_rewrite_or_erase_the_journal(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    import urllib.error

    _admin_adds_a_key_for(openbao, monkeypatch, isolated_home.parent / "admin")
    admin = token_for(openbao, "cfakey-admin")
    name = sorted(openbao.listed(f"cfakey/journal/{SIRET_B}"))[0]
    path = f"{openbao.mount}/data/cfakey/journal/{SIRET_B}/{name}"
    for method, body in (("POST", {"data": {"action": "falsifié"}}), ("DELETE", None)):
        with pytest.raises(urllib.error.HTTPError) as refused:
            openbao.server.request(method, path, body, token=admin)
        assert refused.value.code == 403
    with pytest.raises(urllib.error.HTTPError) as erased:
        openbao.server.request("DELETE", path.replace("/data/", "/metadata/"), None, token=admin)
    assert erased.value.code == 403
    assert openbao.journal(SIRET_B)[0]["action"] == "cfa_added"


def test_a_write_whose_metadata_is_refused_leaves_nothing_half_written(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    """A policy that lets the key be written but not described (an old policy): the add
    stops with the French 403, the key is taken back, nothing is left in the engine."""
    rules = documented_policy(f"cfakey-cfa-{DOC_SIRET}", openbao).replace(
        f'path "{openbao.mount}/metadata/cfakey/keys/{SIRET_A}/*" {{\n'
        '  capabilities = ["create", "read", "update", "list", "delete"]',
        f'path "{openbao.mount}/metadata/cfakey/keys/{SIRET_A}/*" {{\n'
        '  capabilities = ["read", "list", "delete"]',
    )
    assert '["read", "list", "delete"]' in rules
    _as(isolated_home, openbao.server.token(f"{openbao.mount}-ancienne", rules), monkeypatch)
    monkeypatch.setenv("CFAKEY_STORE", "openbao")
    monkeypatch.setenv("BAO_ADDR", openbao.url)
    assert run_cli("config", "set", "openbao.mount", openbao.mount).exit_code == 0
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    refused = run_cli("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY)
    assert refused.exit_code == ExitCode.STORE_UNAVAILABLE, refused.stderr
    assert f"metadata/cfakey/keys/{SIRET_A}/atlas (403)" in refused.stderr
    assert KEY not in refused.stdout + refused.stderr
    assert openbao.read(f"cfakey/keys/{SIRET_A}/atlas") is None  # taken back
    listed = run_cli("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert "interrompue" not in listed.stderr
