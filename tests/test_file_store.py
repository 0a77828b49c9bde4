"""The encrypted-file store: the shared contract, then what only a password-encrypted file has."""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from cfakey.errors import (
    CfakeyError,
    DataCorruptedError,
    ExitCode,
    NotFoundError,
    StoreUnavailableError,
    UsageError,
)
from cfakey.stores import file_store
from cfakey.stores.base import entry_name
from cfakey.stores.file_store import (
    DEFAULT_SCRYPT,
    EncryptedFileStore,
    PasswordSource,
    ScryptParams,
    password_source,
)
from tests.store_contract import SIRET_A, SIRET_B, KeyStoreContract

PASSWORD = "mot-de-passe-de-test"
#: Cheap scrypt for tests that are not about its cost (the default is tested on its own).
CHEAP = ScryptParams(n=2**10)
KEY = "CFA-KEY-4f1c2a9e-7b3d-4e8a-9c1f-0123456789ab"
SRC = Path(__file__).resolve().parents[1] / "src"


class Passwords:
    """A password source that records what it was asked."""

    def __init__(self, password: str = PASSWORD) -> None:
        self.password = password
        self.asked: list[bool] = []

    def __call__(self, *, new: bool, check: object = None) -> str:
        self.asked.append(new)
        return self.password


def open_store(path: Path, password: str | PasswordSource = PASSWORD) -> EncryptedFileStore:
    source = Passwords(password) if isinstance(password, str) else password
    return EncryptedFileStore(path, source, new_file_kdf=CHEAP)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "keys.enc"


class TestEncryptedFileContract(KeyStoreContract):
    @pytest.fixture
    def store(self, path: Path) -> EncryptedFileStore:
        return open_store(path)

    @pytest.fixture
    def reopen(self, path: Path) -> Callable[[], EncryptedFileStore]:
        return lambda: open_store(path)


# -- what is on disk ---------------------------------------------------------------------


def test_the_file_never_holds_the_key_in_clear_base64_or_hex(path: Path) -> None:
    with open_store(path) as store:
        store.put(entry_name(SIRET_A, "atlas"), KEY)
        store.put(entry_name(SIRET_B, "akto"), KEY + "-2")
    raw = path.read_bytes()
    encoded = KEY.encode()
    forms = {
        encoded,
        base64.b64encode(encoded),
        base64.b64encode(encoded).rstrip(b"="),
        base64.urlsafe_b64encode(encoded).rstrip(b"="),
        encoded.hex().encode(),
        encoded.hex().upper().encode(),
        KEY[:20].encode(),
    }
    for form in forms:
        assert form not in raw
    # Nor which CFA has keys at which OPCO: entry names are encrypted too.
    assert SIRET_A.encode() not in raw
    assert b"atlas" not in raw


