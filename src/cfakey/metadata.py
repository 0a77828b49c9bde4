"""Local metadata in SQLite: CFAs, one row per stored key (never the key), and the journal.

The overview (``cfakey list``, ``check``) reads only this database, so it never needs to
unlock the key store. The journal is append-only (triggers refuse updates and deletes):
it is the audit register of who obtained, exported or removed which key, and when.
The schema version is SQLite's ``user_version``; :data:`MIGRATIONS` brings an older file
up to date, and a file from a newer cfakey is refused rather than damaged.

A new database is built whole (schema included) and linked into place, so an empty file
can only be damage. Every SQLite error on the connection becomes a French error that
says what is at fault: another cfakey holding the database (exit 7), the disk (full,
read-only, forbidden: exit 1, the data is sound), or the file itself (exit 5).
"""

from __future__ import annotations

import getpass
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from cfakey.errors import (
    AlreadyExistsError,
    BusyError,
    CfakeyError,
    DataCorruptedError,
    NotFoundError,
    disk_hint,
    os_reason,
)
from cfakey.expiry import usable_moment
from cfakey.paths import Paths, ensure_private_dir, write_new_file

EXPIRY_SOURCES = ("registry", "jwt", "portal", "opco_api", "operator", "none")

MIGRATIONS: dict[int, str] = {
    1: """
        CREATE TABLE cfa (
            siret TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            uai TEXT,
            is_default INTEGER NOT NULL DEFAULT 0,
            created_at TEXT NOT NULL
        );
        CREATE TABLE key (
            siret TEXT NOT NULL,
            opco_id TEXT NOT NULL,
            obtained_on TEXT NOT NULL,
            stored_at TEXT NOT NULL,
            expires_at TEXT,
            expiry_source TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            os_user TEXT NOT NULL,
            store TEXT NOT NULL,
            PRIMARY KEY (siret, opco_id)
        );
        CREATE INDEX key_fingerprint ON key (fingerprint);
        CREATE TABLE journal (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            siret TEXT,
            opco_id TEXT,
            action TEXT NOT NULL,
            old_fingerprint TEXT,
            new_fingerprint TEXT,
            detail TEXT NOT NULL DEFAULT ''
        );
        CREATE TRIGGER journal_append_only_update BEFORE UPDATE ON journal
            BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
        CREATE TRIGGER journal_append_only_delete BEFORE DELETE ON journal
            BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END;
    """,
    # Write intents: one row per store entry being changed, committed before the store
    # write and deleted in the transaction that records the change (never the key).
    2: """
        CREATE TABLE pending (
            siret TEXT NOT NULL,
            opco_id TEXT NOT NULL,
            action TEXT NOT NULL,
            old_fingerprint TEXT,
            fingerprint TEXT,
            obtained_on TEXT,
            stored_at TEXT,
            expires_at TEXT,
            expiry_source TEXT,
            os_user TEXT,
            store TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            cfa_name TEXT,
            pid INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            PRIMARY KEY (siret, opco_id)
        );
    """,
    # The last real verification of each key (verify): when, its class, the HTTP status,
    # the OPCO's end-of-validity date. Cleared when another key replaces it (put_key).
    3: """
        ALTER TABLE key ADD COLUMN verified_at TEXT;
        ALTER TABLE key ADD COLUMN verify_outcome TEXT;
        ALTER TABLE key ADD COLUMN verify_http_status INTEGER;
        ALTER TABLE key ADD COLUMN verify_opco_expiry TEXT;
    """,
    # Key requests sent by e-mail (Constructys, OPCO 2i...): open until the key is stored.
    4: """
        CREATE TABLE request (
            siret TEXT NOT NULL,
            opco_id TEXT NOT NULL,
            sent_on TEXT NOT NULL,
            sent_to TEXT,
            recorded_at TEXT NOT NULL,
            os_user TEXT NOT NULL,
            PRIMARY KEY (siret, opco_id)
        );
    """,
    # The team store's local cache (core/team_sync.py): which CFAs came from the engine,
    # which catalog generation the cached rows describe (and when, by the server's clock),
    # the same for each CFA (its own generation), the keys whose engine metadata lags
    # their data, and the engine's journal entries.
    5: """
        ALTER TABLE cfa ADD COLUMN shared INTEGER NOT NULL DEFAULT 0;
        CREATE TABLE sync_state (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            location TEXT NOT NULL,
            version INTEGER NOT NULL,
            synced_at TEXT NOT NULL,
            denied TEXT NOT NULL DEFAULT ''
        );
        CREATE TABLE sync_cfa (
            siret TEXT PRIMARY KEY,
            version INTEGER NOT NULL,
            synced_at TEXT NOT NULL
        );
        CREATE TABLE team_interrupted (
            siret TEXT NOT NULL,
            opco_id TEXT NOT NULL,
            PRIMARY KEY (siret, opco_id)
        );
        CREATE TABLE team_journal (
            name TEXT PRIMARY KEY,
            at TEXT NOT NULL,
            user TEXT NOT NULL,
            siret TEXT,
            opco_id TEXT,
            action TEXT NOT NULL,
            old_fingerprint TEXT,
            new_fingerprint TEXT,
            detail TEXT NOT NULL DEFAULT ''
        );
    """,
}
SCHEMA_VERSION = max(MIGRATIONS)


#: How long a command waits for another cfakey to release the database.
BUSY_TIMEOUT = 30.0


def current_user() -> str:
    """The OS user name, recorded with each key and journal entry."""
    try:
        return getpass.getuser()
    except (KeyError, OSError, ImportError):  # Windows without USERNAME has no pwd module
        if sys.platform == "win32":
            return "inconnu"
        return f"uid {os.getuid()}"


# SQLite's primary result codes (``sqlite_errorcode & 0xFF``) that say why a query failed.
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_NOMEM = 3, 5, 6, 7
_SQLITE_READONLY, _SQLITE_IOERR, _SQLITE_FULL, _SQLITE_CANTOPEN = 8, 10, 13, 14
#: The disk or the system is at fault, not the file: its data is sound.
_ENVIRONMENT_CODES = {
    _SQLITE_PERM: "permission refusée",
    _SQLITE_NOMEM: "mémoire insuffisante",
    _SQLITE_READONLY: "écriture impossible",
    _SQLITE_IOERR: "erreur d'entrée-sortie",
    _SQLITE_FULL: "plus de place sur le disque",
    _SQLITE_CANTOPEN: "fichier impossible à ouvrir",
}


def damage_hint(path: Path | str) -> str:
    """What to do with a damaged database, without losing the keys in the store."""
    return (
        "Vos clés elles-mêmes sont dans le magasin de clés. Restaurez une sauvegarde de ce "
        f"fichier ; sans sauvegarde, mettez-le de côté (mv {path} {path}.endommage), puis "
        "lancez cfakey doctor : il créera une base neuve et signalera les clés du magasin à "
        "décrire de nouveau."
    )


