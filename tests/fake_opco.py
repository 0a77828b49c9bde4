"""A real HTTP server on 127.0.0.1 playing an OPCO's API Convergence, with every fault we test.

The first path segment of a request chooses the behaviour (the *scenario*), so one
server can stand for several OPCOs at once: point ``opco.atlas.api_url`` at
``http://127.0.0.1:PORT/ok/ApiEchangeCFA`` and ``opco.afdas.api_url`` at
``.../forbidden/ApiEchangeCFA``. Every request is recorded (method, path, query,
headers, body) so the tests can check what cfakey sent, and where the key went.

Scenarios (``{base}`` is ``/<scenario>/ApiEchangeCFA``):

- ``ok``: ``cfakeyinfo`` answers success with the date registered for the key in
  ``valid_keys`` (or ``default_date`` when ``accept_any_key``), 403 for another key;
- ``nodate``: success without ``dateFinValidite``;
- ``error-status``: 200 with ``{"status": "error", "comment": ...}``;
- ``unauthorized`` / ``forbidden``: 401 / 403;
- ``fallback-etats``: ``cfakeyinfo`` 404, ``dossiers/etats`` 200;
- ``fallback-status``: ``cfakeyinfo`` 501, ``dossiers/etats`` 404, ``status`` 200;
- ``unsupported``: 404 everywhere;
- ``ratelimit-once``: 429 with ``Retry-After: 1`` the first time, then like ``ok``;
- ``ratelimit-long`` / ``ratelimit-99999``: always 429 with ``Retry-After: 3600`` / ``99999``;
- ``ratelimit-date``: 429 with an HTTP-date ``Retry-After`` in the past, then like ``ok``;
- ``ratelimit-noheader``: always 429 without ``Retry-After``;
- ``e500`` / ``e503``: 500 / 503;
- ``notjson``: 200 with an HTML page;
- ``wrongshape``: 200 with a JSON list; ``wrongstatus``: a JSON object without ``status``;
- ``baddate``: success with ``dateFinValidite: "31/02/2026"``;
- ``slow``: answers after ``slow_delay`` seconds;
- ``redirect-same``: 307 to the same path under ``ok`` (same host);
- ``redirect-other``: 302 to ``https://elsewhere.invalid/...`` (must not be followed);
- ``oauth``: like ``ok`` but 401 without ``Authorization: Bearer <issued token>``;
  tokens come from ``POST /oauth/token`` (client credentials); ``/oauth-html/token``
  answers an HTML page instead, ``/oauth-noexpiry/token`` a token without ``expires_in``,
  and ``/<streamed scenario>/token`` (``drip``, ``gzip-bomb``…) that scenario's fault;
- ``echo``: 403 whose comment quotes the ``X-API-KEY`` and ``Authorization`` it received
  (a careless server: what it says must never reach the operator or the journal);
- ``echo-<form>``: the same, the key re-encoded (``ECHO_FORMS``: percent-encoded, lower
  case, base64, HTML entities, a tab, NUL, NBSP or zero-width space inside);
- ``echo-retry-after``: 429 whose ``Retry-After`` is the key;
- ``retry-after-digit``: always 429 with ``Retry-After: ²`` (a Unicode digit);
- ``retry-after-huge``: always 429 with a 5,000-digit ``Retry-After``;
- ``location-backslash``: 302 to a ``Location`` of backslashes (another host, for a browser);
- ``deep-json``: 200 with 100,000 nested ``[``;
- ``date-year1`` / ``date-9999``: success with ``dateFinValidite`` 0001-01-01 / 9999-12-31;
- ``gzip-bomb``: 200, ``Content-Encoding: gzip``, 100 kB inflating to 100 MB;
- ``endless``: 200 with a chunked body sent as fast as possible (64 MB, "endless" for
  cfakey, whose cap is far lower);
- ``big-body``: 200 with a 10 MB ``Content-Length`` body;
- ``drip``: 200 with a body sent one byte every ``drip_interval`` seconds;
- ``drip-headers``: the status line, then the headers one byte every ``drip_interval``;
- ``query-key``: ``cfakeyinfo`` wants the key as the ``XAPIKEY`` query parameter too
  (``400 VALIDATION_ERROR`` without it, as a gateway documents); ``dossiers/etats`` like
  ``etats-object``;
- ``cfakeyinfo-400``: ``cfakeyinfo`` 400 with an ``errors`` list, ``dossiers/etats`` 200;
- ``etats-object`` / ``etats-list``: ``cfakeyinfo`` 404, ``dossiers/etats`` a page
  ``{"total", "count", "page", "EtatDossierResult"}``, or a one-element list holding it;
- ``error-<field>``: 403 whose body explains itself in ``<field>`` (``description``,
  ``message``, ``error_description``, ``error``, ``errors``); ``error-echo-<field>``:
  the same, quoting the key it received;
- ``oauth-revoked``: like ``oauth``, but the first token issued is refused (401) by the
  API: one renewal must follow; ``oauth-401``: every token refused by the API;
- ``/oauth-basic/token``: issues tokens to HTTP Basic client authentication only
  (``client_secret_basic``), refusing credentials in the form body; every token endpoint
  refuses a scope other than ``required_scope`` when that is set.
"""

