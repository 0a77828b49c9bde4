"""``cfakey store password``, ``--store``, and the prompts, in a real terminal where it matters."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import pexpect
import pytest

from cfakey.config import Config
from cfakey.context import AppContext
from cfakey.errors import CfakeyError, ExitCode
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from cfakey.stores.base import entry_name
from cfakey.stores.file_store import EncryptedFileStore
from tests.conftest import CHEAP_KDF, TEST_FILE_PASSWORD, run_cli

SIRET = "13002526500013"
SRC = Path(__file__).resolve().parents[1] / "src"
NEW_PASSWORD = "un-nouveau-mot-de-passe"


def seed_file_store(home: Path, password: str = TEST_FILE_PASSWORD) -> EncryptedFileStore:
    # A real home has its database before its first key: a store with keys and no
    # database is a lost database, which commands refuse (test_metadata_diagnosis).
    Metadata.open(Paths.from_env()).close()
    store = EncryptedFileStore(home / "keys.enc", lambda **_: password, new_file_kdf=CHEAP_KDF)
    store.put(entry_name(SIRET, "atlas"), "cle-atlas")
    store.put(entry_name(SIRET, "akto"), "cle-akto")
    return store


def test_store_password_with_variables(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_file_store(isolated_home)
    monkeypatch.setenv("CFAKEY_NEW_FILE_PASSWORD", NEW_PASSWORD)
    result = run_cli("store", "password")
    assert result.exit_code == 0, result.stderr
    assert "2 clé(s) ré-chiffrée(s)" in result.stderr
    assert result.stdout == ""
    reopened = EncryptedFileStore(isolated_home / "keys.enc", lambda **_: NEW_PASSWORD)
    assert reopened.get(entry_name(SIRET, "akto")) == "cle-akto"
    journal = Metadata.open(Paths.from_env()).journal()
    assert [entry.action for entry in journal] == ["store_password_changed"]
    assert NEW_PASSWORD not in journal[0].detail
    # The old password no longer opens it.
    monkeypatch.delenv("CFAKEY_NEW_FILE_PASSWORD")
    result = run_cli("store", "password")
    assert result.exit_code == ExitCode.STORE_UNAVAILABLE
    assert "incorrect" in result.stderr


def test_store_password_without_a_file(isolated_home: Path) -> None:
    result = run_cli("store", "password")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "Aucun fichier chiffré" in result.stderr


def test_store_password_without_terminal_or_variables(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_file_store(isolated_home)
    monkeypatch.delenv("CFAKEY_FILE_PASSWORD")
    result = run_cli("store", "password")
    assert result.exit_code == ExitCode.STORE_UNAVAILABLE
    assert "aucun terminal" in result.stderr
    assert "CFAKEY_FILE_PASSWORD" in result.stderr
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", TEST_FILE_PASSWORD)
    result = run_cli("store", "password")
    assert result.exit_code == ExitCode.STORE_UNAVAILABLE
    assert "CFAKEY_NEW_FILE_PASSWORD" in result.stderr


def test_store_password_refuses_a_short_one(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_file_store(isolated_home)
    before = (isolated_home / "keys.enc").read_bytes()
    monkeypatch.setenv("CFAKEY_NEW_FILE_PASSWORD", "court")
    result = run_cli("store", "password")
    assert result.exit_code == ExitCode.USAGE
    assert "trop court" in result.stderr
    assert (isolated_home / "keys.enc").read_bytes() == before


def test_store_password_on_a_damaged_file(isolated_home: Path) -> None:
    seed_file_store(isolated_home)
    path = isolated_home / "keys.enc"
    path.write_bytes(path.read_bytes()[:100])
    result = run_cli("store", "password")
    assert result.exit_code == ExitCode.DATA_CORRUPTED
    assert "endommagé" in result.stderr


def test_store_password_with_the_keyring_in_use(isolated_home: Path) -> None:
    result = run_cli("--store", "keyring", "store", "password")
    assert result.exit_code == ExitCode.USAGE
    assert "trousseau du système" in result.stderr


@pytest.mark.parametrize(
    ("args", "env_value", "named"),
    [(("--store", "coffre"), None, "option --store"), ((), "clair", "variable CFAKEY_STORE")],
)
def test_an_unknown_store_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], env_value: str | None, named: str
) -> None:
    if env_value is not None:
        monkeypatch.setenv("CFAKEY_STORE", env_value)
    result = run_cli(*args, "store", "password")
    assert result.exit_code == ExitCode.USAGE
    assert named in result.stderr


def test_a_store_in_the_config_that_is_not_text_is_a_usage_error(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CFAKEY_STORE")
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "config.json").write_text('{"store": 1}\n')

    result = run_cli("store", "password")

    assert result.exit_code == ExitCode.USAGE
    assert "Magasin de clés inconnu (fichier de configuration)" in result.stderr
    assert (isolated_home / "config.json").read_text() == '{"store": 1}\n'


def test_a_config_that_cannot_be_written_is_a_french_error(tmp_path: Path) -> None:
    blocker = tmp_path / "pas-un-dossier"
    blocker.write_text("")
    config = Config(blocker / "config.json")

    with pytest.raises(CfakeyError, match="Impossible d'enregistrer la configuration") as caught:
        config.set("editeur", "Mon éditeur")
    assert caught.value.message.endswith(": un fichier porte déjà ce nom.")
    assert not (blocker / "config.json").exists()


def test_no_keyring_and_no_terminal_names_the_way_out(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CFAKEY_STORE")
    seed_file_store(isolated_home)
    result = run_cli("store", "password")
    assert result.exit_code == ExitCode.STORE_UNAVAILABLE
    assert "Trousseau du système indisponible" in result.stderr
    assert "--store file" in result.stderr
    assert not (isolated_home / "config.json").exists()


def test_the_store_option_reaches_the_context() -> None:
    from typer.testing import CliRunner

    from cfakey.cli.app import app

    context = AppContext()
    CliRunner().invoke(app, ["--store", "file", "opcos", "--json"], obj=context)
    assert context.store_option == "file"
    assert context.password_prompt is None  # a context given by the caller keeps its own


# -- in a real terminal ------------------------------------------------------------------


def spawn(*args: str) -> pexpect.spawn:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    env.pop("CFAKEY_FILE_PASSWORD", None)
    child = pexpect.spawn(
        sys.executable,
        ["-m", "cfakey", *args],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 200),
    )
    child.logfile_read = io.StringIO()  # everything the terminal showed
    return child


def answer_password_prompts(
    child: pexpect.spawn, current: str, new: str, confirmation: str
) -> None:
    """Type the current password, then the new one and its confirmation, at the prompts."""
    for prompt, typed in (
        ("Mot de passe du fichier chiffré : ", current),
        ("Nouveau mot de passe : ", new),
        ("Confirmez le mot de passe : ", confirmation),
    ):
        child.expect(prompt)
        child.sendline(typed)


def test_passwords_are_asked_hidden_in_a_terminal(isolated_home: Path) -> None:
    seed_file_store(isolated_home)
    child = spawn("store", "password")
    answer_password_prompts(child, TEST_FILE_PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
    child.expect("ré-chiffrée")
    child.expect(pexpect.EOF)
    shown = child.logfile_read.getvalue()
    child.close()
    assert child.exitstatus == 0
    # Nothing typed was echoed.
    assert "Confirmez le mot de passe" in shown
    assert TEST_FILE_PASSWORD not in shown
    assert NEW_PASSWORD not in shown
    reopened = EncryptedFileStore(isolated_home / "keys.enc", lambda **_: NEW_PASSWORD)
    assert reopened.get(entry_name(SIRET, "atlas")) == "cle-atlas"


def test_two_different_new_passwords_change_nothing(isolated_home: Path) -> None:
    seed_file_store(isolated_home)
    before = (isolated_home / "keys.enc").read_bytes()
    child = spawn("store", "password")
    answer_password_prompts(child, TEST_FILE_PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "-faute")
    child.expect("diffèrent")
    child.expect(r"Réessayez \(2 essais restants\)")
    for attempt in range(2):  # asked again, up to three times in all
        child.expect("Nouveau mot de passe : ")
        child.sendline("court" if attempt == 0 else NEW_PASSWORD)
        if attempt == 1:
            child.expect("Confirmez le mot de passe : ")
            child.sendline(NEW_PASSWORD + "-faute")
    child.expect("Trois essais refusés : rien n'a été enregistré")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == ExitCode.USAGE
    assert (isolated_home / "keys.enc").read_bytes() == before


def test_without_keyring_the_terminal_offers_the_file_and_remembers(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CFAKEY_STORE")
    seed_file_store(isolated_home)
    child = spawn("store", "password")
    child.expect("aucun trousseau utilisable")
    child.expect(r"Utiliser le fichier chiffré \? \[o/N\] ")
    child.sendline("o")
    answer_password_prompts(child, TEST_FILE_PASSWORD, NEW_PASSWORD, NEW_PASSWORD)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert json.loads((isolated_home / "config.json").read_text()) == {"store": "file"}


def test_without_keyring_declining_the_file_stores_nothing(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CFAKEY_STORE")
    child = spawn("store", "password")
    child.expect(r"Utiliser le fichier chiffré \? \[o/N\] ")
    child.sendline("")
    child.expect("Trousseau du système indisponible")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == ExitCode.STORE_UNAVAILABLE
    assert not (isolated_home / "config.json").exists()
