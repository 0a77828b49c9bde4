"""The wheel built from the repository carries the registry and runs in a fresh venv."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_wheel_installs_and_runs_in_a_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("cfakey-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("cfakey/opco_registry.yaml")
    assert shipped == (ROOT / "opco_registry.yaml").read_bytes()

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
    )
    env = {**os.environ, "CFAKEY_HOME": str(tmp_path / "home")}
    listed = subprocess.run(
        [str(env_dir / "bin" / "cfakey"), "opcos", "--json"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert len(json.loads(listed.stdout)) == 11
    via_module = subprocess.run(
        [str(python), "-m", "cfakey", "guide", "atlas"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert "myatlas.opco-atlas.fr" in via_module.stdout
