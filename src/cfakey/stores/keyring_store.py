"""The OS keyring store (macOS Keychain, Windows Credential Locker, Secret Service, KWallet).

Secrets go through the ``keyring`` library under a service name of the cfakey home
(``cfakey/<home id>``, see :func:`home_service`), one entry per (CFA, OPCO): two homes
on one desktop keyring never share an entry. The backend is chosen as keyring chooses it
(``PYTHON_KEYRING_BACKEND``, then keyring's ``keyringrc.cfg``, then the highest
priority), once per process, with the reason each other backend was ruled out, for
``cfakey doctor``.

Keys go only to the operating systems' own encrypted keyrings (:data:`SAFE_BACKENDS`).
That is an allow-list, not a deny-list: a backend cfakey does not know (a plugin) may
store in clear or in base64 under any name, and a key manager must fail closed. A chain
(keyring's ``ChainerBackend``) is accepted only if every backend it chains is safe, since
the chainer writes to whichever member answers; detection never builds a chain and never
picks an unsafe backend, it takes the safe one with the highest priority.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, TypeVar

from cfakey.errors import StoreUnavailableError
from cfakey.stores.base import SERVICE_NAME, KeyStore, fingerprint
from cfakey.stores.kinds import FALLBACK_KIND

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

    from cfakey.stores.kinds import StoreSettings

T = TypeVar("T")

FAIL_BACKEND = "keyring.backends.fail.Keyring"
NULL_BACKEND = "keyring.backends.null.Keyring"
CHAINER_BACKEND = "keyring.backends.chainer.ChainerBackend"
SECRET_SERVICE_BACKEND = "keyring.backends.SecretService.Keyring"  # noqa: S105 - a class name
WINDOWS_BACKEND = "keyring.backends.Windows.WinVaultKeyring"
#: Where cfakey keeps keys: the operating systems' encrypted keyrings, and nothing else.
SAFE_BACKENDS = frozenset(
    {
        SECRET_SERVICE_BACKEND,
        "keyring.backends.libsecret.Keyring",
        "keyring.backends.kwallet.DBusKeyring",
        "keyring.backends.kwallet.DBusKeyringKWallet4",
        "keyring.backends.macOS.Keyring",
        WINDOWS_BACKEND,
    }
)
#: Windows Credential Manager refuses a secret over CRED_MAX_CREDENTIAL_BLOB_SIZE (5 × 512
#: bytes); keyring hands it the secret as UTF-16, two bytes a character for a key.
WINDOWS_MAX_SECRET_BYTES = 2560
#: An entry cfakey never writes, read once to find out whether the keyring answers.
PROBE_ENTRY = "cfakey-probe"
#: In the data directory: the home's keyring id, then ``settled`` once the entries of the
#: shared service ``cfakey`` (before homes had their own) have been moved.
NAMESPACE_FILE = "keyring-namespace"
SETTLED_MARK = "settled"

#: How to ask for the fallback kind (the encrypted file) for one command or a script.
USE_FALLBACK = f"option --store {FALLBACK_KIND} ou variable CFAKEY_STORE={FALLBACK_KIND}."
FILE_STORE_HINT = (
    f"Sans trousseau utilisable, un fichier chiffré par mot de passe peut servir : {USE_FALLBACK}"
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
    #: The backends a chainer would write to, best first (empty for any other backend).
    chained: tuple[str, ...] = ()
    #: The backend itself, when it may hold keys: what :class:`KeyringStore` uses, so that
    #: a command detects the keyring once (each detection opens D-Bus connections).
    instance: KeyringBackend | None = field(default=None, repr=False, compare=False)
    #: Why the backend could not be detected, to raise as it is (message and hint).
    error: StoreUnavailableError | None = field(default=None, repr=False, compare=False)

    @property
    def rejected(self) -> tuple[BackendCandidate, ...]:
        """The backends keyring ruled out, each with its reason."""
        return tuple(candidate for candidate in self.candidates if candidate.reason is not None)


def backend_name(backend: KeyringBackend | type[KeyringBackend]) -> str:
    """The dotted name of a backend class, as ``PYTHON_KEYRING_BACKEND`` spells it."""
    cls = backend if isinstance(backend, type) else type(backend)
    return f"{cls.__module__}.{cls.__qualname__}"


#: What people read for a backend class name (``doctor --json`` keeps the class name).
_BACKEND_LABELS = {
    SECRET_SERVICE_BACKEND: "Secret Service (GNOME Trousseau, KWallet…)",
    "keyring.backends.libsecret.Keyring": "Secret Service par libsecret (GNOME Trousseau…)",
    "keyring.backends.kwallet.DBusKeyring": "KWallet (KDE)",
    "keyring.backends.kwallet.DBusKeyringKWallet4": "KWallet 4 (KDE)",
    "keyring.backends.macOS.Keyring": "Trousseau d'accès de macOS",
    WINDOWS_BACKEND: "Gestionnaire d'identification de Windows",
    FAIL_BACKEND: "aucun trousseau utilisable",
    NULL_BACKEND: "trousseau vide de keyring, qui n'enregistre rien",
    CHAINER_BACKEND: "chaîne de trousseaux de keyring",
}


def backend_label(name: str) -> str:
    """A backend as people read it: « KWallet (KDE) », never ``keyring.backends.…``."""
    if name in _BACKEND_LABELS:
        return _BACKEND_LABELS[name]
    package, _, cls = name.rpartition(".")
    parts = package.split(".")
    origin = ".".join(parts[:2] if len(parts) > 2 else parts[:1])  # keyrings.alt, a plugin
    kind = "trousseau en clair" if "plaintext" in name.lower() else "trousseau complémentaire"
    return f"{kind} « {cls} » ({origin})"


_NOT_KEYRINGS = {
    FAIL_BACKEND: "keyring n'a trouvé aucun trousseau utilisable",
    NULL_BACKEND: "keyring est réglé sur un trousseau vide, qui n'enregistre rien",
}


def refusal(name: str, chained: tuple[str, ...] = ()) -> str | None:
    """Why cfakey will not keep keys in this backend, or ``None`` if it may.

    ``chained``: for keyring's chainer, the backends it would write to, each of which
    must be safe.
    """
    if name in _NOT_KEYRINGS:
        return _NOT_KEYRINGS[name]
    if name == CHAINER_BACKEND:
        return _chain_refusal(chained)
    if "plaintext" in name.lower():
        return "ce trousseau enregistre les secrets en clair ou en base64, sans chiffrement"
    if name not in SAFE_BACKENDS:
        return (
            "ce trousseau n'est pas un des trousseaux chiffrés des systèmes que cfakey "
            "accepte (rien ne garantit qu'il chiffre les secrets)"
        )
    return None


def _chain_refusal(chained: tuple[str, ...]) -> str | None:
    """A chain is as safe as its least safe member: the chainer writes to whichever answers."""
    if not chained:
        return "keyring enchaîne des trousseaux, mais aucun n'est disponible"
    reasons = (refusal(member) for member in chained)
    reason = next((reason for reason in reasons if reason is not None), None)
    return (
        None
        if reason is None
        else f"keyring enchaîne {', '.join(map(backend_label, chained))}, et {reason}"
    )


#: keyring's (and its plugins') English reasons, by their exact text, in French.
_KNOWN_REASONS: dict[str, str] = {
    "libsecret required": "la bibliothèque libsecret n'est pas installée (PyGObject)",
    "Can't open a session to the secret service": (
        "impossible d'ouvrir une session du Secret Service"
    ),
    "SecretStorage 3.2 or newer required": "SecretStorage 3.2 ou plus récent est requis",
    "JSON implementation such as simplejson required.": "aucun module JSON n'est disponible",
    "python-dbus not installed": "le module dbus n'est pas installé",
    "macOS required": "ne fonctionne que sous macOS",
    "Security API unavailable": "l'API Security de macOS n'est pas disponible",
    "Requires Windows and pywin32": "ne fonctionne que sous Windows, avec pywin32",
}
#: Reasons that start with a known English phrase, then give details in English.
_KNOWN_PREFIXES: tuple[tuple[str, str], ...] = (
    ("Failed to create the collection", "la collection du trousseau n'a pas pu être créée"),
    ("Failed to open keyring", "le trousseau n'a pas pu être ouvert"),
    ("Failed to unlock", "le déverrouillage a échoué"),
    ("Unable to initialize SecretService", "le Secret Service n'a pas pu démarrer (pas de D-Bus)"),
)


def keyring_reason(error: BaseException) -> str:
    """Why keyring or a backend failed, in French: its English sentence is never shown.

    Known reasons come from a table; « X required » and « Requires X » name the missing
    module; anything else is named by its exception type only.
    """
    import re  # only on an error

    text = str(error).strip()
    if text in _KNOWN_REASONS:
        return _KNOWN_REASONS[text]
    if isinstance(error, ImportError) and error.name:
        return f"le module {error.name} n'est pas installé"
    missing = re.fullmatch(r"(?:Requires (\S+)|(\S+?)(?: module)? required)", text)
    if missing is not None:
        module = (missing[1] or missing[2]).split("/")[0]
        return f"le module {module} n'est pas installé"
    for start, french in _KNOWN_PREFIXES:
        if text.startswith(start):
            dismissed = " (invite refusée)" if "dismissed" in text.lower() else ""
            return french + dismissed
    return "keyring l'écarte pour une raison que cfakey ne sait pas traduire"


def _priority(cls: type[KeyringBackend]) -> tuple[float | None, str | None]:
    """A backend class's priority, or the reason it gave for not being usable here."""
    try:
        return float(cls.priority), None
    except Exception as error:  # noqa: BLE001 - backends raise what they like; the reason is shown
        return None, keyring_reason(error)


