"""``cfakey inject`` (templates of any syntax) and ``cfakey exec`` (keys in the environment)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import cfakey
from cfakey.core import export as core
from cfakey.errors import ExitCode, NotFoundError, UsageError
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from cfakey.registry.loader import load_registry
from cfakey.registry.model import Registry
from cfakey.stores.base import entry_name
from cfakey.stores.file_store import SECRET_ENV_VARIABLES
from tests.conftest import TEST_FILE_PASSWORD, CliResult, run_cli
from tests.fake_opco import running_fake_opco
from tests.test_export import (
    CANARY,
    CANARY_SANTE,
    OTHER_SIRET,
    SIRET,
    CountingStore,
    journal,
    key_record,
    mode,
    store_keys,
    two_keys,  # noqa: F401 - fixture
)

ROOT = Path(__file__).resolve().parent.parent
TRICKY = "a'b\"c$d\\e`f+g/h=i#j<&>"
EXPIRES = datetime(2027, 3, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def registry() -> Registry:
    return load_registry(None, Paths.from_env().cache_dir)[0]


@pytest.fixture
def stocked(isolated_home: Path) -> Iterator[tuple[Metadata, CountingStore]]:
    metadata = Metadata.open(Paths.from_env())
    store = CountingStore()
    metadata.add_cfa(SIRET, "CFA Principal", None)
    metadata.add_cfa(OTHER_SIRET, "CFA Annexe", None)
    for siret, opco_id, secret, expires in (
        (SIRET, "atlas", TRICKY, EXPIRES),
        (SIRET, "opcoep", "eyJhbGciOiJIUzI1NiJ9.e30.sig", None),
        (OTHER_SIRET, "opcoep", "cle-annexe-opcoep", None),
    ):
        metadata.put_key(key_record(opco_id, secret, siret, expires))
        store.put(entry_name(siret, opco_id), secret)
    yield metadata, store
    metadata.close()


# Parsing -------------------------------------------------------------------------------


def test_parse_keeps_everything_but_references() -> None:
    text = (
        "[api]\r\nkey = {{ cfakey:atlas }}\r\njinja = {{ other }}\r\n"
        "{{cfakey:18130002100373/opcoep|json}}"
    )
    template = core.parse_template(text, "app.ini.tpl")
    refs = template.references
    assert [(r.line, r.cfa, r.opco, r.attribute, r.filter) for r in refs] == [
        (2, None, "atlas", "key", None),
        (4, SIRET, "opcoep", "key", "json"),
    ]
    literal = "".join(part if isinstance(part, str) else "@" for part in template.parts)
    assert literal == "[api]\r\nkey = @\r\njinja = {{ other }}\r\n@"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("key = {{ cfakey:atlas", "accolades non fermées"),
        ("key = {{ cfakey:atlas.colour }}", "référence inconnue"),
        ("key = {{ cfakey:atlas | base64 }}", "filtre inconnu : « base64 »"),
        ("key = {{ cfakey: }}", "référence illisible"),
        ("key = {{ cfakey atlas }}", "référence illisible"),
    ],
)
def test_bad_references_name_the_line(line: str, expected: str) -> None:
    with pytest.raises(core.TemplateError) as caught:
        core.parse_template(f"# header\n\n{line}\n", "app.ini.tpl")
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.message.startswith("app.ini.tpl, ligne 3 : ")
    assert expected in caught.value.message


# Filling -------------------------------------------------------------------------------


def fill(
    text: str, stocked: tuple[Metadata, CountingStore], registry: Registry, **kwargs: str
) -> str:
    metadata, store = stocked
    template = core.parse_template(text, "modele")
    planned = core.plan_template(template, metadata, registry, **kwargs)
    return core.fill_template(planned, store).text


def test_raw_insertion_for_ini_and_properties(
    stocked: tuple[Metadata, CountingStore], registry: Registry
) -> None:
    text = (
        "[opco]\natlas={{ cfakey:atlas }}\nexpire={{ cfakey:atlas.expires }}\n"
        "ep = {{ cfakey:OPCO EP }}\n"
    )
    assert fill(text, stocked, registry) == (
        f"[opco]\natlas={TRICKY}\nexpire=2027-03-21\nep = eyJhbGciOiJIUzI1NiJ9.e30.sig\n"
    )
    assert stocked[1].batches == 1


def test_json_filter_round_trips(
    stocked: tuple[Metadata, CountingStore], registry: Registry
) -> None:
    text = (
        '{"atlas": "{{ cfakey:atlas | json }}", '
        '"annexe": "{{ cfakey:35600000000048/opcoep | json }}"}'
    )
    assert json.loads(fill(text, stocked, registry)) == {
        "atlas": TRICKY,
        "annexe": "cle-annexe-opcoep",
    }


def test_xml_filter_round_trips_in_text_and_attributes(
    stocked: tuple[Metadata, CountingStore], registry: Registry
) -> None:
    text = (
        "<config>\n  <key opco='atlas' value='{{ cfakey:atlas | xml }}'/>\n"
        '  <key opco="atlas" value="{{ cfakey:atlas|xml }}">'
        "{{ cfakey:atlas | xml }}</key>\n</config>\n"
    )
    root = ET.fromstring(fill(text, stocked, registry))  # noqa: S314 - our own test document
    first, second = root.findall("key")
    assert first.get("value") == TRICKY
    assert second.get("value") == TRICKY
    assert second.text == TRICKY


def test_cfa_option_changes_unqualified_references(
    stocked: tuple[Metadata, CountingStore], registry: Registry
) -> None:
    assert (
        fill("k={{ cfakey:opcoep }}", stocked, registry, cfa_query="Annexe")
        == "k=cle-annexe-opcoep"
    )


@pytest.mark.parametrize(
    ("text", "error", "expected"),
    [
        ("a\nb={{ cfakey:atlass }}", UsageError, "modele, ligne 2 : OPCO inconnu : un identifiant"),
        ("a\nb={{ cfakey:sante }}", NotFoundError, "modele, ligne 2 : aucune clé OPCO Santé"),
        ("a\nb={{ cfakey:77777777200016/atlas }}", NotFoundError, "modele, ligne 2 : CFA inconnu"),
    ],
)
def test_unknown_or_missing_is_an_error_before_any_read(
    stocked: tuple[Metadata, CountingStore],
    registry: Registry,
    text: str,
    error: type[Exception],
    expected: str,
) -> None:
    with pytest.raises(error) as caught:
        fill("x={{ cfakey:atlas }}\n" + text, stocked, registry)
    assert expected.replace("ligne 2", "ligne 3") in str(caught.value)
    assert stocked[1].batches == 0


# inject, end to end ---------------------------------------------------------------------


def write_template(tmp_path: Path, text: str) -> Path:
    tmp_path.mkdir(exist_ok=True)
    template = tmp_path / "si.ini.tpl"
    template.write_text(text, encoding="utf-8")
    return template


@pytest.mark.usefixtures("two_keys")
def test_cli_inject_fills_a_private_file_and_journals(tmp_path: Path) -> None:
    template = write_template(
        tmp_path,
        "[atlas]\ncle = {{ cfakey:atlas }}\nexpire = {{ cfakey:atlas.expires }}\n"
        '[json]\nsante = "{{ cfakey:sante | json }}"\n',
    )
    target = tmp_path / "si.ini"
    result = run_cli("inject", "-i", str(template), "-o", str(target))
    assert result.exit_code == 0, result.stderr
    assert "CANARY" not in result.stdout + result.stderr
    assert mode(target) == 0o600
    assert target.read_text(encoding="utf-8") == (
        f'[atlas]\ncle = {CANARY}\nexpire = 2030-01-01\n[json]\nsante = "{CANARY_SANTE}"\n'
    )
    entries = journal()
    assert [entry[1] for entry in entries] == ["atlas", "sante"]
    assert entries[0][3] == f"inject vers {target.resolve()} (modèle {template.resolve()})"
    again = run_cli("inject", "-i", str(template), "-o", str(target))
    assert again.exit_code == ExitCode.ALREADY_EXISTS
    assert "existe déjà" in again.stderr
    assert run_cli("inject", "-i", str(template), "-o", str(target), "--force").exit_code == 0


@pytest.mark.usefixtures("two_keys")
@pytest.mark.parametrize(
    ("text", "code", "expected"),
    [
        (
            "x = {{ cfakey:atlas }}\nb = {{ cfakey:atlass }}\n",
            2,
            "ligne 2 : OPCO inconnu : un identifiant ou un nom d'OPCO est attendu",
        ),
        ("x = {{ cfakey:atlas }}\nb = {{ cfakey:atlas\n", 2, "ligne 2 : accolades non fermées"),
        ("a = {{ cfakey:atlas.couleur }}\n", 2, "ligne 1 : référence inconnue"),
        ("x = {{ cfakey:atlas }}\n\nb = {{ cfakey:afdas }}\n", 3, "ligne 3 : aucune clé Afdas"),
    ],
)
def test_cli_inject_bad_template_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, code: int, expected: str
) -> None:
    # A wrong store password proves the template is checked before the store is opened.
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", "mauvais-mot-de-passe")
    template = write_template(tmp_path, text)
    target = tmp_path / "si.ini"
    result = run_cli("inject", "-i", str(template), "-o", str(target))
    assert result.exit_code == code
    assert f"{template}, {expected}" in result.stderr
    assert not target.exists()
    assert journal() == []


def test_cli_inject_missing_template(tmp_path: Path) -> None:
    # Issue 11: a missing file the operator named exits 2 (USAGE), whatever the file.
    target = tmp_path / "si.ini"
    result = run_cli("inject", "-i", str(tmp_path / "absent.tpl"), "-o", str(target))
    assert result.exit_code == ExitCode.USAGE
    assert "Modèle introuvable" in result.stderr
    assert not target.exists()
    assert journal() == []


def test_missing_user_files_share_one_exit_code(tmp_path: Path) -> None:
    """A template, a key file and an import file that are not there: the same code, 2."""
    absent = tmp_path / "absent"
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA Principal").exit_code == 0
    runs = {
        "inject": run_cli("inject", "-i", str(absent), "-o", str(tmp_path / "si.ini")),
        "add": run_cli("add", "atlas", "--from-file", str(absent), "--expires", "31/12/2099"),
        "import": run_cli("import", str(absent)),
    }
    assert {name: run.exit_code for name, run in runs.items()} == dict.fromkeys(
        runs, ExitCode.USAGE
    )
    assert all("introuvable" in run.stderr for run in runs.values())


def _a_folder(tmp_path: Path) -> Path:
    (tmp_path / "modele.tpl").mkdir()
    return tmp_path / "modele.tpl"


def _under_a_file(tmp_path: Path) -> Path:
    (tmp_path / "fichier").write_text("x", encoding="utf-8")
    return tmp_path / "fichier" / "modele.tpl"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_a_folder, "illisible : {path} est un dossier"),
        (_under_a_file, "illisible : {path} (un élément du chemin n'est pas un dossier)"),
    ],
)
def test_read_user_file_errors_are_usage(
    tmp_path: Path, make: Callable[[Path], Path], expected: str
) -> None:
    from cfakey.userfiles import read_user_file

    path = make(tmp_path)
    with pytest.raises(UsageError) as caught:
        read_user_file(path, "Modèle")
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.message.startswith("Modèle " + expected.format(path=path))


# exec, end to end -----------------------------------------------------------------------


@pytest.mark.usefixtures("two_keys")
def test_cli_exec_passes_keys_and_exit_code(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    script = f'printf "%s\\0%s" "$CFA_KEY_ATLAS" "$CFA_KEY_SANTE" > {out}; exit 7'
    result = run_cli("exec", "--", "sh", "-c", script)
    assert result.exit_code == 7
    assert out.read_text(encoding="utf-8").split("\0") == [CANARY, CANARY_SANTE]
    assert "CANARY" not in result.stdout + result.stderr
    # One entry per run, listing the keys (issue 15, item 7), not one per key.
    [(_, opco_id, fingerprint, detail)] = journal()
    assert (opco_id, fingerprint) == (None, None)
    assert detail.startswith("exec de sh : 2 clé(s) : atlas ")
    assert ", sante " in detail


@pytest.mark.usefixtures("two_keys")
def test_cli_exec_selection_and_all_cfas(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    script = f"env | grep ^CFA_KEY_ | cut -d= -f1 | sort > {out}"
    result = run_cli("exec", "--toutes-cfa", "--opco", "atlas", "--", "sh", "-c", script)
    assert result.exit_code == 0, result.stderr
    assert out.read_text(encoding="utf-8").split() == sorted(
        [f"CFA_KEY_{OTHER_SIRET}_ATLAS", f"CFA_KEY_{SIRET}_ATLAS"]
    )


def dump_environment(target: Path) -> list[str]:
    """A real child process that writes its whole environment to ``target`` as JSON."""
    script = "import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w'))"
    return [sys.executable, "-c", script, str(target)]


@pytest.mark.usefixtures("two_keys")
def test_cli_exec_child_gets_the_keys_asked_for_and_nothing_that_opens_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    new_password = "nouveau-mot-de-passe-du-fichier"
    monkeypatch.setenv("CFAKEY_NEW_FILE_PASSWORD", new_password)
    monkeypatch.setenv("CFA_KEY_SANTE", "une-cle-sante-heritee")  # from an earlier `eval`
    monkeypatch.setenv("MON_SI_REGLAGE", "garde")
    seen = tmp_path / "environ.json"
    result = run_cli("exec", "--opco", "atlas", "--", *dump_environment(seen))
    assert result.exit_code == 0, result.stderr
    environment = json.loads(seen.read_text(encoding="utf-8"))
    assert environment["CFA_KEY_ATLAS"] == CANARY
    assert environment["MON_SI_REGLAGE"] == "garde"
    ours = sorted(name for name in environment if name.startswith(("CFA_KEY_", "CFAKEY_")))
    assert ours == ["CFAKEY_HOME", "CFAKEY_STORE", "CFA_KEY_ATLAS"]
    values = "\0".join(environment.values())
    for secret in (TEST_FILE_PASSWORD, new_password, CANARY_SANTE, "une-cle-sante-heritee"):
        assert secret not in values


def test_every_secret_variable_cfakey_reads_is_withheld_from_exec() -> None:
    """A new ``CFAKEY_*PASSWORD``/``SECRET``/``TOKEN`` variable must join the withheld list."""
    source = "\n".join(
        path.read_text(encoding="utf-8") for path in Path(cfakey.__file__).parent.rglob("*.py")
    )
    names = set(re.findall(r"[\"'](CFAKEY_[A-Z0-9_]+)[\"']", source))
    secret_looking = {name for name in names if re.search("PASSWORD|SECRET|TOKEN|KEY$", name)}
    assert secret_looking == {
        "CFAKEY_FILE_PASSWORD",
        "CFAKEY_NEW_FILE_PASSWORD",
        "CFAKEY_BAO_SECRET_ID",  # the team store's AppRole secret_id
    }
    assert secret_looking <= set(SECRET_ENV_VARIABLES)
    inherited = dict.fromkeys(names, "x") | {"cfakey_file_password": "x"}
    kept = core.exec_environment(inherited, [], qualified=False)
    assert not {name.upper() for name in kept} & set(SECRET_ENV_VARIABLES)


def documented_curl_example() -> list[str]:
    """The ``cfakey exec ... curl`` line of docs/export.md, split as a shell would."""
    text = (ROOT / "docs" / "export.md").read_text(encoding="utf-8")
    lines = [
        line for line in text.splitlines() if line.startswith("cfakey exec") and "curl" in line
    ]
    assert len(lines) == 1, lines
    return shlex.split(lines[0])


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl n'est pas installé")
@pytest.mark.usefixtures("two_keys")
def test_documented_curl_example_keeps_the_key_off_every_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run the example of the docs as written: the key reaches the server in its header,
    and neither the shell's nor curl's arguments (what ``ps`` shows) ever hold it."""
    args = documented_curl_example()
    separator = args.index("--")
    options, command = args[2:separator], args[separator + 1 :]
    # A PATH with only sh and a curl that records its arguments, then runs the real one:
    # whatever else the example needs must be a shell builtin, which makes no process.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sh").symlink_to("/bin/sh")
    recorded = tmp_path / "curl-argv"
    wrapper = bin_dir / "curl"
    wrapper.write_text(
        f'#!/bin/sh\nprintf "%s\\0" "$@" > {recorded}\nexec {shutil.which("curl")} "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o700)
    monkeypatch.setenv("PATH", str(bin_dir))
    with running_fake_opco() as server:
        url = server.base_url("ok") + "/v2/cfakeyinfo"
        command = [part.replace("https://...", url) for part in command]
        result = run_cli("exec", *options, "--", *command)
        requests = server.requests
    assert result.exit_code == 0, result.stderr
    assert [request.header("X-API-KEY") for request in requests] == [CANARY]
    curl_argv = recorded.read_bytes().decode("utf-8").split("\0")
    assert url in curl_argv
    assert not [part for part in command + curl_argv if "CANARY" in part]


@pytest.mark.usefixtures("two_keys")
def test_cli_exec_signal_becomes_128_plus_n() -> None:
    result = run_cli("exec", "--opco", "atlas", "--", "sh", "-c", "kill -TERM $$")
    assert result.exit_code == 128 + 15


@pytest.mark.usefixtures("two_keys")
def test_cli_exec_without_command() -> None:
    for args in (("exec",), ("exec", "--opco", "atlas", "--")):
        result = run_cli(*args)
        assert result.exit_code == ExitCode.USAGE
        assert "Aucune commande à lancer" in result.stderr
    assert journal() == []


@pytest.mark.usefixtures("two_keys")
def test_cli_exec_command_not_found_is_127_and_not_journalled() -> None:
    result = run_cli("exec", "--", "cfakey-commande-inexistante", "--x")
    assert result.exit_code == 127
    assert "Commande introuvable : « cfakey-commande-inexistante »" in result.stderr
    assert journal() == []


@pytest.mark.slow
def test_exec_code_type_checks_for_windows() -> None:
    """``signal.SIGQUIT``/``SIGHUP`` do not exist on Windows: exec guards them."""
    exec_modules = ("src/cfakey/cli/export_cmds.py", "src/cfakey/core/export/handover.py")
    mypy = (sys.executable, "-m", "mypy", "--platform", "win32", "--follow-imports=silent")
    result = subprocess.run(
        [*mypy, *exec_modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout


# One classification for every command (issue 11, item 2) --------------------------------

BOUNDARY_TODAY = datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


def jwt_expiring_at(moment: datetime) -> str:
    """An OPCO EP-shaped token whose ``exp`` claim is ``moment``."""
    import base64

    def part(data: dict[str, object]) -> str:
        raw = json.dumps(data).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'exp': int(moment.timestamp())})}.c2ln"


