"""Real kills between the key-store write and the metadata commit, with both real stores.

Each scenario runs one cfakey command in its own process and stops it at one step with
no hook in cfakey: the test holds, for real, the lock the command needs next.

- The SQLite write lock (``BEGIN IMMEDIATE`` from the test): the command waits at its
  first database write, the intent, having read what it replaces; later, at the
  metadata commit. (Waiting on SQLite, it sleeps in ``hrtimer_nanosleep``, which
  ``/proc/PID/wchan`` shows: that is how the test knows it got there.)
- The store: the encrypted file's own lock (``keys.enc.lock``, flock), or the Secret
  Service daemon stopped with SIGSTOP: the command waits at its store write.

Steps: ``intent`` (SIGKILL once the intent is durable, the command waiting on the store),
``store`` (SIGKILL once the store holds the new state, the command waiting on the
metadata commit), and for an import into the Secret Service, ``during`` (SIGKILL with
some entries written). The next command, ``cfakey doctor``, must then resolve the intent,
say what it did, and find the store and the metadata in agreement.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest

from cfakey.identifiers import with_check_digit
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from cfakey.stores.base import entry_name, fingerprint
from cfakey.stores.file_store import EncryptedFileStore
from cfakey.stores.keyring_store import home_service
from tests.conftest import TEST_FILE_PASSWORD, run_cli
from tests.secret_service import SecretServiceDaemon

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/wchan").exists(), reason="needs Linux's /proc/PID/wchan"
)

SIRET = "18130002100373"
ATLAS_0 = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
AKTO_0 = "cle-akto-initiale-0123456789abcdef"
ATLAS_1 = "Nw1+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
AFDAS_1 = "cle-afdas-nouvelle-0123456789abcdef"
CONSTRUCTYS_1 = "cle-constructys-nouvelle-0123456789ab"
ENTRIES = tuple(entry_name(SIRET, o) for o in ("atlas", "akto", "afdas", "constructys"))
WAIT = 90  # seconds: a deadline for the machine, never an assertion about speed


@dataclass(frozen=True)
class Command:
    """One cfakey command, and what its store write changes (``None``: entry deleted)."""

    args: tuple[str, ...]
    stdin: str
    writes: dict[str, str | None]


COMMANDS = {
    "add": Command(("add", "afdas"), AFDAS_1 + "\n", {entry_name(SIRET, "afdas"): AFDAS_1}),
    "rotate": Command(("rotate", "atlas"), ATLAS_1 + "\n", {entry_name(SIRET, "atlas"): ATLAS_1}),
    "remove": Command(("remove", "atlas", "--yes"), "", {entry_name(SIRET, "atlas"): None}),
    "import": Command(
        ("import", "{csv}", "--yes"),
        "",
        {
            entry_name(SIRET, "atlas"): ATLAS_1,
            entry_name(SIRET, "afdas"): AFDAS_1,
            entry_name(SIRET, "constructys"): CONSTRUCTYS_1,
        },
    ),
    "cfa remove --force": Command(
        ("cfa", "remove", SIRET, "--force"),
        "",
        {entry_name(SIRET, "atlas"): None, entry_name(SIRET, "akto"): None},
    ),
}


class Gate(Protocol):
    """Blocks the command's store writes while closed; reads the store for the test."""

    def close(self) -> None: ...
    def open(self) -> None: ...
    def read(self) -> dict[str, str | None]: ...