def _backend_classes() -> list[tuple[type[KeyringBackend], BackendCandidate]]:
    """Every backend class keyring knows of (plugins included), best first, with its reason."""
    from keyring import backend as keyring_backend
    from keyring.backends import chainer

    # Loads the plugins' entry points (once); keyring's own viability cache is not used,
    # since a Secret Service may start or stop while a process lives.
    keyring_backend.get_all_keyring()
    found = []
    for cls in keyring_backend.KeyringBackend._classes:  # keyring's registry of backends
        if issubclass(cls, chainer.ChainerBackend):
            continue
        priority, reason = _priority(cls)
        name = backend_name(cls)
        if reason is None and name != FAIL_BACKEND:
            reason = refusal(name)
        found.append((cls, BackendCandidate(name, priority, reason)))
    return sorted(
        found, key=lambda pair: (pair[1].priority is None, -(pair[1].priority or 0.0), pair[1].name)
    )


def keyring_config_file() -> Path:
    """keyring's own configuration file (``keyringrc.cfg``), where a backend can be forced."""
    from keyring.util import platform_

    return Path(platform_.config_root()) / "keyringrc.cfg"


def _chained(candidates: tuple[BackendCandidate, ...]) -> tuple[str, ...]:
    """The backends keyring's chainer writes to, best first: every one with priority > 0."""
    return tuple(c.name for c in candidates if c.priority is not None and c.priority > 0)