def run_at(now: datetime, *args: str) -> CliResult:
    """``cfakey ARGS`` with the context's clock stopped at ``now`` (never the wall clock)."""
    from typer.testing import CliRunner

    from cfakey.cli.app import app
    from cfakey.context import AppContext

    context = AppContext(clock=lambda: now)
    result = CliRunner().invoke(app, list(args), obj=context, prog_name="cfakey")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CliResult(result.exit_code, result.stdout, result.stderr)


def every_verdict(now: datetime, tmp_path: Path) -> dict[str, object]:
    """What each command says of the stored OPCO EP key at ``now``."""
    template = tmp_path / "modele.tpl"
    template.write_text("key={{ cfakey:opcoep }}\n", encoding="utf-8")
    target = tmp_path / "si.env"
    target.unlink(missing_ok=True)
    injected = tmp_path / "si.ini"
    injected.unlink(missing_ok=True)
    return {
        "list": "à renouveler" in run_at(now, "list").stdout,
        "check": run_at(now, "check").exit_code,
        "show": "à renouveler" in run_at(now, "show", "opcoep").stdout,
        "export --strict": run_at(
            now, "export", "--opco", "opcoep", "-f", "env", "-o", str(target), "--strict"
        ).exit_code,
        "inject --strict": run_at(
            now, "inject", "-i", str(template), "-o", str(injected), "--strict"
        ).exit_code,
        "exec --strict": run_at(
            now, "exec", "--opco", "opcoep", "--strict", "--", sys.executable, "-c", ""
        ).exit_code,
    }


