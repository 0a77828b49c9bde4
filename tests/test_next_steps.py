"""« Et maintenant » after ``add``/``rotate``: every command printed runs as printed.

The export names its file (a terminal refuses keys on screen); verification comes after
the setting that gives the API address, or alone once it is set. Each command is run as
shown, with a real fake OPCO on 127.0.0.1; only the ``URL`` placeholder is filled in.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from cfakey.errors import ExitCode
from tests.fake_opco import FakeOpco, running_fake_opco
from tests.test_keys_cli import ATLAS_KEY, KEY_2, cfa, run_cli

__all__ = ["cfa"]  # the fixture, used by name


@pytest.fixture
def opco() -> Iterator[FakeOpco]:
    with running_fake_opco() as server:
        server.state.valid_keys.update({ATLAS_KEY: "2027-06-30", KEY_2: "2027-06-30"})
        yield server


def suggested(stderr: str) -> list[list[str]]:
    """The commands printed under « Et maintenant », as argv without ``cfakey``."""
    tail = stderr.split("Et maintenant :", 1)[1]
    return [
        shlex.split(line.strip())[1:]
        for line in tail.splitlines()
        if line.strip().startswith("cfakey ")
    ]


def test_every_suggested_command_runs_as_printed(
    cfa: str, opco: FakeOpco, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    added = run_cli("add", "atlas", input=ATLAS_KEY)
    assert added.exit_code == ExitCode.OK, added.stderr
    export, config_set, verify = suggested(added.stderr)
    assert export[:1] == ["export"]
    assert "--output" in export
    assert config_set == ["config", "set", "opco.atlas.api_url", "URL"]
    assert verify == ["verify", "atlas", "--cfa", cfa]
    config_set[-1] = opco.base_url("ok")  # the placeholder the operator fills in
    for argv in (export, config_set, verify):
        result = run_cli(*argv)
        assert result.exit_code == ExitCode.OK, (argv, result.stderr)
    assert ATLAS_KEY in (tmp_path / f"atlas-{cfa}.env").read_text()

    # Now the address is known: no placeholder left, every command runs literally.
    rotated = run_cli("rotate", "atlas", input=KEY_2)
    assert rotated.exit_code == ExitCode.OK, rotated.stderr
    commands = suggested(rotated.stderr)
    assert [argv[0] for argv in commands] == ["export", "verify"]
    (tmp_path / f"atlas-{cfa}.env").unlink()
    for argv in commands:
        result = run_cli(*argv)
        assert result.exit_code == ExitCode.OK, (argv, result.stderr)
    assert KEY_2 in (tmp_path / f"atlas-{cfa}.env").read_text()


def test_an_opco_that_needs_an_oauth_client_says_so_instead_of_a_failing_verify(
    cfa: str,
) -> None:
    added = run_cli("add", "akto", input="akto-cle-cfa-0123456789abcdef")
    assert added.exit_code == ExitCode.OK, added.stderr
    assert [argv[0] for argv in suggested(added.stderr)] == ["export", "config"]
    assert "AKTO exige aussi le client OAuth2 de l'éditeur du logiciel" in added.stderr
