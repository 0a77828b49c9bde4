"""The encrypted-file store, for machines with no usable OS keyring (servers, containers, WSL).

One file in the data directory, mode 0600, holds every secret, names included. Its first
line is a JSON header (format version, scrypt parameters and salt, a password check, the
nonce), its second the AES-256-GCM ciphertext of the entries in base64; the header is
authenticated with the entries, so it cannot be altered unnoticed, and it is all that is
parsed when the file has not changed since it was last read. The key is derived from
the password once per store object (one per process), never per entry. Writers take an
exclusive lock on a side file, read the current file, change it and replace it
atomically, so concurrent processes lose no update and a process killed mid-write leaves
the previous file intact.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Self

from cfakey.errors import (
    CfakeyError,
    DataCorruptedError,
    NotFoundError,
    StoreUnavailableError,
    UsageError,
    disk_hint,
    os_reason,
)
from cfakey.locking import exclusive_lock
from cfakey.paths import atomic_write, ensure_private_dir
from cfakey.stores.base import KeyStore

if TYPE_CHECKING:
    from cfakey.stores.kinds import StoreSettings

PASSWORD_ENV = "CFAKEY_FILE_PASSWORD"  # noqa: S105 - a variable name
NEW_PASSWORD_ENV = "CFAKEY_NEW_FILE_PASSWORD"  # noqa: S105 - read by ``store password``
#: Every environment variable cfakey reads a secret from. A child process (``cfakey exec``)
#: never receives them: it gets the keys asked for, nothing that unlocks the others.
SECRET_ENV_VARIABLES = (PASSWORD_ENV, NEW_PASSWORD_ENV, "CFAKEY_BAO_SECRET_ID")
FORMAT = "cfakey-encrypted-store"
FORMAT_VERSION = 1
CIPHER = "AES-256-GCM"
MIN_PASSWORD_LENGTH = 8
_CHECK_LABEL = b"cfakey encrypted store: password check"
_SALT_BYTES = 16
_NONCE_BYTES = 12


#: Whether a typed password opens the existing file (so that a terminal can ask again).
PasswordCheck = Callable[[str], bool]


class PasswordSource(Protocol):
    """Supplies the file's password: ``new`` is true when a password is being chosen.

    For an existing file, ``check`` tells a prompt whether the typed password is the right
    one, so that it can ask again; the store still checks whatever comes back.
    """

    def __call__(self, *, new: bool, check: PasswordCheck | None = None) -> str: ...


#: scrypt needs 128·n·r bytes; the default takes 128 MiB. A header asking more is damaged.
MAX_SCRYPT_MEMORY = 2**30


@dataclass(frozen=True)
class ScryptParams:
    """scrypt cost parameters. The default costs 128 MiB and about 0.4 s, once per process."""

    n: int = 2**17
    r: int = 8
    p: int = 1

    def check(self) -> None:
        """Refuse parameters no cfakey would write (a damaged or hostile header)."""
        if not (2**10 <= self.n <= 2**22 and self.n & (self.n - 1) == 0):
            raise ValueError("n")
        if not (1 <= self.r <= 32 and 1 <= self.p <= 16):
            raise ValueError("r, p")
        if 128 * self.n * self.r > MAX_SCRYPT_MEMORY:
            raise ValueError("memory")


DEFAULT_SCRYPT = ScryptParams()


def no_terminal_error() -> StoreUnavailableError:
    """The password is needed, no terminal can ask for it, and the environment has none."""
    return StoreUnavailableError(
        "Le mot de passe du fichier chiffré est nécessaire, mais aucun terminal ne permet "
        "de le demander.",
        hint=f"Pour un usage sans surveillance, donnez-le dans la variable {PASSWORD_ENV}.",
    )


def password_source(env: Mapping[str, str], prompt: PasswordSource | None = None) -> PasswordSource:
    """The password from ``CFAKEY_FILE_PASSWORD``, else from ``prompt``, else a French error."""

    def source(*, new: bool, check: PasswordCheck | None = None) -> str:
        value = env.get(PASSWORD_ENV)
        if value:
            return value  # a script's password: one try, never asked again
        if prompt is None:
            raise no_terminal_error()
        return prompt(new=new, check=check)

    return source


@dataclass(frozen=True)
class _Key:
    """A key derived from the password for one salt: encryption half and check half."""

    salt: bytes
    params: ScryptParams
    encryption: bytes = field(repr=False)
    check: bytes = field(repr=False)


@dataclass(frozen=True)
class _Envelope:
    """The parsed file, before decryption."""

    salt: bytes
    params: ScryptParams
    check: bytes
    nonce: bytes
    #: The ciphertext, still in base64: decoded only when this nonce was not seen before.
    data_b64: bytes

    def header(self) -> dict[str, Any]:
        return _header(self.salt, self.params, self.check)


def _header(salt: bytes, params: ScryptParams, check: bytes) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "cipher": CIPHER,
        "kdf": {"name": "scrypt", "n": params.n, "r": params.r, "p": params.p, "salt": _b64(salt)},
        "check": _b64(check),
    }


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _canonical(value: Any) -> bytes:
    """The exact bytes authenticated as associated data: key order and spacing fixed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode("utf-8")