def detect_backend(
    classes: list[tuple[type[KeyringBackend], BackendCandidate]] | None = None,
) -> tuple[KeyringBackend, str]:
    """The backend to use now, and how it was chosen (French).

    Same order as keyring itself: ``PYTHON_KEYRING_BACKEND``, then ``keyringrc.cfg``,
    then the highest priority, except that detection skips the backends cfakey refuses
    and never builds a chain: it takes the best safe backend, which is where keyring's
    chainer would write. A configured backend that cannot load is a French error.
    ``classes``: :func:`_backend_classes`, when the caller already has it.
    """
    from keyring import core

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
    for cls, candidate in _backend_classes() if classes is None else classes:
        if candidate.name == FAIL_BACKEND:
            break
        if candidate.priority is None or candidate.reason is not None:
            continue  # not available here, or refused by cfakey (plain text…)
        try:
            return cls(), "priorité la plus haute parmi les trousseaux sûrs disponibles"
        except TypeError:  # needs constructor arguments: keyring skips those too
            continue
    from keyring.backends import fail

    fallback: type[KeyringBackend] = fail.Keyring
    return fallback(), "aucun trousseau disponible"


def _unusable(which: str, error: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"{which} est inutilisable : {keyring_reason(error)}.", hint=FILE_STORE_HINT
    )


def probe_keyring(*, access: bool = True) -> KeyringProbe:
    """Whether the OS keyring can hold cfakey's keys now, and why not.

    With ``access``, one read is made through the chosen backend, which is how a locked
    collection or a dismissed unlock prompt shows up.
    """
    classes = _backend_classes()
    candidates = tuple(candidate for _, candidate in classes)
    try:
        backend, chosen_by = detect_backend(classes)
    except StoreUnavailableError as error:
        return KeyringProbe(
            "?",
            None,
            "configuration",
            usable=False,
            reason=error.message,
            candidates=candidates,
            error=error,
        )
    name = backend_name(backend)
    # The chainer's own priority would detect every backend again: it is not shown.
    priority = next((c.priority for c in candidates if c.name == name), None)
    chained = _chained(candidates) if name == CHAINER_BACKEND else ()
    reason = refusal(name, chained)
    instance = backend if reason is None else None
    if reason is None and access:
        try:
            _translated(name, lambda: backend.get_password(SERVICE_NAME, PROBE_ENTRY))
        except StoreUnavailableError as error:
            reason = error.message
    return KeyringProbe(
        name,
        priority,
        chosen_by,
        usable=reason is None,
        reason=reason,
        candidates=candidates,
        chained=chained,
        instance=instance,
    )


