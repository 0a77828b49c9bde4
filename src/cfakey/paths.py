"""Where cfakey keeps its files, resolved when asked so that ``CFAKEY_HOME`` always applies.

Without ``CFAKEY_HOME`` the platform's conventional directories are used (platformdirs);
with it, everything lives below that one directory, which is what tests and multi-tenant
servers want.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

APP_NAME = "cfakey"
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
#: Below the data directory: one record per file being written (:func:`pending_output`).
PENDING_OUTPUTS = "pending-outputs"
#: A record holds one path: anything longer is not one of ours.
_MAX_RECORD = 64 * 1024


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
        import platformdirs  # only needed without CFAKEY_HOME

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

    @property
    def pending_outputs(self) -> Path:
        """Where the files being written are recorded (:func:`pending_output`)."""
        return self.data_dir / PENDING_OUTPUTS


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` if needed and make it readable by its owner only.

    Missing parents are created 0700 too (``mkdir -p`` would leave them to the umask):
    a parent another user can write to lets that user swap what is below it.
    """
    missing: list[Path] = []
    current = path.parent
    while not current.exists() and current.parent != current:
        missing.append(current)
        current = current.parent
    for directory in reversed(missing):
        directory.mkdir(mode=PRIVATE_DIR_MODE, exist_ok=True)
    path.mkdir(exist_ok=True, mode=PRIVATE_DIR_MODE)
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


#: A temporary file of :func:`write_new_file`, whatever the name of its target.
_TEMPORARY = re.compile(r"\..+\.cfakey-[0-9a-f]{16}\.tmp")
_MAX_CLAIMS = 8


def write_new_file(
    path: Path, data: bytes, *, replace: bool = False, mode: int = PRIVATE_FILE_MODE
) -> None:
    """Create ``path`` holding ``data``, all at once, never clobbering unless ``replace``.

    The content goes to a temporary file (``mode`` from the start) in the same directory,
    then ``os.link`` puts it in place, which fails with ``FileExistsError`` if ``path``
    exists, even if it appeared a moment ago; ``replace`` uses ``os.replace`` instead.
    On file systems without hard links the target is created with ``O_EXCL`` and filled.
    Other failures raise the ``OSError`` unchanged, and leave nothing behind.

    The writer holds a lock on its temporary file until it is gone, so the temporary
    files of writers killed on the way (they hold the keys) are told from those in use
    and removed by the next write to the same directory.
    """
    remove_abandoned_temporaries(path)
    fd, tmp = _claim_temporary(path, mode)
    try:
        _fill(fd, data)
        if sys.platform == "win32":  # Windows renames or links no open file
            os.close(fd)
            fd = -1
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
        if fd >= 0:
            os.close(fd)


