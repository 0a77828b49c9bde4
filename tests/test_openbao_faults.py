"""The team store's login and faults, through the command line, against real OpenBao servers.

- The AppRole ``secret_id`` typed, hidden, in a real pseudo-terminal; refused without one.
- Each fault of issue 12 item 7 stopping ``add``: French message, exit code, nothing
  written in the engine nor in the metadata, no key and no token in any output.
- The engine killed (SIGKILL) in the middle of an import: a server with integrated Raft
  storage keeps what it had written, comes back, and the same import run again completes.
  The engine hanging (SIGSTOP) instead: the import gives up after one timeout, not one per
  key, and completes once the engine answers again (SIGCONT).
"""

from __future__ import annotations

import functools
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from cfakey.identifiers import with_check_digit
from cfakey.stores.base import entry_name, fingerprint
from tests.conftest import run_cli
from tests.openbao import ROOT_TOKEN, BaoServer, OpenBao, bao_binary
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
    # The CFA is recorded in the engine too: that login takes the secret_id once.
    monkeypatch.setenv("CFAKEY_BAO_SECRET_ID", secret_id)
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA Test").exit_code == 0
    monkeypatch.delenv("CFAKEY_BAO_SECRET_ID")
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


def _tls_other_ca(bao: OpenBao, own: Callable[..., BaoServer], env: pytest.MonkeyPatch) -> str:
    server, other = own(tls=True), own(tls=True)
    server.mount_kv(bao.mount)
    env.setenv("BAO_ADDR", server.url)
    assert other.ca_bundle is not None
    assert run_cli("config", "set", "openbao.ca_bundle", str(other.ca_bundle)).exit_code == 0
    return ROOT_TOKEN


def _prefix(value: str) -> Callable[[OpenBao, Callable[..., BaoServer], pytest.MonkeyPatch], str]:
    def make(bao: OpenBao, own: Callable[..., BaoServer], env: pytest.MonkeyPatch) -> str:
        # config set refuses it too (test_openbao_store): here it was edited by hand.
        config_file = Path(os.environ["CFAKEY_HOME"]) / "config.json"
        settings = json.loads(config_file.read_text(encoding="utf-8"))
        config_file.write_text(json.dumps({**settings, "openbao.prefix": value}), "utf-8")
        return ROOT_TOKEN

    return make


