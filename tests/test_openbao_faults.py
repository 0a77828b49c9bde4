"""The team store's login and faults, through the command line, against real OpenBao servers.

- The AppRole ``secret_id`` typed, hidden, in a real pseudo-terminal; refused without one.
- Each fault of issue 12 item 7 stopping ``add``: French message, exit code, nothing
  written in the engine nor in the metadata, no key and no token in any output.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import subprocess
import sys
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from tests.conftest import run_cli
from tests.openbao import ROOT_TOKEN, BaoServer, OpenBao
from tests.store_contract import SIRET_A

KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
WAIT = 90  # seconds: a deadline for the machine, never an assertion about speed


def _home_bytes(home: Path) -> bytes:
    """Every file cfakey wrote in its home (metadata database, config, journal...)."""
    return b"".join(path.read_bytes() for path in sorted(home.rglob("*")) if path.is_file())


def _metadata_rows(home: Path) -> tuple[int, int]:
    """Keys recorded and intents pending in the home's metadata database."""
    with sqlite3.connect(f"file:{home / 'cfakey.sqlite3'}?mode=ro", uri=True) as connection:
        (keys,) = connection.execute("SELECT COUNT(*) FROM key").fetchone()
        (pending,) = connection.execute("SELECT COUNT(*) FROM pending").fetchone()
    connection.close()
    return keys, pending


def _engine_entries(server: BaoServer, mount: str) -> dict[str, tuple[str, int]]:
    """Every key the engine holds under ``cfakey/keys``: its secret and its version."""
    try:
        folders = server.request("LIST", f"{mount}/metadata/cfakey/keys")["data"]["keys"]
    except urllib.error.HTTPError as error:
        if error.code == 404:  # nothing below: KV answers a LIST of nothing with 404
            return {}
        raise
    found = {}
    for folder in folders:
        names = server.request("LIST", f"{mount}/metadata/cfakey/keys/{folder}")["data"]["keys"]
        for name in names:
            data = server.request("GET", f"{mount}/data/cfakey/keys/{folder}{name}")["data"]
            found[f"{folder}{name}"] = (data["data"]["secret"], data["metadata"]["version"])
    return found


# -- AppRole: the secret_id typed in a terminal -------------------------------------------


def _approle(bao: OpenBao) -> tuple[str, str]:
    """A role allowed on the test's mount: its role_id and a fresh secret_id."""
    server = bao.server
    rules = f'path "{bao.mount}/*" {{ capabilities = ["create", "read", "update", "list"] }}'
    server.request("PUT", f"sys/policies/acl/robot-{bao.mount}", {"policy": rules})
    if "approle/" not in server.request("GET", "sys/auth")["data"]:
        server.request("POST", "sys/auth/approle", {"type": "approle"})
    role = f"auth/approle/role/cfakey-{bao.mount}"
    server.request("POST", role, {"token_policies": [f"robot-{bao.mount}"]})
    role_id = server.request("GET", f"{role}/role-id")["data"]["role_id"]
    secret_id = server.request("POST", f"{role}/secret-id")["data"]["secret_id"]
    return role_id, secret_id


