"""``cfakey export``: each format read back by its real consumer, names, safety, journal."""

from __future__ import annotations

import csv
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from cfakey.core import export as core
from cfakey.errors import AlreadyExistsError, CfakeyError, ExitCode, NotFoundError, UsageError
from cfakey.metadata import KeyRecord, Metadata
from cfakey.paths import Paths, write_new_file
from cfakey.registry.loader import load_registry
from cfakey.registry.model import Registry
from cfakey.stores.base import KeyStore, entry_name, fingerprint
from tests.conftest import run_cli

SIRET = "18130002100373"
OTHER_SIRET = "35600000000048"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

# Every character a shell, a .env reader, YAML, JSON or CSV treats specially.
TRICKY_KEYS = (
    "AbCd0123+/xyz==",
    "it's",
    'say "hi"',
    "$HOME $(id) `id` $1",
    "back\\slash\\",
    "\\n is not a newline",
    "#not-a-comment",
    "=SUM(A1)+1",
    "a'b\"c$d\\e`f+g/h=i#j",
    " leading and trailing ",
    "tab\there",
    "line1\nline2",
    "é ü « » 中",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJleHAiOjE4MDAwMDAwMDB9.c2ln-_",
    "yes",
    "null",
    "0123",
    "- dash",
    ": colon",
)


def exported(
    secret: str, opco_id: str = "atlas", siret: str = SIRET, **extra: object
) -> core.ExportedKey:
    values: dict[str, object] = {
        "siret": siret,
        "cfa_name": "CFA de test",
        "opco_id": opco_id,
        "opco_name": opco_id.capitalize(),
        "expires_at": NOW + timedelta(days=200),
        "fingerprint": fingerprint(secret),
        "oauth_client_required": False,
        "secret": secret,
    }
    values.update(extra)
    return core.ExportedKey(**values)  # type: ignore[arg-type]


def tricky_keys() -> list[core.ExportedKey]:
    return [exported(secret, opco_id=f"k{index}") for index, secret in enumerate(TRICKY_KEYS)]


# Variable names ------------------------------------------------------------------------


def test_variable_names_are_stable_and_documented() -> None:
    assert core.variable_name("atlas") == "CFA_KEY_ATLAS"
    assert core.variable_name("opcoep") == "CFA_KEY_OPCOEP"
    assert core.variable_name("opco2i") == "CFA_KEY_OPCO2I"
    assert core.variable_name("atlas", SIRET) == f"CFA_KEY_{SIRET}_ATLAS"
    assert core.variable_name("some-id") == "CFA_KEY_SOME_ID"


def test_every_registry_opco_gives_a_valid_shell_name() -> None:
    registry, _source = load_registry(None, Paths.from_env().cache_dir)
    names = {core.variable_name(opco.id) for opco in registry.opcos}
    assert len(names) == 11
    for name in names:
        assert name.replace("_", "").isalnum()
        assert name.isupper()


# Formats read back by their real consumers ---------------------------------------------


def test_env_is_sourced_by_sh_exactly(tmp_path: Path) -> None:
    keys = tricky_keys()
    target = tmp_path / "keys.env"
    target.write_text(core.render(keys, "env", qualified=False, exported_at=NOW), encoding="utf-8")
    names = " ".join(f'"${core.key_variable(key, qualified=False)}"' for key in keys)
    result = subprocess.run(
        ["sh", "-c", f". {target}; printf '%s\\0' {names}"],
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8"},
    )
    values = result.stdout.decode("utf-8").split("\0")[:-1]
    assert values == list(TRICKY_KEYS)


def test_env_single_key_as_the_issue_says(tmp_path: Path) -> None:
    key = exported("a'b\"c$d\\e`f+g/h=i#j")
    target = tmp_path / "cfa.env"
    target.write_text(core.render([key], "env", qualified=False, exported_at=NOW), encoding="utf-8")
    result = subprocess.run(
        ["sh", "-c", f'. {target}; printf %s "$CFA_KEY_ATLAS"'], capture_output=True, check=True
    )
    assert result.stdout.decode() == key.secret


def test_dotenv_is_read_by_python_dotenv_exactly(tmp_path: Path) -> None:
    keys = tricky_keys()
    target = tmp_path / ".env"
    target.write_text(
        core.render(keys, "dotenv", qualified=False, exported_at=NOW), encoding="utf-8"
    )
    values = dotenv_values(target)
    assert values == {core.key_variable(key, qualified=False): key.secret for key in keys}


def test_dotenv_refuses_a_key_it_cannot_protect_from_interpolation() -> None:
    key = exported("abc${HOME}def")
    with pytest.raises(UsageError) as caught:
        core.render([key], "dotenv", qualified=False, exported_at=NOW)
    assert "${" in caught.value.message
    assert "abc${HOME}def" not in caught.value.message
    assert "--format env" in (caught.value.hint or "")


