"""The secret canary: recognisable keys, file passwords and an OAuth client secret go
through every command, and appear only where the operator explicitly asked for them.

Allowed: ``show --reveal`` and ``export`` to stdout, the files ``export`` and ``inject``
write, the environment of the ``exec`` child (keys only, never what unlocks the store).
Everything else is scanned after every invocation: stdout, stderr, and every byte of
every file cfakey could have written (``CFAKEY_HOME`` with the SQLite database, its
``-wal``/``-shm``, ``config.json``, the cache, the encrypted store; the XDG directories
and ``HOME``), for each secret raw, in any letter case, base64 or hex encoded (escaped
forms keep the alphanumeric marker every canary carries). Each scenario is recorded,
and every command the CLI offers (``COMMAND_MODULES`` and the groups' subcommands) must
have a scenario that ran to its expected exit code: a new command without one fails.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer.main

from cfakey.cli import GROUPS
from cfakey.cli.app import CfakeyGroup, app
from cfakey.errors import ExitCode
from cfakey.paths import Paths
from cfakey.registry.loader import load_registry
from cfakey.stores.base import entry_name, oauth_entry_name
from cfakey.stores.file_store import EncryptedFileStore, ScryptParams, password_source
from cfakey.stores.keyring_store import home_service
from tests.conftest import CliResult, run_cli
from tests.fake_opco import FakeOpco, running_fake_opco
from tests.openbao import ROOT_TOKEN, OpenBao
from tests.secret_service import SecretServiceDaemon

SIRET = "18130002100373"
OTHER_SIRET = "35600000000048"
FAR = "31/12/2035"  # expiry dates far from any "today": exit codes stay the same every day
FAR_ISO = "2035-12-31"

# Every key canary carries KEY_MARK, every unlocking secret UNLOCK_MARK: alphanumeric, so
# they survive percent-, HTML-, JSON- and shell-escaping unchanged.
KEY_MARK = "qZ7kAnArI"
UNLOCK_MARK = "wX4vErRoU"
KEY_ATLAS = f"{KEY_MARK}+atlas/Cle=$HOME$1=="
KEY_ATLAS_ROTATED = f"{KEY_MARK}-atlas-renouvelee+/0123456789"
KEY_ATLAS_FILE = f"{KEY_MARK}-atlas-depuis-fichier-9876543210"
KEY_SANTE = f"{KEY_MARK}-sante-abcdefghijklmnopqrst"
KEY_AKTO = f"{KEY_MARK}-akto-0123456789abcdef"
KEY_CSV = f"{KEY_MARK}-import-csv-ZYXWVUTSRQPONM"
KEY_JSON = f"{KEY_MARK}-import-json-MNOPQRSTUVWXYZ"
FILE_PASSWORD = f"{UNLOCK_MARK}-mot-de-passe-du-fichier"
NEW_FILE_PASSWORD = f"{UNLOCK_MARK}-nouveau-mot-de-passe"
OAUTH_SECRET = f"{UNLOCK_MARK}-secret-client-oauth"
KEYS = (KEY_ATLAS, KEY_ATLAS_ROTATED, KEY_ATLAS_FILE, KEY_SANTE, KEY_AKTO, KEY_CSV, KEY_JSON)
UNLOCKING = (FILE_PASSWORD, NEW_FILE_PASSWORD, OAUTH_SECRET)
SECRETS = KEYS + UNLOCKING


def encoded_forms(value: str) -> set[bytes]:
    """What ``value`` looks like hex or base64 encoded, wherever it sits in the encoded data:
    one base64 form per alignment of its first byte on a 3-byte group."""
    raw = value.encode()
    forms = {raw.hex().encode(), raw.hex().upper().encode()}
    for offset in range(3):
        chunk = raw[offset:]
        chunk = chunk[: len(chunk) - len(chunk) % 3]
        forms |= {base64.b64encode(chunk), base64.urlsafe_b64encode(chunk)}
    return forms


FORMS = {secret: encoded_forms(secret) for secret in (*SECRETS, KEY_MARK, UNLOCK_MARK)}


def leaks(data: bytes, *, allowed: Iterable[str] = (), keys_allowed: bool = False) -> list[str]:
    """The secrets found in ``data``. ``allowed`` secrets may appear verbatim; with
    ``keys_allowed`` (an export file) any key may appear in any form, but nothing that
    unlocks the store."""
    for secret in allowed:
        data = data.replace(secret.encode(), b"")
    lowered = data.lower()
    marks = (UNLOCK_MARK,) if keys_allowed else (KEY_MARK, UNLOCK_MARK)
    found = [f"« {mark} »" for mark in marks if mark.lower().encode() in lowered]
    checked = UNLOCKING if keys_allowed else SECRETS
    for secret in (*checked, *marks):
        found += [f"{secret} ({form.decode()})" for form in FORMS[secret] if form in data]
    return found


@dataclass(frozen=True)
class Ran:
    """One invocation of the canary run."""

    command: str
    args: tuple[str, ...]
    expected: int
    exit_code: int


@dataclass
class CanaryRun:
    """Runs cfakey, checks each invocation at once, and remembers what ran."""

    root: Path
    inputs: Path
    outputs: Path
    ran: list[Ran] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    reported: set[tuple[Path, str]] = field(default_factory=set)

    def run(
        self, *args: str, expected: int, stdin: str | None = None, shown: Iterable[str] = ()
    ) -> CliResult:
        """``cfakey ARGS``: ``shown`` are the secrets it was asked to print on stdout."""
        result = run_cli(*args, input=stdin)
        command = " ".join(args[:2]) if args[0] in GROUPS else args[0]
        self.ran.append(Ran(command, args, expected, result.exit_code))
        where = " ".join(args)
        if result.exit_code != expected:
            self.problems.append(
                f"{where} : code {result.exit_code} au lieu de {expected} ({result.stderr!r})"
            )
        shown = tuple(shown)
        for secret in shown:
            if secret not in result.stdout:
                self.problems.append(f"{where} : la sortie ne montre pas ce qui était demandé")
        for stream, text, allowed in (
            ("stdout", result.stdout, shown),
            ("stderr", result.stderr, ()),
        ):
            for found in leaks(text.encode(), allowed=allowed):
                self.problems.append(f"{where} : {stream} contient {found}")
        self.scan_files(where)
        return result

    def scan_files(self, where: str) -> None:
        """Every file but the operator's own inputs and outputs, every byte; each leak is
        reported once, after the first invocation that left it."""
        for path in self.root.rglob("*"):
            if path.is_file() and not path.is_relative_to(self.inputs):
                data = path.read_bytes()
                for item in leaks(data, keys_allowed=path.is_relative_to(self.outputs)):
                    if (path, item) not in self.reported:
                        self.reported.add((path, item))
                        self.problems.append(f"{where} : {path} contient {item}")

    def output(self, name: str, *expected_keys: str) -> Path:
        """An output file that must exist and hold ``expected_keys`` (in its own escaping:
        the marker and the key's alphanumeric tail)."""
        path = self.outputs / name
        text = path.read_text(encoding="utf-8") if path.exists() else ""
        for key in expected_keys:
            if key.rsplit("-", 1)[-1] not in text or KEY_MARK not in text:
                self.problems.append(f"{name} ne contient pas la clé attendue")
        return path

    def check_clean(self) -> None:
        """Nothing leaked, every exit code as expected."""
        assert not self.problems, "\n".join(self.problems)

    def check(self) -> None:
        """Nothing leaked, every exit code as expected, every command exercised."""
        self.check_clean()
        succeeded = {ran.command for ran in self.ran if ran.exit_code == ran.expected}
        missing = all_commands() - succeeded
        assert not missing, f"commandes sans scénario réussi : {sorted(missing)}"


def all_commands() -> set[str]:
    """Every command path of the CLI: ``add``, ``cfa add``, ``config set``..."""
    root = typer.main.get_command(app)
    assert isinstance(root, CfakeyGroup)
    names: set[str] = set()
    for name in root.list_commands(None):
        command = root.get_command(None, name)
        subcommands = getattr(command, "commands", {})
        names |= {f"{name} {sub}" for sub in subcommands} if subcommands else {name}
    return names


@pytest.fixture
def canary(tmp_path: Path, isolated_home: Path, monkeypatch: pytest.MonkeyPatch) -> CanaryRun:
    """A home whose encrypted store (cheap scrypt, kept in its header) opens with the
    canary password, a CFA, and the directories of the operator's own files."""
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", FILE_PASSWORD)
    store = EncryptedFileStore(
        Paths.from_env().encrypted_store,
        password_source(os.environ),
        new_file_kdf=ScryptParams(n=2**10),
    )
    store.put("canari/amorce", "x")  # an empty store writes no file
    store.delete("canari/amorce")
    store.close()
    return new_run(tmp_path)


def new_run(root: Path) -> CanaryRun:
    """A run below ``root`` with a CFA, and the directories of the operator's own files."""
    run = CanaryRun(root, root / "in", root / "out")
    run.inputs.mkdir()
    run.outputs.mkdir()
    run.run("cfa", "add", SIRET, "--nom", "CFA Principal", expected=0)
    return run


def configure_server(run: CanaryRun, server: FakeOpco) -> None:
    server.state.valid_keys.update(dict.fromkeys(KEYS, "2035-06-30"))
    server.state.oauth_client_secret = OAUTH_SECRET
    run.run("config", "set", "opco.atlas.api_url", server.base_url("ok"), expected=0)
    run.run("config", "get", "opco.atlas.api_url", expected=0)
    run.run("config", "set", "opco.sante.api_url", server.base_url("ok"), expected=0)
    run.run("config", "set", "opco.akto.api_url", server.base_url("oauth"), expected=0)
    run.run("config", "set", "opco.akto.oauth.token_url", server.token_url, expected=0)
    run.run("config", "set", "opco.akto.oauth.client_id", "editeur-client", expected=0)
    secret = "opco.akto.oauth.client_secret"
    run.run("config", "set", secret, OAUTH_SECRET, expected=ExitCode.USAGE)  # never an argument
    run.run("config", "set", secret, stdin=OAUTH_SECRET + "\n", expected=0)
    run.run("config", "get", secret, expected=0)
    run.run("config", "list", expected=0)
    run.run("config", "list", "--all", "--json", expected=0)


def write_input(run: CanaryRun, name: str, text: str) -> str:
    path = run.inputs / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def dump_environment(target: Path) -> list[str]:
    """A real child process that writes its whole environment to ``target``."""
    script = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    return [sys.executable, "-c", script, str(target)]


@pytest.mark.slow
def test_canary_appears_only_where_asked_through_every_command(
    canary: CanaryRun, monkeypatch: pytest.MonkeyPatch, openbao: OpenBao
) -> None:
    run = canary
    run.run("opcos", expected=0)
    run.run("opcos", "--json", expected=0)
    run.run("guide", "atlas", expected=0)
    run.run("cfa", "list", expected=0)
    run.run("cfa", "list", "--json", expected=0)
    run.run("cfa", "default", SIRET, expected=0)
    run.run("cfa", "rename", SIRET, "CFA Principal Renommé", expected=0)
    run.run("cfa", "edit", SIRET, "--uai", "0133527N", expected=0)
    run.run("cfa", "edit", SIRET, "--uai", KEY_CSV, expected=ExitCode.USAGE)  # never quoted

    # add: from stdin, from a file, interactive; and the key where it does not belong
    run.run("add", "atlas", "--yes", "--expires", FAR, stdin=f" {KEY_ATLAS}\n", expected=0)
    pauses = "\n" * (len(load_registry(None, None)[0].get("atlas").steps) - 1)
    interactive = "o\nn\n" + pauses + KEY_ATLAS + "\n"
    run.run("add", "atlas", "--interactive", stdin=interactive, expected=ExitCode.ALREADY_EXISTS)
    run.run("add", "mobilites", stdin=KEY_ATLAS, expected=ExitCode.ALREADY_EXISTS)  # pasted twice
    run.run("add", "sante", "--expires", KEY_SANTE, stdin=KEY_SANTE, expected=ExitCode.USAGE)
    run.run("add", "sante", "--expires", FAR, stdin=KEY_SANTE, expected=0)
    run.run("add", "akto", "--expires", FAR, stdin=KEY_AKTO, expected=0)

    # the overview never unlocks anything and never shows a key
    for args in (
        ("list",),
        ("list", "--json"),
        ("list", "--detail"),
        ("show", "atlas"),
        ("show", "atlas", "--json"),
        ("check",),
        ("check", "--json"),
        ("metrics",),
        ("calendar",),
        ("calendar", "--output", str(canary.root / "echeances.ics")),  # scanned: no key
        ("journal",),
        ("journal", "--csv"),
    ):
        run.run(*args, expected=0)
    revealed = run.run("show", "atlas", "--reveal", expected=0, shown=[KEY_ATLAS])
    assert revealed.stdout == KEY_ATLAS + "\n"
    assert revealed.stderr == ""

    # rotate from stdin and from a file
    run.run("rotate", "atlas", "--yes", "--expires", FAR, stdin=KEY_ATLAS_ROTATED, expected=0)
    key_file = write_input(run, "cle.txt", KEY_ATLAS_FILE + "\n")
    run.run("rotate", "atlas", "--yes", "--expires", FAR, "--from-file", key_file, expected=0)
    atlas = KEY_ATLAS_FILE

    # import: CSV and JSON, refused (a key in the wrong column) and accepted
    bad_csv = write_input(
        run, "mauvais.csv", f"cfa,opco,key\n{SIRET},opco-x,{KEY_CSV}\n{SIRET},{KEY_CSV},x\n"
    )
    run.run("import", bad_csv, expected=ExitCode.USAGE)
    good_csv = write_input(
        run,
        "cles.csv",
        f"cfa;opco;key;expires;cfa_name\n{OTHER_SIRET};atlas;{KEY_CSV};{FAR};CFA Annexe\n",
    )
    run.run("import", good_csv, expected=0)
    bad_json = write_input(
        run, "mauvais.json", json.dumps([{"cfa": SIRET, "opco": KEY_JSON, "key": KEY_JSON}])
    )
    run.run("import", bad_json, expected=ExitCode.USAGE)
    good_json = write_input(
        run,
        "cles.json",
        json.dumps([{"cfa": OTHER_SIRET, "opco": "sante", "key": KEY_JSON, "expires": FAR_ISO}]),
    )
    run.run("import", good_json, expected=0)
    run.run("import", good_csv, "--dry-run", expected=0)  # every key unchanged
    run.run("import", bad_csv, "--ignorer-invalides", "--dry-run", expected=ExitCode.USAGE)

    # key requests by e-mail: noted, listed, cancelled, journalled
    run.run("request", "add", "constructys", "--a", "cles@constructys.fr", expected=0)
    run.run("request", "list", "--json", expected=0)
    run.run("request", "cancel", "constructys", expected=0)
    run.run("request", "add", KEY_CSV, expected=ExitCode.USAGE)  # a key typed for the OPCO

    # export: every format to a file, to stdout, and the refusals
    principal = (atlas, KEY_SANTE, KEY_AKTO)
    for fmt in ("env", "dotenv", "json", "yaml", "csv"):
        run.run("export", "--format", fmt, "--output", str(run.outputs / f"cles.{fmt}"), expected=0)
        run.output(f"cles.{fmt}", *principal)
        run.run("export", "--format", fmt, expected=0, shown=principal)
    run.run(
        "export",
        "--format",
        "json",
        "--toutes-cfa",
        "--output",
        str(run.outputs / "toutes.json"),
        expected=0,
    )
    run.output("toutes.json", *principal, KEY_CSV, KEY_JSON)
    exists = str(run.outputs / "cles.env")
    run.run("export", "--format", "env", "--output", exists, expected=ExitCode.ALREADY_EXISTS)
    absent = str(run.outputs / "absent" / "cles.yaml")
    run.run("export", "--format", "yaml", "--output", absent, expected=ExitCode.ERROR)
    run.run("export", "--format", "xml", expected=ExitCode.USAGE)
    run.run("export", "--format", "env", "--strict", "--opco", "atlas", expected=0, shown=[atlas])

    # inject: a good template and a bad one
    good = write_input(run, "ok.tpl", "k={{ cfakey:atlas | json }}\ns={{ cfakey:sante }}\n")
    run.run("inject", "-i", good, "-o", str(run.outputs / "si.ini"), expected=0)
    run.output("si.ini", atlas, KEY_SANTE)
    bad = write_input(run, "mauvais.tpl", "k={{ cfakey:atlas }}\nbad={{ cfakey:atlas.x }}\n")
    run.run("inject", "-i", bad, "-o", str(run.outputs / "rien.ini"), expected=ExitCode.USAGE)

    # exec: the child gets the keys asked for, and not the store's password
    monkeypatch.setenv("CFAKEY_NEW_FILE_PASSWORD", NEW_FILE_PASSWORD)
    child = run.outputs / "environnement.json"
    run.run("exec", "--opco", "atlas", "--", *dump_environment(child), expected=0)
    run.output("environnement.json", atlas)
    run.run("exec", "--opco", "atlas", "--", "sh", "-c", "exit 3", expected=3)
    run.run("exec", "--", "cfakey-commande-inexistante", expected=127)
    monkeypatch.delenv("CFAKEY_NEW_FILE_PASSWORD")

    # verify and config, against a real server on 127.0.0.1 (one that echoes the key too)
    with running_fake_opco() as server:
        configure_server(run, server)
        run.run("verify", "atlas", expected=0)
        run.run("verify", "akto", expected=0)
        run.run("verify", "--all", "--json", expected=0)
        echo = server.base_url("echo")
        run.run("verify", "atlas", "--api-url", echo, expected=ExitCode.KEY_REFUSED)
        run.run("verify", "akto", "--api-url", echo, expected=ExitCode.KEY_REFUSED)
        closed = "http://127.0.0.1:9/ok/ApiEchangeCFA"
        run.run(
            "verify",
            "atlas",
            "--api-url",
            closed,
            "--timeout",
            "1",
            expected=ExitCode.OPCO_UNAVAILABLE,
        )
        api_requests = [request for request in server.requests if "ApiEchangeCFA" in request.path]
        sent = {request.header("X-API-KEY") for request in api_requests}
        assert sent == {atlas, KEY_SANTE, KEY_AKTO, KEY_CSV, KEY_JSON}
    run.run("config", "unset", "opco.akto.oauth.client_secret", expected=0)
    run.run("config", "unset", "opco.atlas.api_url", expected=0)

    # moving the keys to the team store and back: the file is in service again after
    monkeypatch.delenv("CFAKEY_STORE")
    monkeypatch.setenv("BAO_TOKEN", ROOT_TOKEN)
    run.run("store", "use", "file", expected=0)
    to_bao = ("--to", "openbao", "--url", openbao.url, "--mount", openbao.mount)
    run.run("store", "migrate", *to_bao, expected=0)
    run.run("show", "sante", "--reveal", expected=0, shown=[KEY_SANTE])
    run.run("store", "migrate", "--to", "file", expected=0)
    monkeypatch.delenv("BAO_TOKEN")

    # the store: its choice, its password; the diagnosis
    run.run("store", "use", "file", expected=0)
    run.run("doctor", expected=0)
    run.run("doctor", "--json", expected=0)
    monkeypatch.setenv("CFAKEY_NEW_FILE_PASSWORD", NEW_FILE_PASSWORD)
    run.run("store", "password", expected=0)
    monkeypatch.delenv("CFAKEY_NEW_FILE_PASSWORD")
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", NEW_FILE_PASSWORD)
    run.run("show", "sante", "--reveal", expected=0, shown=[KEY_SANTE])

    # removal
    run.run("remove", "akto", "--yes", expected=0)
    run.run("cfa", "remove", OTHER_SIRET, "--force", expected=0)
    run.run("journal", "--csv", expected=0)
    run.run("journal", "--json", "--limit", "50", expected=0)
    run.run("journal", "--excel", "--action", "exported", expected=0)
    run.check()


@pytest.mark.slow
@pytest.mark.secret_service
def test_canary_through_the_system_keyring(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    own_secret_service: Callable[..., SecretServiceDaemon],
) -> None:
    """The same rules with the real Secret Service as the store; its own files (below
    tmp_path) are scanned like every other."""
    daemon = own_secret_service()
    monkeypatch.delenv("CFAKEY_STORE")
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", FILE_PASSWORD)  # set, unused: still secret
    run = new_run(tmp_path)
    run.run("store", "use", "keyring", expected=0)
    run.run("add", "atlas", "--expires", FAR, stdin=KEY_ATLAS, expected=0)
    run.run("add", "sante", "--expires", FAR, stdin=KEY_SANTE, expected=0)
    run.run("rotate", "atlas", "--yes", "--expires", FAR, stdin=KEY_ATLAS_ROTATED, expected=0)
    run.run("list", "--json", expected=0)
    run.run("show", "atlas", "--reveal", expected=0, shown=[KEY_ATLAS_ROTATED])
    run.run("export", "--format", "json", "--output", str(run.outputs / "c.json"), expected=0)
    run.output("c.json", KEY_ATLAS_ROTATED, KEY_SANTE)
    child = run.outputs / "environnement.json"
    run.run("exec", "--opco", "sante", "--", *dump_environment(child), expected=0)
    run.output("environnement.json", KEY_SANTE)
    secret = "opco.akto.oauth.client_secret"
    run.run("config", "set", secret, stdin=OAUTH_SECRET + "\n", expected=0)
    run.run("config", "get", secret, expected=0)
    run.run("doctor", "--json", expected=0)
    assert daemon.items(home_service(Paths.from_env().data_dir)) == {
        entry_name(SIRET, "atlas"): KEY_ATLAS_ROTATED,
        entry_name(SIRET, "sante"): KEY_SANTE,
        oauth_entry_name("akto"): OAUTH_SECRET,
    }
    run.run("config", "unset", secret, expected=0)
    run.run("remove", "sante", "--yes", expected=0)
    run.run("journal", "--csv", expected=0)
    assert sorted(path.name for path in tmp_path.rglob("*.keyring"))  # its files were scanned
    run.check_clean()


def test_a_command_without_a_scenario_that_ran_fails_the_canary(canary: CanaryRun) -> None:
    canary.run("opcos", expected=0)
    canary.run("guide", "atlas", expected=ExitCode.ERROR)  # ran, but not as expected
    canary.problems.clear()
    with pytest.raises(AssertionError, match="commandes sans scénario réussi") as failed:
        canary.check()
    assert "'guide'" in str(failed.value)
    assert "'opcos'" not in str(failed.value)
    assert "'config unset'" in str(failed.value)


def test_the_leak_detector_sees_every_form() -> None:
    """What the canary run relies on: each form a careless program could write is found."""
    import html
    from urllib.parse import quote, quote_plus

    key = KEY_ATLAS
    for prefix in (b"", b"x", b"xy", b"xyz"):
        assert leaks(base64.b64encode(prefix + key.encode() + b"!"))
        assert leaks(base64.urlsafe_b64encode(prefix + key.encode()))
    for form in (
        key,
        key.upper(),
        key.lower(),
        quote(key, safe=""),
        quote_plus(key),
        html.escape(key),
        json.dumps(key),
        key.encode().hex(),
        key[:12],  # cut short, the marker still says what it is
        KEY_MARK + "\u00a0" + key[len(KEY_MARK) :],
    ):
        assert leaks(form.encode()), form
    assert leaks(OAUTH_SECRET.encode(), keys_allowed=True)
    assert not leaks(key.encode(), keys_allowed=True)
    assert not leaks(f"<{key}>".encode(), allowed=[key])
    assert not leaks(b"CFA Principal 18130002100373 atlas 0123456789ab")


# Leaks found by the adversarial run of issue 10: a key in the wrong place, a stray quote
# in an import file, a server quoting the key back in another form.

SHORT_KEY = f"{KEY_MARK}+k3y/Q"  # 15 characters: what a short key pasted in the wrong place is


WRONG_PLACE = [
    pytest.param(("add", "atlas", "--cfa", SHORT_KEY), ExitCode.NOT_FOUND, id="add --cfa"),
    pytest.param(("show", "atlas", "--cfa", SHORT_KEY), ExitCode.NOT_FOUND, id="show --cfa"),
    pytest.param(("cfa", "default", SHORT_KEY), ExitCode.NOT_FOUND, id="cfa default"),
    pytest.param(("cfa", "add", SHORT_KEY, "--nom", "CFA"), ExitCode.USAGE, id="cfa add"),
    pytest.param(
        ("config", "set", "opco.atlas.api_url", SHORT_KEY), ExitCode.USAGE, id="config set url"
    ),
    pytest.param(("store", "use", SHORT_KEY), ExitCode.USAGE, id="store use"),
    pytest.param(("export", "--format", SHORT_KEY), ExitCode.USAGE, id="export --format"),
    pytest.param(("guide", SHORT_KEY), ExitCode.USAGE, id="guide"),
    pytest.param(("show", SHORT_KEY), ExitCode.USAGE, id="show"),
    pytest.param(("journal", "--since", SHORT_KEY), ExitCode.USAGE, id="journal --since"),
]


@pytest.mark.parametrize(("args", "expected"), WRONG_PLACE)
def test_a_short_key_in_the_wrong_place_is_never_quoted(
    canary: CanaryRun, args: tuple[str, ...], expected: int
) -> None:
    canary.run(*args, stdin=KEY_ATLAS + "\n", expected=expected)
    canary.check_clean()


@pytest.mark.parametrize(
    "row",
    [
        pytest.param(f"{SHORT_KEY},atlas,{KEY_CSV},", id="cfa"),
        pytest.param(f"{SIRET},{SHORT_KEY},{KEY_CSV},", id="opco"),
        pytest.param(f"{SIRET},atlas,{KEY_CSV},{SHORT_KEY}", id="expires"),
    ],
)
def test_a_short_key_in_the_wrong_import_column_is_never_quoted(
    canary: CanaryRun, row: str
) -> None:
    csv = write_input(canary, "colonne.csv", f"cfa,opco,key,expires\n{row}\n")
    canary.run("import", csv, expected=ExitCode.USAGE)
    canary.check_clean()


def test_a_stray_quote_in_an_import_csv_stores_no_key_in_a_name(canary: CanaryRun) -> None:
    rows = "".join(
        f"{OTHER_SIRET};{opco};{KEY_MARK}-cle-{opco}-0123456789;\n"
        for opco in ("sante", "akto", "afdas")
    )
    csv = write_input(
        canary,
        "guillemet.csv",
        f'cfa;opco;key;cfa_name\n{OTHER_SIRET};atlas;{KEY_CSV};"CFA Saint-Jean\n{rows}',
    )
    canary.run("import", csv, expected=ExitCode.USAGE)
    canary.run("cfa", "list", "--json", expected=0)
    canary.run("journal", "--csv", expected=0)
    canary.check_clean()


def _echo_forms(key: str) -> dict[str, str]:
    """How a careless server may quote back the key it received."""
    from urllib.parse import quote

    middle = len(key) // 2
    return {
        "percent": quote(key, safe=""),
        "lower": key.lower(),
        "base64": base64.b64encode(key.encode()).decode(),
        "tab": key[:middle] + "\t" + key[middle:],
        "nbsp": key[:middle] + "\u00a0" + key[middle:],
        "zwsp": key[:middle] + "\u200b" + key[middle:],
    }


@contextmanager
def encoding_echo_server() -> Iterator[str]:
    """A real server on 127.0.0.1 refusing every key and quoting it back in the form its
    first path segment names; yields its origin."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            """Quiet."""

        def do_GET(self) -> None:
            form = self.path.strip("/").split("/", 1)[0]
            echoed = _echo_forms(self.headers.get("X-API-KEY") or "")[form]
            body = json.dumps({"status": "error", "comment": f"clé refusée : {echoed}"})
            payload = body.encode()
            self.send_response(403)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize("form", list(_echo_forms(KEY_ATLAS)))
def test_verify_never_shows_or_journals_a_key_the_server_quotes_back_in_any_form(
    canary: CanaryRun, form: str
) -> None:
    canary.run("add", "atlas", "--expires", FAR, stdin=KEY_ATLAS, expected=0)
    with encoding_echo_server() as origin:
        url = f"{origin}/{form}/ApiEchangeCFA"
        canary.run("verify", "atlas", "--api-url", url, expected=ExitCode.KEY_REFUSED)
        canary.run("verify", "atlas", "--api-url", url, "--json", expected=ExitCode.KEY_REFUSED)
    canary.run("journal", "--csv", expected=0)
    canary.check_clean()