def derive_key(password: str, salt: bytes, params: ScryptParams) -> _Key:
    """scrypt, then one half for AES-GCM and one half for the password check."""
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    material = Scrypt(salt=salt, length=64, n=params.n, r=params.r, p=params.p).derive(
        password.encode("utf-8")
    )
    check = hmac.new(material[32:], _CHECK_LABEL, hashlib.sha256).digest()[:16]
    return _Key(salt, params, material[:32], check)


def check_new_password(password: str) -> str:
    """A new password must be long enough to resist guessing, even through scrypt."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(
            "Mot de passe du fichier chiffré trop court : "
            f"{MIN_PASSWORD_LENGTH} caractères au moins."
        )
    return password


class EncryptedFileStore(KeyStore):
    """Secrets in one password-encrypted file (AES-256-GCM, key from scrypt)."""

    kind = "file"
    can_list = True
    can_change_password = True

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Self:
        return cls(settings.paths.encrypted_store, settings.password_source)

    def location(self) -> str:
        return str(self.path)

    def __init__(
        self,
        path: Path,
        password_source: PasswordSource,
        *,
        new_file_kdf: ScryptParams = DEFAULT_SCRYPT,
    ) -> None:
        self.path = path
        self.lock_path = path.with_name(f"{path.name}.lock")
        self._password_source = password_source
        self._new_file_kdf = new_file_kdf
        self._key: _Key | None = None
        # The last content read or written, by nonce, so an unchanged file is not decrypted again.
        self._snapshot: tuple[bytes, dict[str, str]] | None = None
        # Inside batch(): the entries being changed, written once when the batch ends.
        self._pending: dict[str, str] | None = None
        self._dirty = False
        # Temporary files of killed writers are looked for once per store, not per write.
        self._leftovers_checked = False

    # -- KeyStore ---------------------------------------------------------------------

    def describe(self) -> str:
        params = self._new_file_kdf
        state = "pas encore créé"
        with suppress(DataCorruptedError, StoreUnavailableError, OSError):
            envelope = self._read()
            if envelope is not None:
                params, state = envelope.params, "mode " + oct(self.path.stat().st_mode & 0o777)[2:]
        return (
            f"fichier chiffré {self.path} ({state} ; {CIPHER}, clé dérivée du mot de passe par "
            f"scrypt N={params.n}, r={params.r}, p={params.p})"
        )

    def put(self, entry: str, secret: str) -> None:
        self._change(lambda entries: entries.__setitem__(entry, secret))

    def get(self, entry: str) -> str | None:
        return self._entries().get(entry)

    def delete(self, entry: str) -> bool:
        if self._pending is None and self._read() is None:
            return False  # no file: nothing to remove, and no password to ask for
        removed = False

        def remove(entries: dict[str, str]) -> None:
            nonlocal removed
            removed = entries.pop(entry, None) is not None

        self._change(remove)
        return removed

    def entries(self) -> list[str]:
        return sorted(self._entries())

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Hold the lock, decrypt once, and write once at the end; nothing is written on error."""
        if self._pending is not None:
            yield
            return
        if self._read() is None:
            # Nothing to unlock yet: no password is asked unless the batch writes something.
            self._pending, self._dirty = {}, False
            try:
                yield
                added = self._pending
            finally:
                self._pending, self._dirty = None, False
            if added:
                self._change(lambda entries: entries.update(added))
            return
        with self._session() as entries:
            self._pending, self._dirty = dict(entries), False
            try:
                yield
                if self._dirty:
                    self._write(self._pending)
            finally:
                self._pending, self._dirty = None, False

    def close(self) -> None:
        self._key = None
        self._snapshot = None

    # -- the password -------------------------------------------------------------------

    def prepare(self) -> None:
        """Ask for the password now: checked against the file, or chosen for a new one."""
        if self._key is not None:
            return
        envelope = self._read()
        if envelope is None:
            password = check_new_password(self._password_source(new=True))
            self._key = derive_key(password, secrets.token_bytes(_SALT_BYTES), self._new_file_kdf)
        else:
            self._unlock(envelope)

    def unlock(self) -> list[str]:
        """Check the password against the existing file now; the names of its entries."""
        envelope = self._read()
        if envelope is None:
            raise NotFoundError(
                f"Aucun fichier chiffré à {self.path} : aucune clé n'y a été enregistrée."
            )
        self._unlock(envelope)
        return sorted(self._decrypt(envelope))

    def change_password(self, new_password: str) -> None:
        """Re-encrypt every entry under ``new_password`` (new salt), replacing the file atomically.

        The current password is needed first; a wrong one changes nothing.
        """
        check_new_password(new_password)
        if not self.path.exists():
            raise NotFoundError(
                f"Aucun fichier chiffré à {self.path} : aucun mot de passe à changer."
            )
        with self._session() as entries:
            old_key = self._key
            self._key = derive_key(
                new_password, secrets.token_bytes(_SALT_BYTES), self._new_file_kdf
            )
            try:
                self._write(entries)
            except BaseException:
                self._key = old_key
                raise

    # -- reading ------------------------------------------------------------------------

    def _entries(self) -> dict[str, str]:
        """The current entries: the batch's own view inside a batch, else the file's."""
        if self._pending is not None:
            return self._pending
        envelope = self._read()
        if envelope is None:
            return {}
        self._unlock(envelope)
        return self._decrypt(envelope)

    def _read(self) -> _Envelope | None:
        """Parse the file (``None`` if absent); any damage is a French error naming it."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except NotADirectoryError as error:
            raise self._directory_error(error) from None
        except PermissionError:
            raise StoreUnavailableError(
                f"Fichier chiffré {self.path} illisible : permission refusée.",
                hint="Il doit appartenir à l'utilisateur qui lance cfakey (mode 600).",
            ) from None
        except OSError as error:
            raise StoreUnavailableError(
                f"Fichier chiffré {self.path} illisible : {os_reason(error)}."
            ) from None
        return self._parse(raw)

    def _parse(self, raw: bytes) -> _Envelope:
        damaged = DataCorruptedError(
            f"Fichier chiffré {self.path} endommagé ou tronqué : il ne peut pas être lu.",
            hint="Restaurez-le depuis une sauvegarde ; le fichier n'a pas été modifié.",
        )
        header_line, _, data_b64 = raw.partition(b"\n")
        try:
            document = json.loads(header_line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise damaged from None
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            raise damaged
        version = document.get("version")
        if isinstance(version, int) and version > FORMAT_VERSION:
            raise DataCorruptedError(
                f"Fichier chiffré {self.path} écrit par une version plus récente de cfakey "
                f"(format {version}, celle-ci lit le format {FORMAT_VERSION}).",
                hint="Mettez cfakey à jour ; le fichier n'a pas été modifié.",
            )
        try:
            kdf = document["kdf"]
            if version != FORMAT_VERSION or document["cipher"] != CIPHER or kdf["name"] != "scrypt":
                raise damaged
            params = ScryptParams(n=int(kdf["n"]), r=int(kdf["r"]), p=int(kdf["p"]))
            params.check()
            envelope = _Envelope(
                salt=base64.b64decode(kdf["salt"], validate=True),
                params=params,
                check=base64.b64decode(document["check"], validate=True),
                nonce=base64.b64decode(document["nonce"], validate=True),
                data_b64=data_b64.strip(),
            )
        except (KeyError, TypeError, ValueError, binascii.Error):
            raise damaged from None
        if (
            len(envelope.salt) < _SALT_BYTES
            or len(envelope.nonce) != _NONCE_BYTES
            or len(envelope.check) != 16
        ):
            raise damaged
        return envelope

    def _unlock(self, envelope: _Envelope) -> None:
        """Have the key for this file's salt, deriving it (once) from the password."""
        if self._key is not None and (self._key.salt, self._key.params) == (
            envelope.salt,
            envelope.params,
        ):
            return
        opened: list[_Key] = []

        def opens(password: str) -> bool:
            key = derive_key(password, envelope.salt, envelope.params)
            if hmac.compare_digest(key.check, envelope.check):
                opened.append(key)
                return True
            return False

        password = self._password_source(new=False, check=opens)
        if not (opened or opens(password)):
            raise StoreUnavailableError(
                f"Mot de passe du fichier chiffré incorrect ({self.path}) ; "
                "le fichier n'a pas été modifié.",
                hint="Vérifiez CFAKEY_FILE_PASSWORD, ou le mot de passe tapé.",
            )
        self._key = opened[-1]

    def _decrypt(self, envelope: _Envelope) -> dict[str, str]:
        if self._snapshot is not None and self._snapshot[0] == envelope.nonce:
            return self._snapshot[1]
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        assert self._key is not None  # noqa: S101 - _unlock ran first
        try:
            data = base64.b64decode(envelope.data_b64, validate=True)
            plain = AESGCM(self._key.encryption).decrypt(
                envelope.nonce, data, _canonical(envelope.header())
            )
            entries = json.loads(plain)["entries"]
        except (InvalidTag, ValueError, KeyError, TypeError, binascii.Error):
            # The password check passed, so the content itself was altered or cut.
            raise DataCorruptedError(
                f"Fichier chiffré {self.path} endommagé : son contenu ne s'authentifie pas.",
                hint="Restaurez-le depuis une sauvegarde ; le fichier n'a pas été modifié.",
            ) from None
        if not isinstance(entries, dict) or not all(
            isinstance(name, str) and isinstance(secret, str) for name, secret in entries.items()
        ):
            raise DataCorruptedError(f"Fichier chiffré {self.path} endommagé : contenu inattendu.")
        self._snapshot = (envelope.nonce, entries)
        return entries

    # -- writing ------------------------------------------------------------------------

    def _change(self, change: Callable[[dict[str, str]], None]) -> None:
        """Apply ``change`` to the entries: in the batch's view, or under the lock to the file."""
        if self._pending is not None:
            change(self._pending)
            self._dirty = True
            return
        with self._session() as entries:
            updated = dict(entries)
            change(updated)
            if updated != entries:
                self._write(updated)

    @contextmanager
    def _session(self) -> Iterator[dict[str, str]]:
        """The lock held, the key ready and the current entries decrypted.

        The password is asked and the key derived before the lock is taken, so no other
        process waits on a prompt or on scrypt. If another process created the file or
        changed its password meanwhile, the key is derived again for the file as it is.
        """
        new_password: str | None = None
        while True:
            if self._key is None:
                envelope = self._read()
                if envelope is None:
                    # No file yet: a new one, under a password chosen now.
                    if new_password is None:
                        new_password = check_new_password(self._password_source(new=True))
                    salt = secrets.token_bytes(_SALT_BYTES)
                    self._key = derive_key(new_password, salt, self._new_file_kdf)
                elif new_password is not None:
                    # Another process created it meanwhile, perhaps with the same password.
                    theirs = derive_key(new_password, envelope.salt, envelope.params)
                    if not hmac.compare_digest(theirs.check, envelope.check):
                        raise StoreUnavailableError(
                            f"Le fichier chiffré {self.path} vient d'être créé par un autre "
                            "processus, avec un autre mot de passe ; rien n'a été enregistré.",
                        )
                    self._key = theirs
                else:
                    self._unlock(envelope)
            key = self._key
            assert key is not None  # noqa: S101 - derived just above
            self._writable_dir()
            with exclusive_lock(self.lock_path):
                current = self._read()
                if current is None:
                    # Not created yet, or removed since: (re)created under the key we hold.
                    yield {}
                    return
                if (current.salt, current.params) != (key.salt, key.params):
                    # Created or re-keyed by another process meanwhile: derive the key again,
                    # outside the lock, so that no other process waits on scrypt.
                    self._key = None
                    continue
                yield self._decrypt(current)
                return

    def _writable_dir(self) -> None:
        try:
            ensure_private_dir(self.path.parent)
        except OSError as error:
            raise self._directory_error(error) from None

    def _directory_error(self, error: OSError) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"Dossier de données {self.path.parent} inutilisable : {os_reason(error)}.",
            hint="Vérifiez ses droits, ou choisissez-en un autre avec CFAKEY_HOME.",
        )

    def _write(self, entries: dict[str, str]) -> None:
        """Encrypt ``entries`` with a fresh nonce and replace the file atomically (lock held)."""
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = self._key
        assert key is not None  # noqa: S101 - _session derived it
        header = _header(key.salt, key.params, key.check)
        nonce = secrets.token_bytes(_NONCE_BYTES)
        plain = json.dumps({"entries": entries}, ensure_ascii=False, separators=(",", ":")).encode()
        data = AESGCM(key.encryption).encrypt(nonce, plain, _canonical(header))
        # One header line (small, read on every access), then the ciphertext line.
        header_line = json.dumps({**header, "nonce": _b64(nonce)}, separators=(", ", ": "))
        self._remove_leftovers()
        try:
            atomic_write(self.path, f"{header_line}\n{_b64(data)}\n".encode("ascii"))
        except OSError as error:
            # The disk (full, read-only), not the store, is at fault: exit 1, as for the
            # metadata database (docs/exit-codes.md).
            raise CfakeyError(
                f"Impossible d'écrire le fichier chiffré {self.path} : {os_reason(error)} ; "
                "l'ancien fichier est intact.",
                hint=disk_hint(error),
            ) from None
        self._snapshot = (nonce, dict(entries))

    def _remove_leftovers(self) -> None:
        """Temporary files of writers killed mid-write (only writers holding the lock make them)."""
        if self._leftovers_checked:
            return
        self._leftovers_checked = True
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)


#: The ciphertext of no entries: ``{"entries":{}}`` as :meth:`EncryptedFileStore._write`
#: encodes it (14 bytes), with the 16-byte GCM tag.
_EMPTY_CIPHERTEXT = len(b'{"entries":{}}') + 16


def holds_entries(path: Path) -> bool:
    """Whether the encrypted file at ``path`` holds at least one entry, without its password.

    The ciphertext of no entries has a known length; anything longer holds some. A file
    that cannot be read or is damaged is taken to hold some: it is never deemed empty.
    """

    def no_password(*, new: bool, check: PasswordCheck | None = None) -> str:
        # never asked: nothing is decrypted
        raise AssertionError(new)

    try:
        envelope = EncryptedFileStore(path, no_password)._read()
        if envelope is None:
            return False
        return len(base64.b64decode(envelope.data_b64, validate=True)) > _EMPTY_CIPHERTEXT
    except (CfakeyError, binascii.Error, ValueError):
        return True
