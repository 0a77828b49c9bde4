"""Shell completion the way typer offers it, in French, completing OPCOs and CFAs.

Each test runs the installed ``cfakey`` as a shell would: ``--show-completion`` prints the
script, and the script calls ``cfakey`` back with ``_CFAKEY_COMPLETE`` set.
``_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION`` is typer's switch that makes the shell a
value instead of detecting the one running the tests.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from cfakey.paths import Paths
from tests.conftest import run_cli
from tests.test_walkthrough_pty import cfakey_command

SIRET = "18130002100373"
NAMED_SHELL = {"_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"}


def cfakey(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cfakey_command(), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )


def complete_bash(line: str) -> list[str]:
    """What bash gets back when Tab is pressed at the end of ``line``."""
    words = line.split(" ")
    done = cfakey(COMP_WORDS=line, COMP_CWORD=str(len(words) - 1), _CFAKEY_COMPLETE="complete_bash")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout.split()


@pytest.mark.parametrize(
    ("shell", "hook"),
    [
        ("bash", "complete -o default -F _cfakey_completion cfakey"),
        ("zsh", "compdef _cfakey_completion cfakey"),
        ("fish", "complete --command cfakey"),
        ("powershell", "Register-ArgumentCompleter"),
    ],
)
def test_show_completion_prints_the_script_of_each_shell(shell: str, hook: str) -> None:
    shown = cfakey("--show-completion", shell, **NAMED_SHELL)
    assert shown.returncode == 0, shown.stderr
    assert "_CFAKEY_COMPLETE" in shown.stdout
    assert hook in shown.stdout


def test_commands_options_and_opco_ids_complete() -> None:
    assert complete_bash("cfakey ro") == ["rotate"]
    assert {"--cfa", "--opco", "--json", "--detail"} <= set(complete_bash("cfakey list --"))
    assert complete_bash("cfakey add o") == ["opcommerce", "ocapiat", "opco2i", "opcoep"]
    assert complete_bash("cfakey show ak") == ["akto"]
    assert complete_bash("cfakey list --opco sa") == ["sante"]


def test_registered_cfas_complete_and_nothing_is_created_without_them(
    isolated_home: Path,
) -> None:
    assert complete_bash("cfakey list --cfa 1") == []
    assert not Paths.from_env().metadata_db.exists()  # completing wrote nothing
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA Complétion").exit_code == 0
    assert complete_bash("cfakey list --cfa 18") == [SIRET]
    assert complete_bash("cfakey add atlas --cfa 9") == []


def test_install_completion_in_french(tmp_path: Path) -> None:
    installed = cfakey("--install-completion", "bash", HOME=str(tmp_path), **NAMED_SHELL)
    assert installed.returncode == 0, installed.stderr
    assert "Complétion bash installée dans" in installed.stderr
    assert "source '" in (tmp_path / ".bashrc").read_text()
    refused = cfakey("--install-completion", "tcsh", HOME=str(tmp_path), **NAMED_SHELL)
    assert refused.returncode == ExitCode.USAGE
    assert "Valeur invalide pour '--install-completion'" in refused.stderr


def test_the_completion_options_are_described_in_french() -> None:
    shown = " ".join(cfakey("--help", COLUMNS="200").stdout.split())
    assert "--install-completion" in shown
    assert "Installe la complétion" in shown
    assert "Affiche le script de complétion" in shown
    assert "Install completion" not in shown