def _translated(name: str, operation: Callable[[], T]) -> T:
    """Run one keyring call, turning whatever it raises into a French error with no secret."""
    from keyring import errors

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
            f"Le trousseau du système ({name}) n'a pas pu être ouvert : {keyring_reason(error)}.",
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


def _namespace_lines(data_dir: Path) -> list[str]:
    try:
        return (data_dir / NAMESPACE_FILE).read_text(encoding="ascii").split()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise StoreUnavailableError(
            f"L'identifiant de trousseau de ce dossier cfakey ({data_dir / NAMESPACE_FILE}) "
            f"est illisible ({type(error).__name__}).",
            hint="Restaurez ce fichier depuis une sauvegarde : sans lui, les clés de ce "
            "dossier dans le trousseau ne sont plus retrouvées.",
        ) from None


def _write_namespace(data_dir: Path, lines: list[str], *, replace: bool) -> None:
    """Write the namespace file in one step; without ``replace``, never over another's."""
    from cfakey.paths import ensure_private_dir

    ensure_private_dir(data_dir)
    draft = data_dir / f".{NAMESPACE_FILE}.{os.getpid()}.{secrets.token_hex(4)}"
    draft.write_text("\n".join(lines) + "\n", encoding="ascii")
    draft.chmod(0o600)
    try:
        if replace:
            draft.replace(data_dir / NAMESPACE_FILE)
        else:
            with suppress(FileExistsError):  # another process made it first: theirs stays
                (data_dir / NAMESPACE_FILE).hardlink_to(draft)
    finally:
        draft.unlink(missing_ok=True)


def home_service(data_dir: Path) -> str:
    """The keyring service of the cfakey home whose data is in ``data_dir``: ``cfakey/<id>``.

    The id is random, made once and kept in the data directory beside the metadata it
    goes with; two processes creating it at once end up with the same one.
    """
    lines = _namespace_lines(data_dir)
    if not lines:
        _write_namespace(data_dir, [secrets.token_hex(8)], replace=False)
        lines = _namespace_lines(data_dir)
    return f"{SERVICE_NAME}/{lines[0]}"


