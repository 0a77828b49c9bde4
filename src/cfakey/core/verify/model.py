"""What a verification is about and what it finds: outcomes, jobs, settings, verdicts, results."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import Enum
from pathlib import Path
from typing import Any

from cfakey import __version__
from cfakey.core.codes import VerifyOutcome
from cfakey.errors import ExitCode

DEFAULT_EDITEUR = "cfakey"
DEFAULT_LOGICIEL = "cfakey"
#: The software headers sent when the config sets none.
HEADER_DEFAULTS = {"editeur": DEFAULT_EDITEUR, "logiciel": DEFAULT_LOGICIEL, "version": __version__}
#: One exchange (request, then the whole reply) must end within this many ``--timeout``.
DEADLINE_FACTOR = 2


class Outcome(Enum):
    """The class of one verification; the value is the ``--json`` identifier (a contract)."""

    VALID = "valide"
    KEY_REFUSED = "cle_refusee"
    UNSUPPORTED = "non_pris_en_charge"
    UNAVAILABLE = "opco_indisponible"
    RATE_LIMITED = "limite"
    BAD_RESPONSE = "reponse_illisible"
    REDIRECT_REFUSED = "redirection_refusee"
    NO_BASE_URL = "url_absente"
    INVALID_URL = "url_invalide"
    INSECURE_URL = "url_non_securisee"
    OAUTH_MISSING = "oauth_incomplet"
    NO_KEY = "cle_absente"

    @property
    def label(self) -> str:
        """The French name shown to people (the table of :class:`VerifyOutcome`)."""
        return VerifyOutcome.label_of(self.value)

    @property
    def exit_code(self) -> ExitCode:
        """The process exit code this class stands for."""
        return _INFO[self][0]

    @property
    def rank(self) -> int:
        """Urgency: the higher, the sooner the operator must act (0 for ``valide``)."""
        return _INFO[self][1]


_INFO: dict[Outcome, tuple[ExitCode, int]] = {
    Outcome.VALID: (ExitCode.OK, 0),
    Outcome.KEY_REFUSED: (ExitCode.KEY_REFUSED, 100),
    Outcome.NO_KEY: (ExitCode.NOT_FOUND, 90),
    Outcome.OAUTH_MISSING: (ExitCode.USAGE, 85),
    Outcome.NO_BASE_URL: (ExitCode.USAGE, 80),
    Outcome.INVALID_URL: (ExitCode.USAGE, 80),
    Outcome.INSECURE_URL: (ExitCode.USAGE, 80),
    Outcome.REDIRECT_REFUSED: (ExitCode.BAD_RESPONSE, 70),
    Outcome.BAD_RESPONSE: (ExitCode.BAD_RESPONSE, 60),
    Outcome.UNAVAILABLE: (ExitCode.OPCO_UNAVAILABLE, 50),
    Outcome.RATE_LIMITED: (ExitCode.RATE_LIMITED, 40),
    Outcome.UNSUPPORTED: (ExitCode.UNSUPPORTED, 30),
}


@dataclass(frozen=True)
class Verdict:
    """How one verification ends: a class, a French reason, and what the OPCO answered.

    A value, not an exception: :mod:`.classification` returns it; only the HTTP loop
    raises it (wrapped in :class:`Stop`) to leave its nested calls.
    """

    outcome: Outcome
    detail: str
    endpoint: str | None = None
    status: int | None = None
    opco_expiry: date | None = None
    #: ``False``: the key never reached the OPCO's API (no address, no key, no OAuth
    #: client or token): reported, but not a verification of the key.
    sent: bool = True


class Stop(Exception):  # noqa: N818 - a control-flow signal, not an error for the operator
    """Ends one verification with a :class:`Verdict` (raised afresh for every job)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.outcome.value)
        self.verdict = verdict

    @property
    def outcome(self) -> Outcome:
        """The class of the verdict carried."""
        return self.verdict.outcome


@dataclass(frozen=True)
class OAuthClient:
    """A software vendor's OAuth2 client-credentials settings for one OPCO."""

    opco_id: str
    token_url: str
    client_id: str
    scope: str | None
    client_secret: str = field(repr=False)
    #: ``basic``: HTTP Basic (``client_secret_basic``); ``post``: in the form body.
    client_auth: str = "post"


