"""Start-up time of cfakey commands against the cost of ``import typer`` alone.

Runs each command as a fresh process, interleaved round after round so that machine noise
hits all of them alike, and prints each median and its ratio to the typer baseline.
Targets (issue 2): ``cfakey --version`` ≤ 1.3×, ``cfakey opcos`` ≤ 2.0×.

    python bench/startup.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

from _timing import cfakey_executable, compare_to_typer

TARGETS = {"cfakey --version": 1.3, "cfakey opcos": 2.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    rounds = parser.parse_args().rounds
    cfakey = cfakey_executable()
    commands = {
        "cfakey --version": [cfakey, "--version"],
        "cfakey opcos": [cfakey, "opcos"],
        "cfakey guide atlas": [cfakey, "guide", "atlas"],
    }
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, "CFAKEY_HOME": home, "COLUMNS": "100"}
        # Installed packages have their bytecode cached; measure what users run.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        met = compare_to_typer(commands, env, rounds, TARGETS)
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