class KeyringStore(KeyStore):
    """Secrets in the OS keyring: service ``cfakey/<home id>``, user ``<SIRET>/<opco id>``.

    The backend is either given, or taken from ``probe`` (the command's one detection,
    see :meth:`cfakey.context.AppContext.keyring_probe`), or detected on first use.
    ``home``: the data directory whose service to use (``None``: the shared service
    ``cfakey`` of earlier versions, for tests of the backend alone).
    """

    kind = "keyring"
    # can_list stays False: only the Secret Service enumerates, and only as a bonus.

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Self:
        return cls(probe=settings.keyring_probe, home=settings.paths.data_dir)

    def __init__(
        self,
        backend: KeyringBackend | None = None,
        *,
        probe: Callable[[], KeyringProbe] | None = None,
        home: Path | None = None,
    ) -> None:
        self._backend = backend
        self._probe = probe
        self._home = home
        self._service = SERVICE_NAME if home is None else None
        self._chosen_by = "fourni par l'appelant" if backend is not None else ""
        self._priority: float | None = None
        self._chained: tuple[str, ...] = ()

    @property
    def backend(self) -> KeyringBackend:
        """The keyring backend in use, detected on first use; refused if it cannot hold keys."""
        if self._backend is None:
            self._backend = self._detect()
        reason = refusal(backend_name(self._backend), self._chained)
        if reason is not None:
            raise StoreUnavailableError(
                f"Le trousseau du système est inutilisable : {reason}.", hint=FILE_STORE_HINT
            )
        return self._backend

    def _detect(self) -> KeyringBackend:
        probe = self._probe() if self._probe is not None else probe_keyring(access=False)
        if probe.error is not None:
            raise probe.error
        if probe.instance is None:
            raise StoreUnavailableError(
                f"Le trousseau du système est inutilisable : {probe.reason}.", hint=FILE_STORE_HINT
            )
        self._chosen_by, self._priority, self._chained = (
            probe.chosen_by,
            probe.priority,
            probe.chained,
        )
        return probe.instance

    @property
    def service(self) -> str:
        """The keyring service this store's entries are under (made on first use)."""
        if self._service is None:
            assert self._home is not None  # noqa: S101 - set together in __init__
            self._service = home_service(self._home)
        return self._service

    @property
    def needs_settling(self) -> bool:
        """Entries of the shared service ``cfakey`` may still have to be moved to this home's."""
        return self._home is not None and SETTLED_MARK not in _namespace_lines(self._home)

    def settle(self, expected: Mapping[str, str | None]) -> list[str]:
        """Move this home's entries from the shared service ``cfakey`` to its own; the moved.

        ``expected``: each entry this home describes, with its recorded fingerprint
        (``None``: no fingerprint to compare, an OAuth client secret). A shared entry whose
        fingerprint differs belongs to another home and stays. Each entry is written,
        read back, and only then deleted from the shared service, so an interruption
        leaves it in one place or both, never nowhere; a rerun ends the move. An OAuth
        client secret is copied, not deleted: other homes of the same vendor may use it.
        """
        if self._home is None:
            return []
        backend, moved = self.backend, []
        shared = KeyringStore(backend)  # the service of earlier versions
        for entry, wanted in expected.items():
            old = shared.get(entry)
            if old is None or (wanted is not None and fingerprint(old) != wanted):
                continue
            if self.get(entry) is None:
                self.put(entry, old)
            if self.get(entry) != old:
                continue  # the home already holds a newer key: the shared one stays
            if wanted is not None:
                shared.delete(entry)
            moved.append(entry)
        service_id = self.service.split("/", 1)[1]
        _write_namespace(self._home, [service_id, SETTLED_MARK], replace=True)
        return moved

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
        priority = self._priority if self._priority is not None else _priority(type(backend))[0]
        shown = f", priorité {priority:g}" if priority is not None else ""
        return f"trousseau du système ({backend_name(backend)}{shown}), service « {self.service} »"

    def check_secret(self, secret: str) -> None:
        """Windows Credential Manager holds at most 2,560 bytes a secret: say so before writing."""
        if WINDOWS_BACKEND not in (self.backend_name, *self._chained):
            return
        size = len(secret.encode("utf-16-le"))
        if size > WINDOWS_MAX_SECRET_BYTES:
            raise StoreUnavailableError(
                f"Cette clé occuperait {size} octets dans le Gestionnaire d'identification de "
                f"Windows, qui n'en accepte pas plus de {WINDOWS_MAX_SECRET_BYTES} par secret "
                f"({WINDOWS_MAX_SECRET_BYTES // 2} caractères) : elle n'a pas été enregistrée.",
                hint=f"Le fichier chiffré n'a pas cette limite : {USE_FALLBACK}",
            )

    def put(self, entry: str, secret: str) -> None:
        self.check_secret(secret)
        backend, service = self.backend, self.service
        _translated(backend_name(backend), lambda: backend.set_password(service, entry, secret))

    def get(self, entry: str) -> str | None:
        backend, service = self.backend, self.service
        return _translated(backend_name(backend), lambda: backend.get_password(service, entry))

    def delete(self, entry: str) -> bool:
        from keyring.errors import PasswordDeleteError

        backend, service = self.backend, self.service

        def delete() -> bool:
            try:
                backend.delete_password(service, entry)
            except PasswordDeleteError:
                # Backends raise this for a missing entry, and some for a refusal too:
                # only a read tells the two apart.
                if backend.get_password(service, entry) is None:
                    return False
                raise
            return True

        return _translated(backend_name(backend), delete)

    def entries(self) -> list[str] | None:
        """The Secret Service can list cfakey's entries by attribute; other keyrings cannot."""
        backend = self.backend
        if backend_name(backend) != SECRET_SERVICE_BACKEND:
            return None
        service = self.service
        return _translated(backend_name(backend), lambda: _secret_service_entries(backend, service))


def _secret_service_entries(backend: Any, service: str) -> list[str]:
    """Names of the items of ``service`` in the Secret Service collection in use."""
    from contextlib import closing

    scheme = backend.schemes[backend.scheme]
    collection = backend.get_preferred_collection()
    with closing(collection.connection):
        names = {
            item.get_attributes().get(scheme["username"], "")
            for item in collection.search_items(backend._query(service))
        }
    return sorted(name for name in names if name and name != PROBE_ENTRY)