def test_every_command_agrees_at_the_45_days_and_5_hours_boundary(
    isolated_home: Path, tmp_path: Path
) -> None:
    """A JWT key expiring today + 45 days + 5 hours is « à renouveler » in ``list`` (calendar
    days, window 45/14): ``export``, ``inject`` and ``exec --strict`` refuse it too. The day
    before, it is 46 days away: every command lets it through."""
    # 45 calendar days away, but later in the day than "now": 45 x 24 h + 5 h.
    expires_at = BOUNDARY_TODAY + timedelta(days=45, hours=5)
    store_keys({(SIRET, "opcoep"): (jwt_expiring_at(expires_at), expires_at)})

    renew = every_verdict(BOUNDARY_TODAY, tmp_path)
    assert renew == {
        "list": True,
        "check": 1,  # Nagios warning
        "show": True,
        "export --strict": ExitCode.ERROR,
        "inject --strict": ExitCode.ERROR,
        "exec --strict": ExitCode.ERROR,
    }
    assert journal() == []  # nothing handed out

    valid = every_verdict(BOUNDARY_TODAY - timedelta(days=1), tmp_path)
    assert valid == {
        "list": False,
        "check": 0,
        "show": False,
        "export --strict": 0,
        "inject --strict": 0,
        "exec --strict": 0,
    }
    assert len(journal()) == 3


def test_a_mistake_found_first_opens_nothing(tmp_path: Path) -> None:
    """A missing template, an existing output, no command: no database is created."""
    existing = tmp_path / "existe.env"
    existing.write_text("garde", encoding="utf-8")
    runs = (
        (run_cli("inject", "-i", str(tmp_path / "absent"), "-o", str(tmp_path / "a")), 2),
        (run_cli("export", "-f", "env", "-o", str(existing)), ExitCode.ALREADY_EXISTS),
        (run_cli("exec"), ExitCode.USAGE),
    )
    assert [run.exit_code for run, _code in runs] == [code for _run, code in runs]
    assert not Paths.from_env().metadata_db.exists()
    assert existing.read_text(encoding="utf-8") == "garde"