def database_error(error: sqlite3.Error, path: Path, busy_timeout: float) -> CfakeyError:
    """The French error for what SQLite reported about the metadata database at ``path``."""
    code = getattr(error, "sqlite_errorcode", None)
    primary = None if code is None else code & 0xFF
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return BusyError(
            f"La base de métadonnées {path} est tenue par un autre cfakey depuis plus de "
            f"{busy_timeout:g} s.",
            hint="Attendez qu'il se termine (ou arrêtez-le), puis relancez : rien n'a été changé.",
        )
    if primary in _ENVIRONMENT_CODES:
        reason = _disk_reason(path.parent) or _ENVIRONMENT_CODES[primary]
        if primary == _SQLITE_FULL:
            reason = _ENVIRONMENT_CODES[primary]
        return CfakeyError(
            f"Impossible d'utiliser la base de métadonnées {path} : {reason}.",
            hint="La base n'est pas en cause, ne la remplacez pas : corrigez le disque ou les "
            "droits du dossier (ou choisissez-en un autre avec CFAKEY_HOME), puis relancez.",
        )
    return DataCorruptedError(
        f"La base de métadonnées {path} est illisible ou endommagée.", hint=damage_hint(path)
    )


def _disk_reason(directory: Path) -> str | None:
    """Why nothing can be written in ``directory`` (read-only, full, forbidden), if it is so."""
    try:
        if sys.platform != "win32":  # Windows has no statvfs
            stats = os.statvfs(directory)
            if stats.f_flag & os.ST_RDONLY:
                return "système de fichiers en lecture seule"
            if stats.f_bavail == 0:
                return "plus de place sur le disque"
        if not os.access(directory, os.W_OK):
            return "permission refusée"
    except OSError:
        return None
    return None


@contextmanager
def _translated(connection: sqlite3.Connection) -> Iterator[None]:
    """Turn an SQLite error into a French :class:`CfakeyError`; programming errors stay bugs."""
    try:
        yield
    except sqlite3.Error as error:
        if _is_bug(error):
            raise
        assert isinstance(connection, _Connection)  # noqa: S101 - only ours are opened
        raise database_error(error, connection.path, connection.busy_timeout) from error


_BUG_ERRORS = (sqlite3.ProgrammingError, sqlite3.InterfaceError, sqlite3.IntegrityError)


def _is_bug(error: sqlite3.Error) -> bool:
    """cfakey's own mistake (bad SQL, a closed connection, the journal's append-only
    trigger): shown as a bug, never blamed on the user's file."""
    if isinstance(error, _BUG_ERRORS):
        return True
    return "syntax error" in str(error) or "incomplete input" in str(error)


class _Cursor(sqlite3.Cursor):
    """A cursor whose every step translates SQLite's errors (corruption shows up late)."""

    def execute(self, sql: str, parameters: Any = (), /) -> Self:
        with _translated(self.connection):
            return super().execute(sql, parameters)

    def executemany(self, sql: str, seq_of_parameters: Iterable[Any], /) -> Self:
        with _translated(self.connection):
            return super().executemany(sql, seq_of_parameters)

    def fetchone(self) -> Any:
        with _translated(self.connection):
            return super().fetchone()

    def fetchmany(self, size: int | None = 1) -> list[Any]:
        with _translated(self.connection):
            return super().fetchmany(size)

    def fetchall(self) -> list[Any]:
        with _translated(self.connection):
            return super().fetchall()

    def __next__(self) -> Any:
        with _translated(self.connection):
            return super().__next__()


class _Connection(sqlite3.Connection):
    """The metadata connection: every query goes through :class:`_Cursor`."""

    path: Path
    busy_timeout: float

    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        return self.cursor(_Cursor).execute(sql, parameters)

    def executemany(self, sql: str, parameters: Iterable[Any], /) -> _Cursor:
        return self.cursor(_Cursor).executemany(sql, parameters)


def _connect(path: Path, busy_timeout: float) -> _Connection:
    try:
        connection = sqlite3.connect(
            path, timeout=busy_timeout, isolation_level=None, factory=_Connection
        )
    except sqlite3.Error as error:
        raise database_error(error, path, busy_timeout) from error
    connection.path, connection.busy_timeout = path, busy_timeout
    connection.row_factory = sqlite3.Row
    return connection


def _apply_migrations(connection: sqlite3.Connection, version: int) -> None:
    """Run every migration after ``version``, each followed by its ``user_version``."""
    for target in sorted(number for number in MIGRATIONS if number > version):
        for statement in _split_sql(MIGRATIONS[target]):
            connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {target}")


def _create(path: Path) -> bool:
    """Create the database, schema included, in one step; ``False`` if it already exists.

    The file is built in memory and linked into place (:func:`write_new_file`), so a file
    at ``path`` is never empty or half made: an empty one can only be damage.
    """
    if path.exists():
        return False
    memory = sqlite3.connect(":memory:", isolation_level=None)
    try:
        _apply_migrations(memory, 0)
        image = memory.serialize()
    finally:
        memory.close()
    try:
        write_new_file(path, image)
    except FileExistsError:
        return False  # another cfakey created it meanwhile: theirs is as good
    return True


def _refuse_if_keys_were_stored(paths: Paths) -> None:
    """Refuse to start a new database where keys were stored: the old one has been lost.

    Two traces tell: the encrypted file holds entries (known from the length of its
    ciphertext, without the password), or the data lock exists (only commands that
    write, recover or hand out keys take it; the OS keyring cannot list its entries, so
    this is what tells for it).
    """
    from cfakey.stores.file_store import holds_entries

    store, lock = paths.encrypted_store, paths.metadata_db.with_name("cfakey.lock")
    with suppress(OSError):
        if holds_entries(store):
            where = f"le magasin de clés {store} contient des clés"
        elif lock.exists():
            where = f"des clés ont déjà été enregistrées dans {paths.data_dir}"
        else:
            return
        path = paths.metadata_db
        raise DataCorruptedError(
            f"La base de métadonnées {path} a disparu alors que {where} : cfakey ne la "
            "recrée pas en silence (vos clés paraîtraient absentes).",
            hint="Restaurez-la depuis une sauvegarde ; sans sauvegarde, lancez cfakey doctor : "
            "il créera une base neuve et nommera les clés du magasin à décrire de nouveau.",
        )


def utc_now() -> datetime:
    """Now, in UTC, to the second."""
    return datetime.now(UTC).replace(microsecond=0)