def _claim_temporary(path: Path, mode: int) -> tuple[int, Path]:
    """Create and lock a new temporary file next to ``path``: its descriptor and path.

    Another writer may take the file for abandoned between its creation and the lock, and
    remove it: the name is then checked to still lead to the locked file, else retried.
    """
    import secrets  # only for the temporary name

    for _attempt in range(_MAX_CLAIMS):
        tmp = path.with_name(f".{path.name}.cfakey-{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        _lock_exclusive(fd, blocking=True)
        if _names(tmp, fd):
            return fd, tmp
        os.close(fd)
    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still leads to the open file ``fd``."""
    try:
        return os.path.samestat(os.fstat(fd), path.stat())
    except OSError:
        return False


def remove_abandoned_temporaries(path: Path) -> list[Path]:
    """Remove the temporary files that writers killed mid-write left next to ``path``.

    Those of cfakey's writers still at work are locked and kept. Returns what was removed.
    """
    # Earlier versions named them .<name>.<pid>.<8 hex>.tmp: matched for this name only.
    legacy = re.compile(re.escape(f".{path.name}.") + r"[0-9]+\.[0-9a-f]{8}\.tmp")
    try:
        names = [entry.name for entry in os.scandir(path.parent)]
    except OSError:
        return []
    removed: list[Path] = []
    for name in names:
        if _TEMPORARY.fullmatch(name) or legacy.fullmatch(name):
            candidate = path.parent / name
            if _remove_if_abandoned(candidate):
                removed.append(candidate)
    return removed


@contextmanager
def pending_output(records: Path, target: Path) -> Iterator[None]:
    """Record in ``records``, durably and before anything is written, that ``target`` is.

    The record is locked while the block runs and removed after it: one left unlocked
    means its writer was killed, maybe with a temporary file next to ``target`` (it holds
    keys), which :func:`remove_abandoned_outputs` then finds whatever the folder.
    """
    ensure_private_dir(records)
    fd, record = _claim_temporary(records / "sortie", PRIVATE_FILE_MODE)
    try:
        _fill(fd, json.dumps({"path": str(target)}).encode("utf-8"))
        _fsync_dir(records)
        yield
    finally:
        os.close(fd)  # first: Windows removes no open file
        record.unlink(missing_ok=True)


def remove_abandoned_outputs(records: Path) -> list[Path]:
    """Remove the temporary files of killed writers wherever ``records`` says they wrote.

    Each record no live writer holds: its target's folder is cleaned as
    :func:`remove_abandoned_temporaries` does, then the record is forgotten. Returns the
    temporary files removed.
    """
    try:
        names = sorted(entry.name for entry in os.scandir(records))
    except OSError:
        return []
    removed: list[Path] = []
    for name in names:
        if _TEMPORARY.fullmatch(name):
            removed.extend(_settle_record(records / name))
    return removed


def _settle_record(record: Path) -> list[Path]:
    """The temporaries removed for one record, which is then forgotten, unless still held."""
    if sys.platform == "win32":
        # No flock, but a record its writer still holds open cannot be removed: that tells.
        try:
            content = record.read_bytes()[: _MAX_RECORD + 1]
        except OSError:
            return []
        target = _recorded_target(content) if _unlink(record) else None
        return remove_abandoned_temporaries(target) if target else []
    try:
        fd = os.open(record, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return []
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or not _lock_exclusive(fd, blocking=False):
            return []  # a live writer's, or not ours
        target = _recorded_target(os.read(fd, _MAX_RECORD + 1))
        removed = remove_abandoned_temporaries(target) if target else []
        _unlink(record)  # with the lock held, as in _remove_if_abandoned
        return removed
    finally:
        os.close(fd)


def _recorded_target(content: bytes) -> Path | None:
    """The absolute path a record names; ``None`` for an empty or foreign one."""
    try:
        path = json.loads(content)["path"] if len(content) <= _MAX_RECORD else None
    except (ValueError, TypeError, KeyError):
        return None
    return Path(path) if isinstance(path, str) and Path(path).is_absolute() else None


def _remove_if_abandoned(candidate: Path) -> bool:
    """Unlink ``candidate`` if it is a regular file no live writer holds."""
    if sys.platform == "win32":
        # No flock, but a file still open in its writer's process cannot be removed.
        return _is_regular(candidate) and _unlink(candidate)
    try:
        fd = os.open(candidate, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False  # gone, not ours, or a link: not a temporary file of ours to remove
    try:
        # Unlinked with the lock held, so no writer can be claiming it meanwhile.
        held = not stat.S_ISREG(os.fstat(fd).st_mode) or not _lock_exclusive(fd, blocking=False)
        return not held and _unlink(candidate)
    finally:
        os.close(fd)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
    except OSError:
        return False
    return True


def _lock_exclusive(fd: int, *, blocking: bool) -> bool:
    """An exclusive ``flock`` on ``fd``, released by the kernel when the process dies.

    False when held elsewhere, or when the file system has no locks: a temporary file
    whose writer cannot be told dead is kept.
    """
    if sys.platform == "win32":
        return True  # see _remove_if_abandoned
    import fcntl  # POSIX only

    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def _write_exclusive(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        try:
            _fill(fd, data)
        finally:
            os.close(fd)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def _fill(fd: int, data: bytes) -> None:
    """Write all of ``data`` to the newly created file ``fd`` and fsync it (left open)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)
