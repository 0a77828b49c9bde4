"""Start-up time of cfakey commands against the cost of ``import typer`` alone.

Runs each command as a fresh process, interleaved round after round so that machine noise
hits all of them alike, and prints each median and its ratio to the typer baseline.
Targets (issue 2): ``cfakey --version`` ≤ 1.3×, ``cfakey opcos`` ≤ 2.0×.

    python bench/startup.py [--rounds N]
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
from pathlib import Path

TARGETS = {"cfakey --version": 1.3, "cfakey opcos": 2.0}


def cfakey_executable() -> str:
    """The console script installed beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("cfakey")
    found = str(beside) if beside.exists() else shutil.which("cfakey")
    if found is None:
        sys.exit("cfakey n'est pas installé dans cet environnement (pip install -e .).")
    return found


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    rounds = parser.parse_args().rounds
    cfakey = cfakey_executable()
    commands = {
        "python -c 'import typer'": [sys.executable, "-c", "import typer"],
        "cfakey --version": [cfakey, "--version"],
        "cfakey opcos": [cfakey, "opcos"],
        "cfakey guide atlas": [cfakey, "guide", "atlas"],
    }
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "CFAKEY_HOME": home, "COLUMNS": "100"}
        # Installed packages have their bytecode cached; measure what users run.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        for command in commands.values():  # warm-up: file cache, registry cache
            timed(command, env)
        samples: dict[str, list[float]] = {label: [] for label in commands}
        for _ in range(rounds):
            for label, command in commands.items():
                samples[label].append(timed(command, env))
    baseline = statistics.median(samples["python -c 'import typer'"])
    print(f"{rounds} tours, médianes (processus complet) :")
    for label, values in samples.items():
        median = statistics.median(values)
        ratio = median / baseline
        target = TARGETS.get(label)
        verdict = (
            ""
            if target is None
            else f"  cible ≤ {target}× : {'OK' if ratio <= target else 'DÉPASSÉE'}"
        )
        print(f"  {label:<28} {median * 1000:7.1f} ms  {ratio:4.2f}×{verdict}")


if __name__ == "__main__":
    main()
