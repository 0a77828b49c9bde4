"""Rotations and exports at the same time: every fingerprint names the key really involved."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cfakey.core import export as core
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from cfakey.registry.loader import load_registry
from cfakey.stores.base import entry_name, fingerprint
from cfakey.stores.file_store import EncryptedFileStore
from tests.conftest import TEST_FILE_PASSWORD, run_cli

SIRET = "18130002100373"
FIRST_KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="


def rotation_key(number: int) -> str:
    return f"Rt{number:02d}+Qw/Er7Ty1Ui3Op5As6Df8Gh0J="


@pytest.fixture
def atlas_key(isolated_home: Path) -> Metadata:
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA des Tests").exit_code == 0
    assert run_cli("add", "atlas", input=FIRST_KEY + "\n").exit_code == 0
    return Metadata.open(Paths.from_env())


def test_an_export_names_the_fingerprint_of_the_key_it_hands_out(
    atlas_key: Metadata, isolated_home: Path
) -> None:
    """The interleaving the issue saw 18 times in 25: planned, then rotated, then read."""
    plan = core.plan_export(
        atlas_key, load_registry(None, None)[0], cfa_query=None, all_cfas=False, opco_ids=("atlas",)
    )
    assert run_cli("rotate", "atlas", input=rotation_key(1) + "\n").exit_code == 0
    store = EncryptedFileStore(isolated_home / "keys.enc", lambda **_: TEST_FILE_PASSWORD)
    (key,) = core.read_planned(store, plan)
    assert key.secret == rotation_key(1)
    assert key.fingerprint == fingerprint(rotation_key(1))
    text = core.render([key], "json", qualified=False, exported_at=plan.keys[0].cfa.created_at)
    assert fingerprint(FIRST_KEY) not in text


@pytest.mark.slow
def test_concurrent_rotations_journal_the_key_each_one_replaced(
    atlas_key: Metadata, isolated_home: Path
) -> None:
    """Four rotations start while the database is locked, then all go at once."""
    blocker = sqlite3.connect(isolated_home / "cfakey.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "cfakey", "rotate", "atlas"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=os.environ.copy(),
        )
        for _ in range(4)
    ]
    for number, child in enumerate(children, start=1):
        assert child.stdin is not None
        child.stdin.write(f"{rotation_key(number)}\n".encode())
        child.stdin.close()
    time.sleep(3)  # let them all read what they replace: the race, if there is one
    blocker.execute("ROLLBACK")
    blocker.close()
    for child in children:
        assert child.stderr is not None
        assert child.wait(timeout=120) == 0, child.stderr.read().decode()
        child.stderr.close()
        assert child.stdout is not None
        child.stdout.close()

    rotated = [entry for entry in atlas_key.journal() if entry.action == "rotated"]
    assert len(rotated) == 4
    chain = [fingerprint(FIRST_KEY)] + [entry.new_fingerprint for entry in rotated]
    assert [entry.old_fingerprint for entry in rotated] == chain[:-1]
    store = EncryptedFileStore(isolated_home / "keys.enc", lambda **_: TEST_FILE_PASSWORD)
    stored = store.get(entry_name(SIRET, "atlas"))
    assert stored is not None
    record = atlas_key.get_key(SIRET, "atlas")
    assert record is not None
    assert record.fingerprint == fingerprint(stored) == chain[-1]


def test_verify_names_the_key_it_sent_and_dates_only_that_key(
    atlas_key: Metadata, isolated_home: Path
) -> None:
    """The store already holds the next key when verify reads it (a rotation in between)."""
    from datetime import UTC, date, datetime

    from cfakey.config import Config
    from cfakey.core import verify

    before = atlas_key.get_key(SIRET, "atlas")
    store = EncryptedFileStore(isolated_home / "keys.enc", lambda **_: TEST_FILE_PASSWORD)
    store.put(entry_name(SIRET, "atlas"), rotation_key(1))
    (job,) = verify.plan_jobs(
        atlas_key,
        store,
        Config.load(isolated_home / "config.json"),
        load_registry(None, None)[0],
        verify.VerifyRequest(opco_id="atlas"),
    )
    assert job.fingerprint == fingerprint(rotation_key(1))
    result = verify.VerifyResult(
        SIRET, "CFA des Tests", "atlas", "Atlas", verify.Outcome.VALID, "", "", None, 200, None,
        date(2027, 6, 30), None, True, datetime(2026, 11, 30, tzinfo=UTC), 1,
    )  # fmt: skip
    verify.record_results(atlas_key, [job], [result])
    verified = atlas_key.journal()[-1]
    assert (verified.action, verified.old_fingerprint) == ("verified", fingerprint(rotation_key(1)))
    # The metadata still describe the first key: the date the OPCO gave for another is not theirs.
    assert atlas_key.get_key(SIRET, "atlas") == before