@pytest.fixture
def approle_home(
    openbao: OpenBao, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[OpenBao, str, Path]:
    """A home on the team store with AppRole configured, no token; and a one-key sheet."""
    role_id, secret_id = _approle(openbao)
    monkeypatch.delenv("CFAKEY_STORE")
    use = ("store", "use", "openbao", "--url", openbao.url, "--mount", openbao.mount)
    used = run_cli(*use, "--role-id", role_id)
    assert used.exit_code == 0, used.stderr
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA Test").exit_code == 0
    sheet = tmp_path / "cles.csv"
    sheet.write_text(f"cfa,opco,key\n{SIRET_A},atlas,{KEY}\n", encoding="utf-8")
    return openbao, secret_id, sheet


def test_the_approle_secret_id_is_asked_hidden_in_a_terminal(
    approle_home: tuple[OpenBao, str, Path], isolated_home: Path
) -> None:
    pexpect = pytest.importorskip("pexpect")
    bao, secret_id, sheet = approle_home
    command = [sys.executable, "-m", "cfakey", "import", str(sheet), "--yes"]
    child = pexpect.spawn(
        command[0],
        command[1:],
        env={**os.environ, "TERM": "dumb"},
        encoding="utf-8",
        timeout=30,
    )
    child.logfile_read = io.StringIO()
    child.expect("secret_id AppRole : ")
    child.sendline(secret_id)
    child.expect("1 clé\\(s\\) importée\\(s\\)")
    child.expect(pexpect.EOF)
    transcript = child.logfile_read.getvalue()
    child.close()
    assert child.exitstatus == 0, transcript
    assert secret_id not in transcript  # never echoed, never printed
    assert KEY not in transcript
    stored = bao.read(f"cfakey/keys/{SIRET_A}/atlas")
    assert stored is not None
    assert stored["data"] == {"secret": KEY}
    assert secret_id.encode() not in _home_bytes(isolated_home)  # nor in metadata, config


def test_without_a_terminal_the_missing_secret_id_is_a_french_error(
    approle_home: tuple[OpenBao, str, Path], isolated_home: Path
) -> None:
    bao, _, sheet = approle_home
    process = subprocess.run(
        [sys.executable, "-m", "cfakey", "import", str(sheet), "--yes"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert process.returncode == ExitCode.STORE_UNAVAILABLE, process.stderr
    assert "aucun terminal ne permet de le demander" in process.stderr
    assert "CFAKEY_BAO_SECRET_ID" in process.stderr
    assert "Traceback" not in process.stderr
    assert KEY not in process.stdout + process.stderr
    assert bao.read(f"cfakey/keys/{SIRET_A}/atlas") is None
    assert _metadata_rows(isolated_home) == (0, 0)


def test_a_secret_id_in_the_environment_is_used_without_asking(
    approle_home: tuple[OpenBao, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    bao, secret_id, sheet = approle_home
    monkeypatch.setenv("CFAKEY_BAO_SECRET_ID", secret_id)
    imported = run_cli("import", str(sheet), "--yes")
    assert imported.exit_code == 0, imported.stderr
    assert secret_id not in imported.stdout + imported.stderr
    assert (bao.read(f"cfakey/keys/{SIRET_A}/atlas") or {})["data"] == {"secret": KEY}


# -- Each fault stops ``add`` with nothing written ----------------------------------------


@dataclass(frozen=True)
class Fault:
    """How to break the engine for the command, and what the operator must then read."""

    code: ExitCode
    words: str
    #: Breaks it: gets the test's mount and the own-server starter; returns a token to hide.
    make: Callable[[OpenBao, Callable[..., BaoServer], pytest.MonkeyPatch], str]


def _sealed(bao: OpenBao, own: Callable[..., BaoServer], env: pytest.MonkeyPatch) -> str:
    server = own()
    server.mount_kv(bao.mount)
    server.seal()
    env.setenv("BAO_ADDR", server.url)
    return ROOT_TOKEN


def _revoked_token(bao: OpenBao, own: Callable[..., BaoServer], env: pytest.MonkeyPatch) -> str:
    rules = f'path "{bao.mount}/*" {{ capabilities = ["create", "read", "update"] }}'
    token = bao.server.token(f"revoque-{bao.mount}", rules)
    bao.server.request("POST", "auth/token/revoke", {"token": token})  # as at its expiry
    env.setenv("BAO_TOKEN", token)
    return token


def _kv_version_1(bao: OpenBao, own: Callable[..., BaoServer], env: pytest.MonkeyPatch) -> str:
    bao.server.unmount(bao.mount)
    bao.server.mount_kv(bao.mount, version=1)
    return ROOT_TOKEN


def _tls_untrusted(bao: OpenBao, own: Callable[..., BaoServer], env: pytest.MonkeyPatch) -> str:
    server = own(tls=True)
    server.mount_kv(bao.mount)
    env.setenv("BAO_ADDR", server.url)  # no --ca-bundle: its certificate is unknown
    return ROOT_TOKEN


def _prefix(value: str) -> Callable[[OpenBao, Callable[..., BaoServer], pytest.MonkeyPatch], str]:
    def make(bao: OpenBao, own: Callable[..., BaoServer], env: pytest.MonkeyPatch) -> str:
        assert run_cli("config", "set", "openbao.prefix", value).exit_code == 0  # by hand
        return ROOT_TOKEN

    return make


FAULTS = {
    "sealed": Fault(ExitCode.STORE_UNAVAILABLE, "est scellé (503)", _sealed),
    "token-revoked": Fault(ExitCode.STORE_UNAVAILABLE, "jeton expiré, révoqué", _revoked_token),
    "kv-version-1": Fault(ExitCode.USAGE, "n'est pas un moteur KV version 2", _kv_version_1),
    "tls": Fault(ExitCode.STORE_UNAVAILABLE, "--ca-bundle FICHIER.pem", _tls_untrusted),
    "prefix-dotdot": Fault(ExitCode.USAGE, "Préfixe invalide", _prefix("cfakey/../autre")),
    "prefix-space": Fault(ExitCode.USAGE, "Préfixe invalide", _prefix("mon prefixe")),
}


@pytest.mark.parametrize("name", FAULTS)
def test_each_fault_stops_add_with_a_french_message_and_nothing_written(
    name: str,
    openbao: OpenBao,
    own_openbao: Callable[..., BaoServer],
    monkeypatch: pytest.MonkeyPatch,
    isolated_home: Path,
) -> None:
    fault = FAULTS[name]
    openbao.use_with_cfakey(monkeypatch)
    assert run_cli("config", "set", "openbao.mount", openbao.mount).exit_code == 0
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA Test").exit_code == 0
    token = fault.make(openbao, own_openbao, monkeypatch)
    added = run_cli("add", "atlas", "--yes", input=KEY + "\n")
    assert added.exit_code == fault.code, added.stderr
    assert fault.words in added.stderr
    assert "Traceback" not in added.stderr
    for secret in (KEY, token, ROOT_TOKEN):
        assert secret not in added.stdout + added.stderr
    assert _metadata_rows(isolated_home) == (0, 0)  # no metadata, no intent left
    listed = run_cli("list", "--json")
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert _engine_entries(openbao.server, openbao.mount) == {}  # nor in the engine
