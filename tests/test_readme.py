"""The README's set-up and « Premiers pas » work as written, pasted line by line.

Each command of the « Premiers pas » block runs in a real terminal (pexpect), in a clean
CFAKEY_HOME, as a new user on a machine without a system keyring: the test answers the
prompts a person would (portal, steps, the pasted key, the encrypted file's password).
"""

from __future__ import annotations

import io
import os
import re
import shlex
from pathlib import Path

import pytest

from tests.fake_opco import running_fake_opco
from tests.test_walkthrough_pty import cfakey_command

pexpect = pytest.importorskip("pexpect")

README = Path(__file__).resolve().parent.parent / "README.md"
KEY = "Readme+Key/0123456789abcdefghij=="
PASSWORD = "un mot de passe assez long"


def blocks(heading: str) -> list[str]:
    """The ``sh`` blocks of one section of the README."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.*?)```", section, flags=re.S)


def commands(block: str) -> list[list[str]]:
    return [argv for line in block.splitlines() if (argv := shlex.split(line, comments=True))]


def test_the_install_command_and_how_to_run_cfakey_afterwards() -> None:
    install, tests = blocks("Installation et tests (machine neuve)")[:2]
    assert install.strip() == (
        "python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/cfakey opcos"
    )
    assert tests.strip() == "bash .ci/run"
    assert (README.parent / ".ci" / "run").exists()
    activate = commands(blocks("Installation et tests (machine neuve)")[2])
    assert activate == [[".", ".venv/bin/activate"]]  # the venv the install command made
    readme = README.read_text(encoding="utf-8")
    assert "pipx install ." in readme
    assert "uv tool install ." in readme


PROMPTS = [
    ("Ouvrir le portail", "n"),
    (r"\[Entrée pour continuer\]", ""),
    ("Collez la clé", KEY),
    (r"Utiliser le fichier chiffré \?", "o"),
    ("Nouveau mot de passe : ", PASSWORD),
    ("Confirmez le mot de passe : ", PASSWORD),
    ("Mot de passe du fichier chiffré : ", PASSWORD),
]


def in_a_terminal(argv: list[str], cwd: Path) -> str:
    """Run one pasted line in a pseudo-terminal, answering its prompts; its transcript."""
    assert argv[0] == "cfakey"
    command = [*cfakey_command(), *argv[1:]]
    child = pexpect.spawn(
        command[0],
        command[1:],
        cwd=str(cwd),
        env={**os.environ, "BROWSER": "true", "TERM": "dumb"},
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 120),
    )
    child.logfile_read = io.StringIO()
    patterns = [pattern for pattern, _ in PROMPTS]
    while (found := child.expect([*patterns, pexpect.EOF])) < len(PROMPTS):
        child.sendline(PROMPTS[found][1])
    transcript: str = child.logfile_read.getvalue()
    child.close()
    assert child.exitstatus == 0, transcript
    return transcript


@pytest.mark.slow
def test_premiers_pas_work_pasted_line_by_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A new user: no store chosen, no password in the environment, no system keyring.
    monkeypatch.delenv("CFAKEY_STORE")
    monkeypatch.delenv("CFAKEY_FILE_PASSWORD")
    first, verify = blocks("Premiers pas")[:2]
    lines = commands(first)
    assert lines[0] == [".", ".venv/bin/activate"]  # stands for: cfakey is on the PATH
    transcripts = [in_a_terminal(argv, tmp_path) for argv in lines[1:]]
    assert "Clé Atlas enregistrée pour CFA des Métiers" in transcripts[2]
    assert "CFA des Métiers — SIRET 18130002100373" in transcripts[3]
    assert KEY in (tmp_path / "cles.env").read_text()
    assert all(KEY not in transcript for transcript in transcripts)

    set_url, run_verify = commands(verify)
    assert set_url[:4] == ["cfakey", "config", "set", "opco.atlas.api_url"]
    with running_fake_opco() as server:
        server.state.valid_keys[KEY] = "2027-06-30"
        set_url[4] = server.base_url("ok")  # the address the vendor gives
        in_a_terminal(set_url, tmp_path)
        checked = in_a_terminal(run_verify, tmp_path)
    assert "valide" in checked


def test_the_env_file_premiers_pas_writes_cannot_be_committed() -> None:
    """« Premiers pas » writes cles.env into the current folder, often the clone."""
    import fnmatch

    assert "--output cles.env" in README.read_text(encoding="utf-8")
    patterns = [
        line.strip()
        for line in (README.parent / ".gitignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for name in ("cles.env", "atlas.env"):
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
