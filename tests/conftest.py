"""Shared fixtures: every test runs isolated from the user's home, keyring and network.

By default the key store is the real encrypted file under a temporary ``CFAKEY_HOME``
(password from ``CFAKEY_FILE_PASSWORD``), and keyring is pointed at its ``fail`` backend
so that no test can reach the developer's own keyring. Tests of the OS keyring use the
``secret_service`` fixture, a real gnome-keyring on a private D-Bus session.

The encrypted file a test creates in-process uses cheap scrypt parameters
(:data:`CHEAP_KDF`): the store table's ``file`` line points at :class:`CheapFileStore`,
the real store with a cheaper key derivation for new files, so a test does not pay
0.4 s per unlock. Production code is the same code; only the table line differs.
Files created by a child process (``python -m cfakey``) keep the real cost.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

import pytest
from typer.testing import CliRunner

from cfakey.cli.app import app
from cfakey.stores import kinds
from cfakey.stores.file_store import EncryptedFileStore, ScryptParams
from tests.openbao import openbao, openbao_server, own_openbao  # noqa: F401 - fixtures
from tests.secret_service import (  # noqa: F401 - fixtures, shared with every test module
    own_secret_service,
    secret_service,
    secret_service_daemon,
)

if TYPE_CHECKING:
    from cfakey.context import AppContext
    from cfakey.stores.base import KeyStore
    from cfakey.stores.kinds import StoreSettings

TEST_FILE_PASSWORD = "mot-de-passe-de-test"
#: scrypt at 1/128th of the production cost: still scrypt, still a real file, ~3 ms.
CHEAP_KDF = ScryptParams(n=2**10)


class CheapFileStore(EncryptedFileStore):
    """The encrypted file store, creating new files with :data:`CHEAP_KDF`."""

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Self:
        return cls(settings.paths.encrypted_store, settings.password_source, new_file_kdf=CHEAP_KDF)


_CLEARED = (
    "CFAKEY_HOME",
    "CFAKEY_REGISTRY",
    "CFAKEY_STORE",
    "CFAKEY_FILE_PASSWORD",
    "CFAKEY_DEBUG",
    "PYTHON_KEYRING_BACKEND",
    "DBUS_SESSION_BUS_ADDRESS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
)


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private CFAKEY_HOME and XDG directories, no colour, a fixed terminal width."""
    for name in _CLEARED:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "cfakey-home"
    monkeypatch.setenv("CFAKEY_HOME", str(home))
    for xdg in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        monkeypatch.setenv(xdg, str(tmp_path / xdg.lower()))
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "120")
    monkeypatch.setenv("TERMINAL_WIDTH", "120")
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("CFAKEY_STORE", "file")
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", TEST_FILE_PASSWORD)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    cheap = dataclasses.replace(
        kinds.STORE_KINDS["file"], implementation=f"{__name__}:{CheapFileStore.__name__}"
    )
    monkeypatch.setitem(kinds.STORE_KINDS, "file", cheap)
    return home


@dataclass
class CliResult:
    """What one ``cfakey`` invocation printed and returned."""

    exit_code: int
    stdout: str
    stderr: str


def context_with_store(store: KeyStore) -> AppContext:
    """A context whose key store is ``store`` (a double, or a store opened by the test)."""
    from cfakey.context import AppContext

    context = AppContext()
    context._key_store = store  # in place of the configured store, before first use
    return context


def run_cli(
    *args: str,
    input: str | None = None,  # noqa: A002 - CliRunner's name
    context: AppContext | None = None,
) -> CliResult:
    """Run ``cfakey ARGS`` in-process, as the console script would.

    ``context``: the application context to hand the command (an injected store, HTTP
    transport or clock); by default the command builds its own, as in production.
    """
    result = CliRunner().invoke(app, list(args), input=input, obj=context, prog_name="cfakey")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)
