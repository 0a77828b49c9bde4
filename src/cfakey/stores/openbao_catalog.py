"""The team catalog in the KV v2 engine: key metadata, CFA records, journal, generation.

Beside each key's secret (:mod:`cfakey.stores.openbao_store`) the engine holds everything
a teammate needs, never a key:

- ``<prefix>/keys/<SIRET>/<opco>``: the key's metadata as KV v2 ``custom_metadata``
  (strings only, at most 64 of them), written after each new version;
- ``<prefix>/cfas/<SIRET>``: the CFA's name and UAI, as data and as ``custom_metadata``
  (so that a metadata-only token can read them);
- ``<prefix>/journal/<SIRET or editeur>/<UTC time>-<random>``: one journal entry each,
  written with check-and-set 0 (create-only: a policy without update makes it append-only);
- ``<prefix>/generation``, and ``<prefix>/generations/<SIRET>`` for each CFA: written
  (plain write, the version rises atomically) by every writer before its first change
  (the global one, and that of each CFA it changes) and again every half lease; readers
  use their versions and times to trust their local cache, or reread only the CFAs that
  changed (:mod:`cfakey.core.team_sync`).

This module only speaks to the engine, with raw strings; what they mean is in
:mod:`cfakey.core.team_sync`. hvac is imported inside the functions.
"""

from __future__ import annotations

import secrets as random_source
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

from cfakey.identifiers import is_valid_siret

if TYPE_CHECKING:
    from cfakey.stores.openbao_store import OpenBaoStore

#: Seconds within which every change follows its writer's latest generation write.
LEASE_SECONDS = 60
GENERATION = "generation"
#: The folder of the per-CFA generations (``generations/<SIRET>``).
GENERATIONS_FOLDER = "generations"
CFAS_FOLDER = "cfas"
JOURNAL_FOLDER = "journal"
#: The journal folder of entries about no CFA (a store migration, the vendor's secrets).
VENDOR_JOURNAL = "editeur"
#: Parallel requests while reading the whole catalog (see bench/team.py for the figures).
THREADS = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Generation:
    """The generation entry as one read saw it, with the server's clock at that read."""

    version: int
    #: When that version was written (server time); the epoch when there is none.
    written_at: datetime
    #: The server's time when it answered (its ``Date`` header), minus one second.
    server_now: datetime


@dataclass(frozen=True)
class VersionInfo:
    """One KV v2 version of a key (never its data)."""

    number: int
    created_at: datetime | None
    deleted_at: datetime | None
    destroyed: bool


@dataclass(frozen=True)
class EngineKey:
    """What the engine says about one key: its versions and its ``custom_metadata``."""

    siret: str
    opco_id: str
    current_version: int
    fields: Mapping[str, str]
    versions: tuple[VersionInfo, ...] = ()


@dataclass(frozen=True)
class EngineCatalog:
    """Every key and CFA record this token can read, and the SIRETs it may not read."""

    keys: list[EngineKey]
    cfas: dict[str, Mapping[str, str]]
    #: Known SIRETs whose subtree the engine's policy refuses to this token.
    denied: tuple[str, ...] = ()
    #: Whether the token may list every CFA (else: only the SIRETs this home knows).
    listed_all: bool = True


class _ForbiddenError(Exception):
    """A 403 the caller turns into "not readable by this token" (not an error)."""


