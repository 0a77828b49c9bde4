"""The OS keyring store (macOS Keychain, Windows Credential Locker, Secret Service, KWallet).

Secrets go through the ``keyring`` library under the service name ``cfakey``, one entry
per (CFA, OPCO). The backend is chosen exactly as keyring chooses it
(``PYTHON_KEYRING_BACKEND``, then keyring's ``keyringrc.cfg``, then the highest
priority), but computed afresh rather than through keyring's process-wide cache, and with
the reason each other backend was ruled out, for ``cfakey doctor``. Backends that would
store nothing (``fail``, ``null``) or store in plain text are refused, never used
silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cfakey.errors import StoreUnavailableError
from cfakey.stores.base import SERVICE_NAME, KeyStore

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

T = TypeVar("T")

FAIL_BACKEND = "keyring.backends.fail.Keyring"
NULL_BACKEND = "keyring.backends.null.Keyring"
SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"  # noqa: S105 - a class name
#: An entry cfakey never writes, read once to find out whether the keyring answers.
PROBE_ENTRY = "cfakey-probe"

FILE_STORE_HINT = (
    "Sans trousseau utilisable, un fichier chiffré par mot de passe peut servir : "
    "option --store file ou variable CFAKEY_STORE=file."
)


@dataclass(frozen=True)
class BackendCandidate:
    """One keyring backend keyring knows of, with its priority or why it cannot be used."""

    name: str
    priority: float | None
    reason: str | None


@dataclass(frozen=True)
class KeyringProbe:
    """Which backend keyring chose, how, whether it can hold cfakey's keys, and the others."""

    backend: str
    priority: float | None
    chosen_by: str
    usable: bool
    reason: str | None
    candidates: tuple[BackendCandidate, ...]

    @property
    def rejected(self) -> tuple[BackendCandidate, ...]:
        """The backends keyring ruled out, each with its reason."""
        return tuple(candidate for candidate in self.candidates if candidate.reason is not None)


def backend_name(backend: KeyringBackend | type[KeyringBackend]) -> str:
    """The dotted name of a backend class, as ``PYTHON_KEYRING_BACKEND`` spells it."""
    cls = backend if isinstance(backend, type) else type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


def refusal(name: str) -> str | None:
    """Why cfakey will not keep keys in this backend, or ``None`` if it may."""
    if name == FAIL_BACKEND:
        return "keyring n'a trouvé aucun trousseau utilisable (magasin « fail »)"
    if name == NULL_BACKEND:
        return "keyring est réglé sur son magasin « null », qui n'enregistre rien"
    if "plaintext" in name.lower():
        return f"le magasin {name} enregistre les secrets en clair"
    return None


def _priority(cls: type[KeyringBackend]) -> tuple[float | None, str | None]:
    """A backend class's priority, or the reason it gave for not being usable here."""
    try:
        return float(cls.priority), None
    except Exception as error:  # noqa: BLE001 - backends raise what they like; the reason is shown
        return None, str(error) or type(error).__name__


def _backend_classes() -> list[tuple[type[KeyringBackend], BackendCandidate]]:
    """Every backend class keyring knows of (plugins included), best first, with its reason."""
    from keyring import backend as keyring_backend  # noqa: PLC0415
    from keyring.backends import chainer  # noqa: PLC0415

    # Loads the plugins' entry points (once); keyring's own viability cache is not used,
    # since a Secret Service may start or stop while a process lives.
    keyring_backend.get_all_keyring()
    found = []
    for cls in keyring_backend.KeyringBackend._classes:  # keyring's registry of backends
        if issubclass(cls, chainer.ChainerBackend):
            continue
        priority, reason = _priority(cls)
        found.append((cls, BackendCandidate(backend_name(cls), priority, reason)))
    return sorted(
        found, key=lambda pair: (pair[1].priority is None, -(pair[1].priority or 0.0), pair[1].name)
    )


def list_backends() -> tuple[BackendCandidate, ...]:
    """Every backend keyring knows of, best first, each with its priority or its reason."""
    return tuple(candidate for _, candidate in _backend_classes())


