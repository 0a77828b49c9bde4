"""The team store: secrets in an OpenBao (or HashiCorp Vault) KV version 2 engine, via hvac.

Every teammate and every server of a vendor reads and writes the same engine. A CFA's key
is at ``<mount>/data/<prefix>/keys/<SIRET>/<opco>``, a vendor's OAuth client secret at
``<mount>/data/<prefix>/oauth-client/<opco>``, each as the single field ``secret``.
Every write is a check-and-set against the version this store object last saw (read now
if it has seen none): a teammate's write in between is refused, never overwritten
(:class:`~cfakey.errors.ConcurrentChangeError`, exit 6). Removing a key removes all its
versions and its metadata.

The token comes from ``BAO_TOKEN``, ``VAULT_TOKEN``, an AppRole login (``role_id`` in the
settings, ``secret_id`` in ``CFAKEY_BAO_SECRET_ID`` or typed, hidden, in a terminal) or the
CLI's ``~/.vault-token``, in that order. hvac (and requests) are imported only when a
command reaches the engine. Errors are French and name the URL or the path refused, never
a key or a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, Self
from urllib.parse import urlsplit

from cfakey.errors import (
    ConcurrentChangeError,
    DataCorruptedError,
    StoreUnavailableError,
    StoreUnreachableError,
    UsageError,
)
from cfakey.stores.base import KeyStore, fingerprint
from cfakey.userfiles import read_user_file

if TYPE_CHECKING:
    import hvac

    from cfakey.stores.kinds import SecretPrompt, StoreSettings
    from cfakey.stores.openbao_catalog import OpenBaoCatalog

TOKEN_VARIABLES = ("BAO_TOKEN", "VAULT_TOKEN")
ADDRESS_VARIABLES = ("BAO_ADDR", "VAULT_ADDR")
SECRET_ID_ENV = "CFAKEY_BAO_SECRET_ID"  # noqa: S105 - a variable name
SECRET_ID_QUESTION = "secret_id AppRole : "  # noqa: S105 - the prompt, not a secret
TOKEN_FILE = ".vault-token"  # noqa: S105 - the CLI's token file name, not a token
#: The single field of each KV entry.
FIELD = "secret"
OAUTH_FOLDER = "oauth-client"
KEYS_FOLDER = "keys"
DEFAULT_MOUNT = "secret"
DEFAULT_PREFIX = "cfakey"
#: Seconds before a call to the engine is given up (then: « injoignable », exit 4).
TIMEOUT = 15
_SEGMENT = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}")
_ROLE_ID = re.compile(r"[!-~]{1,256}")
_USE = "cfakey store use openbao"


def checked_path(value: str, what: str) -> str:
    """A mount or prefix: names of letters, digits, ``-``, ``_``, ``.`` joined by ``/``.

    Refuses spaces, ``..``, empty names (exit 2), without quoting the value.
    """
    path = value.strip().strip("/")
    if not path or not all(_SEGMENT.fullmatch(part) for part in path.split("/")):
        raise UsageError(
            f"{what} invalide pour le coffre OpenBao : des noms séparés par « / », faits de "
            "lettres, de chiffres, de « - », « _ » ou « . », sans espace ni « .. », sont attendus.",
            hint=f"Par exemple : {_USE} --mount {DEFAULT_MOUNT} --prefix {DEFAULT_PREFIX}",
        )
    return path


def checked_url(value: str) -> str:
    """The engine's address: ``http(s)://host[:port]``, no credentials, no query (exit 2)."""
    url = value.strip().rstrip("/")
    parts = urlsplit(url)
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.query
        or parts.fragment
        or any(character.isspace() for character in url)
    ):
        raise UsageError(
            "Adresse du coffre OpenBao invalide : une adresse http:// ou https:// sans "
            "identifiants est attendue.",
            hint=f"Par exemple : {_USE} --url https://bao.exemple.fr:8200",
        )
    return url


def _checked_role_id(value: str) -> str:
    role_id = value.strip()
    if not _ROLE_ID.fullmatch(role_id):
        raise UsageError(
            "Identifiant de rôle AppRole invalide : une suite de caractères sans espace est "
            "attendue."
        )
    return role_id


