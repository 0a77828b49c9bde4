"""Locks between processes on a file: the store's own lock and the data directory's lock.

The data-directory lock serialises every change that touches both the key store and the
metadata (store write, then metadata commit), and lets readers that hand keys out
(``export``, ``exec``) see the two in agreement. It is re-entrant inside one process: a
use-case that already holds it may call another that takes it again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cfakey.errors import CfakeyError, disk_hint, os_reason


def _open_lock_file(lock_path: Path) -> int:
    try:
        return os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as error:
        # The disk or the folder's rights are at fault (exit 1), not the key store.
        raise CfakeyError(
            f"Verrou {lock_path} impossible à créer : {os_reason(error)}.", hint=disk_hint(error)
        ) from None


@contextmanager
def _locked(fd: int, *, shared: bool) -> Iterator[None]:
    """Hold a lock on the open file ``fd``; Windows has no shared lock: exclusive there."""
    if sys.platform == "win32":  # the file store is for servers, but must import anywhere
        import msvcrt

        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                break
            except OSError:
                continue
        try:
            yield
        finally:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


@contextmanager
def exclusive_lock(lock_path: Path) -> Iterator[None]:
    """An exclusive lock between processes on ``lock_path`` (created 0600), held until exit."""
    fd = _open_lock_file(lock_path)
    try:
        with _locked(fd, shared=False):
            yield
    finally:
        os.close(fd)


@dataclass
class _Held:
    shared: bool
    depth: int


# Locks this process holds, by path: flock locks belong to an open file, so a second
# open of the same file in this process would wait for itself.
_HELD: dict[Path, _Held] = {}


@contextmanager
def data_lock(lock_path: Path, *, shared: bool = False) -> Iterator[None]:
    """The data directory's lock: exclusive for writers, shared for readers; re-entrant."""
    held = _HELD.get(lock_path)
    if held is not None:
        if held.shared and not shared:
            raise RuntimeError("exclusive lock asked while this process holds it shared")
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
        return
    fd = _open_lock_file(lock_path)
    try:
        with _locked(fd, shared=shared):
            _HELD[lock_path] = _Held(shared, 1)
            try:
                yield
            finally:
                del _HELD[lock_path]
    finally:
        os.close(fd)
