"""``cfakey store migrate`` between the encrypted file, the keyring and a real OpenBao server."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from cfakey.identifiers import with_check_digit
from cfakey.paths import Paths
from cfakey.stores.base import entry_name, fingerprint
from cfakey.stores.keyring_store import home_service
from tests.conftest import CliResult, run_cli
from tests.openbao import ROOT_TOKEN, BaoServer, OpenBao
from tests.secret_service import SecretServiceDaemon
from tests.store_contract import SIRET_A

KEY_ATLAS = "Migration+Atlas/0123456789abcdef="
KEY_AKTO = "Migration+Akto/fedcba9876543210="
OAUTH = "secret-client-oauth-de-l-editeur"


def _start_with_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """A home whose recorded store is the encrypted file (not forced by CFAKEY_STORE)."""
    monkeypatch.delenv("CFAKEY_STORE")
    assert run_cli("store", "use", "file").exit_code == 0
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert run_cli("add", "atlas", "--yes", input=KEY_ATLAS).exit_code == 0
    assert run_cli("add", "akto", "--yes", input=KEY_AKTO).exit_code == 0
    secret = "opco.akto.oauth.client_secret"
    assert run_cli("config", "set", secret, input=OAUTH + "\n").exit_code == 0


def _to_openbao(bao: OpenBao) -> CliResult:
    return run_cli("store", "migrate", "--to", "openbao", "--url", bao.url, "--mount", bao.mount)


def _shown_store(opco: str) -> str:
    shown = json.loads(run_cli("show", opco, "--json").stdout)
    return str(shown["store"])


def _exported() -> str:
    result = run_cli("export", "--format", "env")
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_file_to_openbao_and_back(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    _start_with_the_file(monkeypatch)
    monkeypatch.setenv("BAO_TOKEN", ROOT_TOKEN)
    result = _to_openbao(openbao)
    assert result.exit_code == 0, result.stderr
    assert "3 entrée(s) copiée(s)" in result.stderr
    assert (openbao.read(f"cfakey/keys/{SIRET_A}/atlas") or {})["data"] == {"secret": KEY_ATLAS}
    assert (openbao.read("cfakey/oauth-client/akto") or {})["data"] == {"secret": OAUTH}
    assert _shown_store("atlas") == _shown_store("akto") == "openbao"
    assert json.loads(run_cli("doctor", "--json").stdout)["store"] == "openbao"
    assert KEY_ATLAS in _exported()
    back = run_cli("store", "migrate", "--to", "file")
    assert back.exit_code == 0, back.stderr
    assert "3 déjà présente(s)" in back.stderr  # the file kept its copies: nothing deleted
    assert _shown_store("atlas") == "file"
    exported = _exported()
    assert KEY_ATLAS in exported
    assert KEY_AKTO in exported
    config = json.loads(Paths.from_env().config_file.read_text())
    assert config["store"] == "file"
    for output in (result, back):
        for secret in (KEY_ATLAS, KEY_AKTO, OAUTH, ROOT_TOKEN):
            assert secret not in output.stdout + output.stderr


def test_a_key_already_in_the_target_with_another_fingerprint_is_never_replaced(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    _start_with_the_file(monkeypatch)
    teammate = "Cle+d-un+collegue/0123456789abcdef="
    path = f"cfakey/keys/{SIRET_A}/atlas"
    openbao.server.request("POST", f"{openbao.mount}/data/{path}", {"data": {"secret": teammate}})
    monkeypatch.setenv("BAO_TOKEN", ROOT_TOKEN)
    result = _to_openbao(openbao)
    assert result.exit_code == ExitCode.ALREADY_EXISTS
    assert "existent déjà" in result.stderr
    assert entry_name(SIRET_A, "atlas") in result.stderr
    assert (openbao.read(path) or {})["data"] == {"secret": teammate}  # not replaced
    assert (openbao.read(f"cfakey/keys/{SIRET_A}/akto") or {})["data"] == {"secret": KEY_AKTO}
    assert json.loads(Paths.from_env().config_file.read_text())["store"] == "file"
    assert _shown_store("atlas") == "file"
    assert _shown_store("akto") == "openbao"  # copied and checked: recorded there
    for secret in (KEY_ATLAS, teammate):
        assert secret not in result.stdout + result.stderr
    assert fingerprint(KEY_ATLAS) != fingerprint(teammate)


def test_migrating_to_the_store_in_service_or_with_foreign_options_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _start_with_the_file(monkeypatch)
    same = run_cli("store", "migrate", "--to", "file")
    assert same.exit_code == ExitCode.USAGE
    assert "déjà le fichier chiffré" in same.stderr
    foreign = run_cli("store", "migrate", "--to", "keyring", "--url", "http://127.0.0.1:1")
    assert foreign.exit_code == ExitCode.USAGE
    assert "--url" in foreign.stderr
    assert json.loads(Paths.from_env().config_file.read_text())["store"] == "file"


def _many_keys(home: Path, count_cfas: int) -> int:
    """``count_cfas`` CFAs × every OPCO imported into the file store; the number of keys."""
    from cfakey.registry.loader import load_registry

    opcos = [opco.id for opco in load_registry(None, None)[0].opcos]
    lines = ["cfa,opco,key,expires,cfa_name"]
    for index in range(count_cfas):
        siret = with_check_digit(f"7{index:04d}00000000")
        key = f"Cle{index:03d}{{opco}}+Migration/0123456789="
        lines += [
            f"{siret},{opco},{key.format(opco=opco)},2028-01-31,CFA {index}" for opco in opcos
        ]
    sheet = home.parent / "cles.csv"
    sheet.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = run_cli("import", str(sheet), "--yes")
    assert result.exit_code == 0, result.stderr
    return len(lines) - 1


def _migrate_process(url: str, home: Path, mount: str = "secret") -> subprocess.Popen[str]:
    import os

    env = {**os.environ, "CFAKEY_HOME": str(home), "BAO_TOKEN": ROOT_TOKEN}
    command = [sys.executable, "-m", "cfakey", "store", "migrate", "--to", "openbao"]
    return subprocess.Popen(
        [*command, "--url", url, "--mount", mount],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_a_recorded_chunk(home: Path, process: subprocess.Popen[str]) -> None:
    """Until the metadata names the target for some keys (one chunk copied and checked)."""
    database = home / "cfakey.sqlite3"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as connection:
            moved = connection.execute("SELECT COUNT(*) FROM key WHERE store = 'openbao'")
            if moved.fetchone()[0] > 0:
                return
        time.sleep(0.005)
    pytest.fail("la migration n'a copié aucun lot avant de finir")


def _stores_recorded(home: Path) -> dict[str, int]:
    with sqlite3.connect(f"file:{home / 'cfakey.sqlite3'}?mode=ro", uri=True) as connection:
        rows = connection.execute("SELECT store, COUNT(*) FROM key GROUP BY store").fetchall()
    return dict(rows)


@pytest.mark.slow
def test_the_engine_dying_mid_migrate_is_a_french_error_and_a_rerun_completes(
    own_openbao: Callable[..., BaoServer],
    monkeypatch: pytest.MonkeyPatch,
    isolated_home: Path,
) -> None:
    server = own_openbao()
    monkeypatch.delenv("CFAKEY_STORE")
    assert run_cli("store", "use", "file").exit_code == 0
    total = _many_keys(isolated_home, 40)
    process = _migrate_process(server.url, isolated_home)
    _wait_for_a_recorded_chunk(isolated_home, process)
    server.stop()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == ExitCode.STORE_UNAVAILABLE, stderr
    assert "injoignable" in stderr
    assert "Traceback" not in stderr
    assert "Cle000" not in stderr
    recorded = _stores_recorded(isolated_home)
    assert sum(recorded.values()) == total  # nothing lost from the metadata
    assert 0 < recorded.get("openbao", 0) < total
    assert json.loads(Paths.from_env().config_file.read_text())["store"] == "file"
    # The engine comes back (empty: a dev server keeps nothing); the rerun copies again
    # from the file, which was never emptied, and only then switches.
    server.restart()
    rerun = _migrate_process(server.url, isolated_home)
    _, stderr = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, stderr
    assert _stores_recorded(isolated_home) == {"openbao": total}
    assert json.loads(Paths.from_env().config_file.read_text())["store"] == "openbao"
    monkeypatch.setenv("BAO_TOKEN", ROOT_TOKEN)
    check = json.loads(run_cli("doctor", "--json").stdout)
    assert check["keys_checked"] == total
    assert check["missing_secrets"] == []
    assert check["mismatched"] == []


@pytest.mark.slow
def test_a_killed_migrate_rerun_skips_what_is_there_and_completes(
    openbao_server: BaoServer,
    monkeypatch: pytest.MonkeyPatch,
    isolated_home: Path,
) -> None:
    monkeypatch.delenv("CFAKEY_STORE")
    assert run_cli("store", "use", "file").exit_code == 0
    total = _many_keys(isolated_home, 30)
    mount = f"t{uuid.uuid4().hex[:12]}"
    openbao_server.mount_kv(mount)
    try:
        bao = OpenBao(openbao_server, mount)
        process = _migrate_process(bao.url, isolated_home, mount=mount)
        _wait_for_a_recorded_chunk(isolated_home, process)
        process.kill()  # no clean-up at all
        process.communicate(timeout=30)
        moved = _stores_recorded(isolated_home).get("openbao", 0)
        assert 0 < moved < total
        rerun = _migrate_process(bao.url, isolated_home, mount=mount)
        _, stderr = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, stderr
        present = int(stderr.split(" déjà présente(s)")[0].rsplit(" ", 1)[1])
        assert present >= moved
        assert _stores_recorded(isolated_home) == {"openbao": total}
        monkeypatch.setenv("BAO_TOKEN", ROOT_TOKEN)
        monkeypatch.setenv("CFAKEY_STORE", "openbao")
        doctor = json.loads(run_cli("doctor", "--json").stdout)
        assert doctor["keys_checked"] == total
        assert doctor["mismatched"] == []
    finally:
        openbao_server.unmount(mount)


def test_keyring_to_openbao_and_back_to_the_keyring(
    secret_service: SecretServiceDaemon, openbao: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CFAKEY_STORE")
    assert run_cli("store", "use", "keyring").exit_code == 0
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert run_cli("add", "atlas", "--yes", input=KEY_ATLAS).exit_code == 0
    own = home_service(Paths.from_env().data_dir)
    monkeypatch.setenv("BAO_TOKEN", ROOT_TOKEN)
    result = _to_openbao(openbao)
    assert result.exit_code == 0, result.stderr
    assert (openbao.read(f"cfakey/keys/{SIRET_A}/atlas") or {})["data"] == {"secret": KEY_ATLAS}
    assert _shown_store("atlas") == "openbao"
    secret_service.clear(own)  # the keyring emptied meanwhile: the way back copies again
    back = run_cli("store", "migrate", "--to", "keyring")
    assert back.exit_code == 0, back.stderr
    assert "1 entrée(s) copiée(s)" in back.stderr
    assert secret_service.items(own) == {entry_name(SIRET_A, "atlas"): KEY_ATLAS}
    assert _shown_store("atlas") == "keyring"
    assert KEY_ATLAS in _exported()


def test_migrating_a_laptop_never_renames_the_team_s_cfa(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    """The team has CFA A as « CFA des Tests »; a laptop that calls it « CFA » migrates:
    the engine's record stays, the laptop takes the team's name, nothing is journalled
    as a CFA change in the engine."""
    team_home = isolated_home.parent / "equipe"
    monkeypatch.setenv("BAO_TOKEN", ROOT_TOKEN)
    monkeypatch.setenv("CFAKEY_HOME", str(team_home))
    use = ("store", "use", "openbao", "--url", openbao.url, "--mount", openbao.mount)
    assert run_cli(*use).exit_code == 0
    assert (
        run_cli("--store", "openbao", "cfa", "add", SIRET_A, "--nom", "CFA des Tests").exit_code
        == 0
    )
    journalled = openbao.journal(SIRET_A)
    monkeypatch.setenv("CFAKEY_HOME", str(isolated_home))
    _start_with_the_file(monkeypatch)
    result = _to_openbao(openbao)
    assert result.exit_code == 0, result.stderr
    record = openbao.metadata(f"cfakey/cfas/{SIRET_A}")
    assert record["custom_metadata"]["name"] == "CFA des Tests"
    assert record["current_version"] == 1  # never written again
    assert [e["action"] for e in openbao.journal(SIRET_A)][: len(journalled)] == [
        e["action"] for e in journalled
    ]
    assert "cfa_edited" not in [e["action"] for e in openbao.journal(SIRET_A)]
    (cfa,) = json.loads(run_cli("cfa", "list", "--json").stdout)
    assert cfa["name"] == "CFA des Tests"