def _checked_ca_bundle(value: str) -> str:
    path = Path(value).expanduser().absolute()
    read_user_file(path, "Fichier d'autorité de certification")
    return str(path)


_CHECKS = {
    "url": checked_url,
    "mount": lambda value: checked_path(value, "Point de montage"),
    "prefix": lambda value: checked_path(value, "Préfixe"),
    "ca_bundle": _checked_ca_bundle,
    "role_id": _checked_role_id,
}


@dataclass(frozen=True)
class BaoLocation:
    """Where the secrets are: the engine's address, the KV v2 mount and the prefix in it."""

    url: str
    mount: str = DEFAULT_MOUNT
    prefix: str = DEFAULT_PREFIX
    ca_bundle: str | None = None
    role_id: str | None = None

    def path_of(self, entry: str) -> str:
        """The path, inside the mount, of a store entry (``<SIRET>/<opco>``, ``oauth-client/…``)."""
        folder = "" if entry.startswith(f"{OAUTH_FOLDER}/") else f"{KEYS_FOLDER}/"
        checked_path(entry, "Nom d'entrée")
        return f"{self.prefix}/{folder}{entry}"

    def entry_of(self, path: str) -> str:
        """The entry name of a path inside the mount (the inverse of :meth:`path_of`)."""
        relative = path.removeprefix(f"{self.prefix}/")
        return relative.removeprefix(f"{KEYS_FOLDER}/")


def _no_secret_id() -> StoreUnavailableError:
    """AppRole configured, no secret_id in the environment, no terminal to ask it."""
    return StoreUnavailableError(
        f"L'AppRole est configuré pour le coffre OpenBao, mais son secret_id manque : la "
        f"variable {SECRET_ID_ENV} est vide et aucun terminal ne permet de le demander.",
        hint=f"Donnez le secret_id dans {SECRET_ID_ENV} (serveur, CI), ou un jeton dans BAO_TOKEN.",
    )


