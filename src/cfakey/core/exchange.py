"""One bounded HTTP exchange: body and decompressed size capped, the whole within a deadline.

httpx bounds each step of an exchange (connect, each read, each write), never the whole:
a server sending one byte a second never trips a read timeout, and holds a worker for
hours. And it reads and decompresses a body without limit: a 3 MB gzip bomb or an endless
chunked body grows memory until the kernel kills the process. Here:

- the body is streamed raw and decompressed by hand, :data:`MAX_BODY_BYTES` at the most
  once decompressed (:class:`BodyTooLongError`);
- the whole exchange, headers included, has a deadline: the body loop checks it between
  reads, and a :class:`Watchdog` thread shuts down the socket of an exchange still
  running at its deadline, which ends a read that is waiting (:class:`TooSlowError`).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

#: The largest body read, once decompressed (an API Convergence answer is a few kB).
MAX_BODY_BYTES = 1 << 20
_NOT_JSON = object()


class ExchangeError(Exception):
    """The exchange ended without a usable reply; subclasses say why."""


class BodyTooLongError(ExchangeError):
    """The body, once decompressed, exceeds :data:`MAX_BODY_BYTES`."""


class BadEncodingError(ExchangeError):
    """The body is compressed in an unknown or invalid way."""


class TooSlowError(ExchangeError):
    """The exchange was still running at its deadline."""


@dataclass(frozen=True)
class Reply:
    """A server's answer, read in full within the caps: what classification looks at.

    ``secrets`` are what was sent with the request (key, bearer token, client secret):
    none of them may be shown, whatever the server does with them.
    """

    status: int
    headers: httpx.Headers
    body: bytes
    secrets: tuple[str, ...] = field(default=(), repr=False)
    _parsed: list[Any] = field(default_factory=list, repr=False, compare=False)

    def payload(self) -> Any:
        """The body parsed as JSON; :data:`NOT_JSON` when it is not (deep nesting included)."""
        if not self._parsed:
            try:
                self._parsed.append(json.loads(self.body))
            except (ValueError, RecursionError):
                self._parsed.append(_NOT_JSON)
        return self._parsed[0]

    def header(self, name: str) -> str | None:
        """The value of header ``name`` (several are joined by commas), or ``None``."""
        value: str | None = self.headers.get(name)
        return value


#: What :meth:`Reply.payload` returns for a body that is not JSON.
NOT_JSON = _NOT_JSON


class Slot:
    """One worker's connection as the :class:`Watchdog` sees it: its socket and deadline.

    The socket is learnt from httpx's ``trace`` extension when the connection is made (the
    worker's client keeps at most one connection, so it is the one every exchange uses).
    """

    def __init__(self) -> None:
        self.socket: socket.socket | None = None
        self.deadline: float | None = None

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpx ``trace`` callback: remember the socket of each new connection.

        After a TLS handshake it is a new socket object (the TCP one is detached).
        """
        if event in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            stream = info.get("return_value")
            found = stream.get_extra_info("socket") if stream is not None else None
            self.socket = found if isinstance(found, socket.socket) else None

    def cut(self) -> None:
        """End the exchange in progress: a waiting read returns at once."""
        if self.socket is not None:
            # The plain socket's shutdown, also for TLS: SSLSocket.shutdown drops its SSL
            # object, which the worker's thread may be using.
            with suppress(OSError):
                socket.socket.shutdown(self.socket, socket.SHUT_RDWR)


class Watchdog:
    """One thread for a whole run that cuts every exchange still running at its deadline."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._slots: list[Slot] = []
        self._wake_at: float | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="cfakey-watchdog", daemon=True)
        self._thread.start()

    def slot(self) -> Slot:
        """A new slot for one worker."""
        slot = Slot()
        with self._cond:
            self._slots.append(slot)
        return slot

    @contextmanager
    def watching(self, slot: Slot, deadline: float) -> Iterator[None]:
        """Cut ``slot``'s connection if the block still runs at ``deadline``."""
        with self._cond:
            slot.deadline = deadline
            if self._wake_at is None or deadline < self._wake_at:
                self._cond.notify()
        try:
            yield
        finally:
            with self._cond:
                slot.deadline = None

    def close(self) -> None:
        """Stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._closed:
                now = self._clock()
                pending = []
                for slot in self._slots:
                    if slot.deadline is None:
                        continue
                    if slot.deadline <= now:
                        slot.deadline = None
                        slot.cut()
                    else:
                        pending.append(slot.deadline)
                self._wake_at = min(pending, default=None)
                self._cond.wait(None if self._wake_at is None else self._wake_at - now)


def exchange(
    client: httpx.Client,
    method: str,
    url: httpx.URL | str,
    *,
    headers: Mapping[str, str],
    seconds: float,
    secrets: tuple[str, ...] = (),
    data: Mapping[str, str] | None = None,
    watchdog: Watchdog | None = None,
    slot: Slot | None = None,
) -> Reply:
    """Send one request and read its reply within ``seconds`` and :data:`MAX_BODY_BYTES`.

    Raises :class:`ExchangeError` (a subclass) or an ``httpx.HTTPError``; a transport
    error after the deadline (the watchdog cut the socket) becomes :class:`TooSlowError`.
    """
    import httpx

    deadline = time.monotonic() + seconds
    extensions = {"trace": slot.trace} if slot is not None else None
    guard = (
        watchdog.watching(slot, deadline)
        if watchdog is not None and slot is not None
        else _nothing()
    )
    try:
        with (
            guard,
            client.stream(
                method, url, headers=dict(headers), data=data, extensions=extensions
            ) as response,
        ):
            body = _read_body(response, deadline)
            return Reply(response.status_code, response.headers, body, secrets)
    except httpx.HTTPError:
        if time.monotonic() >= deadline:
            raise TooSlowError from None
        raise


@contextmanager
def _nothing() -> Iterator[None]:
    yield


def _read_body(response: httpx.Response, deadline: float) -> bytes:
    """The body, decompressed, stopped past :data:`MAX_BODY_BYTES` or ``deadline``."""
    if response.is_stream_consumed:  # a reply prepared in memory (an injected transport)
        if len(response.content) > MAX_BODY_BYTES:
            raise BodyTooLongError
        return response.content
    coding = response.headers.get("Content-Encoding", "").strip().lower()
    if coding in ("", "identity"):
        inflate = None
    elif coding in ("gzip", "x-gzip"):
        inflate = zlib.decompressobj(zlib.MAX_WBITS | 16)
    elif coding == "deflate":
        inflate = zlib.decompressobj()
    else:
        raise BadEncodingError
    chunks: list[bytes] = []
    size = 0
    for raw in response.iter_raw():
        if time.monotonic() >= deadline:
            raise TooSlowError
        try:
            # At most one byte past the cap comes out, however much the input inflates.
            chunk = raw if inflate is None else inflate.decompress(raw, MAX_BODY_BYTES + 1 - size)
        except zlib.error:
            raise BadEncodingError from None
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise BodyTooLongError
        chunks.append(chunk)
    return b"".join(chunks)
