"""Twenty teammates rotating the same key of the team store at once, as real processes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from cfakey.stores.base import fingerprint
from tests.conftest import run_cli
from tests.openbao import ROOT_TOKEN, OpenBao
from tests.store_contract import SIRET_A

TEAMMATES = 20
ROUNDS = 2
FIRST_KEY = "Cle+de+depart/0123456789abcdef=="


def _teammates(home: Path) -> list[Path]:
    """Twenty homes that recorded the same key (as if each had added it)."""
    homes = [home.parent / f"collegue-{n:02d}" for n in range(TEAMMATES)]
    for other in homes:
        shutil.copytree(home, other, ignore=shutil.ignore_patterns("cfakey.lock"))
    return homes


def _rotate_all(homes: list[Path], round_: int) -> dict[Path, tuple[int, str, str]]:
    """Every teammate rotates at once; by home: exit code, stderr, the key it wrote."""
    processes = {}
    for n, home in enumerate(homes):
        key = f"Cle+tour{round_}+collegue{n:02d}/0123456789="
        env = {**os.environ, "CFAKEY_HOME": str(home)}
        command = [sys.executable, "-m", "cfakey", "rotate", "atlas", "--yes"]
        process = subprocess.Popen(
            [*command, "--expires", "2028-01-31"],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        processes[home] = (process, key)
    results = {}
    for home, (process, key) in processes.items():
        _, stderr = process.communicate(key, timeout=120)
        results[home] = (process.returncode, stderr, key)
    return results


def _recorded(home: Path) -> tuple[str, int, int]:
    """The home's recorded fingerprint, its pending intents and its « rotated » entries."""
    with sqlite3.connect(f"file:{home / 'cfakey.sqlite3'}?mode=ro", uri=True) as connection:
        (recorded,) = connection.execute("SELECT fingerprint FROM key").fetchone()
        (pending,) = connection.execute("SELECT COUNT(*) FROM pending").fetchone()
        (rotated,) = connection.execute(
            "SELECT COUNT(*) FROM journal WHERE action = 'rotated'"
        ).fetchone()
    return recorded, pending, rotated


@pytest.mark.slow
def test_twenty_teammates_rotating_at_once_one_wins_each_round(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    openbao.use_with_cfakey(monkeypatch)
    monkeypatch.delenv("CFAKEY_STORE")  # the recorded store, as teammates have it
    use = ("store", "use", "openbao", "--url", openbao.url, "--mount", openbao.mount)
    assert run_cli(*use).exit_code == 0
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert run_cli("add", "atlas", "--yes", input=FIRST_KEY).exit_code == 0
    homes = _teammates(isolated_home)
    wins_before = dict.fromkeys(homes, 0)
    for round_ in range(1, ROUNDS + 1):
        before = (openbao.read(f"cfakey/keys/{SIRET_A}/atlas") or {})["data"]["secret"]
        journalled = len(openbao.journal(SIRET_A))
        results = _rotate_all(homes, round_)
        # Each home reads the team catalog first: one that started after a rotation had
        # landed sees it, and replaces it knowingly. None ever replaces a version unseen.
        winners = [home for home, (code, _, _) in results.items() if code == 0]
        assert winners, {h.name: (c, e[-200:]) for h, (c, e, _) in results.items()}
        held = (openbao.read(f"cfakey/keys/{SIRET_A}/atlas") or {})["data"]["secret"]
        assert held in {results[winner][2] for winner in winners}  # a winner's key, whole
        chain = [e for e in openbao.journal(SIRET_A)[journalled:] if e["action"] == "rotated"]
        assert len(chain) == len(winners)
        seen = fingerprint(before)
        for entry in chain:  # every rotation replaced the version before it: no lost update
            assert entry["old_fingerprint"] == seen
            seen = entry["new_fingerprint"]
        assert seen == fingerprint(held)
        for home, (code, stderr, key) in results.items():
            _, pending, rotated = _recorded(home)
            assert pending == 0  # nothing half-written anywhere
            assert key not in stderr
            assert ROOT_TOKEN not in stderr
            if home in winners:
                wins_before[home] += 1
            else:
                assert code == ExitCode.ALREADY_EXISTS, stderr
                assert "a changé entre-temps dans le coffre partagé" in stderr
                assert "rien n'a été écrit" in stderr
            assert rotated == wins_before[home]  # a loser journals no rotation
        for home in homes[:3]:  # every home's next command knows the version in the coffre
            monkeypatch.setenv("CFAKEY_HOME", str(home))
            shown = run_cli("show", "atlas", "--json")
            assert json.loads(shown.stdout)["fingerprint"] == fingerprint(held), shown.stderr