def keyring_config_file() -> Path:
    """keyring's own configuration file (``keyringrc.cfg``), where a backend can be forced."""
    from keyring.util import platform_  # noqa: PLC0415

    return Path(platform_.config_root()) / "keyringrc.cfg"


def detect_backend() -> tuple[KeyringBackend, str]:
    """The backend keyring would choose now, and how it was chosen (French).

    Same order as keyring itself: ``PYTHON_KEYRING_BACKEND``, then ``keyringrc.cfg``,
    then the highest priority (keyring's chainer when several backends are recommended).
    A configured backend that cannot load is a French error.
    """
    from keyring import core  # noqa: PLC0415
    from keyring.backends import chainer  # noqa: PLC0415

    configured = os.environ.get("PYTHON_KEYRING_BACKEND")
    if configured:
        try:
            return core.load_keyring(configured), "variable PYTHON_KEYRING_BACKEND"
        except Exception as error:  # noqa: BLE001 - import or viability errors of any kind
            raise _unusable(
                f"Le trousseau demandé par PYTHON_KEYRING_BACKEND ({configured})", error
            ) from None
    config_file = keyring_config_file()
    try:
        from_config = core.load_config()
    except Exception as error:  # noqa: BLE001 - import or viability errors of any kind
        raise _unusable(f"Le trousseau désigné par {config_file}", error) from None
    if from_config is not None:
        return from_config, f"fichier de configuration de keyring ({config_file})"
    viable = [(cls, c) for cls, c in _backend_classes() if c.priority is not None]
    if sum(1 for _, c in viable if c.priority is not None and c.priority > 0) > 1:
        chained: type[KeyringBackend] = chainer.ChainerBackend
        return chained(), "plusieurs trousseaux disponibles, enchaînés par keyring"
    for cls, candidate in viable:
        if candidate.name == FAIL_BACKEND:
            break
        try:
            return cls(), "priorité la plus haute parmi les trousseaux disponibles"
        except TypeError:  # needs constructor arguments: keyring skips those too
            continue
    from keyring.backends import fail  # noqa: PLC0415

    fallback: type[KeyringBackend] = fail.Keyring
    return fallback(), "aucun trousseau disponible : keyring se rabat sur « fail »"


def _unusable(which: str, error: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"{which} est inutilisable : {error or type(error).__name__}.", hint=FILE_STORE_HINT
    )


def probe_keyring(*, access: bool = True) -> KeyringProbe:
    """Whether the OS keyring can hold cfakey's keys now, and why not.

    With ``access``, one read is made through the chosen backend, which is how a locked
    collection or a dismissed unlock prompt shows up.
    """
    candidates = list_backends()
    try:
        backend, chosen_by = detect_backend()
    except StoreUnavailableError as error:
        return KeyringProbe(
            "?", None, "configuration", usable=False, reason=error.message, candidates=candidates
        )
    name = backend_name(backend)
    priority, _ = _priority(type(backend))
    reason = refusal(name)
    if reason is None and access:
        try:
            _translated(name, lambda: backend.get_password(SERVICE_NAME, PROBE_ENTRY))
        except StoreUnavailableError as error:
            reason = error.message
    return KeyringProbe(
        name, priority, chosen_by, usable=reason is None, reason=reason, candidates=candidates
    )