from __future__ import annotations

import base64
import functools
import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

#: ``ratelimit-date``: a fixed date in the past (never the wall clock): retry at once.
PAST_RETRY_DATE = "Mon, 01 Jan 2024 08:00:00 GMT"
#: How ``echo-<form>`` re-encodes the key it received.
ECHO_FORMS: dict[str, Any] = {
    "percent": lambda key: quote(key, safe=""),
    "lower": str.lower,
    "base64": lambda key: base64.b64encode(key.encode()).decode(),
    "html": lambda key: "".join(f"&#{ord(char)};" for char in key),
    "tab": lambda key: key[:8] + "\t" + key[8:],
    "nul": lambda key: key[:8] + "\x00" + key[8:],
    "nbsp": lambda key: key[:8] + "\u00a0" + key[8:],
    "zwsp": lambda key: key[:8] + "\u200b" + key[8:],
}


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (case-insensitive), or ``None``."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def scenario(self) -> str:
        """The first path segment: which behaviour was asked for."""
        return self.path.strip("/").split("/", 1)[0]


@dataclass
class FakeOpcoState:
    """What the handler reads and writes, shared between request threads."""

    delay: float = 0.0
    slow_delay: float = 2.0
    drip_interval: float = 0.1
    valid_keys: dict[str, str | None] = field(default_factory=dict)
    accept_any_key: bool = False
    default_date: str = "2027-06-30"
    oauth_client_id: str = "editeur-client"
    oauth_client_secret: str = "secret-client-oauth"
    required_scope: str | None = None
    issued_tokens: list[str] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # http.server sends headers and body as two segments: with Nagle's algorithm and the
    # client's delayed ACK, every keep-alive answer waited ~40 ms more, which no real
    # API server does (they set TCP_NODELAY too).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Keep test output clean."""

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    # -- plumbing --------------------------------------------------------------------

    def _serve(self) -> None:
        state = self.server.state
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        record = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers=tuple(self.headers.items()),
            body=body,
        )
        with state.lock:
            state.requests.append(record)
            count = state.counters.get(record.scenario, 0) + 1
            state.counters[record.scenario] = count
        if state.delay:
            time.sleep(state.delay)
        streamed = _STREAMED.get(record.scenario)
        if streamed is not None:
            self.close_connection = True
            with suppress(OSError):  # the client hung up, as it should
                streamed(self)
            return
        status, headers, payload = self._route(record, count)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(  # noqa: PLR0911, PLR0912 - one branch per scenario reads best
        self, request: RecordedRequest, count: int
    ) -> tuple[int, dict[str, str], bytes]:
        state = self.server.state
        if request.path in TOKEN_PATHS:
            return self._token(request)
        scenario = request.scenario
        endpoint = "/" + request.path.strip("/").split("/", 1)[-1]
        if request.method != "GET":
            return _json(405, {"status": "error", "comment": "Méthode interdite"})
        simple = _SIMPLE.get(scenario)
        if simple is not None:
            return simple
        api = _api_scenario(request, scenario, endpoint)
        if api is not None:
            return api
        if scenario == "slow":
            time.sleep(state.slow_delay)
            return self._ok(request)
        if scenario == "nodate":
            return _json(200, {"status": "success", "comment": "Clé valide"})
        if scenario == "error-status":
            return _json(200, {"status": "error", "comment": "Clé expirée ou révoquée"})
        if scenario == "baddate":
            return _json(200, {"status": "success", "dateFinValidite": "31/02/2026"})
        if scenario == "fallback-etats":
            if endpoint.endswith("/v2/dossiers/etats"):
                return _json(200, {"dossiers": [], "numeroPage": 1})
            return _json(404, {"message": "Not Found"})
        if scenario == "fallback-status":
            if endpoint.endswith("/v2/cfakeyinfo"):
                return _json(501, {"message": "Not Implemented"})
            if endpoint.endswith("/v1/status"):
                return _json(200, {"status": "UP"})
            return _json(404, {"message": "Not Found"})
        if scenario == "ratelimit-once" and count == 1:
            return 429, {"Retry-After": "1"}, b""
        if scenario == "ratelimit-date" and count == 1:
            return 429, {"Retry-After": PAST_RETRY_DATE}, b""
        if scenario == "ratelimit-long":
            return 429, {"Retry-After": "3600"}, b""
        if scenario == "ratelimit-99999":
            return 429, {"Retry-After": "99999"}, b""
        if scenario == "ratelimit-noheader":
            return 429, {}, b""
        if scenario == "redirect-same":
            target = request.path.replace("/redirect-same/", "/ok/", 1)
            return 307, {"Location": f"{target}?{request.query}"}, b""
        if scenario == "redirect-other":
            return (
                302,
                {"Location": f"https://elsewhere.invalid{request.path}?{request.query}"},
                b"",
            )
        if scenario == "echo":
            received = f"{request.header('X-API-KEY')} / {request.header('Authorization')}"
            return _json(403, {"status": "error", "comment": f"refusé : {received}"})
        if scenario.startswith("echo-") and scenario[5:] in ECHO_FORMS:
            echoed = ECHO_FORMS[scenario[5:]](request.header("X-API-KEY") or "")
            return _json(403, {"status": "error", "comment": f"clé reçue : {echoed}"})
        if scenario == "echo-retry-after":
            return 429, {"Retry-After": request.header("X-API-KEY") or ""}, b""
        if scenario in ("oauth", "oauth-revoked", "oauth-401"):
            token = (request.header("Authorization") or "").removeprefix("Bearer ")
            with state.lock:
                known = token in state.issued_tokens
                revoked = scenario == "oauth-401" or (
                    scenario == "oauth-revoked" and state.issued_tokens[:1] == [token]
                )
            if not known or revoked:
                return _json(401, {"message": "jeton absent ou expiré"})
        return self._ok(request)

    def _ok(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        state = self.server.state
        key = request.header("X-API-KEY") or ""
        if key in state.valid_keys:
            end = state.valid_keys[key]
        elif state.accept_any_key:
            end = state.default_date
        else:
            return _json(403, {"status": "error", "comment": "Clé CFA refusée"})
        if request.path.endswith("/v2/cfakeyinfo"):
            payload: dict[str, Any] = {"status": "success", "comment": "Clé valide"}
            if end is not None:
                payload["dateFinValidite"] = end
            return _json(200, payload)
        return _json(200, {"status": "UP"})

    def _token(self, request: RecordedRequest) -> tuple[int, dict[str, str], bytes]:
        state = self.server.state
        form = {key: values[0] for key, values in parse_qs(request.body.decode()).items()}
        if request.scenario == "oauth-basic":
            client = _basic_credentials(request.header("Authorization"))
            if "client_secret" in form or "client_id" in form:
                client = None  # form-body credentials: refused, as Okta's client_secret_basic
        else:
            client = (form.get("client_id"), form.get("client_secret"))
        if (
            request.method != "POST"
            or form.get("grant_type") != "client_credentials"
            or client != (state.oauth_client_id, state.oauth_client_secret)
        ):
            return _json(
                401,
                {"error": "invalid_client", "error_description": "Client authentication failed"},
            )
        if state.required_scope is not None and form.get("scope") != state.required_scope:
            return _json(400, {"error": "invalid_scope"})
        if request.scenario == "oauth-html":
            return 200, {"Content-Type": "text/html"}, b"<html><body>Connexion</body></html>"
        with state.lock:
            token = f"jeton-{len(state.issued_tokens) + 1}"
            state.issued_tokens.append(token)
        if request.scenario == "oauth-noexpiry":
            return _json(200, {"access_token": token, "token_type": "Bearer"})
        return _json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})