class OpenBaoStore(KeyStore):
    """Secrets in a KV version 2 engine shared by a team (OpenBao, HashiCorp Vault)."""

    kind = "openbao"
    can_list = True
    shared = True
    setting_names: ClassVar[tuple[str, ...]] = tuple(_CHECKS)
    #: A token opens every key its policy covers, not only those ``exec`` hands out.
    unlocking_variables: ClassVar[tuple[str, ...]] = (*TOKEN_VARIABLES, SECRET_ID_ENV)

    def __init__(
        self,
        location: BaoLocation,
        env: Mapping[str, str],
        secret_prompt: SecretPrompt | None = None,
    ) -> None:
        self.where = location
        self._env = env
        #: Asks the AppRole secret_id when the environment has none (a terminal's prompt).
        self._secret_prompt = secret_prompt
        self._client: hvac.Client | None = None
        #: The version of each path this object last read or wrote (0: no entry), for CAS.
        self._versions: dict[str, int] = {}
        self._catalog: OpenBaoCatalog | None = None

    @classmethod
    def checked_settings(cls, values: Mapping[str, str]) -> dict[str, str]:
        """``store use``: the settings normalised, or a French usage error (exit 2)."""
        checked = {name: cls.checked_setting(name, value) for name, value in values.items()}
        if "url" not in checked:
            raise UsageError(
                "L'adresse du coffre OpenBao est nécessaire.",
                hint=f"{_USE} --url https://bao.exemple.fr:8200",
            )
        return checked

    @classmethod
    def checked_setting(cls, name: str, value: str) -> str:
        """A mount or prefix without ``..`` or spaces, a URL without credentials, etc."""
        return _CHECKS[name](value)

    @classmethod
    def from_settings(cls, settings: StoreSettings) -> Self:
        values = {
            name: str(value)
            for name in _CHECKS
            if (value := settings.setting(f"{cls.kind}.{name}")) not in (None, "")
        }
        if "url" not in values:
            address = next((settings.env[v] for v in ADDRESS_VARIABLES if settings.env.get(v)), "")
            if address:
                values["url"] = address
        checked = cls.checked_settings(values)
        return cls(BaoLocation(**checked), settings.env, settings.secret_prompt)

    def describe(self) -> str:
        where = self.where
        return (
            f"coffre OpenBao / Vault {where.url}, point de montage {where.mount}/, "
            f"préfixe {where.prefix}/"
        )

    def location(self) -> str:
        return f"{self.where.url} ({self.where.mount}/{self.where.prefix})"

    # Reaching the engine.

    def _engine(self) -> hvac.Client:
        """The client, logged in and with the mount checked, on first use."""
        if self._client is None:
            import hvac

            where = self.where
            client = hvac.Client(url=where.url, verify=where.ca_bundle or True, timeout=TIMEOUT)
            with self._engine_errors(f"{where.mount}/"):
                client.token = self._token(client)
                self._check_mount(client)
            self._client = client
        return self._client

    def _token(self, client: hvac.Client) -> str:
        """From the environment, an AppRole login, or the CLI's token file (never logged)."""
        for variable in TOKEN_VARIABLES:
            if self._env.get(variable):
                return self._env[variable].strip()
        if self.where.role_id:
            return self._approle_login(client, self.where.role_id)
        home = self._env.get("HOME")
        token_file = (Path(home) if home else Path.home()) / TOKEN_FILE
        try:
            token = token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            token = ""
        if token:
            return token
        raise StoreUnavailableError(
            "Aucun jeton pour le coffre OpenBao : ni BAO_TOKEN, ni VAULT_TOKEN, ni fichier "
            "~/.vault-token, ni AppRole configuré.",
            hint=(
                f"bao login, ou la variable BAO_TOKEN ; pour un serveur : {_USE} "
                f"--role-id ID et la variable {SECRET_ID_ENV}."
            ),
        )

    def _approle_login(self, client: hvac.Client, role_id: str) -> str:
        import hvac.exceptions

        secret_id = self._env.get(SECRET_ID_ENV, "").strip() or self._typed_secret_id()
        try:
            answer = client.auth.approle.login(role_id=role_id, secret_id=secret_id)
        except (
            hvac.exceptions.InvalidRequest,  # wrong or expired secret_id, unknown role_id
            hvac.exceptions.Forbidden,
            hvac.exceptions.InvalidPath,  # no AppRole method enabled on this engine
        ):
            raise StoreUnavailableError(
                "Le coffre OpenBao refuse la connexion AppRole : role_id ou secret_id "
                "invalide ou expiré.",
                hint=f"Demandez un nouveau secret_id à l'administrateur ({SECRET_ID_ENV}).",
            ) from None
        token: str = answer["auth"]["client_token"]
        return token

    def _typed_secret_id(self) -> str:
        """The secret_id typed without echo in a terminal; without one, a French error."""
        if self._secret_prompt is None:
            raise _no_secret_id()
        secret_id = self._secret_prompt(SECRET_ID_QUESTION, on_end=_no_secret_id).strip()
        if not secret_id:
            raise StoreUnavailableError(
                "Aucun secret_id AppRole tapé : pas de connexion au coffre OpenBao, rien n'a "
                "été fait.",
                hint=f"Pour un serveur ou une CI : la variable {SECRET_ID_ENV}.",
            )
        return secret_id

    def _check_mount(self, client: hvac.Client) -> None:
        """Refuse a KV version 1 (or non-KV) mount before anything is written to it."""
        import hvac.exceptions

        mount = self.where.mount
        try:
            answer = client.adapter.get(f"/v1/sys/internal/ui/mounts/{mount}")
        except (hvac.exceptions.Forbidden, hvac.exceptions.InvalidPath):
            return  # no mount there, or no right to ask: the first call will say which
        data = answer.get("data") or {}
        version = str((data.get("options") or {}).get("version", "1"))
        if data.get("type") in ("kv", "generic") and version == "2":
            return
        raise UsageError(
            f"Le point de montage {mount}/ du coffre OpenBao n'est pas un moteur KV version 2 "
            "(versions et check-and-set) : cfakey ne peut pas y ranger de clés.",
            hint=(
                f"Administrateur : bao kv enable-versioning {mount}/ ; ou un autre point "
                f"de montage : {_USE} --mount NOM"
            ),
        )

    @contextmanager
    def _engine_errors(self, api_path: str, entry: str | None = None) -> Iterator[None]:
        """Turn hvac's and requests' errors into French ones; ``InvalidPath`` goes through."""
        import hvac.exceptions
        import requests

        try:
            yield
        except requests.exceptions.SSLError:
            self._fail_tls()
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout):
            self._fail_unreachable()
        except hvac.exceptions.VaultDown:
            self._fail_sealed()
        except (hvac.exceptions.Forbidden, hvac.exceptions.Unauthorized):
            self._fail_forbidden(api_path)
        except hvac.exceptions.InvalidPath as error:
            if any("no handler for route" in str(text) for text in error.errors or ()):
                self._fail_no_mount()
            raise
        except hvac.exceptions.InvalidRequest as error:
            if entry is not None and any("check-and-set" in str(t) for t in error.errors or ()):
                raise ConcurrentChangeError(
                    f"La clé {entry} a changé entre-temps dans le coffre partagé (écrite par "
                    "quelqu'un d'autre depuis sa lecture) : rien n'a été écrit.",
                    hint="Relancez la commande : elle partira de la version actuelle.",
                ) from None
            self._fail_refused(api_path, 400)
        except hvac.exceptions.VaultError as error:
            self._fail_refused(api_path, getattr(error, "status_code", None))

    def _fail_tls(self) -> NoReturn:
        raise StoreUnavailableError(
            f"Connexion TLS impossible avec le coffre OpenBao {self.where.url} : son "
            "certificat n'est pas reconnu.",
            hint=f"Donnez l'autorité de certification du serveur : {_USE} --url "
            f"{self.where.url} --ca-bundle FICHIER.pem",
        ) from None

    def _fail_unreachable(self) -> NoReturn:
        raise StoreUnreachableError(
            f"Le coffre OpenBao {self.where.url} est injoignable (connexion refusée ou "
            "délai dépassé).",
            hint=f"Vérifiez l'adresse et le réseau ; pour la changer : {_USE} --url URL",
        ) from None

    def _fail_sealed(self) -> NoReturn:
        raise StoreUnavailableError(
            f"Le coffre OpenBao {self.where.url} est scellé (503) : il ne rend aucun secret "
            "tant qu'il n'a pas été descellé.",
            hint="Un administrateur du coffre doit le desceller (bao operator unseal).",
        ) from None

    def _fail_forbidden(self, api_path: str) -> NoReturn:
        raise StoreUnavailableError(
            f"Le coffre OpenBao refuse l'accès à {api_path} (403) : jeton expiré, révoqué "
            "ou sans droit sur ce chemin.",
            hint="Reconnectez-vous (bao login, BAO_TOKEN) ou demandez à l'administrateur "
            "une politique qui couvre ce chemin.",
        ) from None

    def _fail_no_mount(self) -> NoReturn:
        mount = self.where.mount
        raise UsageError(
            f"Aucun moteur de secrets n'est monté à {mount}/ sur le coffre OpenBao "
            f"{self.where.url}.",
            hint=(
                f"Choisissez le bon point de montage : {_USE} --mount NOM ; ou, "
                f"administrateur : bao secrets enable -path={mount} kv-v2"
            ),
        ) from None

    def _fail_refused(self, api_path: str, status: int | None) -> NoReturn:
        raise StoreUnavailableError(
            f"Le coffre OpenBao a refusé la demande sur {api_path} (code HTTP {status}).",
        ) from None

    # The KeyStore interface.

    def get(self, entry: str) -> str | None:
        import hvac.exceptions

        path = self.where.path_of(entry)
        client = self._engine()
        try:
            with self._engine_errors(f"{self.where.mount}/data/{path}"):
                answer = client.secrets.kv.v2.read_secret_version(
                    path=path, mount_point=self.where.mount, raise_on_deleted_version=False
                )
        except hvac.exceptions.InvalidPath:
            self._versions[path] = 0
            return None
        return self._secret_of(entry, path, answer)

    def _secret_of(self, entry: str, path: str, answer: dict[str, Any]) -> str | None:
        """The secret of a read answer; records its version for the next write's CAS."""
        body = answer.get("data") or {}
        self._versions[path] = int((body.get("metadata") or {}).get("version") or 0)
        data = body.get("data")
        if data is None:  # the latest version was deleted (bao kv delete): no secret now
            return None
        secret = data.get(FIELD) if isinstance(data, dict) else None
        if not isinstance(secret, str):
            raise DataCorruptedError(
                f"L'entrée {entry} du coffre OpenBao n'a pas la forme qu'écrit cfakey "
                f"(un champ « {FIELD} »)."
            )
        return secret

    def _current_version(self, entry: str, path: str) -> int:
        """The version a write must name: the one last seen, else the engine's (0: none).

        Read from the data, as a writer's policy grants, not from the metadata.
        """
        if path not in self._versions:
            self.get(entry)
        return self._versions[path]

    def put(self, entry: str, secret: str) -> None:
        path = self.where.path_of(entry)
        version = self._current_version(entry, path)
        client = self._engine()
        with self._engine_errors(f"{self.where.mount}/data/{path}", entry):
            answer = client.secrets.kv.v2.create_or_update_secret(
                path=path, secret={FIELD: secret}, cas=version, mount_point=self.where.mount
            )
        self._versions[path] = int(answer["data"]["version"])

    def delete(self, entry: str) -> bool:
        path = self.where.path_of(entry)
        seen = self._versions.get(path)
        self._versions.pop(path, None)
        current = self._current_version(entry, path)  # read now, whatever was seen
        if current == 0:
            return False
        if seen is not None and seen != current:
            raise ConcurrentChangeError(
                f"La clé {entry} a changé entre-temps dans le coffre partagé (écrite par "
                "quelqu'un d'autre depuis sa lecture) : elle n'a pas été supprimée.",
                hint="Relancez la commande : elle partira de la version actuelle.",
            )
        client = self._engine()
        with self._engine_errors(f"{self.where.mount}/metadata/{path}", entry):
            client.secrets.kv.v2.delete_metadata_and_all_versions(
                path=path, mount_point=self.where.mount
            )
        self._versions[path] = 0
        return True

    def entries(self) -> list[str]:
        prefix = self.where.prefix
        found = self._walk(f"{prefix}/{KEYS_FOLDER}") + self._walk(f"{prefix}/{OAUTH_FOLDER}")
        return sorted(self.where.entry_of(path) for path in found)

    def _walk(self, folder: str) -> list[str]:
        """Every secret's path below ``folder`` (LIST on the metadata, folder by folder)."""
        import hvac.exceptions

        client = self._engine()
        try:
            with self._engine_errors(f"{self.where.mount}/metadata/{folder}/"):
                answer = client.secrets.kv.v2.list_secrets(
                    path=folder, mount_point=self.where.mount
                )
        except hvac.exceptions.InvalidPath:
            return []
        paths: list[str] = []
        for name in answer["data"]["keys"]:
            if name.endswith("/"):
                paths += self._walk(f"{folder}/{name.rstrip('/')}")
            else:
                paths.append(f"{folder}/{name}")
        return paths

    # The team catalog (stores/openbao_catalog.py) shares this client and its errors.

    def client(self) -> hvac.Client:
        """The logged-in client (for the team catalog)."""
        return self._engine()

    def engine_errors(self, api_path: str) -> AbstractContextManager[None]:
        """French errors for a call on ``api_path`` (for the team catalog)."""
        return self._engine_errors(api_path)

    @property
    def reader_id(self) -> str:
        """Who reads the engine, never a secret: the fingerprint of the token in use, or
        of the AppRole ``role_id`` (its tokens change at each login, its rights do not)."""
        if self.where.role_id and not any(self._env.get(v) for v in TOKEN_VARIABLES):
            return f"approle:{fingerprint(self.where.role_id)}"
        return f"token:{fingerprint(str(self._engine().token))}"

    def version_of(self, entry: str) -> int | None:
        """The version of ``entry`` this object last read or wrote (``None``: not seen)."""
        return self._versions.get(self.where.path_of(entry))

    def catalog(self) -> OpenBaoCatalog:
        from cfakey.stores.openbao_catalog import OpenBaoCatalog

        if self._catalog is None:
            self._catalog = OpenBaoCatalog(self)
        return self._catalog

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.adapter.close()
