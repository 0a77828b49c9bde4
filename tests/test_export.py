"""``cfakey export``: each format read back by its real consumer, names, safety, journal."""

from __future__ import annotations

import csv
import fcntl
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from cfakey.context import AppContext
from cfakey.core import export as core
from cfakey.errors import AlreadyExistsError, CfakeyError, ExitCode, NotFoundError, UsageError
from cfakey.metadata import KeyRecord, Metadata
from cfakey.paths import Paths, write_new_file
from cfakey.registry.loader import load_registry
from cfakey.registry.model import Registry
from cfakey.stores.base import KeyStore, entry_name, fingerprint
from tests.conftest import run_cli
from tests.store_contract import MemoryStore

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
    assert "Format inconnu : formats disponibles : env, dotenv, json" in caught.value.message


# Expiry flags --------------------------------------------------------------------------


def planned(opco_id: str, expires_at: datetime | None, registry: Registry) -> core.PlannedKey:
    from cfakey.metadata import CfaRecord

    cfa = CfaRecord(SIRET, "CFA de test", None, is_default=True, created_at=NOW)
    return core.selection.planned_key(
        registry, cfa, key_record(opco_id, "s", expires_at=expires_at)
    )


def test_expiry_flags_expired_and_soon_and_strict(registry: Registry) -> None:
    expired = planned("atlas", NOW - timedelta(days=1), registry)
    soon = planned("sante", NOW + timedelta(days=10), registry)
    later = planned("afdas", NOW + timedelta(days=100), registry)
    unknown = planned("akto", None, registry)
    flags = core.expiry_flags([expired, soon, later, unknown], registry, {}, NOW)
    assert [(flag.opco_id, flag.expired) for flag in flags] == [("atlas", True), ("sante", False)]
    assert "a expiré le 21/11/2026" in flags[0].message()
    with pytest.raises(core.StrictExpiryError) as caught:
        core.refuse_if_strict(flags)
    assert caught.value.exit_code == ExitCode.ERROR
    wide = {"opco.afdas.warn_days": 120}
    assert core.expiry_flags([later], registry, wide, NOW)[0].opco_id == "afdas"


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
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    metadata_files = Paths.from_env().data_dir.glob("cfakey.sqlite3*")
    for path in metadata_files:
        assert b"CANARY" not in path.read_bytes(), path


def test_write_new_file_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """File systems without hard links (FAT, some network shares): O_EXCL creation instead."""

    def no_link(_source: object, _target: object) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_link)
    target = tmp_path / "out.env"
    write_new_file(target, b"first")
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    with pytest.raises(FileExistsError):
        write_new_file(target, b"second")
    assert target.read_bytes() == b"first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.env"]


# Temporary files of killed writers -------------------------------------------------------

# Runs cfakey with an audit hook that stops it once its temporary file holds the keys,
# just before it is linked into place, and waits there for a byte on stdin.
_PAUSED_CFAKEY = textwrap.dedent(
    """
    import os, sys
    def pause(event, args):
        if event == "os.link" and str(args[0]).endswith(".tmp"):
            os.write(1, b"fichier temporaire ecrit\\n")
            os.read(0, 1)
    sys.addaudithook(pause)
    from cfakey.cli import main
    main(sys.argv[1:])
    """
)


def temporaries(directory: Path) -> list[Path]:
    return sorted(path for path in directory.iterdir() if path.name.endswith(".tmp"))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
@pytest.mark.usefixtures("two_keys")
def test_a_killed_export_leaves_a_temporary_file_the_next_export_removes(tmp_path: Path) -> None:
    out = tmp_path / "sortie"
    out.mkdir()
    target = out / "cles.env"
    args = ("export", "--format", "env", "--output", str(target))
    writer = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_CFAKEY, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert writer.stdout is not None
    paused = writer.stdout.readline()
    if paused != b"fichier temporaire ecrit\n":
        writer.kill()
        pytest.fail(writer.communicate()[1].decode())
    [leftover] = temporaries(out)
    assert CANARY_SANTE.encode() in leftover.read_bytes()
    assert mode(leftover) == 0o600
    writer.kill()  # SIGKILL: no finally, no atexit
    writer.communicate()
    assert writer.returncode == -signal.SIGKILL
    assert temporaries(out) == [leftover]
    assert not target.exists()
    assert journal() == []  # the kill came before the commit

    result = run_cli(*args)
    assert result.exit_code == 0, result.stderr
    assert temporaries(out) == []
    assert sorted(path.name for path in out.iterdir()) == ["cles.env"]
    assert CANARY_SANTE in target.read_text(encoding="utf-8")


