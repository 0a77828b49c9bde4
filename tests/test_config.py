"""``cfakey config`` and its use-cases (``core/settings.py``): settings in the file, the
vendor's OAuth client secret in the key store, journalled by fingerprint like any secret."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest

from cfakey.context import AppContext
from cfakey.core import settings
from cfakey.errors import ExitCode, NotFoundError, UsageError
from cfakey.metadata import JournalEntry, Metadata
from cfakey.paths import Paths
from cfakey.stores.base import KeyStore, fingerprint, oauth_entry_name
from tests.conftest import run_cli

OAUTH_SECRET = "secret-client-oauth-0123456789"
NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


def oauth_entries() -> list[JournalEntry]:
    with Metadata.open(Paths.from_env()) as metadata:
        return [entry for entry in metadata.journal() if entry.action.startswith("oauth_")]


def secret_nowhere_at_rest(home: Path, secret: str) -> None:
    """The secret is in no file of cfakey's home in clear (the store encrypts it)."""
    for path in home.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


def test_config_set_get_unset_list() -> None:
    assert (
        run_cli(
            "config", "set", "opco.atlas.api_url", "https://api.atlas.example/ApiEchangeCFA/"
        ).exit_code
        == 0
    )
    assert run_cli("config", "set", "opco.atlas.warn_days", "45").exit_code == 0

    got = run_cli("config", "get", "opco.atlas.api_url")
    listed = json.loads(run_cli("config", "list", "--json").stdout)
    removed = run_cli("config", "unset", "opco.atlas.api_url")
    again = run_cli("config", "get", "opco.atlas.api_url")

    assert got.stdout == "https://api.atlas.example/ApiEchangeCFA\n"
    assert listed["values"] == {
        "opco.atlas.api_url": "https://api.atlas.example/ApiEchangeCFA",
        "opco.atlas.warn_days": 45,
    }
    assert removed.exit_code == 0
    assert again.exit_code == 3
    assert "n'est pas réglé" in again.stderr
    assert "opco.<id>.oauth.client_secret" in run_cli("config", "list", "--all").stdout


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (
            ("config", "set", "opco.atlass.api_url", "https://x.fr"),
            "OPCO inconnu : un identifiant ou un nom",
            ExitCode.USAGE,
        ),
        (
            ("config", "set", "opco.opco-ep.api_url", "https://x.fr"),
            "n'est pas un identifiant d'OPCO",
            ExitCode.USAGE,
        ),
        (
            ("config", "set", "couleur", "bleu"),
            "Paramètre inconnu : un nom de la forme",
            ExitCode.USAGE,
        ),
        (("config", "get", "couleur"), "Paramètre inconnu", ExitCode.USAGE),
        (
            ("config", "set", "opco.atlas.warn_days", "beaucoup"),
            "nombre entier de jours de 0 à 3650",
            ExitCode.USAGE,
        ),
        (("config", "set", "opco.atlas.api_url"), "VALEUR manquante", ExitCode.USAGE),
        (
            ("config", "set", "opco.Atlas.api_url", "https://x.fr"),
            "opco.atlas.api_url",
            ExitCode.USAGE,
        ),
    ],
)
def test_config_bad_input(
    args: tuple[str, ...], message: str, code: ExitCode, isolated_home: Path
) -> None:
    result = run_cli(*args)

    # An unknown OPCO is a usage error (2) as for every command (registry.names), and so
    # is a malformed setting name or value: the operator must change what was typed.
    assert result.exit_code == code
    assert message in result.stderr
    assert not (isolated_home / "config.json").exists()


# -- the vendor's OAuth client secret: journalled like every other secret ---------------------