TOKEN_PATHS = frozenset(
    {"/oauth/token", "/oauth-html/token", "/oauth-noexpiry/token", "/oauth-basic/token"}
)
#: The page of ``/v2/dossiers/etats`` a public AKTO client's tests show.
ETATS_PAGE = {
    "total": 1,
    "count": 1,
    "page": 1,
    "EtatDossierResult": [{"numeroInterne": "D-1", "etat": "ENGAGE"}],
}
#: ``error-<field>``: an error body explaining itself in that one field.
ERROR_BODIES: dict[str, Any] = {
    "description": lambda text: {"description": text},
    "message": lambda text: {"message": text},
    "error_description": lambda text: {"error": "x", "error_description": text},
    "error": lambda text: {"error": text},
    "errors": lambda text: {"errors": [{"code": "E1", "message": text}, "autre"]},
}


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """The client id and secret of an HTTP Basic header (each form-encoded, RFC 6749)."""
    from urllib.parse import unquote_plus

    if not header or not header.startswith("Basic "):
        return None
    try:
        pair = base64.b64decode(header[6:], validate=True).decode()
    except ValueError:
        return None
    client_id, _, secret = pair.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


def _api_scenario(  # noqa: PLR0911 - one answer per scenario reads best
    request: RecordedRequest, scenario: str, endpoint: str
) -> tuple[int, dict[str, str], bytes] | None:
    """The answers of the scenarios of issue 13 (real-world API behaviour), else ``None``."""
    key = request.header("X-API-KEY") or ""
    query = {name: values[0] for name, values in parse_qs(request.query).items()}
    if scenario in ("query-key", "cfakeyinfo-400", "etats-object", "etats-list"):
        if endpoint.endswith("/v2/dossiers/etats"):
            return _json(200, [ETATS_PAGE] if scenario == "etats-list" else ETATS_PAGE)
        if not endpoint.endswith("/v2/cfakeyinfo") or scenario.startswith("etats-"):
            return _json(404, {"message": "Not Found"})
        if scenario == "cfakeyinfo-400" or query.get("XAPIKEY") != key:
            return _json(
                400, {"code": "VALIDATION_ERROR", "errors": ["XAPIKEY et siren sont requis"]}
            )
        return _json(200, {"status": "success", "dateFinValidite": "2027-06-30", "comment": None})
    if scenario.startswith("error-") and scenario[6:] in ERROR_BODIES:
        return _json(403, ERROR_BODIES[scenario[6:]]("clé révoquée le 01/09/2026"))
    if scenario.startswith("error-echo-") and scenario[11:] in ERROR_BODIES:
        return _json(403, ERROR_BODIES[scenario[11:]](f"clé {key} révoquée"))
    return None


