"""The policies of docs/team.md, written to a real OpenBao server, with real tokens."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cfakey.errors import ExitCode, StoreUnavailableError
from cfakey.stores.base import entry_name, oauth_entry_name
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


def test_the_cfa_staff_token_reads_and_writes_its_siret_and_gets_a_french_403_elsewhere(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    staff = token_for(openbao, f"cfakey-cfa-{DOC_SIRET}")
    openbao.use_with_cfakey(monkeypatch, staff)
    use = ("store", "use", "openbao", "--url", openbao.url, "--mount", openbao.mount)
    assert run_cli(*use).exit_code == 0
    for siret in (SIRET_A, SIRET_B):
        assert run_cli("cfa", "add", siret, "--nom", f"CFA {siret}").exit_code == 0
    added = run_cli("add", "atlas", "--cfa", SIRET_A, "--yes", input=KEY)
    assert added.exit_code == 0, added.stderr
    shown = run_cli("show", "atlas", "--cfa", SIRET_A, "--reveal")
    assert shown.exit_code == 0, shown.stderr
    assert KEY in shown.stdout
    rotated = run_cli("rotate", "atlas", "--cfa", SIRET_A, "--yes", input=KEY + "2")
    assert rotated.exit_code == 0, rotated.stderr
    refused = run_cli("add", "atlas", "--cfa", SIRET_B, "--yes", input="cle-d-un-autre-cfa")
    assert refused.exit_code == ExitCode.STORE_UNAVAILABLE
    assert (
        f"Le coffre OpenBao refuse l'accès à {openbao.mount}/data/cfakey/keys/{SIRET_B}/atlas (403)"
    ) in refused.stderr
    assert "cle-d-un-autre-cfa" not in refused.stderr + refused.stdout
    assert staff not in refused.stderr + refused.stdout
    assert openbao.read(f"cfakey/keys/{SIRET_B}/atlas") is None  # nothing written
    listed = run_cli("list", "--cfa", SIRET_B, "--json")
    assert '"atlas"' not in listed.stdout  # and no metadata for it either


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
