"""The application context handed to every command: environment, paths, registry, clock.

Nothing here is computed at import time; each piece is resolved the first time a
command asks for it, so ``CFAKEY_HOME`` set by a test or a wrapper script applies and a
command pays only for what it uses.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from cfakey.paths import Paths
from cfakey.registry.model import Opco, Registry

if TYPE_CHECKING:
    import httpx

    from cfakey.config import Config
    from cfakey.core.recovery import RecoveryReport
    from cfakey.metadata import Metadata
    from cfakey.registry.loader import RegistrySource
    from cfakey.stores.base import KeyStore
    from cfakey.stores.file_store import PasswordSource
    from cfakey.stores.keyring_store import KeyringProbe
    from cfakey.stores.kinds import SecretPrompt, StoreSettings
    from cfakey.stores.openbao_catalog import OpenBaoCatalog
    from cfakey.stores.selection import StoreDecision


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppContext:
    """What a command needs from the outside world, in one object tests can build."""

    #: Not in the repr: it holds CFAKEY_FILE_PASSWORD when a script sets it.
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)
    registry_overlay: Path | None = None
    clock: Callable[[], datetime] = _utc_now
    #: Transport for API calls; ``None`` is the real network. Tests plug a mock here.
    http_transport: httpx.BaseTransport | None = None
    #: ``--store``: the key store asked for on the command line, over everything else.
    store_option: str | None = None
    #: Asks the encrypted file's password in a terminal (the CLI's); ``None``: never prompt.
    password_prompt: PasswordSource | None = None
    #: Asks a team store's login secret (AppRole secret_id) in a terminal; ``None``: never.
    secret_prompt: SecretPrompt | None = None
    #: Asks the operator to accept the encrypted file when the keyring does not work.
    confirm_file_store: Callable[[str], bool] | None = None
    #: Told (in the CLI: on stderr) what finishing an interrupted change did.
    on_recovery: Callable[[RecoveryReport], None] | None = None
    #: What opening the key store found left unfinished, and did about it.
    recovery: RecoveryReport | None = field(default=None, init=False, repr=False)
    _metadata: Metadata | None = field(default=None, init=False, repr=False)
    _config: Config | None = field(default=None, init=False, repr=False)
    _store_decision: StoreDecision | None = field(default=None, init=False, repr=False)
    _key_store: KeyStore | None = field(default=None, init=False, repr=False)
    _keyring_probe: KeyringProbe | None = field(default=None, init=False, repr=False)

    @cached_property
    def paths(self) -> Paths:
        """cfakey's directories, from ``CFAKEY_HOME`` or the platform defaults."""
        return Paths.from_env(self.env)

    @cached_property
    def _registry_and_source(self) -> tuple[Registry, RegistrySource]:
        from cfakey.registry.loader import load_registry

        return load_registry(self.registry_overlay, self.paths.cache_dir)

    @property
    def registry(self) -> Registry:
        """The validated registry, shipped entries with the overlay merged over them."""
        return self._registry_and_source[0]

    @property
    def registry_source(self) -> RegistrySource:
        """Where the registry came from: the shipped file and the overlay, if any."""
        return self._registry_and_source[1]

    def resolve_opco(self, name: str) -> Opco:
        """The OPCO an operator's spelling designates (or a French error)."""
        from cfakey.registry.names import resolve

        return resolve(self.registry, name)

    def metadata(self, *, recreate: bool = False, refresh: bool = True) -> Metadata:
        """The metadata database, opened (and migrated) on first use.

        ``recreate`` (``doctor``): create it even where keys were stored (it was lost).
        ``refresh=False`` (``doctor``): the team cache is not brought up to date on
        opening; the caller does it where an unreachable engine is one problem among
        others (``team_sync.repair``).
        """
        if self._metadata is None:
            from cfakey.metadata import Metadata

            self._metadata = Metadata.open(self.paths, recreate=recreate)
            self._metadata.clock = self.clock  # the journal is stamped by the command's clock
            if refresh:
                self._refresh_team_cache()
        return self._metadata

    def shared_store_in_use(self) -> bool:
        """Whether the store in service is a team store (decided without opening it)."""
        from cfakey.stores.kinds import STORE_KINDS

        # Only an explicit choice can name a shared store: detection (which probes the
        # OS keyring) never picks one, so it is not run here.
        kind = self.store_option or self.env.get("CFAKEY_STORE")
        if not kind:
            # A damaged config says so now (exit 5): guessing "not shared" would show a
            # team home's cache without asking the engine whether it is current.
            kind = self.config().get("store")
        found = STORE_KINDS.get(str(kind).strip().lower()) if kind else None
        return found is not None and found.shared

    def team_catalog(self) -> OpenBaoCatalog | None:
        """The team engine's catalog when the store in service is shared, else ``None``."""
        return self.key_store().catalog() if self.shared_store_in_use() else None

    def _refresh_team_cache(self) -> None:
        """A team store: the cached catalog is brought up to date before any read of it
        (``core/team_sync.py``); a command that reads no metadata never gets here."""
        if self._metadata is not None and self.shared_store_in_use():
            from cfakey.core.team_sync import refresh

            try:
                store = self.key_store()
                refresh(self._metadata, store)
                self._metadata.remember_start(store.kind)
            except BaseException:
                # Never leave an unsynced cache for a later call of this command to read.
                metadata, self._metadata = self._metadata, None
                metadata.close()
                raise

    def settled_metadata(self) -> Metadata:
        """The metadata database, after finishing what an interrupted command left.

        For commands that will open the key store anyway: their first read (the key to
        remove, rotate or hand out) must see what recovery recorded, never the state a
        killed command left. The store is opened here only when an intent is waiting.
        """
        from cfakey.core.recovery import has_pending

        metadata = self.metadata()
        if self._key_store is None and has_pending(metadata):
            self.key_store()
        return metadata

    def config(self) -> Config:
        """The user's settings file, read on first use."""
        if self._config is None:
            from cfakey.config import Config

            self._config = Config.load(self.paths.config_file)
        return self._config

    def config_value(self, name: str) -> object:
        """One setting of ``config.json`` (``None`` if unset), read on first use."""
        return self.config().get(name)

    def keyring_probe(self) -> KeyringProbe:
        """The OS keyring: which backend, whether it works, why not; detected once a process.

        Detection asks every backend whether it is available (the Secret Service over
        D-Bus), so the store decision, the keyring store and ``doctor`` share this one.
        """
        if self._keyring_probe is None:
            from cfakey.stores.keyring_store import probe_keyring

            self._keyring_probe = probe_keyring()
        return self._keyring_probe

    def store_decision(self) -> StoreDecision:
        """Which key store to use and why: ``--store``, ``CFAKEY_STORE``, config, detection."""
        if self._store_decision is None:
            from cfakey.stores.selection import decide_store

            env_value = self.env.get("CFAKEY_STORE")
            # The config is read only when it decides: an explicit choice still works
            # with a damaged config.json.
            explicit = self.store_option or env_value
            self._store_decision = decide_store(
                option=self.store_option,
                env_value=env_value,
                config_value=None if explicit else self.config().get("store"),
                probe=self.keyring_probe,
            )
        return self._store_decision

    def key_store(self, *, interactive: bool = True) -> KeyStore:
        """The key store in use, chosen on first use; nothing is unlocked until a key is read.

        A store found by detection is remembered in the config. When the keyring does not
        work and nothing was chosen, the encrypted file is used only if the operator
        accepts it: never a silent fallback. ``interactive=False`` (``doctor``) neither
        asks nor remembers anything.
        """
        if self._key_store is None:
            from cfakey.errors import StoreUnavailableError
            from cfakey.stores.keyring_store import FILE_STORE_HINT
            from cfakey.stores.kinds import FALLBACK_KIND
            from cfakey.stores.selection import open_store

            decision = self.store_decision()
            kind = decision.kind
            if kind is None:
                confirm = self.confirm_file_store if interactive else None
                if confirm is None or not confirm(decision.reason):
                    raise StoreUnavailableError(
                        f"{decision.reason[:1].upper()}{decision.reason[1:]}.", hint=FILE_STORE_HINT
                    )
                kind = FALLBACK_KIND
            if decision.origin == "auto" and interactive:
                self.config().set("store", kind)
            store = open_store(kind, self.store_settings())
            # Set first: settling and recovery open the metadata, whose team-cache refresh
            # (a shared store) reads through this same store.
            self._key_store = store
            try:
                self._settle(store)
                self._recover(store)
            except BaseException:
                self._key_store = None
                raise
        return self._key_store

    def store_settings(self, setting: Callable[[str], object] | None = None) -> StoreSettings:
        """What opening a store needs: this command's environment, prompts and settings.

        ``setting``: where a store's settings are read (default: ``config.json``).
        """
        from cfakey.stores.file_store import password_source
        from cfakey.stores.kinds import StoreSettings

        return StoreSettings(
            self.paths,
            self.env,
            password_source(self.env, self.password_prompt),
            self.keyring_probe,
            setting or self.config_value,
            secret_prompt=self.secret_prompt,
        )

    def _settle(self, store: KeyStore) -> None:
        """Move entries an earlier version left under other names (keyring: per home)."""
        if store.needs_settling:
            from contextlib import suppress

            from cfakey.core.store_admin import settle_store
            from cfakey.errors import StoreUnavailableError

            opco_ids = [opco.id for opco in self.registry.opcos]
            # Unusable now: the first real use says so, and a later command settles it.
            with suppress(StoreUnavailableError):
                settle_store(store, self.metadata(), opco_ids)

    def _recover(self, store: KeyStore) -> None:
        """Finish or drop what an interrupted command left between the store and metadata."""
        from cfakey.core.recovery import has_pending, recover

        metadata = self.metadata()
        if not has_pending(metadata):
            return
        self.recovery = recover(store, metadata)
        if self.on_recovery is not None and self.recovery.acted:
            self.on_recovery(self.recovery)

    def interruption_state(self) -> str:
        """What an interruption leaves: ``nothing``, ``saved``, ``pending`` or ``unknown``.

        ``pending``: this process left a store change unfinished (its intent is there);
        ``saved``: it committed changes; ``nothing``: neither (read from the database).
        """
        import os

        if self._metadata is None:
            return "nothing"
        try:
            if self._metadata.pending(pid=os.getpid()):
                return "pending"
        except Exception:  # noqa: BLE001 - an interruption must still be reported
            return "unknown"
        return "saved" if self._metadata.journalled else "nothing"

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        return self.clock()

    def today(self) -> date:
        """Today's date on the operator's local calendar."""
        return self.clock().astimezone().date()
