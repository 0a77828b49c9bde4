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
- ``ratelimit-long``: always 429 with ``Retry-After: 3600``;
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
  tokens come from ``POST /oauth/token`` (client credentials);
- ``echo``: 403 whose comment quotes the ``X-API-KEY`` and ``Authorization`` it received
  (a careless server: what it says must never reach the operator or the journal).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit


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
    valid_keys: dict[str, str | None] = field(default_factory=dict)
    accept_any_key: bool = False
    default_date: str = "2027-06-30"
    oauth_client_id: str = "editeur-client"
    oauth_client_secret: str = "secret-client-oauth"
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
        if request.path == "/oauth/token":
            return self._token(request)
        scenario = request.scenario
        endpoint = "/" + request.path.strip("/").split("/", 1)[-1]
        if request.method != "GET":
            return _json(405, {"status": "error", "comment": "Méthode interdite"})
        simple = _SIMPLE.get(scenario)
        if simple is not None:
            return simple
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
            return 429, {"Retry-After": formatdate(time.time() - 60, usegmt=True)}, b""
        if scenario == "ratelimit-long":
            return 429, {"Retry-After": "3600"}, b""
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
        if scenario == "oauth":
            token = (request.header("Authorization") or "").removeprefix("Bearer ")
            with state.lock:
                known = token in state.issued_tokens
            if not known:
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
        if (
            request.method != "POST"
            or form.get("grant_type") != "client_credentials"
            or form.get("client_id") != state.oauth_client_id
            or form.get("client_secret") != state.oauth_client_secret
        ):
            return _json(401, {"error": "invalid_client"})
        with state.lock:
            token = f"jeton-{len(state.issued_tokens) + 1}"
            state.issued_tokens.append(token)
        return _json(200, {"access_token": token, "token_type": "Bearer", "expires_in": 3600})


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
