"""Shared by the start-up benchmarks: find cfakey, time whole processes, compare to typer."""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

BASELINE = "python -c 'import typer'"


def cfakey_executable() -> str:
    """The console script installed beside this interpreter, else the one on PATH."""
    beside = Path(sys.executable).with_name("cfakey")
    found = str(beside) if beside.exists() else shutil.which("cfakey")
    if found is None:
        sys.exit("cfakey n'est pas installé dans cet environnement (pip install -e .).")
    return found


def timed(command: list[str], env: Mapping[str, str]) -> float:
    """Wall time of one process running ``command``, its output discarded."""
    start = time.perf_counter()
    subprocess.run(
        command, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def compare_to_typer(
    commands: Mapping[str, list[str]],
    env: Mapping[str, str],
    rounds: int,
    targets: Mapping[str, float],
) -> bool:
    """Time ``commands`` interleaved with ``import typer``; print medians and ratios.

    Interleaving round after round makes machine noise hit every command alike. Returns
    whether every command with a target met it.
    """
    everything = {BASELINE: [sys.executable, "-c", "import typer"], **commands}
    for command in everything.values():  # warm-up: file cache, bytecode, registry cache
        timed(command, env)
    samples: dict[str, list[float]] = {label: [] for label in everything}
    for _ in range(rounds):
        for label, command in everything.items():
            samples[label].append(timed(command, env))
    baseline = statistics.median(samples[BASELINE])
    print(f"{rounds} tours, médianes (processus complet) :")
    met = True
    for label, values in samples.items():
        median = statistics.median(values)
        ratio = median / baseline
        verdict = ""
        if label in targets:
            ok = ratio <= targets[label]
            met &= ok
            verdict = f"  cible ≤ {targets[label]}× : {'OK' if ok else 'DÉPASSÉE'}"
        print(f"  {label:<28} {median * 1000:7.1f} ms  {ratio:4.2f}×{verdict}")
    return met
