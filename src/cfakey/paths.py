"""Where cfakey keeps its files, resolved when asked so that ``CFAKEY_HOME`` always applies.

Without ``CFAKEY_HOME`` the platform's conventional directories are used (platformdirs);
with it, everything lives below that one directory, which is what tests and multi-tenant
servers want.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "cfakey"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


@dataclass(frozen=True)
class Paths:
    """The three directories cfakey uses."""

    data_dir: Path
    config_dir: Path
    cache_dir: Path

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Paths:
        """Resolve the directories from the environment at call time."""
        env = os.environ if environ is None else environ
        home = env.get("CFAKEY_HOME")
        if home:
            root = Path(home).expanduser()
            return cls(data_dir=root, config_dir=root, cache_dir=root / "cache")
        import platformdirs  # noqa: PLC0415 - only needed without CFAKEY_HOME

        return cls(
            data_dir=Path(platformdirs.user_data_dir(APP_NAME, appauthor=False)),
            config_dir=Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)),
            cache_dir=Path(platformdirs.user_cache_dir(APP_NAME, appauthor=False)),
        )

    @property
    def config_file(self) -> Path:
        """The user's settings (store choice, API settings), JSON."""
        return self.config_dir / "config.json"

    @property
    def metadata_db(self) -> Path:
        """The SQLite database of key metadata, CFAs and the journal."""
        return self.data_dir / "cfakey.sqlite3"

    @property
    def encrypted_store(self) -> Path:
        """The encrypted-file key store, used where no OS keyring works."""
        return self.data_dir / "keys.enc"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) if needed and make it readable by its owner only."""
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    if path.stat().st_mode & 0o777 != PRIVATE_DIR_MODE:
        path.chmod(PRIVATE_DIR_MODE)
    return path


def atomic_write(path: Path, data: bytes, *, mode: int = PRIVATE_FILE_MODE) -> bool:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    The temporary file is created with ``mode`` from the start, so the content is never
    readable by others, and a crash leaves either the old file or the new one. Its name
    is random rather than derived from the process id: in a container the same small pid
    comes back run after run, and a file left by a killed writer must not block the next.

    An ``OSError`` means ``path`` was not replaced. The rename is the commit point: once
    it is done the write has happened, so a failure to sync the directory afterwards is
    not an error; it returns ``False`` (the new file may not survive a power cut).
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        if mode != PRIVATE_FILE_MODE and hasattr(os, "fchmod"):
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    try:
        _fsync_dir(path.parent)
    except OSError:
        return False
    return True


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable: on POSIX the directory entry is only safe once synced."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(
    path: Path, data: bytes, *, replace: bool = False, mode: int = PRIVATE_FILE_MODE
) -> None:
    """Create ``path`` holding ``data``, all at once, never clobbering unless ``replace``.

    The content goes to a temporary file (``mode`` from the start) in the same directory,
    then ``os.link`` puts it in place, which fails with ``FileExistsError`` if ``path``
    exists, even if it appeared a moment ago; ``replace`` uses ``os.replace`` instead.
    On file systems without hard links the target is created with ``O_EXCL`` and filled.
    Other failures raise the ``OSError`` unchanged, and leave nothing behind.
    """
    import secrets  # noqa: PLC0415 - only for the temporary name

    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        _fill(fd, data)
        if replace:
            tmp.replace(path)
            return
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            _write_exclusive(path, data, mode)
    finally:
        tmp.unlink(missing_ok=True)


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        _fill(fd, data)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _fill(fd: int, data: bytes) -> None:
    """Write ``data`` to the newly created file ``fd``, fsync and close it."""
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
