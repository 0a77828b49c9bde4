"""Local input is read in bounded chunks: endless input ends fast in French, SIGTERM is heard.

``/dev/zero`` and ``yes |`` stand for any input that never ends (a wrong path, a device,
a pipe from the wrong command): each cap is in :mod:`cfakey.userfiles`, and nothing is
written when it is reached.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from cfakey.userfiles import IMPORT_LIMIT, KEY_LIMIT
from tests.conftest import run_cli
from tests.test_keys_cli import SIRET, listed

TOO_LONG = "Entrée trop longue"


@pytest.fixture
def cfa(isolated_home: Path) -> str:
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA Bornes").exit_code == 0
    return SIRET


def test_the_caps_leave_room_for_real_input() -> None:
    assert KEY_LIMIT == 64 * 1024
    assert IMPORT_LIMIT >= 64 * 1024 * 1024  # 100,000 rows and a 10 MB field fit


@pytest.mark.parametrize(
    "args",
    [
        ("add", "atlas", "--from-file", "/dev/zero", "--yes"),
        ("import", "/dev/zero"),
    ],
)
def test_an_endless_file_is_refused_and_nothing_is_stored(cfa: str, args: tuple[str, ...]) -> None:
    result = run_cli(*args)

    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert TOO_LONG in result.stderr
    assert "/dev/zero" in result.stderr
    assert listed() == []


def test_an_import_file_over_its_cap_is_refused_unread(cfa: str, tmp_path: Path) -> None:
    path = tmp_path / "enorme.csv"
    with path.open("wb") as handle:
        handle.write(b"cfa,opco,key\n")
        handle.truncate(IMPORT_LIMIT + 1)  # sparse: no disk used

    result = run_cli("import", str(path))

    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert f"{TOO_LONG} : {path} dépasse 64 Mio ; rien n'a été enregistré." in result.stderr
    assert listed() == []


def test_an_endless_standard_input_is_refused(cfa: str) -> None:
    result = run_cli("add", "atlas", "--yes", input="y\n" * (KEY_LIMIT // 2 + 1))

    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert f"{TOO_LONG} : l'entrée standard dépasse 64 Kio" in result.stderr
    assert listed() == []


def test_an_endless_template_is_refused_and_nothing_is_written(cfa: str, tmp_path: Path) -> None:
    target = tmp_path / "config.env"
    result = run_cli("inject", "-i", "/dev/zero", "-o", str(target))

    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert TOO_LONG in result.stderr
    assert not target.exists()


def test_an_endless_registry_overlay_is_refused(isolated_home: Path) -> None:
    result = run_cli("--registry", "/dev/zero", "opcos")

    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert TOO_LONG in result.stderr
    # opcos writes nothing: the message claims nothing about saving.
    assert "Entrée trop longue : /dev/zero dépasse 4 Mio." in result.stderr
    assert "enregistré" not in result.stderr


def test_an_endless_config_file_is_refused(isolated_home: Path) -> None:
    isolated_home.mkdir(mode=0o700, exist_ok=True)
    (isolated_home / "config.json").symlink_to("/dev/zero")
    result = run_cli("list")

    assert result.exit_code == ExitCode.DATA_CORRUPTED, result.stderr  # as any bad config
    assert "entrée trop longue (plus de 1 Mio)" in result.stderr
    assert "config.json" in result.stderr


def _reading_stdin(pid: int) -> bool:
    try:
        return "pipe" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/wchan").exists(), reason="needs Linux /proc")
def test_sigterm_while_reading_an_import_exits_130_with_nothing_written(cfa: str) -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "cfakey", "import", "/dev/stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert child.stdin is not None
    child.stdin.write(b"cfa,opco,key\n" + b"x" * 100_000)
    child.stdin.flush()
    while child.poll() is None and not _reading_stdin(child.pid):
        pass  # until it waits for more input (never a timed assertion)
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)

    assert child.returncode == ExitCode.INTERRUPTED, stderr.decode()
    assert "rien n'a été enregistré" in stderr.decode()
    assert listed() == []