class FileGate:
    """The encrypted file's own lock, held by the test."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.fd: int | None = None

    def close(self) -> None:
        import fcntl  # POSIX only, like this whole module

        self.fd = os.open(self.home / "keys.enc.lock", os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def open(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases its lock
            self.fd = None

    def read(self) -> dict[str, str | None]:
        store = EncryptedFileStore(self.home / "keys.enc", lambda **_: TEST_FILE_PASSWORD)
        return {entry: store.get(entry) for entry in ENTRIES}


class SecretServiceGate:
    """The gnome-keyring daemon, stopped (SIGSTOP) by the test."""

    def __init__(self, daemon: SecretServiceDaemon) -> None:
        self.daemon = daemon
        self.paused = False

    def close(self) -> None:
        self.daemon.pause()
        self.paused = True

    def open(self) -> None:
        if self.paused:
            self.daemon.resume()
            self.paused = False

    def read(self) -> dict[str, str | None]:
        from secretstorage.exceptions import ItemNotFoundException

        while True:
            try:
                items = self.daemon.items(home_service(Paths.from_env().data_dir))
            except ItemNotFoundException:  # deleted by the command between search and read
                continue
            return {entry: items.get(entry) for entry in ENTRIES}


class DatabaseLock:
    """The SQLite write lock, taken and released by the test."""

    def __init__(self, home: Path) -> None:
        self.path = home / "cfakey.sqlite3"
        self.connection: sqlite3.Connection | None = None

    def hold(self) -> None:
        self.connection = sqlite3.connect(self.path, isolation_level=None, timeout=WAIT)
        self.connection.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.connection is not None:
            self.connection.execute("ROLLBACK")
            self.connection.close()
            self.connection = None

    def pending(self) -> int:
        with sqlite3.connect(self.path) as reader:
            count: int = reader.execute("SELECT COUNT(*) FROM pending").fetchone()[0]
        reader.close()
        return count


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"jamais atteint : {what}")
        time.sleep(0.01)


def waiting_on_sqlite(process: subprocess.Popen[bytes]) -> bool:
    """SQLite's busy handler sleeps between retries: several samples in a row say so."""
    for _ in range(5):
        if process.poll() is not None:
            return False
        wchan = Path(f"/proc/{process.pid}/wchan").read_text()
        if "nanosleep" not in wchan:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture(params=["file", "keyring"])
def gate(
    request: pytest.FixtureRequest, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Gate]:
    if request.param == "file":
        opened: Gate = FileGate(isolated_home)
    else:
        monkeypatch.setenv("CFAKEY_STORE", "keyring")
        opened = SecretServiceGate(request.getfixturevalue("secret_service"))
    try:
        yield opened
    finally:
        opened.open()


def set_up(home: Path) -> tuple[str, ...]:
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA des Tests").exit_code == 0
    assert run_cli("add", "atlas", input=ATLAS_0 + "\n").exit_code == 0
    assert run_cli("add", "akto", input=AKTO_0 + "\n").exit_code == 0
    sheet = home.parent / "cles.csv"
    sheet.write_text(
        "cfa,opco,key\n"
        f"{SIRET},atlas,{ATLAS_1}\n{SIRET},afdas,{AFDAS_1}\n{SIRET},constructys,{CONSTRUCTYS_1}\n",
        encoding="utf-8",
    )
    return (str(sheet),)


