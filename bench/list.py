"""Speed of the expiry overview with 1,100 keys (100 CFAs × 11 OPCOs) against ``import typer``.

Imports the keys with ``cfakey import`` into a temporary ``CFAKEY_HOME`` (timed once),
then runs ``cfakey list``, ``cfakey list --json`` and ``cfakey check`` as fresh
processes, interleaved with the baseline round after round so that machine noise hits
all of them alike, and prints each median and its ratio to the baseline.
Target (issue 4): each ≤ 2.5× the baseline median.

    python bench/list.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _timing import cfakey_executable, compare_to_typer
from cfakey.identifiers import with_check_digit
from cfakey.registry.loader import load_registry

TARGET = 2.5
OPCOS = tuple(opco.id for opco in load_registry(None, None)[0].opcos)


def write_import_file(path: Path) -> None:
    """100 CFAs × 11 OPCOs, with dates spread over the next year (some soon, some far)."""
    lines = ["cfa,opco,key,expires,cfa_name"]
    today = datetime.now(UTC).astimezone().date()
    for cfa_index in range(100):
        siret = with_check_digit(f"8{cfa_index:04d}00000000")
        for opco_index, opco in enumerate(OPCOS):
            key = f"Bench{cfa_index:03d}{opco_index:02d}+Key/0123456789abcdef="
            days = 3 + (cfa_index * 11 + opco_index) * 7 % 170
            expires = (today + timedelta(days=days)).isoformat() if opco != "atlas" else ""
            lines.append(f"{siret},{opco},{key},{expires},CFA de banc d'essai n° {cfa_index}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    cfakey = cfakey_executable()
    commands = {
        "cfakey list": [cfakey, "list"],
        "cfakey list --json": [cfakey, "list", "--json"],
        "cfakey check": [cfakey, "check"],
    }
    with tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "CFAKEY_HOME": home,
            "CFAKEY_STORE": "file",
            "CFAKEY_FILE_PASSWORD": "mot-de-passe-du-banc",
            "COLUMNS": "100",
        }
        # Users' installs keep compiled bytecode; without it every run recompiles cfakey
        # from source while typer's is cached, which is not what an operator sees.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        source = Path(home) / "cles.csv"
        write_import_file(source)
        start = time.perf_counter()
        result = subprocess.run(
            [cfakey, "import", str(source)], env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            sys.exit(f"import impossible ({result.returncode}) : {result.stderr.strip()}")
        print(f"import de 1100 clés : {time.perf_counter() - start:.2f} s")
        met = compare_to_typer(commands, env, rounds, dict.fromkeys(commands, TARGET))
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
