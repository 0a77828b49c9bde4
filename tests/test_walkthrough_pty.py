"""``cfakey add atlas`` in a real pseudo-terminal: pauses, hidden key input, Ctrl-C.

Runs the installed console script (what an operator types), so it also checks that the
entry point, getpass on a terminal and the interrupt handling work outside CliRunner.
"""

from __future__ import annotations

import io
import os
import shutil
import sys
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from cfakey.paths import Paths
from cfakey.registry.loader import load_registry
from cfakey.stores.file_store import EncryptedFileStore
from tests.conftest import CHEAP_KDF, TEST_FILE_PASSWORD, run_cli

pexpect = pytest.importorskip("pexpect")

SIRET = "18130002100373"
KEY = "Pty+Key/0123456789abcdefghijkl=="
STEPS = len(load_registry(None, None)[0].get("atlas").steps)


def cfakey_command() -> list[str]:
    beside = Path(sys.executable).with_name("cfakey")
    found = str(beside) if beside.exists() else shutil.which("cfakey")
    return [found] if found else [sys.executable, "-m", "cfakey"]


def spawn(*args: str) -> pexpect.spawn:
    command = [*cfakey_command(), *args]
    child = pexpect.spawn(
        command[0],
        command[1:],
        env={**os.environ, "BROWSER": "true", "TERM": "dumb"},
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 120),
    )
    child.logfile_read = io.StringIO()
    return child


@pytest.fixture
def cfa() -> str:
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA Pty").exit_code == 0
    # The child process opens the real file store: seed it with cheap scrypt costs (kept
    # in its header) so that unlocking it does not cost 0.4 s.
    store = EncryptedFileStore(
        Paths.from_env().encrypted_store,
        lambda **_: TEST_FILE_PASSWORD,
        new_file_kdf=CHEAP_KDF,
    )
    store.put("test/placeholder", "x")  # an empty store writes no file
    store.close()
    return SIRET


def test_add_atlas_in_a_real_terminal(cfa: str) -> None:
    child = spawn("add", "atlas")
    child.expect("Ouvrir le portail")
    child.sendline("n")
    for number in range(1, STEPS + 1):
        child.expect(f"Étape {number}/{STEPS}")
        if number < STEPS:
            child.expect(r"\[Entrée pour continuer\]")
            child.sendline("")
    child.expect("Collez la clé")
    child.sendline(KEY)
    child.expect("Clé Atlas enregistrée")
    child.expect("cfakey verify atlas")
    child.expect(pexpect.EOF)
    transcript = child.logfile_read.getvalue()
    child.close()
    assert child.exitstatus == 0
    assert "Étape 1/" in transcript
    assert KEY not in transcript  # getpass did not echo it
    assert run_cli("show", "atlas", "--reveal").stdout == KEY + "\n"


def test_ctrl_c_in_the_walkthrough_stores_nothing(cfa: str) -> None:
    child = spawn("add", "atlas")
    child.expect("Ouvrir le portail")
    child.sendline("n")
    child.expect("Étape 1/")
    child.expect(r"\[Entrée pour continuer\]")
    child.sendintr()
    child.expect("rien n'a été enregistré")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert run_cli("list", "--json").stdout.strip() == "[]"


def test_a_bad_lifetime_in_a_real_terminal_keeps_the_pasted_key(cfa: str) -> None:
    steps = len(load_registry(None, None)[0].get("ocapiat").steps)
    child = spawn("add", "ocapiat")
    child.expect("Ouvrir le portail")
    child.sendline("n")
    for _ in range(steps - 1):
        child.expect(r"\[Entrée pour continuer\]")
        child.sendline("")
    child.expect("Collez la clé")
    child.sendline(KEY)
    child.expect(f"Clé reçue : {len(KEY)} caractères.")
    child.expect(r"Durée de vie choisie sur le portail \(1 à 6 mois\) : ")
    child.sendline("7")
    child.expect(r"Attendu : un nombre de mois de 1 à 6, par\s+exemple 6. Réessayez")
    child.expect(r"Durée de vie choisie sur le portail \(1 à 6 mois\) : ")
    child.sendline("6 mois")
    child.expect("Clé Ocapiat enregistrée")
    child.expect(pexpect.EOF)
    transcript = child.logfile_read.getvalue()
    child.close()
    assert child.exitstatus == 0
    assert KEY not in transcript
    assert transcript.count("révoque") <= 1
    assert run_cli("show", "ocapiat", "--reveal").stdout == KEY + "\n"