def killed_writer(*args: str) -> None:
    """Run ``cfakey *args`` until its temporary file is written, then SIGKILL it."""
    writer = subprocess.Popen(
        [sys.executable, "-c", _PAUSED_CFAKEY, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert writer.stdout is not None
    if writer.stdout.readline() != b"fichier temporaire ecrit\n":
        writer.kill()
        pytest.fail(writer.communicate()[1].decode())
    writer.kill()  # SIGKILL: no finally, no atexit
    writer.communicate()
    assert writer.returncode == -signal.SIGKILL


def records(home: Path) -> list[Path]:
    return sorted(Paths.from_env({"CFAKEY_HOME": str(home)}).pending_outputs.iterdir())


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL, flock")
@pytest.mark.usefixtures("two_keys")
def test_doctor_removes_what_a_killed_export_left_wherever_it_wrote(
    tmp_path: Path, isolated_home: Path
) -> None:
    """Issue 10, item 8: the folder written to is recorded before the temporary file is
    created, so ``doctor`` (not only a later export into the same folder) finds it."""
    out = tmp_path / "sortie"
    out.mkdir()
    target = out / "cles.env"
    killed_writer("export", "--format", "env", "--output", str(target))
    [leftover] = temporaries(out)
    assert CANARY_SANTE.encode() in leftover.read_bytes()
    [record] = records(isolated_home)
    assert CANARY.encode() not in record.read_bytes()
    assert CANARY_SANTE.encode() not in record.read_bytes()
    in_use = out / ".cles.env.cfakey-aaaaaaaaaaaaaaaa.tmp"  # a live writer's: locked below
    in_use.write_text("en cours", encoding="utf-8")

    with in_use.open("rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        result = run_cli("doctor")
        as_json = json.loads(run_cli("doctor", "--json").stdout)
    assert result.exit_code == 0, result.stdout
    said = " ".join(result.stdout.split())
    assert f"Fichier temporaire abandonné supprimé : {leftover} (il contenait des clés)." in said
    assert "Tout va bien." in said
    assert CANARY_SANTE not in result.stdout + result.stderr
    assert temporaries(out) == [in_use]  # the live writer's file is kept
    assert not target.exists()
    assert records(isolated_home) == []  # forgotten: the second doctor found nothing more
    assert as_json["removed_temporaries"] == []
    assert journal() == []


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
@pytest.mark.usefixtures("two_keys")
def test_doctor_json_lists_the_temporary_files_it_removed(
    tmp_path: Path, isolated_home: Path
) -> None:
    target = tmp_path / "cles.env"
    killed_writer("export", "--format", "env", "--output", str(target))
    [leftover] = temporaries(tmp_path)
    data = json.loads(run_cli("doctor", "--json").stdout)
    assert data["removed_temporaries"] == [str(leftover)]
    assert data["healthy"] is True
    assert temporaries(tmp_path) == []
    assert records(isolated_home) == []


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
@pytest.mark.usefixtures("two_keys")
def test_the_next_export_elsewhere_removes_what_a_killed_inject_left(tmp_path: Path) -> None:
    first, second = tmp_path / "premier", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    template = tmp_path / "modele.txt"
    template.write_text("cle={{ cfakey:atlas }}\n", encoding="utf-8")
    killed_writer("inject", "--input", str(template), "--output", str(first / "config.txt"))
    [leftover] = temporaries(first)
    assert CANARY.encode() in leftover.read_bytes()

    result = run_cli("export", "--format", "env", "--output", str(second / "cles.env"))
    assert result.exit_code == 0, result.stderr
    said = " ".join(result.stderr.split())
    assert f"Fichier temporaire abandonné supprimé : {leftover} (il contenait des clés)." in said
    assert temporaries(first) == []
    assert CANARY_SANTE in (second / "cles.env").read_text(encoding="utf-8")


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_a_live_writers_record_and_temporary_file_are_kept(tmp_path: Path) -> None:
    from cfakey.paths import pending_output, remove_abandoned_outputs

    kept_records = tmp_path / "enregistrements"
    target = tmp_path / "cles.env"
    in_use = tmp_path / ".cles.env.cfakey-0123456789abcdef.tmp"
    in_use.write_text("en cours", encoding="utf-8")  # unlocked: only the record says live
    with pending_output(kept_records, target):
        assert remove_abandoned_outputs(kept_records) == []
        assert in_use.exists()
        assert len(list(kept_records.iterdir())) == 1
    assert list(kept_records.iterdir()) == []  # the finished writer forgot its record
    assert in_use.exists()


@pytest.mark.skipif(os.name != "posix", reason="flock")
@pytest.mark.usefixtures("two_keys")
def test_export_removes_abandoned_temporaries_and_keeps_those_in_use(tmp_path: Path) -> None:
    """Dead writers' files go, whatever export they belonged to; a live writer's file (it
    holds a lock), a link, and files of other programs stay."""
    out = tmp_path / "sortie"
    out.mkdir()
    abandoned = [
        out / ".cles.env.cfakey-0123456789abcdef.tmp",
        out / ".autre-export.json.cfakey-fedcba9876543210.tmp",
        out / ".cles.env.4242.deadbeef.tmp",  # named by cfakey before this fix
    ]
    for path in abandoned:
        path.write_text(f"export CFA_KEY_ATLAS={CANARY}\n", encoding="utf-8")
    elsewhere = tmp_path / "a-garder.txt"
    elsewhere.write_text("précieux", encoding="utf-8")
    kept = [
        out / ".cles.env.cfakey-aaaaaaaaaaaaaaaa.tmp",  # in use: locked below
        out / ".cles.env.swp",
        out / "notes.tmp",
        out / ".cles.env.cfakey-pas-hexa.tmp",
        out / ".autre.env.4242.deadbeef.tmp",  # the old form, but for another name
    ]
    for path in kept:
        path.write_text("autre", encoding="utf-8")
    link = out / ".lien.cfakey-1111111111111111.tmp"
    link.symlink_to(elsewhere)
    with kept[0].open("rb") as in_use:
        fcntl.flock(in_use.fileno(), fcntl.LOCK_EX)
        result = run_cli("export", "--format", "env", "--output", str(out / "cles.env"))
    assert result.exit_code == 0, result.stderr
    assert not [path for path in abandoned if path.exists()]
    assert [path for path in kept if path.exists()] == kept
    assert link.is_symlink()
    assert elsewhere.read_text(encoding="utf-8") == "précieux"


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


class CountingStore(MemoryStore):
    """The shared in-memory store, also counting reads made outside a batch session."""

    def __init__(self) -> None:
        super().__init__()
        self.reads_outside_batch = 0
        self._in_batch = False

    def get(self, entry: str) -> str | None:
        if not self._in_batch:
            self.reads_outside_batch += 1
        return super().get(entry)

    @contextmanager
    def batch(self) -> Iterator[None]:
        self._in_batch = True
        try:
            with super().batch():
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
    assert "Format inconnu : formats disponibles : env, dotenv, json" in result.stderr
    assert not target.exists()


# The command, end to end, with the real encrypted-file store ---------------------------

CANARY = "CANARY-a'b\"c$d\\e`f+g/h=i#j"
CANARY_SANTE = "CANARY2+sante/key=="


def store_keys(
    entries: dict[tuple[str, str], tuple[str, datetime | None]],
    cfas: tuple[tuple[str, str], ...] = ((SIRET, "CFA Principal"), (OTHER_SIRET, "CFA Annexe")),
) -> None:
    """Register CFAs and store keys through the real encrypted file and metadata, as ``add``
    would; the file gets cheap scrypt parameters (they live in its header) so that each
    command run by a test does not pay 0.4 s to unlock it."""
    from cfakey.context import AppContext
    from cfakey.core.storage import store_key
    from cfakey.stores.file_store import EncryptedFileStore, ScryptParams, password_source

    context = AppContext()
    metadata = context.metadata()
    for siret, name in cfas:
        metadata.add_cfa(siret, name, None)
    store = EncryptedFileStore(
        context.paths.encrypted_store,
        password_source(context.env),
        new_file_kdf=ScryptParams(n=2**10),
    )
    with store.batch():
        for (siret, opco_id), (secret, expires_at) in entries.items():
            record = key_record(opco_id, secret, siret, expires_at)
            record = KeyRecord(**{**record.__dict__, "store": store.kind})
            store_key(store, metadata, record, secret, action="added")
    store.close()
    metadata.close()


def journal() -> list[tuple[str, str | None, str | None, str]]:
    with Metadata.open(Paths.from_env()) as metadata:
        return [
            (entry.action, entry.opco_id, entry.new_fingerprint, entry.detail)
            for entry in metadata.journal()
            if entry.action == "exported"
        ]


@pytest.fixture
def two_keys(isolated_home: Path) -> None:
    store_keys(
        {
            (SIRET, "atlas"): (CANARY, datetime(2030, 1, 1, tzinfo=UTC)),
            (SIRET, "sante"): (CANARY_SANTE, None),
            (OTHER_SIRET, "atlas"): ("annexe-atlas", None),
        }
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("two_keys")
def test_cli_env_file_is_private_sourced_exactly_and_journalled(tmp_path: Path) -> None:
    target = tmp_path / "cles.env"
    result = run_cli("export", "--format", "env", "--output", str(target))
    assert result.exit_code == 0, result.stderr
    assert mode(target) == 0o600
    assert "2 clés exportées vers" in result.stderr
    assert result.stdout == ""
    assert "CANARY" not in result.stderr
    shell = subprocess.run(
        ["sh", "-c", f'. {target}; printf "%s\\0%s" "$CFA_KEY_ATLAS" "$CFA_KEY_SANTE"'],
        capture_output=True,
        check=True,
    )
    assert shell.stdout.decode().split("\0") == [CANARY, CANARY_SANTE]
    assert journal() == [
        ("exported", "atlas", fingerprint(CANARY), f"export env vers {target.resolve()}"),
        ("exported", "sante", fingerprint(CANARY_SANTE), f"export env vers {target.resolve()}"),
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "cfakey-home",
        "cles.env",
        "user-home",
    ] or (
        {p.name for p in tmp_path.iterdir()} >= {"cles.env"}
        and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    )


@pytest.mark.usefixtures("two_keys")
@pytest.mark.parametrize("fmt", core.FORMATS)
def test_cli_each_format_to_a_pipe_round_trips(fmt: str, tmp_path: Path) -> None:
    result = run_cli("export", "--opco", "atlas", "--format", fmt)
    assert result.exit_code == 0, result.stderr
    assert "CANARY" not in result.stderr
    text = result.stdout
    if fmt == "env":
        target = tmp_path / "k.env"
        target.write_text(text, encoding="utf-8")
        shell = subprocess.run(
            ["sh", "-c", f'. {target}; printf %s "$CFA_KEY_ATLAS"'],
            capture_output=True,
            check=True,
        )
        value = shell.stdout.decode()
    elif fmt == "dotenv":
        target = tmp_path / ".env"
        target.write_text(text, encoding="utf-8")
        value = dotenv_values(target)["CFA_KEY_ATLAS"] or ""
    elif fmt == "csv":
        value = next(csv.DictReader(io_lines(text)))["cle"]
    else:
        loaded = json.loads(text) if fmt == "json" else yaml.safe_load(text)
        value = loaded["keys"][0]["key"]
        assert loaded["keys"][0]["cfa"]["siret"] == SIRET
        assert loaded["keys"][0]["expires_at"] == "2030-01-01T00:00:00+00:00"
    assert value == CANARY
    assert journal() == [("exported", "atlas", fingerprint(CANARY), f"export {fmt} vers stdout")]


def io_lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


@pytest.mark.usefixtures("two_keys")
def test_cli_all_cfas_uses_siret_names() -> None:
    result = run_cli("export", "--toutes-cfa", "--opco", "atlas", "--format", "dotenv")
    assert result.exit_code == 0, result.stderr
    assert f"CFA_KEY_{SIRET}_ATLAS=" in result.stdout
    assert f'CFA_KEY_{OTHER_SIRET}_ATLAS="annexe-atlas"' in result.stdout


@pytest.mark.usefixtures("two_keys")
def test_cli_existing_output_needs_force(tmp_path: Path) -> None:
    target = tmp_path / "cles.json"
    target.write_text("précieux", encoding="utf-8")
    target.chmod(0o644)
    result = run_cli("export", "--format", "json", "--output", str(target))
    assert result.exit_code == ExitCode.ALREADY_EXISTS
    assert "existe déjà" in result.stderr
    assert "--force" in result.stderr
    assert target.read_text(encoding="utf-8") == "précieux"
    assert journal() == []
    forced = run_cli("export", "--format", "json", "--output", str(target), "--force")
    assert forced.exit_code == 0, forced.stderr
    assert json.loads(target.read_text(encoding="utf-8"))["keys"][0]["key"] == CANARY
    assert mode(target) == 0o600


@pytest.mark.usefixtures("two_keys")
@pytest.mark.parametrize(
    ("where", "expected"),
    [("absent/cles.env", "n'existe pas"), ("/sys/cfakey-test.env", "Impossible d'écrire")],
)
def test_cli_unusable_directory_writes_nothing(tmp_path: Path, where: str, expected: str) -> None:
    target = tmp_path / where
    if where.startswith("/sys") and os.access("/sys", os.W_OK) and os.geteuid() != 0:
        pytest.skip("needs a directory this user cannot write")
    result = run_cli("export", "--format", "env", "--output", str(target))
    assert result.exit_code == ExitCode.ERROR
    assert expected in result.stderr
    assert not target.exists()
    assert journal() == []


@pytest.mark.usefixtures("two_keys")
def test_cli_no_matching_key() -> None:
    result = run_cli("export", "--opco", "afdas", "--format", "env")
    assert result.exit_code == ExitCode.NOT_FOUND
    assert "Aucune clé ne correspond à la sélection (afdas)" in result.stderr
    assert result.stdout == ""


@pytest.mark.usefixtures("two_keys")
def test_cli_unknown_opco_is_usage() -> None:
    result = run_cli("export", "--opco", "atlass", "--format", "env")
    assert result.exit_code == ExitCode.USAGE
    assert "OPCO inconnu" in result.stderr


def test_cli_expired_keys_flagged_and_strict_refuses(isolated_home: Path, tmp_path: Path) -> None:
    store_keys(
        {
            (SIRET, "atlas"): (CANARY, datetime(2020, 1, 1, tzinfo=UTC)),
            (SIRET, "sante"): (CANARY_SANTE, NOW + timedelta(days=5)),
        }
    )
    target = tmp_path / "cles.env"
    at_now = AppContext(clock=lambda: NOW)  # "today" is NOW, never the wall clock
    strict = run_cli(
        "export", "--format", "env", "--output", str(target), "--strict", context=at_now
    )
    assert strict.exit_code == ExitCode.ERROR
    assert "Export refusé (--strict)" in strict.stderr
    assert "a expiré le 01/01/2020" in strict.stderr
    assert not target.exists()
    assert journal() == []
    lenient = run_cli(
        "export", "--format", "env", "--output", str(target), context=AppContext(clock=lambda: NOW)
    )
    assert lenient.exit_code == 0
    assert "a expiré le 01/01/2020" in lenient.stderr
    assert "OPCO Santé" in lenient.stderr
    assert target.exists()


@pytest.mark.usefixtures("two_keys")
def test_cli_locked_store(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CFAKEY_FILE_PASSWORD", "mauvais-mot-de-passe")
    target = tmp_path / "cles.env"
    result = run_cli("export", "--format", "env", "--output", str(target))
    assert result.exit_code == ExitCode.STORE_UNAVAILABLE
    assert "Erreur :" in result.stderr
    assert not target.exists()
    assert journal() == []


def run_in_terminal(*args: str) -> tuple[int, str]:
    """Run the real ``cfakey`` with stdout and stderr on a pseudo-terminal."""
    import pty
    import sys

    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "cfakey", *args],
        stdout=follower,
        stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.usefixtures("two_keys")
def test_terminal_needs_reveal() -> None:
    code, screen = run_in_terminal("export", "--format", "env")
    assert code == ExitCode.USAGE
    assert "--reveal" in screen
    assert "CANARY" not in screen
    code, screen = run_in_terminal("export", "--format", "env", "--opco", "sante", "--reveal")
    assert code == 0
    assert CANARY_SANTE in screen


def test_progress_bar_on_a_terminal_for_many_keys(isolated_home: Path, tmp_path: Path) -> None:
    opcos = ("afdas", "akto", "atlas", "constructys", "opcommerce", "ocapiat")
    store_keys({(SIRET, opco_id): (f"cle-{opco_id}", None) for opco_id in opcos})
    target = tmp_path / "cles.env"
    code, screen = run_in_terminal("export", "--format", "env", "--output", str(target))
    assert code == 0, screen
    assert "Lecture des clés" in screen
    assert "cle-" not in screen
    assert target.read_text(encoding="utf-8").count("export CFA_KEY_") == 6


def test_cli_dotenv_refuses_interpolation_and_writes_nothing(
    isolated_home: Path, tmp_path: Path
) -> None:
    store_keys({(SIRET, "atlas"): ("abc${HOME}def", None)})
    target = tmp_path / ".env"
    result = run_cli("export", "--format", "dotenv", "--output", str(target))
    assert result.exit_code == ExitCode.USAGE
    assert "format dotenv impossible" in result.stderr
    assert "abc${HOME}def" not in result.stderr
    assert not target.exists()
    assert journal() == []
    fallback = run_cli("export", "--format", "env", "--output", str(target))
    assert fallback.exit_code == 0
    shell = subprocess.run(
        ["sh", "-c", f'. {target}; printf %s "$CFA_KEY_ATLAS"'], capture_output=True, check=True
    )
    assert shell.stdout.decode() == "abc${HOME}def"


@pytest.mark.usefixtures("two_keys")
def test_reader_closing_the_pipe_is_a_clean_error_and_journalled() -> None:
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "cfakey", "export", "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    process.stdout.close()  # like `| head -c0`: the reader is gone before cfakey writes
    _out, err = process.communicate(timeout=30)
    assert process.returncode == ExitCode.ERROR
    assert "La sortie a été fermée avant la fin de l'export" in err.decode()
    assert "Traceback" not in err.decode()
    assert [entry[3] for entry in journal()] == ["export json vers stdout"] * 2


# The use-cases, without the CLI (issue 11, item 1) --------------------------------------


class LockProbeStore(CountingStore):
    """Notes, at each read, whether this process holds the data lock (shared: another
    open of ``cfakey.lock`` may not take it exclusively)."""

    def __init__(self, lock_path: Path, secrets: dict[str, str]) -> None:
        super().__init__()
        self.lock_path = lock_path
        self.secrets = dict(secrets)
        self.reads_under_lock: list[bool] = []

    def get(self, entry: str) -> str | None:
        with self.lock_path.open("a") as probe:
            try:
                fcntl.flock(probe.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self.reads_under_lock.append(True)
            else:
                fcntl.flock(probe.fileno(), fcntl.LOCK_UN)
                self.reads_under_lock.append(False)
        return super().get(entry)


@pytest.mark.skipif(os.name != "posix", reason="flock")
def test_export_inject_and_exec_read_under_the_shared_lock_and_journal(
    filled: tuple[Metadata, CountingStore], registry: Registry, tmp_path: Path
) -> None:
    metadata, counting = filled
    store = LockProbeStore(Path(metadata.path).with_name("cfakey.lock"), counting.secrets)
    flagged: list[list[core.ExpiryFlag]] = []
    sources = core.Sources(lambda: metadata, lambda: registry, dict, lambda: NOW, lambda: store)
    hooks = core.Hooks(on_flags=lambda flags: flagged.append(list(flags)))
    exported_file = tmp_path / "cles.env"
    result = core.export_keys(
        sources, core.Selection(opco_ids=("atlas",)), "env", output=exported_file, hooks=hooks
    )
    assert [key.opco_id for key in result.keys] == ["atlas"]
    assert "export CFA_KEY_ATLAS='cle-atlas'" in exported_file.read_text(encoding="utf-8")
    assert mode(exported_file) == 0o600
    template = tmp_path / "modele.tpl"
    template.write_text("cle={{ cfakey:sante }}\n", encoding="utf-8")
    injected = core.inject_template(sources, template, tmp_path / "si.ini", hooks=hooks)
    assert (tmp_path / "si.ini").read_text(encoding="utf-8") == "cle=cle-sante\n"
    child = "import os, sys; sys.exit(0 if os.environ['CFA_KEY_ATLAS'] == 'cle-atlas' else 3)"
    ran = core.run_with_keys(
        sources,
        core.Selection(opco_ids=("atlas",)),
        [sys.executable, "-c", child],
        environment={"CFAKEY_FILE_PASSWORD": "secret"},
        hooks=hooks,
    )
    assert ran.returncode == 0
    assert store.reads_under_lock == [True, True, True]
    assert len(flagged) == 3  # told once per use-case, before any read
    entries = [e for e in metadata.journal() if e.action == "exported"]
    assert [(e.opco_id, e.new_fingerprint) for e in entries] == [
        ("atlas", fingerprint("cle-atlas")),
        ("sante", fingerprint("cle-sante")),
        ("atlas", fingerprint("cle-atlas")),
    ]
    assert [key.opco_id for key in injected.keys] == ["sante"]
    assert "cle-" not in repr(metadata.journal()) + repr(result) + repr(injected) + repr(ran)


def test_strict_refuses_before_the_store_is_opened(
    filled: tuple[Metadata, CountingStore], registry: Registry, tmp_path: Path
) -> None:
    metadata, _store = filled
    metadata.set_expiry(SIRET, "atlas", NOW - timedelta(days=1), "operator")

    def no_store() -> KeyStore:
        raise AssertionError("the store must not be opened")

    sources = core.Sources(lambda: metadata, lambda: registry, dict, lambda: NOW, no_store)
    with pytest.raises(core.StrictExpiryError):
        core.export_keys(sources, core.Selection(), "json", output=tmp_path / "x.json", strict=True)
    assert not (tmp_path / "x.json").exists()
    assert [e for e in metadata.journal() if e.action == "exported"] == []


def test_cli_export_module_leaves_the_use_case_to_core() -> None:
    """Nothing under cli/ opens a transaction, journals, reads keys or writes a file."""
    source = (Path(__file__).parents[1] / "src/cfakey/cli/export_cmds.py").read_text("utf-8")
    for forbidden in (
        "transaction(",
        "journal_export",
        ".log(",
        "read_planned",
        "fill_template",
        ".lock(",
        "write_output",
        "write_new_file",
        "Popen",
    ):
        assert forbidden not in source, forbidden


# Formats as a table (issue 11, item 4) ---------------------------------------------------


def test_export_help_lists_every_format_of_the_table() -> None:
    help_text = " ".join(run_cli("export", "--help").stdout.replace("│", " ").split())
    for fmt in core.FORMAT_TABLE.values():
        assert fmt.name in help_text
        assert fmt.label in help_text
    assert tuple(core.FORMAT_TABLE) == core.FORMATS


@pytest.mark.usefixtures("two_keys")
def test_a_new_format_is_one_renderer_and_one_table_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def render_lines(
        keys: list[core.ExportedKey], *, qualified: bool, exported_at: datetime
    ) -> str:
        del exported_at
        return "".join(f"{core.key_variable(k, qualified=qualified)} {k.secret}\n" for k in keys)

    line = core.ExportFormat("lignes", "une clé par ligne", render_lines)
    monkeypatch.setitem(core.FORMAT_TABLE, "lignes", line)
    target = tmp_path / "cles.txt"
    result = run_cli("export", "--opco", "atlas", "--format", "lignes", "--output", str(target))
    assert result.exit_code == 0, result.stderr
    assert target.read_text(encoding="utf-8") == f"CFA_KEY_ATLAS {CANARY}\n"
    assert journal()[-1][3] == f"export lignes vers {target.resolve()}"


def test_a_refused_key_past_its_date_is_still_flagged_expired(registry: Registry) -> None:
    """``verify``'s « refusée » ranks above expiry in ``list``; ``--strict`` still sees the date."""
    import dataclasses

    from cfakey.core.codes import VerifyOutcome
    from cfakey.metadata import LastVerification

    refused = LastVerification(
        NOW - timedelta(days=2), VerifyOutcome.KEY_REFUSED.id, 403, opco_expiry=None
    )
    key = planned("atlas", NOW - timedelta(days=1), registry)
    key = dataclasses.replace(key, record=dataclasses.replace(key.record, verification=refused))
    flags = core.expiry_flags([key], registry, {}, NOW)
    assert [(flag.opco_id, flag.expired) for flag in flags] == [("atlas", True)]