def test_file_lock_and_directory_are_private(path: Path) -> None:
    with open_store(path) as store:
        store.put(entry_name(SIRET_A, "atlas"), KEY)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((path.parent / "keys.enc.lock").stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == ["keys.enc", "keys.enc.lock"]


def test_the_format_is_versioned_and_authenticated(path: Path) -> None:
    with open_store(path) as store:
        store.put(entry_name(SIRET_A, "atlas"), KEY)
    header = json.loads(path.read_bytes().partition(b"\n")[0])
    assert header["format"] == "cfakey-encrypted-store"
    assert header["version"] == 1
    assert header["cipher"] == "AES-256-GCM"
    assert header["kdf"]["name"] == "scrypt"


def test_the_default_key_derivation_is_memory_hard(path: Path) -> None:
    # 2**17 * 8 * 128 bytes = 128 MiB per guess: OWASP's recommended minimum for scrypt.
    assert DEFAULT_SCRYPT.n >= 2**17
    assert DEFAULT_SCRYPT.r >= 8
    store = EncryptedFileStore(path, Passwords())
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    kdf = json.loads(path.read_bytes().partition(b"\n")[0])["kdf"]
    assert (kdf["n"], kdf["r"], kdf["p"]) == (2**17, 8, 1)
    assert len(base64.b64decode(kdf["salt"])) >= 16


# -- the password ------------------------------------------------------------------------


def test_the_key_is_derived_once_per_store_not_per_entry(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    derive = file_store.derive_key

    def counting(password: str, salt: bytes, params: ScryptParams) -> object:
        calls.append(params.n)
        return derive(password, salt, params)

    monkeypatch.setattr(file_store, "derive_key", counting)
    passwords = Passwords()
    store = open_store(path, passwords)
    for number in range(40):
        store.put(entry_name(SIRET_A, f"opco{number}"), f"cle-{number}")
        assert store.get(entry_name(SIRET_A, f"opco{number}")) == f"cle-{number}"
    store.delete(entry_name(SIRET_A, "opco0"))
    assert len(calls) == 1
    assert passwords.asked == [True]  # asked once, as a new password, when creating the file
    other = Passwords()
    assert open_store(path, other).get(entry_name(SIRET_A, "opco7")) == "cle-7"
    assert other.asked == [False]
    assert len(calls) == 2


def test_a_wrong_password_is_a_clear_error_and_changes_nothing(path: Path) -> None:
    open_store(path).put(entry_name(SIRET_A, "atlas"), KEY)
    before = path.read_bytes()
    intruder = open_store(path, "pas-le-bon-mot-de-passe")
    for attempt in (
        lambda: intruder.get(entry_name(SIRET_A, "atlas")),
        lambda: intruder.put(entry_name(SIRET_A, "atlas"), "remplacement"),
        lambda: intruder.delete(entry_name(SIRET_A, "atlas")),
    ):
        with pytest.raises(
            StoreUnavailableError, match="Mot de passe du fichier chiffré incorrect"
        ):
            attempt()
    assert path.read_bytes() == before
    assert StoreUnavailableError.exit_code == ExitCode.STORE_UNAVAILABLE


def test_a_new_password_must_not_be_trivial(path: Path) -> None:
    with pytest.raises(UsageError, match="trop court"):
        open_store(path, "court").put(entry_name(SIRET_A, "atlas"), KEY)
    assert not path.exists()


def test_no_password_anywhere_is_a_clear_error(path: Path) -> None:
    store = EncryptedFileStore(path, password_source({}), new_file_kdf=CHEAP)
    with pytest.raises(StoreUnavailableError, match="aucun terminal") as caught:
        store.put(entry_name(SIRET_A, "atlas"), KEY)
    assert "CFAKEY_FILE_PASSWORD" in (caught.value.hint or "")


def test_the_environment_password_comes_before_the_prompt(path: Path) -> None:
    prompted: list[bool] = []

    def prompt(*, new: bool, check: object = None) -> str:
        prompted.append(new)
        return "tapé-au-clavier"

    source = password_source({"CFAKEY_FILE_PASSWORD": PASSWORD}, prompt)
    assert source(new=True) == PASSWORD
    assert password_source({}, prompt)(new=False) == "tapé-au-clavier"
    assert prompted == [False]


def test_reading_an_absent_file_asks_no_password(path: Path) -> None:
    passwords = Passwords()
    store = open_store(path, passwords)
    assert store.get(entry_name(SIRET_A, "atlas")) is None
    assert store.delete(entry_name(SIRET_A, "atlas")) is False
    assert passwords.asked == []
    assert not path.exists()


def test_a_batch_on_no_file_asks_a_password_only_to_write(path: Path) -> None:
    passwords = Passwords()
    store = open_store(path, passwords)
    with store.batch():
        assert store.get(entry_name(SIRET_A, "atlas")) is None
    assert passwords.asked == []
    assert not path.exists()
    with store.batch():
        store.put(entry_name(SIRET_A, "atlas"), KEY)
        store.put(entry_name(SIRET_B, "atlas"), "cle-b")
        assert store.delete(entry_name(SIRET_B, "atlas")) is True
    assert passwords.asked == [True]
    assert open_store(path).entries() == [entry_name(SIRET_A, "atlas")]


def test_changing_the_password_re_encrypts_everything(path: Path) -> None:
    store = open_store(path)
    for number in range(5):
        store.put(entry_name(SIRET_A, f"opco{number}"), f"cle-{number}")
    old_header = json.loads(path.read_bytes().partition(b"\n")[0])
    store.change_password("nouveau-mot-de-passe")
    new_header = json.loads(path.read_bytes().partition(b"\n")[0])
    assert new_header["kdf"]["salt"] != old_header["kdf"]["salt"]
    assert store.get(entry_name(SIRET_A, "opco3")) == "cle-3"  # the same object goes on
    with pytest.raises(StoreUnavailableError, match="incorrect"):
        open_store(path).get(entry_name(SIRET_A, "opco3"))
    reopened = open_store(path, "nouveau-mot-de-passe")
    assert reopened.entries() == [entry_name(SIRET_A, f"opco{n}") for n in range(5)]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_changing_the_password_needs_the_current_one(path: Path) -> None:
    open_store(path).put(entry_name(SIRET_A, "atlas"), KEY)
    before = path.read_bytes()
    with pytest.raises(StoreUnavailableError, match="incorrect"):
        open_store(path, "mauvais-mot-de-passe").change_password("nouveau-mot-de-passe")
    with pytest.raises(UsageError, match="trop court"):
        open_store(path).change_password("court")
    assert path.read_bytes() == before


def test_changing_the_password_of_no_file(path: Path) -> None:
    with pytest.raises(NotFoundError):
        open_store(path).change_password("nouveau-mot-de-passe")


def test_a_password_changed_by_another_process_is_asked_again(path: Path) -> None:
    passwords = Passwords()
    store = open_store(path, passwords)
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    open_store(path).change_password("nouveau-mot-de-passe")
    passwords.password = "nouveau-mot-de-passe"
    store.put(entry_name(SIRET_A, "akto"), "cle-akto")
    assert passwords.asked == [True, False]
    assert open_store(path, "nouveau-mot-de-passe").get(entry_name(SIRET_A, "atlas")) == KEY


# -- damage ------------------------------------------------------------------------------


def _stored(path: Path) -> bytes:
    with open_store(path) as store:
        store.put(entry_name(SIRET_A, "atlas"), KEY)
        store.put(entry_name(SIRET_B, "atlas"), KEY + "-b")
    return path.read_bytes()


def _damage_ciphertext(raw: bytes) -> bytes:
    header, _, data = raw.partition(b"\n")
    blob = bytearray(base64.b64decode(data))
    blob[len(blob) // 2] ^= 0x01
    return header + b"\n" + base64.b64encode(bytes(blob)) + b"\n"


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda raw: raw[: len(raw) // 2], id="truncated-in-the-ciphertext"),
        pytest.param(lambda raw: raw[:40], id="truncated-in-the-header"),
        pytest.param(lambda raw: raw.partition(b"\n")[0] + b"\n", id="ciphertext-missing"),
        pytest.param(lambda raw: b"", id="empty"),
        pytest.param(lambda raw: b"\x00" * len(raw), id="zeroed"),
        pytest.param(_damage_ciphertext, id="one-bit-flipped"),
        pytest.param(
            lambda raw: raw.replace(b'"AES-256-GCM"', b'"AES-128-CBC"'), id="cipher-changed"
        ),
    ],
)
def test_a_damaged_file_is_reported_and_left_as_it_is(
    path: Path, damage: Callable[[bytes], bytes]
) -> None:
    damaged = damage(_stored(path))
    path.write_bytes(damaged)
    store = open_store(path)
    with pytest.raises(DataCorruptedError, match="endommagé") as caught:
        store.get(entry_name(SIRET_A, "atlas"))
    assert KEY not in caught.value.message
    with pytest.raises(DataCorruptedError):
        store.put(entry_name(SIRET_A, "akto"), "cle-akto")
    assert path.read_bytes() == damaged
    assert DataCorruptedError.exit_code == ExitCode.DATA_CORRUPTED


def test_a_file_from_a_newer_cfakey_is_refused(path: Path) -> None:
    raw = _stored(path).replace(b'"version": 1', b'"version": 2')
    path.write_bytes(raw)
    with pytest.raises(DataCorruptedError, match="version plus récente"):
        open_store(path).get(entry_name(SIRET_A, "atlas"))
    assert path.read_bytes() == raw


@pytest.mark.parametrize(
    ("field", "value"),
    [(b'"n": 1024', b'"n": 1073741824'), (b'"r": 8', b'"r": 32')],
)
def test_absurd_scrypt_parameters_are_refused_before_deriving(
    path: Path, field: bytes, value: bytes
) -> None:
    raw = _stored(path).replace(b'"n": 1024', b'"n": 4194304').replace(field, value)
    path.write_bytes(raw)
    with pytest.raises(DataCorruptedError):
        open_store(path).get(entry_name(SIRET_A, "atlas"))
    assert path.read_bytes() == raw


# -- failures while writing --------------------------------------------------------------


def test_a_failed_write_keeps_the_previous_file(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(path)
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    before = path.read_bytes()

    def full_disk(target: Path, data: bytes, **_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(file_store, "atomic_write", full_disk)
    with pytest.raises(CfakeyError, match="l'ancien fichier est intact") as raised:
        store.put(entry_name(SIRET_A, "akto"), "cle-akto")
    assert raised.value.exit_code == ExitCode.ERROR  # the disk is at fault, not the store
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert open_store(path).get(entry_name(SIRET_A, "akto")) is None
    assert store.get(entry_name(SIRET_A, "akto")) is None


def test_a_batch_that_fails_writes_nothing(path: Path) -> None:
    store = open_store(path)
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    before = path.read_bytes()

    def failing_batch() -> None:
        with store.batch():
            store.put(entry_name(SIRET_A, "akto"), "cle-akto")
            store.delete(entry_name(SIRET_A, "atlas"))
            raise RuntimeError

    with pytest.raises(RuntimeError):
        failing_batch()
    assert path.read_bytes() == before
    assert store.get(entry_name(SIRET_A, "akto")) is None
    assert store.get(entry_name(SIRET_A, "atlas")) == KEY


def test_an_unusable_data_directory_is_a_clear_error(tmp_path: Path) -> None:
    # A file where the directory should be: refused even for root, unlike a chmod.
    (tmp_path / "data").write_text("pas un dossier")
    store = open_store(tmp_path / "data" / "keys.enc")
    with pytest.raises(StoreUnavailableError, match=r"Dossier de données .* inutilisable"):
        store.put(entry_name(SIRET_A, "atlas"), KEY)


def test_temporary_files_of_killed_writers_are_cleaned_up(path: Path) -> None:
    store = open_store(path)
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    leftover = path.parent / ".keys.enc.abc123.tmp"
    leftover.write_bytes(b"reste d'une ecriture interrompue")
    open_store(path).put(entry_name(SIRET_A, "akto"), "cle-akto")  # the next process cleans up
    assert not leftover.exists()


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, sys.argv[3])
    from pathlib import Path
    from cfakey.stores.file_store import EncryptedFileStore, ScryptParams

    real_fsync = os.fsync

    def fsync_then_die(fd):
        # The new content is complete in the temporary file, not yet renamed over the old.
        real_fsync(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    store = EncryptedFileStore(
        Path(sys.argv[1]), lambda **_: sys.argv[2], new_file_kdf=ScryptParams(n=2**10)
    )
    store.get("probe")  # derive the key before the trap is set
    os.fsync = fsync_then_die
    store.put("13002526500013/akto", "cle-jamais-ecrite")
    """
)


def test_a_writer_killed_mid_write_leaves_the_previous_file(path: Path) -> None:
    store = open_store(path)
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    before = path.read_bytes()
    child = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(path), PASSWORD, str(SRC)],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert child.returncode == -9, child.stderr.decode()
    assert path.read_bytes() == before
    assert list(path.parent.glob(".keys.enc.*.tmp"))  # it died with its temporary file
    reopened = open_store(path)
    assert reopened.get(entry_name(SIRET_A, "atlas")) == KEY
    assert reopened.get(entry_name(SIRET_A, "akto")) is None
    reopened.put(entry_name(SIRET_A, "akto"), "cle-akto")
    assert not list(path.parent.glob(".keys.enc.*.tmp"))


_LOOPING_WRITER = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[3])
    from pathlib import Path
    from cfakey.stores.file_store import EncryptedFileStore, ScryptParams

    store = EncryptedFileStore(
        Path(sys.argv[1]), lambda **_: sys.argv[2], new_file_kdf=ScryptParams(n=2**10)
    )
    store.get("probe")
    print("pret", flush=True)
    number = 0
    while True:
        store.put(f"13002526500013/opco{number}", "x" * 200 + str(number))
        number += 1
    """
)


@pytest.mark.slow
def test_writers_killed_at_random_moments_never_damage_the_file(path: Path) -> None:
    import random
    import time

    open_store(path).put(entry_name(SIRET_A, "atlas"), KEY)
    rng = random.Random(3)  # noqa: S311 - timing jitter, not cryptography
    for _ in range(8):
        child = subprocess.Popen(
            [sys.executable, "-c", _LOOPING_WRITER, str(path), PASSWORD, str(SRC)],
            stdout=subprocess.PIPE,
        )
        assert child.stdout is not None
        assert child.stdout.readline() == b"pret\n"
        time.sleep(rng.uniform(0.01, 0.2))
        child.kill()
        child.wait()
        child.stdout.close()
        entries = open_store(path).entries()  # decrypts and authenticates the whole file
        assert entry_name(SIRET_A, "atlas") in entries
    assert path.stat().st_size > 0


def test_prepare_asks_the_password_up_front_once(path: Path) -> None:
    passwords = Passwords()
    store = open_store(path, passwords)
    store.prepare()
    assert passwords.asked == [True]  # a new file: the password is chosen now
    assert not path.exists()  # nothing written until a key is stored
    store.put(entry_name(SIRET_A, "atlas"), KEY)
    assert passwords.asked == [True]  # not asked again to write
    assert open_store(path).get(entry_name(SIRET_A, "atlas")) == KEY


def test_prepare_refuses_a_wrong_password_before_anything_else(path: Path) -> None:
    open_store(path).put(entry_name(SIRET_A, "atlas"), KEY)
    before = path.read_bytes()
    with pytest.raises(StoreUnavailableError, match="Mot de passe du fichier chiffré incorrect"):
        open_store(path, "pas-le-bon-mot-de-passe").prepare()
    assert path.read_bytes() == before
