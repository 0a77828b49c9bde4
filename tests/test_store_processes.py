"""Real processes at once: twenty operators storing twenty keys in the encrypted file and SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from cfakey.metadata import Metadata
from cfakey.paths import Paths
from cfakey.stores.base import entry_name, fingerprint
from cfakey.stores.file_store import EncryptedFileStore
from tests.conftest import CHEAP_KDF, TEST_FILE_PASSWORD

SRC = Path(__file__).resolve().parents[1] / "src"
SIRET = "13002526500013"
PROCESSES = 20

_STORER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, sys.argv[1])
    from datetime import UTC, date, datetime
    from pathlib import Path
    from cfakey.context import AppContext
    from cfakey.core.storage import store_key
    from cfakey.metadata import KeyRecord
    from cfakey.stores.base import fingerprint

    go, siret, opco_id, secret = Path(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
    context = AppContext()
    store, metadata = context.key_store(), context.metadata()
    print("pret", flush=True)
    while not go.exists():
        time.sleep(0.002)
    record = KeyRecord(
        siret, opco_id, date(2026, 11, 22), datetime.now(UTC), None, "none",
        fingerprint(secret), "processus", store.kind,
    )
    store_key(store, metadata, record, secret, action="added")
    """
)


def secret_of(number: int) -> str:
    return f"cle-du-processus-{number:02d}-" + "k" * 40


@pytest.mark.slow
def test_twenty_processes_store_twenty_keys_at_the_same_moment(isolated_home: Path) -> None:
    Metadata.open(Paths.from_env()).add_cfa(SIRET, "CFA des processus", None)
    go = isolated_home.parent / "go"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _STORER, str(SRC), str(go), SIRET, f"opco{n:02d}", secret_of(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ.copy(),
        )
        for n in range(PROCESSES)
    ]
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline() == b"pret\n"
    go.touch()  # every process is ready: they all start storing now, no file exists yet
    deadline = time.monotonic() + 240
    for child in children:
        _, stderr = child.communicate(timeout=max(1, deadline - time.monotonic()))
        assert child.returncode == 0, stderr.decode()

    store = EncryptedFileStore(
        isolated_home / "keys.enc", lambda **_: TEST_FILE_PASSWORD, new_file_kdf=CHEAP_KDF
    )
    expected = {entry_name(SIRET, f"opco{n:02d}"): secret_of(n) for n in range(PROCESSES)}
    assert store.entries() == sorted(expected)
    assert {name: store.get(name) for name in expected} == expected

    metadata = Metadata.open(Paths.from_env())
    rows = metadata.list_keys()
    assert len(rows) == PROCESSES
    assert {row.fingerprint for row in rows} == {fingerprint(s) for s in expected.values()}
    assert {row.store for row in rows} == {"file"}
    added = [entry for entry in metadata.journal() if entry.action == "added"]
    assert len(added) == PROCESSES
    assert {entry.opco_id for entry in added} == {f"opco{n:02d}" for n in range(PROCESSES)}