def test_json_round_trips_and_shows_how_to_use_the_key() -> None:
    keys = tricky_keys()
    document = json.loads(core.render(keys, "json", qualified=False, exported_at=NOW))
    assert document["schema"] == "cfakey-export/1"
    assert document["api"]["key_header"] == "X-API-KEY"
    assert document["api"]["software_headers"] == ["EDITEUR", "LOGICIEL", "VERSION"]
    assert [entry["key"] for entry in document["keys"]] == list(TRICKY_KEYS)
    first = document["keys"][0]
    assert first["cfa"] == {"siret": SIRET, "siren": SIRET[:9], "name": "CFA de test"}
    assert first["opco"] == {"id": "k0", "name": "K0"}
    assert first["header"] == "X-API-KEY"
    assert first["variable"] == "CFA_KEY_K0"
    assert datetime.fromisoformat(first["expires_at"]) == NOW + timedelta(days=200)
    assert first["fingerprint"] == fingerprint(TRICKY_KEYS[0])


def test_yaml_round_trips_with_the_same_structure_as_json() -> None:
    keys = tricky_keys()
    text = core.render(keys, "yaml", qualified=True, exported_at=NOW)
    document = yaml.safe_load(text)
    assert document == json.loads(core.render(keys, "json", qualified=True, exported_at=NOW))
    assert [entry["key"] for entry in document["keys"]] == list(TRICKY_KEYS)
    assert document["keys"][0]["variable"] == f"CFA_KEY_{SIRET}_K0"


def test_csv_round_trips_one_row_per_key(tmp_path: Path) -> None:
    keys = tricky_keys()
    target = tmp_path / "keys.csv"
    target.write_text(
        core.render(keys, "csv", qualified=False, exported_at=NOW), encoding="utf-8", newline=""
    )
    with target.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == list(core.CSV_COLUMNS)
    assert [row["cle"] for row in rows] == list(TRICKY_KEYS)
    assert rows[0]["siret"] == SIRET
    assert rows[0]["en_tete"] == "X-API-KEY"
    assert rows[0]["variable"] == "CFA_KEY_K0"
    risky = {key.secret for key in core.formula_risks(keys)}
    assert risky == {"=SUM(A1)+1", "- dash"}


def test_comments_cannot_be_broken_by_a_cfa_name(tmp_path: Path) -> None:
    key = exported("secret", cfa_name="Nom\nexport CFA_KEY_ATLAS='piège'")
    text = core.render([key], "env", qualified=False, exported_at=NOW)
    target = tmp_path / "k.env"
    target.write_text(text, encoding="utf-8")
    result = subprocess.run(
        ["sh", "-c", f'. {target}; printf %s "$CFA_KEY_ATLAS"'], capture_output=True, check=True
    )
    assert result.stdout.decode() == "secret"


def test_unknown_format_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as caught:
        core.check_format("xml")
    assert caught.value.exit_code == ExitCode.USAGE
    assert "Format inconnu : « xml »" in caught.value.message


# Expiry flags --------------------------------------------------------------------------


def test_expiry_flags_expired_and_soon_and_strict() -> None:
    expired = exported("a", opco_id="atlas", expires_at=NOW - timedelta(days=1))
    soon = exported("b", opco_id="sante", expires_at=NOW + timedelta(days=10))
    later = exported("c", opco_id="afdas", expires_at=NOW + timedelta(days=100))
    unknown = exported("d", opco_id="akto", expires_at=None)
    flags = core.expiry_flags([expired, soon, later, unknown], NOW)
    assert [(flag.opco_id, flag.expired) for flag in flags] == [("atlas", True), ("sante", False)]
    assert "a expiré le 21/11/2026" in flags[0].message()
    with pytest.raises(core.StrictExpiryError) as caught:
        core.refuse_if_strict(flags)
    assert caught.value.exit_code == ExitCode.ERROR
    assert core.expiry_flags([later], NOW, lambda _opco: 120)[0].opco_id == "afdas"


# No-clobber atomic write ---------------------------------------------------------------


def test_write_new_file_is_private_and_never_clobbers(tmp_path: Path) -> None:
    target = tmp_path / "out.env"
    write_new_file(target, b"first")
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_new_file(target, b"second")
    assert target.read_bytes() == b"first"
    write_new_file(target, b"third", replace=True)
    assert target.read_bytes() == b"third"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.env"]


def test_write_output_translates_errors(tmp_path: Path) -> None:
    target = tmp_path / "out.env"
    target.write_text("précieux", encoding="utf-8")
    with pytest.raises(AlreadyExistsError) as exists:
        core.write_output(target, "nouveau", force=False)
    assert "existe déjà" in exists.value.message
    assert target.read_text(encoding="utf-8") == "précieux"
    with pytest.raises(CfakeyError) as missing:
        core.write_output(tmp_path / "absent" / "out.env", "x", force=False)
    assert missing.value.exit_code == ExitCode.ERROR
    assert "n'existe pas" in missing.value.message