def _json(status: int, payload: Any) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps(payload, ensure_ascii=False).encode()
    return status, {"Content-Type": "application/json; charset=utf-8"}, body


_SIMPLE: dict[str, tuple[int, dict[str, str], bytes]] = {
    "unauthorized": _json(401, {"message": "Unauthorized"}),
    "forbidden": _json(403, {"status": "error", "comment": "Forbidden"}),
    "unsupported": _json(404, {"message": "Not Found"}),
    "e500": _json(500, {"message": "Internal Server Error"}),
    "e503": (503, {"Content-Type": "text/html"}, b"<html>Service Unavailable</html>"),
    "notjson": (200, {"Content-Type": "text/html"}, b"<html><body>Portail</body></html>"),
    "wrongshape": _json(200, ["status", "success"]),
    "wrongstatus": _json(200, {"etat": "ok"}),
    "retry-after-digit": (429, {"Retry-After": "²"}, b""),
    "retry-after-huge": (429, {"Retry-After": "9" * 5000}, b""),
    "location-backslash": (
        302,
        {"Location": "\\\\elsewhere.invalid\\ApiEchangeCFA\\v2\\cfakeyinfo"},
        b"",
    ),
    "deep-json": (200, {"Content-Type": "application/json"}, b"[" * 100_000),
    "date-year1": _json(200, {"status": "success", "dateFinValidite": "0001-01-01"}),
    "date-9999": _json(200, {"status": "success", "dateFinValidite": "9999-12-31"}),
}


