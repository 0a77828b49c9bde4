"""A real freedesktop Secret Service for the tests: gnome-keyring on a private D-Bus session.

The daemons run with their own runtime and data directories below pytest's temporary
directory and are reached only through ``DBUS_SESSION_BUS_ADDRESS``, so no test sees
the developer's own session or keyring. ``bash .ci/run`` installs the Debian packages;
where they are missing the tests that need them are skipped, except under CI, where
that is a failure: a green run must have used a real Secret Service.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

#: The password gnome-keyring creates its "login" collection with; thrown away after.
THROWAWAY_PASSWORD = b"mot-de-passe-jetable"
_NEEDED = ("dbus-daemon", "dbus-send", "gnome-keyring-daemon")


def require_tools() -> None:
    """Skip (or fail under CI) when the Secret Service cannot be started here."""
    missing = [tool for tool in _NEEDED if shutil.which(tool) is None]
    if missing:
        message = (
            f"Secret Service indisponible ({', '.join(missing)} absent) : "
            "« bash .ci/run » installe gnome-keyring et dbus."
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@dataclass
class SecretServiceDaemon:
    """One private D-Bus session bus with a gnome-keyring-daemon serving secrets on it."""

    root: Path
    unlock: bool = True
    address: str = ""
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> SecretServiceDaemon:
        require_tools()
        runtime, data = self.root / "runtime", self.root / "data"
        for directory in (runtime, data):
            directory.mkdir(parents=True, mode=0o700, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.root),
            "XDG_RUNTIME_DIR": str(runtime),
            "XDG_DATA_HOME": str(data),
            "XDG_CONFIG_HOME": str(self.root / "config"),
        }
        bus = subprocess.Popen(
            ["dbus-daemon", "--session", "--nofork", "--nopidfile", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self._processes.append(bus)
        assert bus.stdout is not None
        self.address = bus.stdout.readline().decode().strip()
        if not self.address:
            self.stop()
            pytest.fail("dbus-daemon n'a pas donné d'adresse de bus.")
        env["DBUS_SESSION_BUS_ADDRESS"] = self.address
        command = ["gnome-keyring-daemon", "--foreground", "--components=secrets"]
        if self.unlock:
            command.insert(2, "--unlock")
        log = (self.root / "gnome-keyring.log").open("wb")
        daemon = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT, env=env
        )
        self._processes.append(daemon)
        assert daemon.stdin is not None
        if self.unlock:
            daemon.stdin.write(THROWAWAY_PASSWORD)
        daemon.stdin.close()
        self._wait_on_bus(env)
        return self

    def _wait_on_bus(self, env: dict[str, str]) -> None:
        """The daemon is not on the bus the moment it starts: poll until it owns the name."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            reply = subprocess.run(
                [
                    "dbus-send",
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ],
                capture_output=True,
                env=env,
                check=False,
            )
            if b"boolean true" in reply.stdout:
                return
            time.sleep(0.05)
        log = (self.root / "gnome-keyring.log").read_text(errors="replace")
        self.stop()
        pytest.fail(f"gnome-keyring-daemon n'est pas apparu sur le bus : {log}")

    def stop(self) -> None:
        """Kill and reap the daemon, then the bus, so neither is left orphaned."""
        for process in reversed(self._processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
        self._processes.clear()

    def pause(self) -> None:
        """Stop the daemon (SIGSTOP): every call to it waits, as on a hung desktop session."""
        os.kill(self._processes[-1].pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Let a paused daemon run again; it then answers the calls queued meanwhile."""
        os.kill(self._processes[-1].pid, signal.SIGCONT)

    # Direct access, bypassing cfakey and keyring, to set up and check the tests.

    @contextmanager
    def _collection(self) -> Iterator[Any]:
        import secretstorage

        with closing(secretstorage.dbus_init()) as connection:
            yield secretstorage.get_default_collection(connection)

    def lock(self) -> None:
        """Lock the default collection, as a screen lock or a timeout would."""
        with self._collection() as collection:
            collection.lock()

    def items(self, service: str) -> dict[str, str]:
        """Every item of ``service`` in the default collection: user name to secret."""
        with self._collection() as collection:
            return {
                item.get_attributes()["username"]: item.get_secret().decode()
                for item in collection.search_items({"service": service})
            }

    def clear(self, service: str) -> None:
        """Remove every item of ``service`` (between tests sharing one daemon)."""
        with self._collection() as collection:
            for item in collection.search_items({"service": service}):
                item.delete()


def _use(daemon: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch) -> SecretServiceDaemon:
    """Point this test's process at the daemon, and let keyring choose its backend itself."""
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", daemon.address)
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND", raising=False)
    return daemon


@pytest.fixture(scope="session")
def secret_service_daemon(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[SecretServiceDaemon]:
    """One unlocked gnome-keyring for the whole session (started on first use)."""
    daemon = SecretServiceDaemon(tmp_path_factory.mktemp("secret-service"))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture
def secret_service(
    secret_service_daemon: SecretServiceDaemon, monkeypatch: pytest.MonkeyPatch
) -> Iterator[SecretServiceDaemon]:
    """The shared Secret Service, emptied of cfakey's items before and after the test."""
    daemon = _use(secret_service_daemon, monkeypatch)
    daemon.clear("cfakey")
    try:
        yield daemon
    finally:
        daemon.clear("cfakey")


@pytest.fixture
def own_secret_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., SecretServiceDaemon]]:
    """Starts Secret Services of this test's own (to lock, or with no collection at all)."""
    started: list[SecretServiceDaemon] = []

    def start(*, unlock: bool = True) -> SecretServiceDaemon:
        daemon = SecretServiceDaemon(tmp_path / f"secret-service-{len(started)}", unlock=unlock)
        started.append(daemon)
        return _use(daemon.start(), monkeypatch)

    try:
        yield start
    finally:
        for daemon in started:
            daemon.stop()