@dataclass(frozen=True)
class VerifyJob:
    """One key to check, with what is needed to reach its OPCO (the secret is never printed)."""

    siret: str
    cfa_name: str
    opco_id: str
    opco_name: str
    base_url: str | None
    url_setting: str
    fingerprint: str | None
    recorded_expiry: datetime | None
    recorded_source: str | None
    secret: str | None = field(repr=False)
    oauth: OAuthClient | None = field(default=None, repr=False)
    oauth_problem: str | None = None
    #: Send the key as ``XAPIKEY`` in ``cfakeyinfo``'s query too (registry or config).
    query_key: bool = False

    @property
    def siren(self) -> str:
        """The legal unit the ``cfakeyinfo`` endpoint asks about."""
        return self.siret[:9]


@dataclass(frozen=True)
class VerifySettings:
    """How to talk to the APIs: the software's headers, time limits, trust, retries."""

    editeur: str = DEFAULT_EDITEUR
    logiciel: str = DEFAULT_LOGICIEL
    version: str = __version__
    timeout: float = 10.0
    concurrency: int = 8
    ca_bundle: Path | None = None
    max_retries: int = 2
    default_retry_wait: float = 1.0
    max_retry_wait: float = 30.0
    max_redirects: int = 3

    @property
    def deadline(self) -> float:
        """The longest one exchange may take, request and whole reply (docs/verify.md)."""
        return DEADLINE_FACTOR * self.timeout


@dataclass(frozen=True)
class VerifyRequest:
    """What the operator asked for: some OPCOs' keys (of one CFA, all the sites of a SIREN,
    or with ``all_keys`` every CFA), or every stored key."""

    opco_id: str | None = None
    cfa_query: str | None = None
    all_keys: bool = False
    api_url: str | None = None
    recette: bool = False
    #: More OPCOs (``--opco``, several allowed), beside ``opco_id``.
    opco_ids: tuple[str, ...] = ()

    @property
    def wanted_opcos(self) -> tuple[str, ...]:
        """The OPCOs asked for, in order, once each (empty: every OPCO)."""
        chosen = ((self.opco_id,) if self.opco_id else ()) + self.opco_ids
        return tuple(dict.fromkeys(chosen))


#: The keys of one ``verify --json`` result: a contract for scripts (tests pin it).
RESULT_JSON_KEYS = (
    "siret",
    "cfa",
    "opco",
    "opco_name",
    "status",
    "label",
    "exit_code",
    "detail",
    "advice",
    "endpoint",
    "http_status",
    "base_url",
    "opco_expiry",
    "recorded_expiry",
    "expiry_changed",
    "checked_at",
    "duration_ms",
    "sent",
)


@dataclass(frozen=True)
class VerifyResult:
    """What one verification found, ready to render, journal and serialise."""

    siret: str
    cfa_name: str
    opco_id: str
    opco_name: str
    outcome: Outcome
    detail: str
    advice: str
    endpoint: str | None
    http_status: int | None
    base_url: str | None
    opco_expiry: date | None
    recorded_expiry: date | None
    expiry_changed: bool
    checked_at: datetime
    duration_ms: int
    #: The key was presented to the OPCO's API: a real verification, journalled and kept.
    sent: bool = True

    @property
    def exit_code(self) -> ExitCode:
        """The exit code of this result alone."""
        return self.outcome.exit_code

    def as_json(self) -> dict[str, Any]:
        """The ``--json`` object of one result: a contract (:data:`RESULT_JSON_KEYS`)."""
        return {
            "siret": self.siret,
            "cfa": self.cfa_name,
            "opco": self.opco_id,
            "opco_name": self.opco_name,
            "status": self.outcome.value,
            "label": self.outcome.label,
            "exit_code": int(self.exit_code),
            "detail": self.detail,
            "advice": self.advice,
            "endpoint": self.endpoint,
            "http_status": self.http_status,
            "base_url": self.base_url,
            "opco_expiry": self.opco_expiry.isoformat() if self.opco_expiry else None,
            "recorded_expiry": self.recorded_expiry.isoformat() if self.recorded_expiry else None,
            "expiry_changed": self.expiry_changed,
            "checked_at": self.checked_at.isoformat(),
            "duration_ms": self.duration_ms,
            "sent": self.sent,
        }


class VerifyInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during a run: the results already received, and how many keys
    were left unchecked. A ``KeyboardInterrupt``, so that any caller still stops (130)."""

    def __init__(self, results: list[VerifyResult], unchecked: int) -> None:
        super().__init__(unchecked)
        self.results = results
        self.unchecked = unchecked