@functools.cache
def _gzip_bomb() -> bytes:
    """100 kB of gzip that inflate to 100 MB of zeros (built once, in about 0.3 s)."""
    import zlib

    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(100)) + packer.flush()


def _send_head(handler: _Handler, headers: dict[str, str]) -> None:
    handler.send_response(200)
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.flush()


def _gzip_bomb_reply(handler: _Handler) -> None:
    bomb = _gzip_bomb()
    _send_head(
        handler,
        {
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
            "Content-Length": str(len(bomb)),
        },
    )
    handler.wfile.write(bomb)


def _endless_reply(handler: _Handler) -> None:
    _send_head(handler, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
    chunk = b"[" + b"0," * 32_767 + b"0"
    framed = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
    for _ in range((64 << 20) // len(chunk)):
        handler.wfile.write(framed)
    handler.wfile.write(b"0\r\n\r\n")


def _big_body_reply(handler: _Handler) -> None:
    body = b'{"status": "success", "comment": "' + b"x" * (10 << 20) + b'"}'
    _send_head(handler, {"Content-Type": "application/json", "Content-Length": str(len(body))})
    handler.wfile.write(body)


def _drip_reply(handler: _Handler) -> None:
    body = json.dumps({"status": "success", "dateFinValidite": "2027-06-30"}).encode() * 4
    _send_head(handler, {"Content-Type": "application/json", "Content-Length": str(len(body))})
    for byte in body:
        time.sleep(handler.server.state.drip_interval)
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()


def _drip_headers_reply(handler: _Handler) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + b"X-Goutte: " + b"a" * 300 + b"\r\n"
    for byte in head:
        handler.wfile.write(bytes([byte]))
        handler.wfile.flush()
        time.sleep(handler.server.state.drip_interval)
    handler.wfile.write(b"Content-Length: 0\r\n\r\n")


_STREAMED: dict[str, Any] = {
    "gzip-bomb": _gzip_bomb_reply,
    "endless": _endless_reply,
    "big-body": _big_body_reply,
    "drip": _drip_reply,
    "drip-headers": _drip_headers_reply,
}


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    state: FakeOpcoState

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Failed TLS handshakes and dropped connections are expected in these tests."""


class FakeOpco:
    """The server, running in a background thread while the context is open."""

    def __init__(self, *, delay: float = 0.0, tls: tuple[Path, Path] | None = None) -> None:
        self.state = FakeOpcoState(delay=delay)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.state = self.state
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(tls[0]), str(tls[1]))
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def port(self) -> int:
        """The port the server listens on."""
        return int(self._server.server_address[1])

    @property
    def origin(self) -> str:
        """``http://127.0.0.1:PORT`` (or ``https``)."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def base_url(self, scenario: str) -> str:
        """The API base URL that makes the server behave as ``scenario``."""
        return f"{self.origin}/{scenario}/ApiEchangeCFA"

    @property
    def token_url(self) -> str:
        """Where the OAuth client-credentials tokens are issued."""
        return f"{self.origin}/oauth/token"

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far."""
        with self.state.lock:
            return list(self.state.requests)

    def _serve(self) -> None:
        # A short poll interval makes shutdown() quick, which keeps the test suite fast.
        self._server.serve_forever(poll_interval=0.02)

    def start(self) -> FakeOpco:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


@contextmanager
def running_fake_opco(
    *, delay: float = 0.0, tls: tuple[Path, Path] | None = None
) -> Iterator[FakeOpco]:
    """A started :class:`FakeOpco`, stopped on exit."""
    server = FakeOpco(delay=delay, tls=tls).start()
    try:
        yield server
    finally:
        server.stop()