def test_three_bad_dates_in_a_real_terminal_store_nothing(cfa: str) -> None:
    steps = len(load_registry(None, None)[0].get("opcommerce").steps)
    child = spawn("add", "opcommerce")
    child.expect("Ouvrir le portail")
    child.sendline("n")
    for _ in range(steps - 1):
        child.expect(r"\[Entrée pour continuer\]")
        child.sendline("")
    child.expect("Collez la clé")
    child.sendline(KEY)
    for typed in ("demain", "31/02/2027", "hier"):
        child.expect("Date d'expiration affichée par le portail")
        child.sendline(typed)
    child.expect("Trois réponses refusées : rien n'a été enregistré.")
    child.expect(pexpect.EOF)
    transcript = child.logfile_read.getvalue()
    child.close()
    assert child.exitstatus == ExitCode.USAGE
    assert KEY not in transcript
    assert run_cli("list", "--json").stdout.strip() == "[]"


def spawn_without_password(*args: str) -> pexpect.spawn:
    """The child asks the file's password on its terminal: no CFAKEY_FILE_PASSWORD."""
    env = {k: v for k, v in os.environ.items() if k != "CFAKEY_FILE_PASSWORD"}
    command = [*cfakey_command(), *args]
    child = pexpect.spawn(
        command[0],
        command[1:],
        env={**env, "BROWSER": "true", "TERM": "dumb"},
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 120),
    )
    child.logfile_read = io.StringIO()
    return child


def test_a_mistyped_file_password_is_asked_again(cfa: str) -> None:
    child = spawn_without_password("add", "atlas")
    child.expect("Mot de passe du fichier chiffré : ")
    child.sendline("pas-le-bon")
    child.expect(r"Mot de passe incorrect, réessayez \(2 essais restants\)")
    child.expect("Mot de passe du fichier chiffré : ")
    child.sendline(TEST_FILE_PASSWORD)
    child.expect("Ouvrir le portail")
    child.sendline("n")
    for _ in range(STEPS - 1):
        child.expect(r"\[Entrée pour continuer\]")
        child.sendline("")
    child.expect("Collez la clé")
    child.sendline(KEY)
    child.expect("Clé Atlas enregistrée")
    child.expect(pexpect.EOF)
    transcript = child.logfile_read.getvalue()
    child.close()
    assert child.exitstatus == 0
    assert KEY not in transcript
    assert TEST_FILE_PASSWORD not in transcript
    assert run_cli("show", "atlas", "--reveal").stdout == KEY + "\n"


def test_three_wrong_file_passwords_exit_4_and_store_nothing(cfa: str) -> None:
    child = spawn_without_password("add", "atlas")
    for left in ("2 essais restants", "1 essai restant"):
        child.expect("Mot de passe du fichier chiffré : ")
        child.sendline("pas-le-bon")
        child.expect(rf"Mot de passe incorrect, réessayez \({left}\)")
    child.expect("Mot de passe du fichier chiffré : ")
    child.sendline("toujours-pas")
    child.expect("Mot de passe du fichier chiffré incorrect")
    child.expect(pexpect.EOF)
    transcript = child.logfile_read.getvalue()
    child.close()
    assert child.exitstatus == ExitCode.STORE_UNAVAILABLE
    assert "Collez la clé" not in transcript  # asked before the walkthrough: no key typed
    assert run_cli("list", "--json").stdout.strip() == "[]"


def test_a_wrong_password_in_the_environment_is_one_try(
    cfa: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", "pas-le-bon")
    result = run_cli("add", "atlas", input=KEY)
    assert result.exit_code == ExitCode.STORE_UNAVAILABLE
    assert "Mot de passe du fichier chiffré incorrect" in result.stderr
    assert "réessayez" not in result.stderr
    assert KEY not in result.stdout + result.stderr
    assert run_cli("list", "--json").stdout.strip() == "[]"
