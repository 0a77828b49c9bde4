"""``cfakey inject`` (templates of any syntax) and ``cfakey exec`` (keys in the environment)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cfakey.core import export as core
from cfakey.errors import ExitCode, NotFoundError, UsageError
from cfakey.metadata import Metadata
from cfakey.paths import Paths
from cfakey.registry.loader import load_registry
from cfakey.registry.model import Registry
from cfakey.stores.base import entry_name
from tests.conftest import run_cli
from tests.test_export import (
    CANARY,
    CANARY_SANTE,
    OTHER_SIRET,
    SIRET,
    CountingStore,
    journal,
    key_record,
    mode,
    two_keys,  # noqa: F401 - fixture
)

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
    target = tmp_path / "si.ini"
    result = run_cli("inject", "-i", str(tmp_path / "absent.tpl"), "-o", str(target))
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "Modèle introuvable" in result.stderr
    assert not target.exists()


# exec, end to end -----------------------------------------------------------------------


@pytest.mark.usefixtures("two_keys")
def test_cli_exec_passes_keys_and_exit_code(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    script = f'printf "%s\\0%s" "$CFA_KEY_ATLAS" "$CFA_KEY_SANTE" > {out}; exit 7'
    result = run_cli("exec", "--", "sh", "-c", script)
    assert result.exit_code == 7
    assert out.read_text(encoding="utf-8").split("\0") == [CANARY, CANARY_SANTE]
    assert "CANARY" not in result.stdout + result.stderr
    assert [(entry[1], entry[3]) for entry in journal()] == [
        ("atlas", "exec de sh"),
        ("sante", "exec de sh"),
    ]


@pytest.mark.usefixtures("two_keys")
def test_cli_exec_selection_and_all_cfas(tmp_path: Path) -> None:
    out = tmp_path / "seen"
    script = f"env | grep ^CFA_KEY_ | cut -d= -f1 | sort > {out}"
    result = run_cli("exec", "--toutes-cfa", "--opco", "atlas", "--", "sh", "-c", script)
    assert result.exit_code == 0, result.stderr
    assert out.read_text(encoding="utf-8").split() == sorted(
        [f"CFA_KEY_{OTHER_SIRET}_ATLAS", f"CFA_KEY_{SIRET}_ATLAS"]
    )


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


# The secret canary, through export, inject and exec --------------------------------------


@pytest.mark.usefixtures("two_keys")
def test_secret_canary_only_where_asked(tmp_path: Path, isolated_home: Path) -> None:
    """The key may appear in an export to stdout, in the files asked for, in the child's
    environment; never in cfakey's messages, the journal or the metadata."""
    messages: list[str] = []
    template = write_template(tmp_path, "k={{ cfakey:atlas }}\nbad={{ cfakey:atlas.x }}\n")
    good_template = write_template(tmp_path / "ok", "k={{ cfakey:atlas | json }}\n")
    for args in (
        ("export", "--format", "env", "--output", str(tmp_path / "a.env")),
        ("export", "--format", "env", "--output", str(tmp_path / "a.env")),  # exists
        ("export", "--format", "yaml", "--output", str(tmp_path / "absent" / "a.yaml")),
        ("export", "--format", "env", "--strict", "--opco", "atlas"),
        ("inject", "-i", str(template), "-o", str(tmp_path / "bad.ini")),
        ("inject", "-i", str(good_template), "-o", str(tmp_path / "good.ini")),
        ("exec", "--opco", "atlas", "--", "sh", "-c", "exit 3"),
        ("exec", "--", "cfakey-commande-inexistante"),
    ):
        result = run_cli(*args)
        messages.append(result.stderr)
        if args[0] != "export" or "--output" in args:
            messages.append(result.stdout)
    for text in messages:
        assert "CANARY" not in text
    for path in isolated_home.rglob("cfakey.sqlite3*"):
        assert b"CANARY" not in path.read_bytes(), path
