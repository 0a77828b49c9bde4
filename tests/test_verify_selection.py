"""``verify`` selects like the other commands (issue 13, item 3): ``--opco`` (several),
``--cfa`` by SIRET, name or SIREN (all its sites), and Ctrl-C during ``--all`` keeps the
results received (a real SIGINT to a real process, against a slow fake OPCO)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from cfakey.metadata import Metadata
from cfakey.paths import Paths
from tests.conftest import run_cli
from tests.fake_opco import FakeOpco, running_fake_opco
from tests.test_verify import (
    KEY_AFDAS,
    KEY_AKTO,
    KEY_ATLAS,
    SIRET,
    SIRET_2,
    journal_details,
    seed,
    set_url,
)

#: A second site of SIRET's legal unit (SIREN 181300021).
SIRET_SITE_2 = "18130002100415"
WAIT = 90  # seconds: a deadline for the machine, never an assertion about speed


@pytest.fixture
def opco() -> Iterator[FakeOpco]:
    with running_fake_opco() as server:
        server.state.accept_any_key = True
        yield server


def verified() -> list[tuple[str | None, str | None]]:
    with Metadata.open(Paths.from_env()) as metadata:
        return sorted(
            (entry.siret, entry.opco_id)
            for entry in metadata.journal()
            if entry.action == "verified"
        )


def test_several_opcos_of_the_default_cfa(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS), (SIRET, "afdas", KEY_AFDAS), (SIRET, "akto", KEY_AKTO))
    for opco_id in ("atlas", "afdas", "akto"):
        set_url(opco_id, opco.base_url("ok"))

    result = run_cli("verify", "--opco", "atlas", "--opco", "Afdas")

    assert result.exit_code == 0, result.stderr
    assert "2 clé(s) vérifiée(s)" in result.stderr
    assert verified() == [(SIRET, "afdas"), (SIRET, "atlas")]


def test_a_siren_designates_all_its_sites(opco: FakeOpco) -> None:
    seed(
        (SIRET, "atlas", KEY_ATLAS),
        (SIRET_SITE_2, "atlas", KEY_AFDAS),
        (SIRET_2, "atlas", "x" * 40),
    )
    set_url("atlas", opco.base_url("ok"))

    result = run_cli("verify", "atlas", "--cfa", SIRET[:9])

    assert result.exit_code == 0, result.stderr
    assert verified() == [(SIRET, "atlas"), (SIRET_SITE_2, "atlas")]


def test_a_name_and_a_siret_designate_one_site(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS), (SIRET_2, "atlas", KEY_AFDAS))
    set_url("atlas", opco.base_url("ok"))

    assert run_cli("verify", "atlas", "--cfa", f"CFA {SIRET_2[:4]}").exit_code == 0
    assert run_cli("verify", "--opco", "atlas", "--cfa", SIRET).exit_code == 0
    assert verified() == [(SIRET, "atlas"), (SIRET_2, "atlas")]


def test_all_with_opco_checks_that_opco_in_every_cfa(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS), (SIRET_2, "atlas", KEY_AFDAS), (SIRET, "akto", KEY_AKTO))
    set_url("atlas", opco.base_url("ok"))

    result = run_cli("verify", "--all", "--opco", "atlas")

    assert result.exit_code == 0, result.stderr
    assert verified() == [(SIRET, "atlas"), (SIRET_2, "atlas")]


def test_nothing_selected_is_not_found(opco: FakeOpco) -> None:
    seed((SIRET, "atlas", KEY_ATLAS))

    result = run_cli("verify", "--opco", "akto", "--opco", "afdas")

    assert result.exit_code == 3
    assert "Aucune clé (AKTO, Afdas) n'est enregistrée pour le CFA" in result.stderr
    assert verified() == []


def test_api_url_with_several_opcos_is_refused() -> None:
    result = run_cli(
        "verify", "--opco", "atlas", "--opco", "akto", "--api-url", "https://api.example.fr"
    )

    assert result.exit_code == 2
    assert "--api-url vaut pour un seul OPCO" in result.stderr


@pytest.mark.slow
def test_ctrl_c_during_all_keeps_what_was_received(opco: FakeOpco) -> None:
    opco.state.slow_delay = 0.4
    sirets = [SIRET, SIRET_2, SIRET_SITE_2]
    seed(
        *[
            (siret, opco_id, f"cle-{opco_id}-{siret}-0123456789")
            for siret in sirets
            for opco_id in ("atlas", "constructys")
        ]
    )
    for opco_id in ("atlas", "constructys"):
        set_url(opco_id, opco.base_url("slow"))
    process = subprocess.Popen(
        [sys.executable, "-m", "cfakey", "verify", "--all", "--concurrency", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    deadline = time.monotonic() + WAIT
    while len(opco.requests) < 3:  # the third request sent: two results received
        assert process.poll() is None
        assert time.monotonic() < deadline
        time.sleep(0.01)

    process.send_signal(signal.SIGINT)
    stdout, stderr = (stream.decode() for stream in process.communicate(timeout=WAIT))

    assert process.returncode == 130
    done = verified()
    assert 2 <= len(done) < 6
    assert f"Interrompu : {6 - len(done)} clé(s) non vérifiée(s)" in stderr
    assert f"les {len(done)} résultat(s) reçu(s) sont enregistrés" in stderr
    assert sum(line.startswith("valide ") for line in stdout.splitlines()) == len(done)
    with Metadata.open(Paths.from_env()) as metadata:
        kept = [k for k in metadata.list_keys() if k.verification is not None]
        assert sorted((k.siret, k.opco_id) for k in kept) == done
        assert metadata.pending() == []
    assert "cle-" not in stdout + stderr
    assert all(detail.startswith("valide") for detail in journal_details("atlas"))