def _translated(name: str, operation: Callable[[], T]) -> T:
    """Run one keyring call, turning whatever it raises into a French error with no secret."""
    from keyring import errors  # noqa: PLC0415

    try:
        return operation()
    except errors.NoKeyringError:
        raise StoreUnavailableError(
            "Aucun trousseau du système n'est disponible "
            "(keyring n'a trouvé aucun service utilisable).",
            hint=FILE_STORE_HINT,
        ) from None
    except errors.KeyringLocked:
        raise StoreUnavailableError(
            f"Le trousseau du système ({name}) est verrouillé et n'a pas pu être déverrouillé.",
            hint="Déverrouillez-le (ouverture de session, gestionnaire de mots de passe) "
            "et relancez ; " + FILE_STORE_HINT,
        ) from None
    except errors.InitError as error:
        raise StoreUnavailableError(
            f"Le trousseau du système ({name}) n'a pas pu être ouvert : {str(error).rstrip('.')}.",
            hint=FILE_STORE_HINT,
        ) from None
    except errors.KeyringError as error:
        raise StoreUnavailableError(
            f"Le trousseau du système ({name}) a refusé l'opération ({type(error).__name__}).",
            hint=FILE_STORE_HINT,
        ) from None
    except Exception as error:  # noqa: BLE001 - re-raised as ours, type name only
        # D-Bus connection lost (secretstorage and jeepney errors), a backend that prompts
        # with no terminal (EOFError), a plugin's own error: the message could quote
        # anything, so only its type is shown.
        raise StoreUnavailableError(
            f"Le trousseau du système ({name}) a échoué ({type(error).__name__}).",
            hint=FILE_STORE_HINT,
        ) from None


class KeyringStore(KeyStore):
    """Secrets in the OS keyring: service ``cfakey``, user name ``<SIRET>/<opco id>``."""

    kind = "keyring"

    def __init__(self, backend: KeyringBackend | None = None) -> None:
        self._backend = backend
        self._chosen_by = "fourni par l'appelant" if backend is not None else ""

    @property
    def backend(self) -> KeyringBackend:
        """The keyring backend in use, detected on first use; refused if it cannot hold keys."""
        if self._backend is None:
            self._backend, self._chosen_by = detect_backend()
        reason = refusal(backend_name(self._backend))
        if reason is not None:
            raise StoreUnavailableError(
                f"Le trousseau du système est inutilisable : {reason}.", hint=FILE_STORE_HINT
            )
        return self._backend

    @property
    def backend_name(self) -> str:
        """The dotted name of the backend in use."""
        return backend_name(self.backend)

    @property
    def chosen_by(self) -> str:
        """How keyring came to this backend (French), for ``doctor``."""
        self.backend  # noqa: B018 - detects it first
        return self._chosen_by

    def describe(self) -> str:
        backend = self.backend
        priority, _ = _priority(type(backend))
        shown = f", priorité {priority:g}" if priority is not None else ""
        return f"trousseau du système ({backend_name(backend)}{shown}), service « {SERVICE_NAME} »"

    def put(self, entry: str, secret: str) -> None:
        backend = self.backend
        _translated(
            backend_name(backend), lambda: backend.set_password(SERVICE_NAME, entry, secret)
        )

    def get(self, entry: str) -> str | None:
        backend = self.backend
        return _translated(backend_name(backend), lambda: backend.get_password(SERVICE_NAME, entry))

    def delete(self, entry: str) -> bool:
        from keyring.errors import PasswordDeleteError  # noqa: PLC0415

        backend = self.backend

        def delete() -> bool:
            try:
                backend.delete_password(SERVICE_NAME, entry)
            except PasswordDeleteError:
                # Backends raise this for a missing entry, and some for a refusal too:
                # only a read tells the two apart.
                if backend.get_password(SERVICE_NAME, entry) is None:
                    return False
                raise
            return True

        return _translated(backend_name(backend), delete)

    def entries(self) -> list[str] | None:
        """The Secret Service can list cfakey's entries by attribute; other keyrings cannot."""
        backend = self.backend
        if backend_name(backend) != SECRET_SERVICE_BACKEND:
            return None
        return _translated(backend_name(backend), lambda: _secret_service_entries(backend))


def _secret_service_entries(backend: Any) -> list[str]:
    """Names of the items with service ``cfakey`` in the Secret Service collection in use."""
    from contextlib import closing  # noqa: PLC0415

    scheme = backend.schemes[backend.scheme]
    collection = backend.get_preferred_collection()
    with closing(collection.connection):
        names = {
            item.get_attributes().get(scheme["username"], "")
            for item in collection.search_items(backend._query(SERVICE_NAME))
        }
    return sorted(name for name in names if name and name != PROBE_ENTRY)