FAULTS = {
    "sealed": Fault(ExitCode.STORE_UNAVAILABLE, "est scellé (503)", _sealed),
    "token-revoked": Fault(ExitCode.STORE_UNAVAILABLE, "jeton expiré, révoqué", _revoked_token),
    "kv-version-1": Fault(ExitCode.USAGE, "n'est pas un moteur KV version 2", _kv_version_1),
    "tls": Fault(ExitCode.STORE_UNAVAILABLE, "--ca-bundle FICHIER.pem", _tls_untrusted),
    "tls-other-ca": Fault(ExitCode.STORE_UNAVAILABLE, "n'est pas reconnu", _tls_other_ca),
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
    # The overview reads the team catalog in the engine: it says the same fault rather
    # than show a cache that may be stale.
    listed = run_cli("list", "--json")
    assert (listed.exit_code, listed.stdout) == (fault.code, ""), listed.stderr
    assert fault.words in listed.stderr
    assert _engine_entries(openbao.server, openbao.mount) == {}  # nor in the engine


# -- The engine killed in the middle of an import -----------------------------------------


@dataclass
class RaftBao(BaoServer):
    """A real (non-dev) server with integrated Raft storage: it keeps its data when killed.

    Initialised once with one unseal key; each start unseals it and waits until it is
    active. A token with the tests' root token id is created, so that the same token
    works as with the dev servers.
    """

    unseal_key: str = ""

    def start(self) -> RaftBao:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "raft").mkdir(exist_ok=True)
        self.address = self.address or f"127.0.0.1:{_free_port()}"
        cluster = f"127.0.0.1:{_free_port()}"
        config = self.root / "bao.hcl"
        config.write_text(
            f'storage "raft" {{\n  path = "{self.root / "raft"}"\n  node_id = "n1"\n}}\n'
            f'listener "tcp" {{\n  address = "{self.address}"\n'
            f'  cluster_address = "{cluster}"\n  tls_disable = true\n}}\n'
            f'api_addr = "http://{self.address}"\ncluster_addr = "http://{cluster}"\n',
            encoding="utf-8",
        )
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root)}
        log = (self.root / "bao.log").open("ab")
        self._process = subprocess.Popen(
            [bao_binary(), "server", f"-config={config}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        self.url = f"http://{self.address}"
        self._wait_health({200, 429, 501, 503})
        if not self.unseal_key:
            self._initialise()
        else:
            self.request("PUT", "sys/unseal", {"key": self.unseal_key})
        self._wait_health({200})
        return self

    def _initialise(self) -> None:
        answer = self.request("PUT", "sys/init", {"secret_shares": 1, "secret_threshold": 1})
        self.unseal_key = answer["keys"][0]
        self.request("PUT", "sys/unseal", {"key": self.unseal_key})
        self._wait_health({200})
        body = {"id": ROOT_TOKEN, "policies": ["root"], "no_parent": True}
        self.request("POST", "auth/token/create", body, token=answer["root_token"])

    def _wait_health(self, codes: set[int]) -> None:
        """Poll ``sys/health`` until it answers one of ``codes`` (200: active, unsealed)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                break
            try:
                self.request("GET", "sys/health")
                status = 200
            except urllib.error.HTTPError as error:
                status = error.code
            except OSError:
                status = 0
            if status in codes:
                return
            time.sleep(0.05)
        log = (self.root / "bao.log").read_text(errors="replace")
        self.stop()
        pytest.fail(f"bao server (Raft) n'a pas répondu : {log[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown at all, as a crash or a power cut."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        self._process.wait()
        self._process = None


def _free_port() -> int:
    from tests.openbao import _free_port as free_port

    return free_port()


@pytest.fixture
def raft_bao(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RaftBao]:
    bao_binary()
    for name in ("BAO_ADDR", "VAULT_ADDR", "BAO_TOKEN", "VAULT_TOKEN", "CFAKEY_BAO_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    server = RaftBao(tmp_path / "openbao-raft").start()
    try:
        yield server
    finally:
        server.stop()


def _sheet(home: Path, count: int) -> tuple[Path, dict[str, str]]:
    """A CSV of ``count`` keys, SIRET after SIRET: its path and the keys by store entry."""
    from cfakey.registry.loader import load_registry

    opcos = [o.id for o in load_registry(None, None)[0].opcos]
    slots = [
        (with_check_digit(f"77{n:011d}"), opco)
        for n in range(count // len(opcos) + 1)
        for opco in opcos
    ][:count]
    keys = {entry_name(s, o): f"Cle+{o}+{s}/0123456789abcdef=" for s, o in slots}
    sheet = home.parent / "cles.csv"
    sheet.write_text(
        "cfa,opco,key,expires\n"
        + "".join(f"{e.replace('/', ',')},{k},2028-06-30\n" for e, k in keys.items()),
        encoding="utf-8",
    )
    return sheet, keys


def _folders(server: BaoServer, mount: str) -> int:
    try:
        return len(server.request("LIST", f"{mount}/metadata/cfakey/keys")["data"]["keys"])
    except urllib.error.HTTPError:
        return 0


def _import(sheet: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cfakey", "import", str(sheet), "--yes"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _on_the_team_store(server: BaoServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """This test's commands use a fresh KV v2 mount of ``server``; returns the mount."""
    mount = f"t{uuid.uuid4().hex[:12]}"
    server.mount_kv(mount)
    monkeypatch.setenv("BAO_TOKEN", ROOT_TOKEN)
    monkeypatch.setenv("BAO_ADDR", server.url)
    monkeypatch.setenv("CFAKEY_STORE", "openbao")
    assert run_cli("config", "set", "openbao.mount", mount).exit_code == 0
    return mount


def _import_stopped_midway(
    server: BaoServer, mount: str, sheet: Path, stop: Callable[[], None]
) -> tuple[int, str]:
    """Run the import, ``stop`` the engine once it holds two CFAs' keys; exit code, output."""
    process = _import(sheet)
    try:
        deadline = time.monotonic() + WAIT
        while _folders(server, mount) < 3:  # two CFAs' keys written, the third begun
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "l'import n'a rien écrit"
            time.sleep(0.005)
        stop()
        stdout, stderr = process.communicate(timeout=2 * WAIT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return process.returncode, stdout + stderr


def _check_stopped(code: int, output: str, keys: dict[str, str], home: Path) -> None:
    """A French message, exit 4, no key, and every key's intent kept for the next command."""
    assert code == ExitCode.STORE_UNAVAILABLE, output
    assert "injoignable" in output
    assert "La prochaine commande qui ouvre le magasin" in output
    assert "Traceback" not in output
    assert not any(key in output for key in keys.values())
    assert _metadata_rows(home) == (0, len(keys))  # no metadata without its key: pending


def _rerun_completes(server: BaoServer, mount: str, sheet: Path, keys: dict[str, str]) -> None:
    """The same import again: it completes, and the state is that of a clean import."""
    written = _engine_entries(server, mount)
    assert 0 < len(written) < len(keys)
    rerun = _import(sheet)
    stdout, stderr = rerun.communicate(timeout=WAIT)
    assert rerun.returncode == 0, stderr
    assert f"{len(keys) - len(written)} clé(s) importée(s)" in stderr
    assert f"{len(written)} inchangée(s)" in stderr
    assert not any(key in stdout + stderr for key in keys.values())
    # Each key once, at version 1, described and journalled once.
    assert _engine_entries(server, mount) == {entry: (key, 1) for entry, key in keys.items()}
    listed = json.loads(run_cli("list", "--json").stdout)
    described = {entry_name(row["cfa"], row["opco"]): row["fingerprint"] for row in listed}
    assert described == {entry: fingerprint(key) for entry, key in keys.items()}
    assert _metadata_rows(Path(os.environ["CFAKEY_HOME"])) == (len(keys), 0)
    journal = json.loads(run_cli("journal", "--json").stdout)
    imported = [(e["cfa"], e["opco"]) for e in journal if e["action"] == "imported"]
    assert sorted(imported) == sorted(tuple(entry.split("/")) for entry in keys)


@pytest.mark.slow
def test_the_engine_killed_mid_import_is_a_french_error_and_a_rerun_completes(
    raft_bao: RaftBao, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mount = _on_the_team_store(raft_bao, monkeypatch)
    sheet, keys = _sheet(isolated_home, 200)
    code, output = _import_stopped_midway(raft_bao, mount, sheet, raft_bao.kill)
    _check_stopped(code, output, keys, isolated_home)
    raft_bao.start()  # back after the crash, with what it had written
    _rerun_completes(raft_bao, mount, sheet, keys)


@pytest.mark.slow
def test_an_engine_hanging_mid_import_costs_one_timeout_not_one_per_key(
    own_openbao: Callable[..., BaoServer], isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGSTOP: connections are accepted, never answered. The import gives up after the
    timeout of its write and of one check, not one timeout per key left to put back."""
    server = own_openbao()
    process = server._process  # the test's own server process
    assert process is not None
    mount = _on_the_team_store(server, monkeypatch)
    sheet, keys = _sheet(isolated_home, 200)
    try:
        stop = functools.partial(process.send_signal, signal.SIGSTOP)
        code, output = _import_stopped_midway(server, mount, sheet, stop)
    finally:
        process.send_signal(signal.SIGCONT)
    _check_stopped(code, output, keys, isolated_home)
    _rerun_completes(server, mount, sheet, keys)