def _to_text(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class CfaRecord:
    """A CFA the operator manages keys for."""

    siret: str
    name: str
    uai: str | None
    is_default: bool
    created_at: datetime

    @property
    def siren(self) -> str:
        """The legal unit: the SIRET's first nine digits."""
        return self.siret[:9]


@dataclass(frozen=True)
class LastVerification:
    """The last time ``verify`` presented a key to its OPCO, and what the OPCO said."""

    at: datetime
    #: The class identifier (``cfakey.core.codes.VerifyOutcome``).
    outcome: str
    http_status: int | None
    opco_expiry: date | None


@dataclass(frozen=True)
class KeyRecord:
    """What cfakey knows about one stored key, without the key itself."""

    siret: str
    opco_id: str
    obtained_on: date
    stored_at: datetime
    expires_at: datetime | None
    expiry_source: str
    fingerprint: str
    os_user: str
    store: str
    #: ``None``: never verified since this key was stored.
    verification: LastVerification | None = None


@dataclass(frozen=True)
class PendingWrite:
    """An intended change of one store entry, recorded before the store is touched.

    ``record`` is the metadata the entry will have (``None``: the entry is being
    deleted); ``old_fingerprint`` is the fingerprint of what the store held before
    (``None``: nothing). ``cfa_name`` names a CFA to create with the key (import).
    """

    siret: str
    opco_id: str
    action: str
    old_fingerprint: str | None
    record: KeyRecord | None
    store: str
    detail: str = ""
    cfa_name: str | None = None
    pid: int = 0

    @property
    def new_fingerprint(self) -> str | None:
        """The fingerprint the entry will have, ``None`` when it is being deleted."""
        return None if self.record is None else self.record.fingerprint


@dataclass(frozen=True)
class SyncState:
    """Which team catalog the cached rows describe: engine location, generation version,
    and the server's time when the reading of that catalog began."""

    location: str
    version: int
    synced_at: datetime
    #: Known SIRETs the engine's policy does not let this home's token read.
    denied: tuple[str, ...] = ()


@dataclass(frozen=True)
class TeamRows:
    """What a team sync read from the engine, as cache rows (core/team_sync.py)."""

    cfas: list[CfaRecord]
    keys: list[KeyRecord]
    interrupted: list[tuple[str, str]]
    #: Each CFA read: its generation version, and when the reading of its rows began.
    versions: dict[str, tuple[int, datetime]]


@dataclass(frozen=True)
class JournalEntry:
    """One line of the audit register."""

    id: int
    at: datetime
    user: str
    siret: str | None
    opco_id: str | None
    action: str
    old_fingerprint: str | None
    new_fingerprint: str | None
    detail: str


@dataclass(frozen=True)
class RequestRecord:
    """A key asked for by e-mail and not received yet (never a key: dates and an address)."""

    siret: str
    opco_id: str
    sent_on: date
    sent_to: str | None
    recorded_at: datetime
    os_user: str


_Decoded = TypeVar("_Decoded")


class UnreadableValueError(DataCorruptedError):
    """A row cfakey cannot decode; ``remedy`` is the fix without « see doctor » (for doctor)."""

    def __init__(self, message: str, *, hint: str, remedy: str) -> None:
        super().__init__(message, hint=hint)
        self.remedy = remedy


class _UnreadableValueError(Exception):
    """A stored value cfakey cannot decode: the column it came from."""

    def __init__(self, table: str, column: str) -> None:
        super().__init__(f"{table}.{column}")
        self.table, self.column = table, column


def _text(row: sqlite3.Row, table: str, column: str) -> str:
    value = row[column]
    if not isinstance(value, str):
        raise _UnreadableValueError(table, column)
    return value


def _optional_text(row: sqlite3.Row, table: str, column: str) -> str | None:
    return None if row[column] is None else _text(row, table, column)


def _integer(row: sqlite3.Row, table: str, column: str) -> int:
    value = row[column]
    if not isinstance(value, int):
        raise _UnreadableValueError(table, column)
    return value


def _moment(row: sqlite3.Row, table: str, column: str) -> datetime:
    """A stored instant: ISO text with a time zone, as cfakey writes it."""
    try:
        moment = datetime.fromisoformat(_text(row, table, column))
    except ValueError:
        raise _UnreadableValueError(table, column) from None
    if moment.tzinfo is None:
        raise _UnreadableValueError(table, column)
    return moment


def _day(row: sqlite3.Row, table: str, column: str) -> date:
    try:
        return date.fromisoformat(_text(row, table, column))
    except ValueError:
        raise _UnreadableValueError(table, column) from None


def _expiry(value: object) -> datetime | None:
    """A stored expiry, or ``None`` when it is no usable date.

    The expiry only warns before a key stops working: a value that cannot be read
    (hand-edited, damaged, from another tool) or lies outside the accepted range is no
    usable date, and the key is still listed « sans date » rather than hidden.
    """
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return usable_moment(moment) if moment.tzinfo is not None else None


def _flag(row: sqlite3.Row, table: str, column: str) -> bool:
    return bool(_integer(row, table, column))


def _expiry_column(row: sqlite3.Row, _table: str, column: str) -> datetime | None:
    return _expiry(row[column])


#: How each column of a table is read back: a decoder per field (field = column name).
_Columns = dict[str, Callable[[sqlite3.Row, str, str], Any]]
_KEY_COLUMNS: _Columns = {
    "siret": _text,
    "opco_id": _text,
    "obtained_on": _day,
    "stored_at": _moment,
    "expires_at": _expiry_column,
    "expiry_source": _text,
    "fingerprint": _text,
    "os_user": _text,
    "store": _text,
}
_CFA_COLUMNS: _Columns = {
    "siret": _text,
    "name": _text,
    "uai": _optional_text,
    "is_default": _flag,
    "created_at": _moment,
}
_JOURNAL_COLUMNS: _Columns = {
    "id": _integer,
    "at": _moment,
    "user": _text,
    "siret": _optional_text,
    "opco_id": _optional_text,
    "action": _text,
    "old_fingerprint": _optional_text,
    "new_fingerprint": _optional_text,
    "detail": _text,
}


_REQUEST_COLUMNS: _Columns = {
    "siret": _text,
    "opco_id": _text,
    "sent_on": _day,
    "sent_to": _optional_text,
    "recorded_at": _moment,
    "os_user": _text,
}


#: Insert a key, or replace another key's row: another fingerprint clears the verification.
_PUT_KEY_SQL = """
    INSERT INTO key (siret, opco_id, obtained_on, stored_at, expires_at, expiry_source,
                     fingerprint, os_user, store)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (siret, opco_id) DO UPDATE SET
        obtained_on = excluded.obtained_on, stored_at = excluded.stored_at,
        expires_at = excluded.expires_at, expiry_source = excluded.expiry_source,
        fingerprint = excluded.fingerprint, os_user = excluded.os_user, store = excluded.store,
        verified_at = iif(key.fingerprint = excluded.fingerprint, key.verified_at, NULL),
        verify_outcome = iif(key.fingerprint = excluded.fingerprint, key.verify_outcome, NULL),
        verify_http_status =
            iif(key.fingerprint = excluded.fingerprint, key.verify_http_status, NULL),
        verify_opco_expiry =
            iif(key.fingerprint = excluded.fingerprint, key.verify_opco_expiry, NULL)
"""


#: The journal actions a team store publishes to its engine (core/team_sync.py).
TEAM_PUBLISHED = (
    "added",
    "rotated",
    "imported",
    "removed",
    "store_migrated",
    "cfa_added",
    "cfa_edited",
    "cfa_removed",
)
#: The team journal: the engine's entries (negative ids, never those of this home's
#: journal), and this home's entries of other actions.
_TEAM_JOURNAL_SQL = """
    SELECT * FROM (
        SELECT -rowid AS id, at, user, siret, opco_id, action, old_fingerprint,
               new_fingerprint, detail FROM team_journal
        UNION ALL
        SELECT id, at, user, siret, opco_id, action, old_fingerprint, new_fingerprint,
               detail FROM journal
        WHERE action NOT IN (SELECT value FROM json_each(:published))
    )"""
#: Deleting the team cache's rows of some CFAs (``within``: a JSON list) or all (NULL).
_TEAM_SCOPED_DELETE = {
    "key": "DELETE FROM key WHERE store = :store AND (:within IS NULL OR siret IN "
    "(SELECT value FROM json_each(:within)))",
    "team_interrupted": "DELETE FROM team_interrupted WHERE (:within IS NULL OR siret IN "
    "(SELECT value FROM json_each(:within)))",
    "sync_cfa": "DELETE FROM sync_cfa WHERE (:within IS NULL OR siret IN "
    "(SELECT value FROM json_each(:within)))",
}
#: A key row of the team cache, its last verification included.
_TEAM_KEY_SQL = """
    INSERT OR REPLACE INTO key (siret, opco_id, obtained_on, stored_at, expires_at,
        expiry_source, fingerprint, os_user, store, verified_at, verify_outcome,
        verify_http_status, verify_opco_expiry)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""


def _key_row(record: KeyRecord) -> tuple[object, ...]:
    """The columns of migration 1's ``key`` table, in its order."""
    return (
        record.siret,
        record.opco_id,
        record.obtained_on.isoformat(),
        _to_text(record.stored_at),
        _to_text(record.expires_at),
        record.expiry_source,
        record.fingerprint,
        record.os_user,
        record.store,
    )


def _team_key_row(record: KeyRecord) -> tuple[object, ...]:
    check = record.verification
    return (
        *_key_row(record),
        None if check is None else _to_text(check.at),
        None if check is None else check.outcome,
        None if check is None else check.http_status,
        None if check is None or check.opco_expiry is None else check.opco_expiry.isoformat(),
    )


def _fields(row: sqlite3.Row, table: str, columns: _Columns) -> dict[str, Any]:
    return {column: decode(row, table, column) for column, decode in columns.items()}


def _optional_integer(row: sqlite3.Row, table: str, column: str) -> int | None:
    return None if row[column] is None else _integer(row, table, column)


def _verify_outcome(row: sqlite3.Row) -> str:
    """A kept verification's class: one of ``VerifyOutcome``'s identifiers, or unreadable."""
    from cfakey.core.codes import VerifyOutcome  # a leaf table of values, no dependency

    outcome = _text(row, "key", "verify_outcome")
    if outcome not in VerifyOutcome._value2member_map_:
        raise _UnreadableValueError("key", "verify_outcome")
    return outcome


def _http_status(row: sqlite3.Row) -> int | None:
    """A kept verification's HTTP status: none, or a status code (100 to 599)."""
    status = _optional_integer(row, "key", "verify_http_status")
    if status is not None and not 100 <= status <= 599:
        raise _UnreadableValueError("key", "verify_http_status")
    return status


def _verification(row: sqlite3.Row) -> LastVerification | None:
    """The last verification of a ``key`` row; an unreadable one stops (exit 5): a
    refusal read as "never verified" would hide the very outage it records."""
    if row["verified_at"] is None:
        return None
    day = row["verify_opco_expiry"]
    return LastVerification(
        at=_moment(row, "key", "verified_at"),
        outcome=_verify_outcome(row),
        http_status=_http_status(row),
        opco_expiry=None if day is None else _day(row, "key", "verify_opco_expiry"),
    )


def _key_record(row: sqlite3.Row, table: str = "key") -> KeyRecord:
    verification = _verification(row) if table == "key" else None
    return KeyRecord(**_fields(row, table, _KEY_COLUMNS), verification=verification)


def _cfa_record(row: sqlite3.Row) -> CfaRecord:
    return CfaRecord(**_fields(row, "cfa", _CFA_COLUMNS))


def _journal_entry(row: sqlite3.Row) -> JournalEntry:
    return JournalEntry(**_fields(row, "journal", _JOURNAL_COLUMNS))


def _request_record(row: sqlite3.Row) -> RequestRecord:
    return RequestRecord(**_fields(row, "request", _REQUEST_COLUMNS))


def _pending_write(row: sqlite3.Row) -> PendingWrite:
    return PendingWrite(
        siret=_text(row, "pending", "siret"),
        opco_id=_text(row, "pending", "opco_id"),
        action=_text(row, "pending", "action"),
        old_fingerprint=_optional_text(row, "pending", "old_fingerprint"),
        record=None if row["fingerprint"] is None else _key_record(row, "pending"),
        store=_text(row, "pending", "store"),
        detail=_text(row, "pending", "detail"),
        cfa_name=_optional_text(row, "pending", "cfa_name"),
        pid=_integer(row, "pending", "pid"),
    )


def _decoded(
    path: str, decode: Callable[[sqlite3.Row], _Decoded], rows: Iterable[sqlite3.Row]
) -> list[_Decoded]:
    """Every row decoded, or exit 5 naming the database: a stored value is never a crash.

    Only the expiry has a safe stand-in (:func:`_expiry`); every other column names or
    dates what a key is, so a bad value there (edited by hand, or a damaged page making
    SQLite return another type) stops the command rather than showing something untrue.
    """
    try:
        return [decode(row) for row in rows]
    except (_UnreadableValueError, IndexError, KeyError) as error:
        where = (
            f" (table {error.table}, colonne {error.column})"
            if isinstance(error, _UnreadableValueError)
            else ""
        )
        raise UnreadableValueError(
            f"La base de métadonnées {path} contient une valeur illisible{where} : elle a été "
            "modifiée à la main ou endommagée.",
            hint=f"Vérifiez-la avec cfakey doctor. {damage_hint(path)}",
            remedy=damage_hint(path),
        ) from None


class Metadata:
    """The metadata database of one user; open it with :meth:`open`."""

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        self._db = connection
        self.path = path
        self.user = current_user()
        #: Stamps what is written without an explicit time; the context sets its own clock.
        self.clock: Callable[[], datetime] = utc_now
        #: Committed transactions that journalled something: what an interruption leaves.
        self.journalled = 0
        #: Known SIRETs the team engine's policy hides from this token (set by the sync).
        self.team_denied: tuple[str, ...] = ()
        #: With a team store: each key's fingerprint as this command found it in the
        #: engine when it began (:meth:`remember_start`), then as it wrote it; ``None``
        #: for a command that did not sync. Never re-read: another command of this home
        #: may refresh the rows meanwhile.
        self.found_at_start: dict[tuple[str, str], str] | None = None
        self._logged_in_transaction = False

    @classmethod
    def open(
        cls, paths: Paths, *, busy_timeout: float = BUSY_TIMEOUT, recreate: bool = False
    ) -> Metadata:
        """Open (creating and migrating if needed) the database in the data directory.

        ``busy_timeout``: seconds to wait for another cfakey holding the database.
        A missing database is created only in a fresh data directory, or with
        ``recreate`` (``doctor``): beside keys already stored it has been lost, not never made.
        """
        path = paths.metadata_db
        try:
            ensure_private_dir(path.parent)
            if not recreate and not path.exists():
                _refuse_if_keys_were_stored(paths)
            created = _create(path)
            empty = path.stat().st_size == 0
        except OSError as error:
            raise CfakeyError(
                f"Impossible d'ouvrir les métadonnées dans {path.parent} ({os_reason(error)}).",
                hint=disk_hint(error),
            ) from None
        if empty:
            raise DataCorruptedError(
                f"La base de métadonnées {path} est vide (0 octet) : elle a été tronquée ou "
                "écrasée, et la description de vos clés est perdue.",
                hint=damage_hint(path),
            )
        connection = _connect(path, busy_timeout)
        metadata = cls(connection, str(path))
        try:
            if created:
                connection.execute("PRAGMA journal_mode=WAL")
            metadata._migrate()
        except BaseException:
            connection.close()
            raise
        return metadata

    @classmethod
    def empty(cls) -> Metadata:
        """A database with nothing in it, in memory: what a simulation plans against when
        no database exists yet (it must not create one)."""
        connection = sqlite3.connect(":memory:", isolation_level=None, factory=_Connection)
        connection.path, connection.busy_timeout = Path(":memory:"), BUSY_TIMEOUT
        connection.row_factory = sqlite3.Row
        _apply_migrations(connection, 0)
        return cls(connection, ":memory:")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise DataCorruptedError(
                f"La base de métadonnées {self.path} vient d'une version plus récente de cfakey "
                f"(schéma {version}, celle-ci connaît le schéma {SCHEMA_VERSION}) : "
                "mettez cfakey à jour."
            )
        if version == SCHEMA_VERSION:
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        with self.transaction():
            # Re-read under the write lock: another process may have migrated meanwhile.
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            _apply_migrations(self._db, version)

    def integrity_problems(self, limit: int = 10) -> list[str]:
        """What SQLite's quick check finds wrong in the file (empty: it is sound)."""
        rows = self._db.execute(f"PRAGMA quick_check({int(limit)})").fetchall()
        return [str(row[0]) for row in rows if row[0] != "ok"]

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of work; nested calls join the outer transaction."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN IMMEDIATE")
        self._logged_in_transaction = counted = False
        try:
            yield
            # Counted before COMMIT: an interruption landing just after it must not read 0.
            counted = self._logged_in_transaction
            self.journalled += counted
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:  # SQLite may have rolled back already (disk full…)
                self.journalled -= counted
                # A failed rollback must not hide the error that caused it.
                with suppress(CfakeyError, sqlite3.Error):
                    self._db.execute("ROLLBACK")
            raise

    # CFAs ------------------------------------------------------------------------------

    def add_cfa(self, siret: str, name: str, uai: str | None) -> CfaRecord:
        """Register a CFA; the first one becomes the default."""
        with self.transaction():
            if self.get_cfa(siret) is not None:
                raise AlreadyExistsError(f"Le CFA {siret} est déjà enregistré.")
            first = self._db.execute("SELECT COUNT(*) FROM cfa").fetchone()[0] == 0
            self._db.execute(
                "INSERT INTO cfa (siret, name, uai, is_default, created_at) VALUES (?, ?, ?, ?, ?)",
                (siret, name, uai, int(first), _to_text(self.clock().replace(microsecond=0))),
            )
            self.log("cfa_added", siret=siret, detail=name)
        record = self.get_cfa(siret)
        assert record is not None  # noqa: S101 - just inserted in this connection
        return record

    def get_cfa(self, siret: str) -> CfaRecord | None:
        """The CFA with this SIRET, if registered."""
        row = self._db.execute("SELECT * FROM cfa WHERE siret = ?", (siret,)).fetchone()
        return None if row is None else _decoded(self.path, _cfa_record, [row])[0]

    def list_cfas(self) -> list[CfaRecord]:
        """Every registered CFA, by name."""
        rows = self._db.execute("SELECT * FROM cfa ORDER BY name COLLATE NOCASE, siret")
        return _decoded(self.path, _cfa_record, rows)

    def edit_cfa(self, siret: str, *, name: str | None = None, uai: str | None = None) -> CfaRecord:
        """Change the name and/or the UAI of a CFA, journalled (``cfa_edited``)."""
        with self.transaction():
            before = self.get_cfa(siret)
            if before is None:
                raise NotFoundError(f"CFA inconnu : {siret}.", hint="Liste : cfakey cfa list.")
            changes = []
            if name is not None and name != before.name:
                self._db.execute("UPDATE cfa SET name = ? WHERE siret = ?", (name, siret))
                changes.append(f"nom : {before.name} → {name}")
            if uai is not None and uai != before.uai:
                self._db.execute("UPDATE cfa SET uai = ? WHERE siret = ?", (uai, siret))
                changes.append(f"UAI : {before.uai or 'aucun'} → {uai}")
            if changes:
                self.log("cfa_edited", siret=siret, detail=" ; ".join(changes))
        record = self.get_cfa(siret)
        assert record is not None  # noqa: S101 - read in this transaction
        return record

    def set_default_cfa(self, siret: str) -> None:
        """Make this CFA the one used when ``--cfa`` is not given."""
        with self.transaction():
            if self.get_cfa(siret) is None:
                raise NotFoundError(f"CFA inconnu : {siret}.", hint="Liste : cfakey cfa list.")
            self._db.execute("UPDATE cfa SET is_default = (siret = ?)", (siret,))

    def remove_cfa(self, siret: str) -> None:
        """Forget a CFA (its keys must have been removed first)."""
        with self.transaction():
            was_default = self._db.execute(
                "SELECT is_default FROM cfa WHERE siret = ?", (siret,)
            ).fetchone()
            if was_default is None:
                raise NotFoundError(f"CFA inconnu : {siret}.", hint="Liste : cfakey cfa list.")
            self._db.execute("DELETE FROM cfa WHERE siret = ?", (siret,))
            if was_default[0]:
                self._db.execute(
                    "UPDATE cfa SET is_default = 1 WHERE siret = "
                    "(SELECT siret FROM cfa ORDER BY created_at, siret LIMIT 1)"
                )
            self.log("cfa_removed", siret=siret)

    # Keys ------------------------------------------------------------------------------

    def put_key(self, record: KeyRecord) -> None:
        """Insert or replace the metadata of the key of ``(siret, opco_id)``.

        A key arriving in a slot closes its e-mail request, in the same transaction: every
        way a key is stored (``add``, ``rotate``, ``import``, recovery) goes through here.

        Another key (another fingerprint) starts clean: the last verification, which was
        about the key replaced, is cleared. The same key (moved to another store) keeps it.
        """
        if record.expiry_source not in EXPIRY_SOURCES:
            raise ValueError(f"unknown expiry source {record.expiry_source!r}")
        with self.transaction():
            self._insert_key(record)
            self.close_request(record.siret, record.opco_id, action="request_closed")

    def _insert_key(self, record: KeyRecord) -> None:
        self._db.execute(_PUT_KEY_SQL, _key_row(record))

    def get_key(self, siret: str, opco_id: str) -> KeyRecord | None:
        """The metadata of one key, if stored."""
        row = self._db.execute(
            "SELECT * FROM key WHERE siret = ? AND opco_id = ?", (siret, opco_id)
        ).fetchone()
        return None if row is None else _decoded(self.path, _key_record, [row])[0]

    def list_keys(self, siret: str | None = None, opco_id: str | None = None) -> list[KeyRecord]:
        """Key metadata, optionally for one CFA and/or one OPCO."""
        rows = self._db.execute(
            "SELECT * FROM key"
            " WHERE (:siret IS NULL OR siret = :siret)"
            " AND (:opco_id IS NULL OR opco_id = :opco_id)"
            " ORDER BY siret, opco_id",
            {"siret": siret, "opco_id": opco_id},
        )
        return _decoded(self.path, _key_record, rows)

    def unusable_expiries(self) -> list[tuple[str, str]]:
        """``(siret, opco_id)`` of the keys whose stored expiry is no usable date (unreadable,
        or outside the accepted range): listed « sans date », reported by ``doctor``."""
        rows = self._db.execute(
            "SELECT siret, opco_id, expires_at FROM key WHERE expires_at IS NOT NULL"
            " ORDER BY siret, opco_id"
        )
        found = _decoded(
            self.path,
            lambda row: (_text(row, "key", "siret"), _text(row, "key", "opco_id"), row),
            rows,
        )
        return [(siret, opco) for siret, opco, row in found if _expiry(row["expires_at"]) is None]

    def delete_key(self, siret: str, opco_id: str) -> bool:
        """Forget the metadata of one key; ``False`` if there was none."""
        cursor = self._db.execute(
            "DELETE FROM key WHERE siret = ? AND opco_id = ?", (siret, opco_id)
        )
        return cursor.rowcount > 0

    def set_expiry(
        self, siret: str, opco_id: str, expires_at: datetime | None, source: str
    ) -> None:
        """Record a new expiry date and where it came from (``opco_api`` after ``verify``)."""
        if source not in EXPIRY_SOURCES:
            raise ValueError(f"unknown expiry source {source!r}")
        self._db.execute(
            "UPDATE key SET expires_at = ?, expiry_source = ? WHERE siret = ? AND opco_id = ?",
            (_to_text(expires_at), source, siret, opco_id),
        )

    def set_verification(
        self, siret: str, opco_id: str, fingerprint: str, verification: LastVerification
    ) -> bool:
        """Keep ``verification`` with the key, if it is still the one verified (``fingerprint``).

        ``False`` when the key was removed or replaced in the meantime: its result is not
        carried over to another key.
        """
        cursor = self._db.execute(
            "UPDATE key SET verified_at = ?, verify_outcome = ?, verify_http_status = ?, "
            "verify_opco_expiry = ? WHERE siret = ? AND opco_id = ? AND fingerprint = ?",
            (
                _to_text(verification.at),
                verification.outcome,
                verification.http_status,
                verification.opco_expiry.isoformat() if verification.opco_expiry else None,
                siret,
                opco_id,
                fingerprint,
            ),
        )
        return cursor.rowcount > 0

    def keys_with_fingerprint(self, fingerprint: str) -> list[KeyRecord]:
        """Every stored key with this fingerprint (a key pasted twice)."""
        rows = self._db.execute("SELECT * FROM key WHERE fingerprint = ?", (fingerprint,))
        return _decoded(self.path, _key_record, rows)

    # Write intents and the data lock -------------------------------------------------

    @contextmanager
    def lock(self, *, shared: bool = False) -> Iterator[None]:
        """The data directory's lock between processes (``cfakey.lock`` beside the database).

        Held exclusively from reading the store to committing the metadata of a change,
        and shared by readers that hand keys out, so they see store and metadata agree.
        """
        from pathlib import Path

        from cfakey.locking import data_lock

        with data_lock(Path(self.path).with_name("cfakey.lock"), shared=shared):
            yield

    def add_pending(self, intent: PendingWrite) -> None:
        """Record the intent to change one store entry (never the key itself)."""
        record = intent.record
        self._db.execute(
            "INSERT OR REPLACE INTO pending (siret, opco_id, action, old_fingerprint, "
            "fingerprint, obtained_on, stored_at, expires_at, expiry_source, os_user, store, "
            "detail, cfa_name, pid, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                intent.siret,
                intent.opco_id,
                intent.action,
                intent.old_fingerprint,
                None if record is None else record.fingerprint,
                None if record is None else record.obtained_on.isoformat(),
                None if record is None else _to_text(record.stored_at),
                None if record is None else _to_text(record.expires_at),
                None if record is None else record.expiry_source,
                None if record is None else record.os_user,
                intent.store,
                intent.detail,
                intent.cfa_name,
                intent.pid or os.getpid(),
                _to_text(self.clock().replace(microsecond=0)),
            ),
        )

    def pending(self, *, pid: int | None = None) -> list[PendingWrite]:
        """Unfinished write intents, optionally only those of one process."""
        rows = self._db.execute(
            "SELECT * FROM pending WHERE (:pid IS NULL OR pid = :pid) ORDER BY siret, opco_id",
            {"pid": pid},
        )
        return _decoded(self.path, _pending_write, rows)

    def delete_pending(self, siret: str, opco_id: str) -> None:
        """Forget the intent on one entry: the change was recorded, or undone and checked."""
        self._db.execute("DELETE FROM pending WHERE siret = ? AND opco_id = ?", (siret, opco_id))

    # Key requests ----------------------------------------------------------------------

    def put_request(self, record: RequestRecord) -> None:
        """Record (or update) the e-mail request of a slot, journalled."""
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO request (siret, opco_id, sent_on, sent_to, recorded_at, "
                "os_user) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    record.siret,
                    record.opco_id,
                    record.sent_on.isoformat(),
                    record.sent_to,
                    _to_text(record.recorded_at),
                    record.os_user,
                ),
            )
            sent_to = f" à {record.sent_to}" if record.sent_to else ""
            self.log(
                "requested",
                siret=record.siret,
                opco_id=record.opco_id,
                detail=f"demande envoyée le {record.sent_on:%d/%m/%Y}{sent_to}",
                at=record.recorded_at,
            )

    def list_requests(
        self, siret: str | None = None, opco_id: str | None = None
    ) -> list[RequestRecord]:
        """Open requests, oldest first, optionally of one CFA or one OPCO."""
        rows = self._db.execute(
            "SELECT * FROM request WHERE (:siret IS NULL OR siret = :siret)"
            " AND (:opco_id IS NULL OR opco_id = :opco_id) ORDER BY sent_on, siret, opco_id",
            {"siret": siret, "opco_id": opco_id},
        )
        return _decoded(self.path, _request_record, rows)

    def close_request(self, siret: str, opco_id: str, *, action: str) -> RequestRecord | None:
        """Forget the open request of a slot, journalled as ``action``; ``None`` if none."""
        with self.transaction():
            found = self.list_requests(siret, opco_id)
            if not found:
                return None
            self._db.execute(
                "DELETE FROM request WHERE siret = ? AND opco_id = ?", (siret, opco_id)
            )
            self.log(
                action,
                siret=siret,
                opco_id=opco_id,
                detail=f"demande du {found[0].sent_on:%d/%m/%Y}",
            )
        return found[0]

    # The team store's cache (core/team_sync.py) ---------------------------------------

    def sync_state(self) -> SyncState | None:
        """What the cached team rows describe, if they were ever synced."""
        row = self._db.execute("SELECT * FROM sync_state WHERE id = 1").fetchone()
        if row is None:
            return None
        denied = _text(row, "sync_state", "denied")
        return SyncState(
            _text(row, "sync_state", "location"),
            _integer(row, "sync_state", "version"),
            _moment(row, "sync_state", "synced_at"),
            tuple(part for part in denied.split(",") if part),
        )

    def cfa_sync_states(self) -> dict[str, tuple[int, datetime]]:
        """Each cached CFA's generation version and when the reading of its rows began."""
        rows = self._db.execute("SELECT * FROM sync_cfa")
        return {
            _text(row, "sync_cfa", "siret"): (
                _integer(row, "sync_cfa", "version"),
                _moment(row, "sync_cfa", "synced_at"),
            )
            for row in rows
        }

    def team_sirets(self) -> set[str]:
        """Every SIRET the team cache knows: its CFAs and those it synced."""
        rows = self._db.execute("SELECT siret FROM cfa UNION SELECT siret FROM sync_cfa")
        return {str(row[0]) for row in rows}

    def replace_team_catalog(
        self,
        state: SyncState,
        store: str,
        catalog: TeamRows,
        scope: Iterable[str] | None = None,
    ) -> None:
        """Replace, in one transaction, the cached rows that came from the engine: all of
        them, or (``scope``) only those of these CFAs. A CFA the token may not read
        (``state.denied``) stays known, without its keys."""
        within = None if scope is None else json.dumps(sorted(scope))
        with self.transaction():
            for table in ("key", "team_interrupted", "sync_cfa"):
                self._db.execute(_TEAM_SCOPED_DELETE[table], {"store": store, "within": within})
            self._db.executemany(
                "INSERT INTO team_interrupted (siret, opco_id) VALUES (?, ?)", catalog.interrupted
            )
            self._db.executemany(_TEAM_KEY_SQL, [_team_key_row(r) for r in catalog.keys])
            self._db.executemany(
                "INSERT OR REPLACE INTO sync_cfa (siret, version, synced_at) VALUES (?, ?, ?)",
                [(siret, v, _to_text(at)) for siret, (v, at) in catalog.versions.items()],
            )
            self._replace_team_cfas(catalog.cfas, scope, state.denied)
            self._db.execute(
                "INSERT OR REPLACE INTO sync_state (id, location, version, synced_at, denied) "
                "VALUES (1, ?, ?, ?, ?)",
                (state.location, state.version, _to_text(state.synced_at), ",".join(state.denied)),
            )

    def _replace_team_cfas(
        self, cfas: list[CfaRecord], scope: Iterable[str] | None, denied: Iterable[str]
    ) -> None:
        """Engine CFAs replace those that came from it; the default stays this home's, and
        a CFA this token may not read stays known."""
        kept = json.dumps([cfa.siret for cfa in cfas] + list(denied))
        within = None if scope is None else json.dumps(sorted(scope))
        self._db.execute(
            "DELETE FROM cfa WHERE shared = 1 AND siret NOT IN (SELECT value FROM json_each(?))"
            " AND siret NOT IN (SELECT siret FROM key)"
            " AND (? IS NULL OR siret IN (SELECT value FROM json_each(?)))",
            (kept, within, within),
        )
        self._db.executemany(
            "INSERT INTO cfa (siret, name, uai, is_default, created_at, shared) "
            "VALUES (?, ?, ?, 0, ?, 1) ON CONFLICT (siret) DO UPDATE SET name = excluded.name, "
            "uai = excluded.uai, shared = 1",
            [(c.siret, c.name, c.uai, _to_text(c.created_at)) for c in cfas],
        )
        self._db.execute(
            "UPDATE cfa SET is_default = 1 WHERE NOT EXISTS (SELECT 1 FROM cfa WHERE is_default)"
            " AND siret = (SELECT siret FROM cfa ORDER BY created_at, siret LIMIT 1)"
        )

    def is_cfa_shared(self, siret: str) -> bool:
        """Whether the CFA's record is known to be in the team engine."""
        row = self._db.execute("SELECT shared FROM cfa WHERE siret = ?", (siret,)).fetchone()
        return bool(row and row[0])

    def mark_cfa_shared(self, siret: str) -> None:
        """The CFA's record is in the engine now: a resync may replace (or drop) it."""
        self._db.execute("UPDATE cfa SET shared = 1 WHERE siret = ?", (siret,))

    def team_interrupted(self) -> list[tuple[str, str]]:
        """``(siret, opco_id)`` of the team keys whose engine metadata lags their data."""
        rows = self._db.execute("SELECT siret, opco_id FROM team_interrupted ORDER BY 1, 2")
        return [(str(row[0]), str(row[1])) for row in rows]

    def team_journal_names(self) -> set[str]:
        """The engine journal entries already cached (they never change)."""
        return {str(row[0]) for row in self._db.execute("SELECT name FROM team_journal")}

    def add_team_journal(self, entries: Iterable[tuple[str, JournalEntry]]) -> None:
        """Cache engine journal entries by name."""
        with self.transaction():
            self._db.executemany(
                "INSERT OR IGNORE INTO team_journal (name, at, user, siret, opco_id, action, "
                "old_fingerprint, new_fingerprint, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        name,
                        _to_text(e.at),
                        e.user,
                        e.siret,
                        e.opco_id,
                        e.action,
                        e.old_fingerprint,
                        e.new_fingerprint,
                        e.detail,
                    )
                    for name, e in entries
                ],
            )

    # Journal ---------------------------------------------------------------------------

    def log(
        self,
        action: str,
        *,
        siret: str | None = None,
        opco_id: str | None = None,
        old_fingerprint: str | None = None,
        new_fingerprint: str | None = None,
        detail: str = "",
        at: datetime | None = None,
    ) -> None:
        """Append one event to the journal (never a key: fingerprints only).

        ``at`` is when it happened, by the caller's clock; else by :attr:`clock`.
        """
        if self._db.in_transaction:
            self._logged_in_transaction = True
        else:
            self.journalled += 1
        self._db.execute(
            "INSERT INTO journal (at, user, siret, opco_id, action, old_fingerprint, "
            "new_fingerprint, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                _to_text((at or self.clock()).replace(microsecond=0)),
                self.user,
                siret,
                opco_id,
                action,
                old_fingerprint,
                new_fingerprint,
                detail,
            ),
        )

    def journal(
        self,
        *,
        siret: str | None = None,
        opco_id: str | None = None,
        since: datetime | None = None,
        action: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
        team: bool = False,
    ) -> list[JournalEntry]:
        """Journal entries, optionally filtered; ``limit`` keeps the most recent ones.

        ``team``: the team engine's journal as cached (:meth:`add_team_journal`), with
        this home's own entries of the actions never published there (exports, displays,
        verifications...: see :data:`TEAM_PUBLISHED`).
        """
        source = _TEAM_JOURNAL_SQL if team else "SELECT * FROM journal"
        order = "at DESC, abs(id) DESC" if team else "id DESC"  # team ids are negative
        rows = self._db.execute(
            source + " WHERE (:siret IS NULL OR siret = :siret)"
            " AND (:opco_id IS NULL OR opco_id = :opco_id)"
            " AND (:since IS NULL OR at >= :since)"
            " AND (:action IS NULL OR action = :action)"
            f" ORDER BY {order} LIMIT :limit",
            {
                "published": json.dumps(TEAM_PUBLISHED),
                "siret": siret,
                "opco_id": opco_id,
                "since": _to_text(since),
                "action": action,
                "limit": -1 if limit is None else limit,
            },
        )
        entries = _decoded(self.path, _journal_entry, rows)
        return entries if newest_first else entries[::-1]

    def remember_start(self, store_kind: str) -> None:
        """Note each key of the team store as this command found it (see
        :attr:`found_at_start`): one query, no row decoded."""
        rows = self._db.execute(
            "SELECT siret, opco_id, fingerprint FROM key WHERE store = ?", (store_kind,)
        )
        self.found_at_start = {(siret, opco_id): found for siret, opco_id, found in rows}

    def note_written(self, intents: Iterable[PendingWrite]) -> None:
        """After this command's own writes: what it found becomes what it wrote."""
        if self.found_at_start is None:
            return
        for intent in intents:
            slot = (intent.siret, intent.opco_id)
            if intent.new_fingerprint is None:
                self.found_at_start.pop(slot, None)
            else:
                self.found_at_start[slot] = intent.new_fingerprint

    def stored_times(self, verified_in: Sequence[str] = ()) -> dict[tuple[str, str | None], int]:
        """When each key was stored, in Unix seconds, by (SIRET, OPCO).

        ``verified_in``: store kinds whose rows come from a team engine, where a teammate's
        ``verify`` may have replaced the date (this home's journal cannot say when): for
        a date the OPCO gave, the last verification's time counts as a change too.
        """
        return self._seconds_by_slot(
            "SELECT siret, opco_id, CASE WHEN verified_at IS NOT NULL"
            " AND expiry_source = 'opco_api' AND store IN (SELECT value FROM json_each(:kinds))"
            " THEN max(CAST(strftime('%s', stored_at) AS INTEGER),"
            " CAST(strftime('%s', verified_at) AS INTEGER))"
            " ELSE CAST(strftime('%s', stored_at) AS INTEGER) END AS moment FROM key",
            {"kinds": json.dumps(list(verified_in))},
            "key",
        )

    def latest_entries(
        self, action: str, detail_contains: str | None = None
    ) -> dict[tuple[str, str | None], int]:
        """When ``action`` was last journalled for each (SIRET, OPCO), in Unix seconds, in
        one query; ``detail_contains`` keeps only the entries whose detail holds that text."""
        return self._seconds_by_slot(
            "SELECT siret, opco_id, CAST(strftime('%s', max(at)) AS INTEGER) AS moment"
            " FROM journal WHERE action = :action AND siret IS NOT NULL"
            " AND (:part IS NULL OR instr(detail, :part) > 0) GROUP BY siret, opco_id",
            {"action": action, "part": detail_contains},
            "journal",
        )

    def _seconds_by_slot(
        self, query: str, parameters: dict[str, Any], table: str
    ) -> dict[tuple[str, str | None], int]:
        """``query``'s (siret, opco_id, moment) rows by slot: SQLite turns the stored dates
        (UTC, as cfakey writes them) into Unix seconds, no Python date is made per row."""
        rows = self._db.execute(query, parameters).fetchall()
        found = {(siret, opco_id): moment for siret, opco_id, moment in rows}
        if all(type(moment) is int for moment in found.values()) and all(
            type(siret) is str and type(opco_id) in (str, type(None)) for siret, opco_id in found
        ):
            return found  # the usual case, checked in two quick passes
        decoded = _decoded(  # a bad value: exit 5 naming the database, as everywhere
            self.path,
            lambda row: (
                (_text(row, table, "siret"), _optional_text(row, table, "opco_id")),
                _integer(row, table, "moment"),
            ),
            rows,
        )
        return dict(decoded)


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script; triggers keep their inner semicolons."""
    statements, current = [], []
    for line in script.strip().splitlines():
        current.append(line)
        joined = "\n".join(current).strip()
        if joined.endswith(";") and sqlite3.complete_statement(joined):
            statements.append(joined)
            current = []
    if "\n".join(current).strip():
        statements.append("\n".join(current).strip())
    return statements