# Selection and reading, with a real metadata database ----------------------------------


class CountingStore(KeyStore):
    """A dict-backed store that counts its sessions, to check one batch serves all keys."""

    kind = "memory"

    def __init__(self) -> None:
        self.secrets: dict[str, str] = {}
        self.batches = 0
        self.reads_outside_batch = 0
        self._in_batch = False

    def describe(self) -> str:
        return "mémoire (tests)"

    def put(self, entry: str, secret: str) -> None:
        self.secrets[entry] = secret

    def get(self, entry: str) -> str | None:
        if not self._in_batch:
            self.reads_outside_batch += 1
        return self.secrets.get(entry)

    def delete(self, entry: str) -> bool:
        return self.secrets.pop(entry, None) is not None

    @contextmanager
    def batch(self) -> Iterator[None]:
        self.batches += 1
        self._in_batch = True
        try:
            yield
        finally:
            self._in_batch = False


def key_record(
    opco_id: str, secret: str, siret: str = SIRET, expires_at: datetime | None = None
) -> KeyRecord:
    return KeyRecord(
        siret=siret,
        opco_id=opco_id,
        obtained_on=date(2026, 11, 1),
        stored_at=datetime(2026, 11, 1, tzinfo=UTC),
        expires_at=expires_at,
        expiry_source="operator",
        fingerprint=fingerprint(secret),
        os_user="tester",
        store="memory",
    )


@pytest.fixture
def registry() -> Registry:
    return load_registry(None, Paths.from_env().cache_dir)[0]


@pytest.fixture
def filled(isolated_home: Path) -> Iterator[tuple[Metadata, CountingStore]]:
    metadata = Metadata.open(Paths.from_env())
    store = CountingStore()
    metadata.add_cfa(SIRET, "CFA Principal", "0133527N")
    metadata.add_cfa(OTHER_SIRET, "CFA Annexe", None)
    for siret, opco_id, secret in (
        (SIRET, "sante", "cle-sante"),
        (SIRET, "atlas", "cle-atlas"),
        (OTHER_SIRET, "atlas", "cle-atlas-2"),
    ):
        metadata.put_key(key_record(opco_id, secret, siret))
        store.put(entry_name(siret, opco_id), secret)
    yield metadata, store
    metadata.close()


def test_plan_selects_default_cfa_in_registry_order(
    filled: tuple[Metadata, CountingStore], registry: Registry
) -> None:
    metadata, store = filled
    plan = core.plan_export(metadata, registry, cfa_query=None, all_cfas=False)
    assert [(p.cfa.siret, p.record.opco_id) for p in plan.keys] == [
        (SIRET, "atlas"),
        (SIRET, "sante"),
    ]
    assert not plan.qualified
    progress: list[tuple[int, int]] = []
    keys = core.read_planned(
        store, plan, on_progress=lambda done, total: progress.append((done, total))
    )
    assert [key.secret for key in keys] == ["cle-atlas", "cle-sante"]
    assert store.batches == 1
    assert store.reads_outside_batch == 0
    assert progress == [(1, 2), (2, 2)]


def test_plan_all_cfas_is_qualified(
    filled: tuple[Metadata, CountingStore], registry: Registry
) -> None:
    metadata, _store = filled
    plan = core.plan_export(metadata, registry, cfa_query=None, all_cfas=True, opco_ids=["Atlas"])
    assert [p.cfa.siret for p in plan.keys] == sorted([SIRET, OTHER_SIRET])
    assert plan.qualified


def test_plan_with_nothing_selected(
    filled: tuple[Metadata, CountingStore], registry: Registry
) -> None:
    metadata, _store = filled
    with pytest.raises(NotFoundError) as caught:
        core.plan_export(
            metadata, registry, cfa_query=OTHER_SIRET, all_cfas=False, opco_ids=["afdas"]
        )
    assert caught.value.exit_code == ExitCode.NOT_FOUND
    assert "Aucune clé ne correspond" in caught.value.message
    with pytest.raises(UsageError):
        core.plan_export(metadata, registry, cfa_query=SIRET, all_cfas=True)


def test_journal_records_fingerprints_and_destination(
    filled: tuple[Metadata, CountingStore],
) -> None:
    metadata, _store = filled
    key = exported("cle-atlas")
    core.journal_export(metadata, [key], "export env vers stdout")
    entry = metadata.journal(opco_id="atlas")[-1]
    assert entry.action == "exported"
    assert entry.new_fingerprint == fingerprint("cle-atlas")
    assert entry.detail == "export env vers stdout"
    assert "cle-atlas" not in repr(metadata.journal())


def test_exported_key_repr_hides_the_secret() -> None:
    assert "cle-secrete" not in repr(exported("cle-secrete"))


def test_cli_unknown_format_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    result = run_cli("export", "--format", "xml", "--output", str(target))
    assert result.exit_code == ExitCode.USAGE
    assert "Format inconnu : « xml »" in result.stderr
    assert not target.exists()
