"""What a stopped process leaves between the store and the metadata is resolved, and said.

Each test builds, with the real encrypted file and the real database, the state a kill
leaves at one step (the intent committed, then the store written or not), then runs the
next command. The kills themselves, in real processes, are in ``test_faults.py``.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from cfakey.core.recovery import recover
from cfakey.metadata import KeyRecord, Metadata, PendingWrite
from cfakey.paths import Paths
from cfakey.stores.base import entry_name, fingerprint
from cfakey.stores.file_store import EncryptedFileStore
from tests.conftest import TEST_FILE_PASSWORD, run_cli

SIRET = "18130002100373"
OLD_KEY = "Zx9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
NEW_KEY = "Nw9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
THIRD_KEY = "Th9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="
ENTRY = entry_name(SIRET, "atlas")


@pytest.fixture
def metadata(isolated_home: Path) -> Metadata:
    assert run_cli("cfa", "add", SIRET, "--nom", "CFA des Tests").exit_code == 0
    assert run_cli("add", "atlas", input=OLD_KEY + "\n").exit_code == 0
    return Metadata.open(Paths.from_env())


@pytest.fixture
def store(isolated_home: Path) -> EncryptedFileStore:
    return EncryptedFileStore(isolated_home / "keys.enc", lambda **_: TEST_FILE_PASSWORD)


def rotation_intent(secret: str = NEW_KEY, *, kind: str = "file") -> PendingWrite:
    record = KeyRecord(
        SIRET,
        "atlas",
        date(2026, 11, 30),
        datetime(2026, 11, 30, 9, tzinfo=UTC),
        None,
        "none",
        fingerprint(secret),
        "tester",
        kind,
    )
    return PendingWrite(
        SIRET, "atlas", "rotated", fingerprint(OLD_KEY), record, kind, "expiry:none", pid=99999
    )


def commit(metadata: Metadata, intent: PendingWrite) -> None:
    with metadata.transaction():
        metadata.add_pending(intent)


def stored_fingerprint(metadata: Metadata) -> str | None:
    record = metadata.get_key(SIRET, "atlas")
    return None if record is None else record.fingerprint


def test_killed_after_the_store_write_the_next_command_records_the_new_key(
    metadata: Metadata, store: EncryptedFileStore
) -> None:
    commit(metadata, rotation_intent())
    store.put(ENTRY, NEW_KEY)  # then killed: the metadata still describe the old key
    result = run_cli("show", "atlas", "--reveal")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == NEW_KEY + "\n"
    assert (
        "Opération interrompue reprise : le renouvellement de la clé (atlas du CFA "
        f"{SIRET}) avait déjà atteint le magasin de clés"
    ) in " ".join(result.stderr.split())  # wrapped at the terminal's width
    assert stored_fingerprint(metadata) == fingerprint(NEW_KEY)
    rotated = [entry for entry in metadata.journal() if entry.action == "rotated"]
    assert (rotated[-1].old_fingerprint, rotated[-1].new_fingerprint) == (
        fingerprint(OLD_KEY),
        fingerprint(NEW_KEY),
    )
    assert rotated[-1].detail == "expiry:none ; repris après interruption"
    assert metadata.pending() == []
    again = run_cli("show", "atlas", "--reveal")
    assert "interrompue" not in again.stderr


def test_killed_before_the_store_write_the_next_command_drops_the_intent(
    metadata: Metadata, store: EncryptedFileStore
) -> None:
    commit(metadata, rotation_intent())
    journal = metadata.journal()
    result = run_cli("doctor")
    assert result.exit_code == 0, result.stdout
    assert "n'avait pas atteint le magasin de clés ; rien n'avait changé" in " ".join(
        result.stderr.split()
    )
    assert "rien n'avait changé" in result.stdout  # doctor's report says it too
    assert "Tout va bien." in result.stdout
    assert stored_fingerprint(metadata) == fingerprint(OLD_KEY)
    assert store.get(ENTRY) == OLD_KEY
    assert metadata.journal() == journal
    assert metadata.pending() == []


def test_killed_during_a_removal_the_next_command_finishes_it(
    metadata: Metadata, store: EncryptedFileStore
) -> None:
    intent = PendingWrite(SIRET, "atlas", "removed", fingerprint(OLD_KEY), None, "file")
    commit(metadata, intent)
    store.delete(ENTRY)
    result = run_cli("doctor", "--json")
    assert result.exit_code == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["healthy"] is True
    assert report["recovered"] == [
        (
            f"Opération interrompue reprise : la suppression de la clé (atlas du CFA {SIRET}) "
            "avait déjà atteint le magasin de clés ; les métadonnées et le journal sont "
            "maintenant à jour."
        )
    ]
    assert metadata.get_key(SIRET, "atlas") is None
    assert metadata.journal()[-1].action == "removed"


def test_an_unexpected_key_in_the_store_is_reported_not_recorded(
    metadata: Metadata, store: EncryptedFileStore
) -> None:
    commit(metadata, rotation_intent())
    store.put(ENTRY, THIRD_KEY)
    result = run_cli("doctor")
    assert result.exit_code == 1
    assert "le magasin contient une clé inattendue" in result.stderr
    assert (
        f"La clé atlas du CFA {SIRET} dans le magasin n'a pas l'empreinte que donnent ses "
        f"métadonnées ({fingerprint(OLD_KEY)})"
    ) in result.stdout
    assert f"cfakey rotate atlas --cfa {SIRET}" in result.stdout
    assert THIRD_KEY not in result.stdout + result.stderr
    assert stored_fingerprint(metadata) == fingerprint(OLD_KEY)
    assert metadata.pending() == []


def test_doctor_compares_every_secret_with_its_metadata(
    metadata: Metadata, store: EncryptedFileStore
) -> None:
    """No intent at all (a cfakey from before intents was killed): doctor still sees it."""
    store.put(ENTRY, NEW_KEY)
    result = run_cli("doctor", "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert report["mismatched"] == [ENTRY]
    assert "Tout va bien" not in result.stdout
    assert NEW_KEY not in result.stdout


def test_an_intent_of_another_store_waits_for_that_store(
    metadata: Metadata, store: EncryptedFileStore
) -> None:
    commit(metadata, rotation_intent(kind="keyring"))
    result = run_cli("doctor")
    assert result.exit_code == 1
    assert "dans un autre magasin (keyring)" in result.stdout
    assert "cfakey --store keyring doctor" in result.stdout
    assert len(metadata.pending()) == 1


def test_the_overview_never_opens_the_store_to_recover(
    metadata: Metadata, store: EncryptedFileStore
) -> None:
    commit(metadata, rotation_intent())
    store.put(ENTRY, NEW_KEY)
    assert run_cli("list").exit_code == 0
    assert len(metadata.pending()) == 1
    report = recover(store, metadata)
    assert [p.opco_id for p in report.completed] == ["atlas"]
    assert recover(store, metadata).acted is False


def test_an_interruption_is_reported_from_what_the_database_holds(isolated_home: Path) -> None:
    import os

    from cfakey.context import AppContext

    context = AppContext()
    assert context.interruption_state() == "nothing"  # nothing opened, nothing written
    metadata = context.metadata()
    assert context.interruption_state() == "nothing"
    metadata.add_cfa(SIRET, "CFA des Tests", None)
    assert context.interruption_state() == "saved"
    intent = rotation_intent()
    commit(metadata, dataclasses.replace(intent, pid=os.getpid()))
    assert context.interruption_state() == "pending"


SANTE_KEY = "Sa9+Qw/Er7Ty1Ui3Op5As6Df8Gh0Jk+="


@pytest.fixture
def killed_removal(metadata: Metadata, store: EncryptedFileStore) -> Metadata:
    """Two keys; ``remove atlas`` killed after the store write, before the metadata."""
    assert run_cli("add", "sante", input=SANTE_KEY + "\n").exit_code == 0
    commit(metadata, PendingWrite(SIRET, "atlas", "removed", fingerprint(OLD_KEY), None, "file"))
    store.delete(ENTRY)
    return metadata


def test_the_overview_says_an_operation_was_interrupted(killed_removal: Metadata) -> None:
    listed = run_cli("list")
    assert listed.exit_code == 0
    assert (
        f"Attention : opération interrompue sur atlas du CFA {SIRET} (suppression) : "
        "cette ligne peut être fausse ; lancez cfakey doctor pour la terminer."
    ) in " ".join(listed.stderr.split())

    checked = run_cli("check")
    assert checked.exit_code == 1  # Nagios: warning
    assert checked.stdout.startswith("ALERTE")
    assert (
        f"ALERTE CFA des Tests ({SIRET}) Atlas : opération interrompue : lancez cfakey doctor"
    ) in checked.stdout
    data = json.loads(run_cli("check", "--json").stdout)
    assert data["status"] == "warning"
    assert data["interrupted"] == [{"siret": SIRET, "opco_id": "atlas", "action": "removed"}]
    assert len(killed_removal.pending()) == 1  # the store was not opened: nothing resolved


@pytest.mark.parametrize("command", [("export", "--format", "env"), ("exec", "--", "true")])
def test_the_command_that_recovers_reads_its_keys_after_recovery(
    killed_removal: Metadata, command: tuple[str, ...]
) -> None:
    result = run_cli(*command)
    assert "Opération interrompue reprise : la suppression de la clé" in result.stderr
    assert "cfakey add atlas" not in result.stderr  # never: re-add the key just removed
    assert result.exit_code == 0, result.stderr
    assert "SANTE" in result.stdout or command[0] == "exec"
    assert "ATLAS" not in result.stdout
    assert killed_removal.pending() == []
    assert killed_removal.get_key(SIRET, "atlas") is None


def test_doctor_counts_the_keys_after_recovery(killed_removal: Metadata) -> None:
    report = json.loads(run_cli("doctor", "--json").stdout)
    assert report["keys_checked"] == 1
    assert "1 clé(s) vérifiée(s)" in run_cli("doctor").stdout


def _intent(opco_id: str, store: str = "file") -> PendingWrite:
    return PendingWrite(SIRET, opco_id, "imported", None, None, store)


def test_a_few_interrupted_writes_are_named_one_by_one_many_are_counted() -> None:
    from cfakey.core.recovery import SPELLED_OUT, RecoveryReport

    opcos = [f"opco{number}" for number in range(40)]
    few = RecoveryReport(completed=tuple(_intent(o) for o in opcos[:SPELLED_OUT]))
    assert len(few.messages()) == SPELLED_OUT
    assert few.messages()[0].startswith("Opération interrompue reprise : l'import de la clé")

    many = RecoveryReport(
        completed=tuple(_intent(o) for o in opcos[:30]),
        abandoned=tuple(_intent(o) for o in opcos[30:33]),
        other_store=(_intent("afdas", "keyring"), *(_intent(o, "openbao") for o in opcos[:7])),
    )
    lines = many.messages()
    assert lines == [
        (
            f"Opérations interrompues reprises : 30 clés (opco0 du CFA {SIRET}, opco1 du CFA "
            f"{SIRET}, opco2 du CFA {SIRET} et 27 autres) avaient déjà atteint le magasin de "
            "clés ; leurs métadonnées et le journal sont maintenant à jour."
        ),
        (
            f"Opération interrompue annulée : l'import de la clé (opco30 du CFA {SIRET}) "
            "n'avait pas atteint le magasin de clés ; rien n'avait changé."
        ),
        *lines[2:],
    ]
    assert len(lines) == 1 + 3 + 1 + 1  # 3 abandoned named, keyring named, openbao counted
    assert lines[-2].startswith(f"Opération interrompue sur afdas du CFA {SIRET} dans un autre")
    assert lines[-1].startswith("Opérations interrompues sur 7 clés")
    assert "(--store openbao)" in lines[-1]