def start(command: Command, sheet: str) -> subprocess.Popen[bytes]:
    args = [sheet if arg == "{csv}" else arg for arg in command.args]
    process = subprocess.Popen(
        [sys.executable, "-m", "cfakey", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert process.stdin is not None
    process.stdin.write(command.stdin.encode())
    process.stdin.close()
    return process


def kill(process: subprocess.Popen[bytes]) -> None:
    process.kill()
    process.wait()
    assert process.stderr is not None
    process.stderr.close()


def drive_to(step: str, command: Command, gate: Gate, database: DatabaseLock, sheet: str) -> None:
    """Run ``command`` and SIGKILL it at ``step``."""
    database.hold()
    process = start(command, sheet)
    try:
        wait_for(lambda: waiting_on_sqlite(process), "la commande attend d'écrire son intention")
        gate.close()
        database.release()
        wait_for(lambda: database.pending() > 0, "l'intention est enregistrée")
        if step == "intent":
            kill(process)
            return
        database.hold()
        gate.open()
        target = command.writes.items()
        if step == "during":
            wait_for(lambda: any(gate.read()[e] == s for e, s in target), "une entrée écrite")
            gate.close()
        else:
            wait_for(lambda: all(gate.read()[e] == s for e, s in target), "le magasin écrit")
        kill(process)
    finally:
        if process.poll() is None:
            kill(process)
        database.release()
        gate.open()


def assert_consistent(gate: Gate) -> Metadata:
    metadata = Metadata.open(Paths.from_env())
    assert metadata.pending() == []
    described = {entry_name(k.siret, k.opco_id): k.fingerprint for k in metadata.list_keys()}
    stored = {e: fingerprint(s) for e, s in gate.read().items() if s is not None}
    assert described == stored
    return metadata


STEPS = [(name, step) for name in COMMANDS for step in ("intent", "store")]


@pytest.mark.slow
@pytest.mark.parametrize(("name", "step"), STEPS, ids=[f"{n}-{s}" for n, s in STEPS])
def test_a_kill_at_each_step_is_resolved_by_the_next_command(
    name: str, step: str, gate: Gate, isolated_home: Path
) -> None:
    kill_and_check(COMMANDS[name], step, gate, isolated_home)


@pytest.mark.slow
def test_a_kill_in_the_middle_of_an_import_into_the_secret_service_is_resolved(
    secret_service: SecretServiceDaemon, isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The keyring writes entry by entry (the file is replaced in one rename)."""
    monkeypatch.setenv("CFAKEY_STORE", "keyring")
    gate = SecretServiceGate(secret_service)
    try:
        kill_and_check(COMMANDS["import"], "during", gate, isolated_home)
    finally:
        gate.open()


def kill_and_check(command: Command, step: str, gate: Gate, home: Path) -> None:
    """Kill ``command`` at ``step``; the next command resolves it, says so, and agrees."""
    (sheet,) = set_up(home)
    before = gate.read()
    drive_to(step, command, gate, DatabaseLock(home), sheet)
    after_kill = gate.read()

    doctor = run_cli("doctor")
    assert doctor.exit_code == 0, doctor.stdout + doctor.stderr
    assert "Tout va bien." in doctor.stdout
    metadata = assert_consistent(gate)
    changed = [entry for entry in command.writes if after_kill[entry] != before[entry]]
    if changed:
        assert "Opération interrompue reprise" in doctor.stderr
        last = metadata.journal()[-1]
        assert last.detail.endswith("repris après interruption")
    if len(changed) < len(command.writes):
        assert "Opération interrompue annulée" in doctor.stderr
    if isinstance(gate, FileGate):
        # The file is written in one piece: all or nothing, and the test knows which.
        assert len(changed) == (0 if step == "intent" else len(command.writes))
    secrets = (ATLAS_0, AKTO_0, ATLAS_1, AFDAS_1, CONSTRUCTYS_1)
    assert not any(secret in doctor.stdout + doctor.stderr for secret in secrets)
    assert run_cli("doctor").stderr == ""  # nothing left to resolve


# -- SIGTERM and Ctrl-C during an import into the Secret Service ---------------------------


def big_import(home: Path) -> tuple[str, dict[str, str]]:
    from cfakey.registry.loader import load_registry

    opcos = [
        o.id for o in load_registry(None, None)[0].opcos if o.id not in {"opcommerce", "ocapiat"}
    ]
    sirets = [SIRET] + [with_check_digit(f"77{n:011d}") for n in range(3)]
    rows = {
        (siret, opco): f"cle-{opco}-{siret}-0123456789abcdef" for siret in sirets for opco in opcos
    }
    sheet = home.parent / "gros.csv"
    sheet.write_text(
        "cfa,opco,key\n" + "".join(f"{s},{o},{k}\n" for (s, o), k in rows.items()),
        encoding="utf-8",
    )
    return str(sheet), {entry_name(s, o): k for (s, o), k in rows.items()}


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_an_import_stopped_by_a_signal_says_only_what_is_true(
    signum: signal.Signals,
    secret_service: SecretServiceDaemon,
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The issue's case: « rien n'a été enregistré » after 193 keys written. Now either
    every key is put back (and read again) before that is said, or the truth is said."""
    monkeypatch.setenv("CFAKEY_STORE", "keyring")
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA des Tests").exit_code == 0
    assert run_cli("add", "atlas", input=ATLAS_0 + "\n").exit_code == 0
    sheet, rows = big_import(isolated_home)
    before = secret_service.items(home_service(Paths.from_env().data_dir))
    process = start(Command(("import", "{csv}", "--yes"), "", {}), sheet)
    try:
        wait_for(
            lambda: len(secret_service.items(home_service(Paths.from_env().data_dir))) > 3,
            "des clés importées",
        )
        process.send_signal(signum)
        assert process.wait(timeout=WAIT) == 130
    finally:
        # A failed wait must not leave the import writing into the daemon the next test uses.
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    process.stderr.close()

    after = secret_service.items(home_service(Paths.from_env().data_dir))
    if "rien n'a été enregistré" in stderr:
        assert after == before  # said only when true: every key put back, and checked
        metadata = Metadata.open(Paths.from_env())
        assert [k.opco_id for k in metadata.list_keys()] == ["atlas"]
        assert metadata.pending() == []
    else:  # the commit won the race, or the store could not be put back: said as such
        assert "Interrompu" in stderr
        doctor = run_cli("doctor")
        assert doctor.exit_code == 0, doctor.stdout
        metadata = Metadata.open(Paths.from_env())
        assert metadata.pending() == []
        described = {entry_name(k.siret, k.opco_id): k.fingerprint for k in metadata.list_keys()}
        assert described == {e: fingerprint(s) for e, s in after.items()}
    assert not any(secret in stderr for secret in rows.values())