def test_setting_and_removing_the_oauth_secret_is_journalled_by_fingerprint(
    isolated_home: Path,
) -> None:
    stored = run_cli("config", "set", "opco.akto.oauth.client_secret", input=OAUTH_SECRET + "\n")
    replaced = run_cli("config", "set", "opco.akto.oauth.client_secret", input="autre-secret\n")
    removed = run_cli("config", "unset", "opco.akto.oauth.client_secret")
    again = run_cli("config", "unset", "opco.akto.oauth.client_secret")

    assert (stored.exit_code, replaced.exit_code, removed.exit_code, again.exit_code) == (0,) * 4
    assert f"(empreinte {fingerprint(OAUTH_SECRET)})" in stored.stderr
    assert "n'était pas réglé : rien à faire" in again.stderr
    entries = oauth_entries()
    assert [(e.action, e.opco_id) for e in entries] == [
        ("oauth_secret_set", "akto"),
        ("oauth_secret_set", "akto"),
        ("oauth_secret_removed", "akto"),
    ]
    assert [(e.old_fingerprint, e.new_fingerprint) for e in entries] == [
        (None, fingerprint(OAUTH_SECRET)),
        (fingerprint(OAUTH_SECRET), fingerprint("autre-secret")),
        (fingerprint("autre-secret"), None),
    ]
    journal = run_cli("journal")
    assert "secret OAuth2 enregistré" in journal.stdout
    for secret in (OAUTH_SECRET, "autre-secret"):
        assert secret not in json.dumps([e.detail for e in entries])
        for result in (stored, replaced, removed, again, journal):
            assert secret not in result.stdout + result.stderr
        secret_nowhere_at_rest(isolated_home, secret)


def open_store() -> KeyStore:
    store: KeyStore = AppContext().key_store()
    return store


def test_oauth_secret_use_case_stamps_the_injected_clock() -> None:
    context = AppContext(clock=lambda: NOW)
    opco = context.registry.get("akto")
    with Metadata.open(Paths.from_env()) as metadata, open_store() as store:
        shown = settings.set_oauth_secret(
            store, metadata, opco, f" {OAUTH_SECRET}\n", now=context.clock
        )
        assert store.get(oauth_entry_name("akto")) == OAUTH_SECRET
        assert settings.remove_oauth_secret(store, metadata, opco, now=context.clock)
        assert not settings.remove_oauth_secret(store, metadata, opco, now=context.clock)

    assert shown == fingerprint(OAUTH_SECRET)
    assert [entry.at for entry in oauth_entries()] == [NOW, NOW]


def test_an_empty_oauth_secret_writes_and_journals_nothing() -> None:
    context = AppContext(clock=lambda: NOW)
    opco = context.registry.get("akto")
    with Metadata.open(Paths.from_env()) as metadata, open_store() as store:
        with pytest.raises(UsageError, match="Secret vide : rien n'a été enregistré"):
            settings.set_oauth_secret(store, metadata, opco, "  \n", now=context.clock)
        assert store.get(oauth_entry_name("akto")) is None
    assert oauth_entries() == []


def test_setting_use_cases_without_the_cli() -> None:
    context = AppContext()
    registry, config = context.registry, context.config()
    url = settings.parse_setting(registry, " opco.atlas.api_url ")
    secret = settings.parse_setting(registry, "opco.akto.oauth.client_secret")

    settings.set_setting(config, url, "https://api.atlas.example/ApiEchangeCFA/")

    assert url == settings.Setting("opco.atlas.api_url")
    assert secret.secret_opco is not None
    assert secret.secret_opco.id == "akto"
    assert settings.get_setting(config, url).value == "https://api.atlas.example/ApiEchangeCFA"
    assert settings.get_setting(config, settings.parse_setting(registry, "editeur")) == (
        settings.SettingValue("cfakey", is_default=True)
    )
    with pytest.raises(UsageError, match="Un secret ne se passe jamais en argument"):
        settings.set_setting(config, secret, "s3cret")
    assert settings.unset_setting(config, url)
    with pytest.raises(NotFoundError, match="n'est pas réglé"):
        settings.get_setting(config, url)
    assert "s3cret" not in config.path.read_text()


def test_a_store_that_cannot_write_the_oauth_secret_leaves_no_journal_entry(
    monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    """The entry and the store write commit together: a refused write journals nothing."""
    first = run_cli("config", "set", "opco.akto.oauth.client_secret", input=OAUTH_SECRET + "\n")
    assert first.exit_code == 0, first.stderr

    def full_disk(fd: int) -> None:
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # only this patch: the home stays isolated
        patch.setattr(os, "fsync", full_disk)  # the encrypted file's write (SQLite is C)
        result = run_cli("config", "set", "opco.akto.oauth.client_secret", input="autre-secret\n")

    assert result.exit_code == ExitCode.ERROR  # a full disk (docs/exit-codes.md)
    assert "Impossible d'écrire le fichier chiffré" in result.stderr
    assert "l'ancien fichier est intact" in result.stderr
    assert "autre-secret" not in result.stdout + result.stderr
    assert [entry.new_fingerprint for entry in oauth_entries()] == [fingerprint(OAUTH_SECRET)]
    with open_store() as store:
        assert store.get(oauth_entry_name("akto")) == OAUTH_SECRET
