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
    from cfakey.config import Config
    from cfakey.metadata import Metadata
    from cfakey.registry.loader import RegistrySource


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AppContext:
    """What a command needs from the outside world, in one object tests can build."""

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    registry_overlay: Path | None = None
    clock: Callable[[], datetime] = _utc_now
    _metadata: Metadata | None = field(default=None, init=False, repr=False)
    _config: Config | None = field(default=None, init=False, repr=False)

    @cached_property
    def paths(self) -> Paths:
        """cfakey's directories, from ``CFAKEY_HOME`` or the platform defaults."""
        return Paths.from_env(self.env)

    @cached_property
    def _registry_and_source(self) -> tuple[Registry, RegistrySource]:
        from cfakey.registry.loader import load_registry  # noqa: PLC0415

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
        from cfakey.registry.names import resolve  # noqa: PLC0415

        return resolve(self.registry, name)

    def metadata(self) -> Metadata:
        """The metadata database, opened (and migrated) on first use."""
        if self._metadata is None:
            from cfakey.metadata import Metadata  # noqa: PLC0415

            self._metadata = Metadata.open(self.paths)
        return self._metadata

    def config(self) -> Config:
        """The user's settings file, read on first use."""
        if self._config is None:
            from cfakey.config import Config  # noqa: PLC0415

            self._config = Config.load(self.paths.config_file)
        return self._config

    def now(self) -> datetime:
        """The current time, timezone-aware (UTC)."""
        return self.clock()

    def today(self) -> date:
        """Today's date on the operator's local calendar."""
        return self.clock().astimezone().date()
