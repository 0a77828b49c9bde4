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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cfakey.identifiers import with_check_digit

TARGET = 2.5
OPCOS = (
    "afdas",
    "akto",
    "atlas",
    "constructys",
    "opcommerce",
    "ocapiat",
    "opco2i",
    "opcoep",
    "mobilites",
    "sante",
    "uniformation",
)


def cfakey_executable() -> str:
    """The console script installed beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("cfakey")
    found = str(beside) if beside.exists() else shutil.which("cfakey")
    if found is None:
        sys.exit("cfakey n'est pas installé dans cet environnement (pip install -e .).")
    return found


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


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    cfakey = cfakey_executable()
    commands = {
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
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
        for command in commands.values():  # warm-up: file cache, registry cache
            timed(command, env)
        samples: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(rounds):
            for label, command in commands.items():
                samples[label].append(timed(command, env))
    baseline = statistics.median(samples["python -c 'import typer'"])
    print(f"{rounds} tours, médianes (processus complet) :")
    failed = False
    for label, values in samples.items():
        median = statistics.median(values)
        ratio = median / baseline
        verdict = ""
        if label.startswith("cfakey"):
            ok = ratio <= TARGET
            failed |= not ok
            verdict = f"  cible ≤ {TARGET}× : {'OK' if ok else 'DÉPASSÉE'}"
        print(f"  {label:<28} {median * 1000:7.1f} ms  {ratio:4.2f}×{verdict}")
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
