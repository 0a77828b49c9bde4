"""Speed of the reminders with 1,100 keys (100 CFAs × 11 OPCOs) against ``import typer``.

Imports the keys with ``cfakey import`` into a temporary ``CFAKEY_HOME`` as
``bench/list.py`` does, then runs ``cfakey calendar``, ``cfakey metrics`` and
``cfakey metrics --textfile DIR`` as fresh processes, interleaved with the baseline round
after round, and prints each median and its ratio to the baseline.
Target (issue 14): each ≤ 2.5× the baseline median.

    python bench/reminders.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _timing import cfakey_executable, compare_to_typer
from list import TARGET, write_import_file


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    rounds = parser.parse_args().rounds
    cfakey = cfakey_executable()
    with tempfile.TemporaryDirectory() as home:
        textfile = Path(home) / "textfile"
        textfile.mkdir()
        commands = {
            "cfakey calendar": [cfakey, "calendar"],
            "cfakey metrics": [cfakey, "metrics"],
            "cfakey metrics --textfile": [cfakey, "metrics", "--textfile", str(textfile)],
        }
        env = {
            **os.environ,
            "CFAKEY_HOME": home,
            "CFAKEY_STORE": "file",
            "CFAKEY_FILE_PASSWORD": "mot-de-passe-du-banc",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as an operator's install: bytecode kept
        source = Path(home) / "cles.csv"
        write_import_file(source)
        result = subprocess.run(
            [cfakey, "import", str(source)], env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            sys.exit(f"import impossible ({result.returncode}) : {result.stderr.strip()}")
        calendar = subprocess.run(
            [cfakey, "calendar"], env=env, capture_output=True, text=True, check=True
        ).stdout
        print(f"calendrier : {calendar.count('BEGIN:VEVENT')} événements, {len(calendar)} octets")
        met = compare_to_typer(commands, env, rounds, dict.fromkeys(commands, TARGET))
    if not met:
        sys.exit(1)


if __name__ == "__main__":
    main()