@dataclass
class OpenBaoCatalog:
    """The team catalog of one engine location, through the store's logged-in client."""

    store: OpenBaoStore
    #: When this process last wrote each generation entry, by path: (monotonic, wall).
    _bumped_at: dict[str, tuple[float, float]] = field(default_factory=dict, init=False)

    @property
    def location_id(self) -> str:
        """Which catalog a local cache describes: URL, mount, prefix, and who reads it
        (a token sees only what its policy covers: another token, another catalog)."""
        where = self.store.where
        return f"{where.url}|{where.mount}|{where.prefix}|{self.store.reader_id}"

    def _path(self, *parts: str) -> str:
        return "/".join((self.store.where.prefix, *parts))

    def _call(
        self, api: str, path: str, call: Callable[[], _Result], *, reading: bool = False
    ) -> _Result | None:
        """``call`` with French errors; ``None`` for no entry. ``reading``: a 403 raises
        :class:`_ForbiddenError` (not readable by this token), else the French refusal."""
        import hvac.exceptions

        with self.store.engine_errors(f"{self.store.where.mount}/{api}/{path}"):
            try:
                return call()
            except hvac.exceptions.Forbidden:
                if not reading:
                    raise
                raise _ForbiddenError(path) from None
            except hvac.exceptions.InvalidPath as error:
                if any("no handler for route" in str(text) for text in error.errors or ()):
                    raise
                return None

    def _kv(self) -> Any:
        return self.store.client().secrets.kv.v2

    # The generation ------------------------------------------------------------------

    def generation(self) -> Generation:
        """One read of ``<prefix>/generation``'s metadata (a monitor may read it)."""
        found = self._generation_at(self._path(GENERATION), refused_ok=False)
        assert found is not None  # noqa: S101 - refused_ok=False raises instead
        return found

    def cfa_generations(self, known_sirets: Iterable[str]) -> dict[str, Generation | None]:
        """Each CFA's generation (``None``: the policy refuses it to this token), for the
        SIRETs listed under ``generations/`` (when the token may list them) and those known."""
        listed = self._list(self._path(GENERATIONS_FOLDER)) or []
        sirets = sorted({n for n in listed if not n.endswith("/")} | set(known_sirets))
        paths = [self._path(GENERATIONS_FOLDER, siret) for siret in sirets]
        with ThreadPoolExecutor(THREADS) as pool:
            found = list(pool.map(lambda path: self._generation_at(path, refused_ok=True), paths))
        return dict(zip(sirets, found, strict=True))

    def _generation_at(self, path: str, *, refused_ok: bool) -> Generation | None:
        """A generation entry's version and time, with the server's clock at that read."""
        import hvac.utils
        from hvac.adapters import RawAdapter

        client = self.store.client()
        url = f"/v1/{self.store.where.mount}/metadata/{path}"
        with self.store.engine_errors(f"{self.store.where.mount}/metadata/{path}"):
            response = RawAdapter.request(client.adapter, "GET", url, raise_exception=False)  # type: ignore[arg-type]
            if response.status_code == 403 and refused_ok:
                return None
            if response.status_code not in (200, 404):
                hvac.utils.raise_for_error("GET", url, response.status_code, text=response.text)
        server_now = _server_time(response.headers.get("Date")) - timedelta(seconds=1)
        if response.status_code == 404:
            return Generation(0, _EPOCH, server_now)
        body = response.json()["data"]
        version = int(body.get("current_version") or 0)
        info = (body.get("versions") or {}).get(str(version)) or {}
        return Generation(version, _instant(info.get("created_time")) or _EPOCH, server_now)

    def keep_lease(self, entry: str | None = None) -> None:
        """Before an engine change: write the generation, and that of the CFA of ``entry``
        (a store entry ``<SIRET>/<opco>`` or a SIRET), unless this process wrote them less
        than half a lease ago (a long batch writes them again)."""
        siret = (entry or "").partition("/")[0]
        self._bump(self._path(GENERATION))
        if is_valid_siret(siret):
            self._bump(self._path(GENERATIONS_FOLDER, siret))

    def _bump(self, path: str) -> None:
        # Two clocks: the monotonic one stops while a laptop sleeps (Linux, macOS), the
        # wall clock may be set back; the lease is renewed when either says it is due.
        now = (time.monotonic(), time.time())
        last = self._bumped_at.get(path)
        if last is not None and max(now[0] - last[0], now[1] - last[1]) < LEASE_SECONDS / 2:
            return
        self._call(
            "data",
            path,
            lambda: self._kv().create_or_update_secret(
                path=path,
                secret={"lease_seconds": str(LEASE_SECONDS)},
                mount_point=self.store.where.mount,
            ),
        )
        self._bumped_at[path] = now

    # Reading the catalog -------------------------------------------------------------

    def read_catalog(self, known_sirets: Iterable[str]) -> EngineCatalog:
        """Every readable key (metadata only) and CFA record, a few requests at a time.

        Without the right to list every CFA, the SIRETs this home knows are read; a SIRET
        the policy refuses is counted in ``denied``, never an error.
        """
        listed = self._list(self._path("keys"))
        listed_all = listed is not None
        sirets = sorted(
            {name.rstrip("/") for name in listed or ()}
            | (set() if listed_all else set(known_sirets))
        )
        return self.read_cfas(sirets, self._cfa_sirets(sirets, listed_all), listed_all)

    def read_cfas(
        self,
        sirets: Iterable[str],
        cfa_sirets: Iterable[str] | None = None,
        listed_all: bool = False,
    ) -> EngineCatalog:
        """The keys and CFA records of these CFAs only (``cfa_sirets``: the records to
        read, by default those of ``sirets``)."""
        sirets = sorted(set(sirets))
        cfa_names = sirets if cfa_sirets is None else list(cfa_sirets)
        with ThreadPoolExecutor(THREADS) as pool:
            slots = list(pool.map(self._opcos_of, sirets))
            denied = tuple(s for s, opcos in zip(sirets, slots, strict=True) if opcos is None)
            wanted = [
                (siret, opco)
                for siret, opcos in zip(sirets, slots, strict=True)
                for opco in opcos or ()
            ]
            keys = [k for k in pool.map(lambda slot: self.key(*slot), wanted) if k is not None]
            records = dict(zip(cfa_names, pool.map(self._cfa_of, cfa_names), strict=True))
        cfas = {siret: record for siret, record in records.items() if record is not None}
        return EngineCatalog(keys, cfas, denied, listed_all)

    def _list(self, path: str) -> list[str] | None:
        """The names in a folder (``[]``: none); ``None`` when the policy refuses it."""
        try:
            answer = self._call(
                "metadata",
                path,
                lambda: self._kv().list_secrets(path=path, mount_point=self.store.where.mount),
                reading=True,
            )
        except _ForbiddenError:
            return None
        return [] if answer is None else list(answer["data"]["keys"])

    def _opcos_of(self, siret: str) -> list[str] | None:
        names = self._list(self._path("keys", siret))
        return None if names is None else [n for n in names if not n.endswith("/")]

    def _cfa_sirets(self, sirets: list[str], listed_all: bool) -> list[str]:
        if listed_all:
            names = self._list(self._path(CFAS_FOLDER))
            if names is not None:
                return sorted({n for n in names if not n.endswith("/")} | set(sirets))
        return sirets

    def _metadata(self, path: str) -> dict[str, Any] | None:
        try:
            answer = self._call(
                "metadata",
                path,
                lambda: self._kv().read_secret_metadata(
                    path=path, mount_point=self.store.where.mount
                ),
                reading=True,
            )
        except _ForbiddenError:
            return None
        return None if answer is None else dict(answer["data"])

    def key(self, siret: str, opco_id: str) -> EngineKey | None:
        """One key's metadata and versions; ``None`` if absent (or not readable)."""
        body = self._metadata(self._path("keys", siret, opco_id))
        if body is None:
            return None
        versions = tuple(
            VersionInfo(
                int(number),
                _instant(info.get("created_time")),
                _instant(info.get("deletion_time")),
                bool(info.get("destroyed")),
            )
            for number, info in sorted(
                (body.get("versions") or {}).items(), key=lambda item: int(item[0])
            )
        )
        return EngineKey(
            siret,
            opco_id,
            int(body.get("current_version") or 0),
            dict(body.get("custom_metadata") or {}),
            versions,
        )

    def cfa(self, siret: str) -> Mapping[str, str] | None:
        """The CFA's record, if the engine has one this token may read."""
        return self._cfa_of(siret)

    def _cfa_of(self, siret: str) -> Mapping[str, str] | None:
        body = self._metadata(self._path(CFAS_FOLDER, siret))
        return None if body is None else dict(body.get("custom_metadata") or {})

    # Writing the catalog -------------------------------------------------------------

    def write_key_metadata(self, siret: str, opco_id: str, fields: Mapping[str, str]) -> None:
        """Replace a key's ``custom_metadata`` (its data is left alone)."""
        self.keep_lease(siret)
        path = self._path("keys", siret, opco_id)
        self._call(
            "metadata",
            path,
            lambda: self._kv().update_metadata(
                path=path, custom_metadata=_filled(fields), mount_point=self.store.where.mount
            ),
        )

    def write_cfa(self, siret: str, fields: Mapping[str, str]) -> None:
        """The CFA record: its data, then the same fields as metadata (for monitors)."""
        self.keep_lease(siret)
        path = self._path(CFAS_FOLDER, siret)
        mount = self.store.where.mount
        self._call(
            "data",
            path,
            lambda: self._kv().create_or_update_secret(
                path=path, secret=dict(fields), mount_point=mount
            ),
        )
        self._call(
            "metadata",
            path,
            lambda: self._kv().update_metadata(
                path=path, custom_metadata=_filled(fields), mount_point=mount
            ),
        )

    def remove_cfa(self, siret: str) -> None:
        """Forget the CFA record (all its versions)."""
        self.keep_lease(siret)
        path = self._path(CFAS_FOLDER, siret)
        self._call(
            "metadata",
            path,
            lambda: self._kv().delete_metadata_and_all_versions(
                path=path, mount_point=self.store.where.mount
            ),
        )

    # The journal ---------------------------------------------------------------------

    def append_journal(self, siret: str | None, fields: Mapping[str, str]) -> str:
        """Create one journal entry (check-and-set 0: never over another); its name.
        (The journal is read by names, not through the generations: only the global one.)"""
        self.keep_lease()
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{siret or VENDOR_JOURNAL}/{stamp}-{random_source.token_hex(4)}"
        path = self._path(JOURNAL_FOLDER, name)
        self._call(
            "data",
            path,
            lambda: self._kv().create_or_update_secret(
                path=path, secret=dict(fields), cas=0, mount_point=self.store.where.mount
            ),
        )
        return name

    def journal_names(self, folders: Iterable[str]) -> tuple[list[str], list[str]]:
        """The entry names of these journal folders, and the folders the policy refuses."""
        names: list[str] = []
        denied: list[str] = []
        for folder in folders:
            found = self._list(self._path(JOURNAL_FOLDER, folder))
            if found is None:
                denied.append(folder)
            else:
                names += [f"{folder}/{n}" for n in found if not n.endswith("/")]
        return names, denied

    def journal_folders(self) -> list[str] | None:
        """Every journal folder, when the token may list them."""
        found = self._list(self._path(JOURNAL_FOLDER))
        return None if found is None else [n.rstrip("/") for n in found if n.endswith("/")]

    def read_journal(self, names: list[str]) -> tuple[dict[str, Mapping[str, str]], list[str]]:
        """The entries of these names (immutable: read once, cached by the caller), and
        the names whose data the policy refuses (a metadata-only token lists, not reads)."""
        refused: list[str] = []

        def read(name: str) -> Mapping[str, str] | None:
            path = self._path(JOURNAL_FOLDER, name)
            try:
                answer = self._call(
                    "data",
                    path,
                    lambda: self._kv().read_secret_version(
                        path=path,
                        mount_point=self.store.where.mount,
                        raise_on_deleted_version=False,
                    ),
                    reading=True,
                )
            except _ForbiddenError:
                refused.append(name)
                return None
            data = None if answer is None else (answer.get("data") or {}).get("data")
            return None if data is None else {str(k): str(v) for k, v in data.items()}

        with ThreadPoolExecutor(THREADS) as pool:
            found = dict(zip(names, pool.map(read, names), strict=True))
        return {name: entry for name, entry in found.items() if entry is not None}, refused


def _filled(fields: Mapping[str, str]) -> dict[str, str]:
    """``custom_metadata`` takes no empty value: an empty field is left out (read as empty)."""
    return {name: value for name, value in fields.items() if value}


def _server_time(header: str | None) -> datetime:
    """The HTTP ``Date`` of an answer (server clock); without one, the epoch (so a cache
    synced then is never trusted: the local clock is no measure of the server's)."""
    if header:
        try:
            return parsedate_to_datetime(header).astimezone(UTC)
        except (TypeError, ValueError):
            pass
    return _EPOCH + timedelta(seconds=1)


def _instant(value: object) -> datetime | None:
    """An RFC 3339 time of the engine (nanoseconds cut to microseconds)."""
    if not isinstance(value, str) or not value or value.startswith("0001-"):
        return None
    text = value.replace("Z", "+00:00")
    head, dot, rest = text.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        zone = rest[len(digits) :]
        text = f"{head}.{digits[:6]}{zone}"
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError:
        return None
