"""One HTTP/1.1 connection of the agent API: h11 (the protocol state machine Hypercorn also
uses) driven over a trio stream, each request handed to a :class:`Responder`.

Keylime's verifier and tenant send one small request at a time, usually one per connection;
every wait is bounded:

* an idle keep-alive connection: :data:`KEEP_ALIVE_TIMEOUT_SECONDS`;
* each read inside a request: :data:`READ_TIMEOUT_SECONDS`, and the whole body:
  :data:`REQUEST_TIMEOUT_SECONDS` from the end of the head (408 and close, so a body trickled
  a byte at a time cannot hold a connection for ever);
* request line and headers: :data:`MAX_HEAD_BYTES` (431); the body: ``max_body_bytes`` (413,
  answered unread when declared, as soon as crossed when streamed; the connection closes).

Bytes that are not HTTP/1.1 get 400 and the connection closes, as does a request with both
``Content-Length`` and ``Transfer-Encoding`` (RFC 9112 §6.3: a server may reject it and must
then close; answering it is how requests are smuggled past a proxy).  While the server drains
(:class:`Drain`), answers carry ``Connection: close`` and idle connections end.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass, field
from typing import Optional, Protocol

import h11
import trio

from attest_protocol.envelope import failure
from edge_agent.server.handler import MAX_BODY_BYTES, Response, envelope_response, too_large

__all__ = [
    "KEEP_ALIVE_TIMEOUT_SECONDS",
    "MAX_CONNECTIONS",
    "MAX_HEAD_BYTES",
    "READ_TIMEOUT_SECONDS",
    "REQUEST_TIMEOUT_SECONDS",
    "Closed",
    "Drain",
    "Responder",
    "ServerConfig",
    "serve_connection",
]

log = logging.getLogger(__name__)
access_log = logging.getLogger("edge_agent.server.access")

# A client that has not finished the TLS handshake by then is dropped (a slow-loris must not
# hold many sockets on a small device).
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10.0
# Idle time allowed while reading a request; Keylime's verifier sends its requests at once.
READ_TIMEOUT_SECONDS = 30.0
# The whole body, however it trickles in: an 8 MiB payload over a slow link fits easily.
REQUEST_TIMEOUT_SECONDS = 60.0
KEEP_ALIVE_TIMEOUT_SECONDS = 5.0
# Requests in flight when shutdown starts may finish within this (a quote takes < 1 s).
GRACEFUL_TIMEOUT_SECONDS = 5.0
# Request line plus headers; Keylime's requests carry a few hundred bytes of them.
MAX_HEAD_BYTES = 16 * 1024
RECEIVE_BYTES = 64 * 1024
# Keylime's verifier and tenant hold one connection to an agent at a time; a few dozen leaves
# room for retries and operators' probes.  Each connection costs one descriptor (and a TLS
# object), so this also bounds the agent's memory under a connect flood (edge_agent.server.serve
# lowers it when RLIMIT_NOFILE is small).
MAX_CONNECTIONS = 64
SERVER_HEADER = (b"server", b"limelet-agent")


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    ssl_context: Optional[ssl.SSLContext]
    handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT_SECONDS
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT_SECONDS
    read_timeout: float = READ_TIMEOUT_SECONDS
    request_timeout: float = REQUEST_TIMEOUT_SECONDS
    graceful_timeout: float = GRACEFUL_TIMEOUT_SECONDS
    max_body_bytes: int = MAX_BODY_BYTES
    max_connections: int = MAX_CONNECTIONS


class Responder(Protocol):
    async def respond(self, method: str, target: bytes, body: bytes) -> Response: ...


@dataclass
class Drain:
    """Shared by the server's connections: set ``closing`` and cancel the idle ones."""

    closing: bool = False
    # The cancel scopes of connections waiting for their next request, oldest first (a dict
    # keeps insertion order): the acceptor sheds the oldest when at its cap.
    idle: dict[trio.CancelScope, None] = field(default_factory=dict)

    def start(self) -> None:
        self.closing = True
        for scope in list(self.idle):
            scope.cancel()


class Closed(Exception):
    """The peer went away (EOF, reset, TLS error) or stopped reading."""


class _Timeout(Exception):
    """One read waited longer than ``read_timeout``: the peer stalled, close without a word."""


class _Deadline(Exception):
    """The body took longer than ``request_timeout`` in all: answer 408, then close."""


async def serve_connection(
    stream: trio.abc.Stream, peer: str, api: Responder, config: ServerConfig, drain: Drain
) -> None:
    """Answer requests on ``stream`` until the peer closes, a limit is hit or the server
    drains.  Raises Closed or trio's stream errors when the peer goes away."""
    await _Connection(stream, peer, api, config, drain).serve()


class _Connection:
    def __init__(
        self, stream: trio.abc.Stream, peer: str, api: Responder, config: ServerConfig,
        drain: Drain,
    ) -> None:  # fmt: skip
        self.stream = stream
        self.peer = peer
        self.api = api
        self.config = config
        self.drain = drain
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def serve(self) -> None:
        while not self.drain.closing:
            try:
                event = await self._next_request()
            except _Timeout:
                return
            except h11.RemoteProtocolError as exc:
                await self._refuse(exc.error_status_hint, f"Bad request: {exc}")
                return
            if event is None:
                return
            if not await self._answer(event):
                return
            if self.h11.our_state is not h11.DONE or self.h11.their_state is not h11.DONE:
                return
            self.h11.start_next_cycle()

    async def _next_request(self) -> Optional[h11.Request]:
        """The next request's head; None when the peer closed or shutdown began while idle."""
        scope = trio.CancelScope(deadline=trio.current_time() + self.config.keep_alive_timeout)
        self.drain.idle[scope] = None
        try:
            with scope:
                event = await self._next_event(bound=False)
        finally:
            self.drain.idle.pop(scope, None)
        if scope.cancelled_caught:
            return None  # idle too long, or shutting down
        # In a new cycle h11 yields a Request, or ConnectionClosed when the peer hung up.
        return event if isinstance(event, h11.Request) else None

    async def _next_event(self, *, bound: bool = True) -> object:
        while True:
            event = self.h11.next_event()
            if event is h11.PAUSED:  # cannot happen inside one request; never spin on it
                raise Closed("the HTTP state machine paused mid-request")
            if event is not h11.NEED_DATA:
                return event
            data = await self._receive(bound)
            self.h11.receive_data(data)

    async def _receive(self, bound: bool) -> bytes:
        if not bound:
            return bytes(await self.stream.receive_some(RECEIVE_BYTES))
        with trio.move_on_after(self.config.read_timeout):
            return bytes(await self.stream.receive_some(RECEIVE_BYTES))
        raise _Timeout

    async def _answer(self, request: h11.Request) -> bool:
        """Read the body and answer; False when the connection must close after the answer."""
        method = request.method.decode("ascii", "replace")
        # h11 bounds only a head still arriving; one that came whole in a read is measured here.
        if _head_size(request) > MAX_HEAD_BYTES:
            await self._refuse(431, f"Request line and headers over {MAX_HEAD_BYTES} bytes")
            return False
        if _has_header(request, b"content-length") and _has_header(request, b"transfer-encoding"):
            await self._refuse(400, "Both Content-Length and Transfer-Encoding (RFC 9112 6.3)")
            return False
        declared = _content_length(request)
        if declared is not None and declared > self.config.max_body_bytes:
            await self._send(request, too_large(self.config.max_body_bytes), close=True)
            return False
        if self.h11.they_are_waiting_for_100_continue:
            await self._send_all(h11.InformationalResponse(status_code=100, headers=[]))
        try:
            body = await self._body_in_time()
        except _Timeout:
            return False
        except _Deadline:
            await self._refuse(
                408, f"Request body not received within {self.config.request_timeout:g} s"
            )
            return False
        except h11.RemoteProtocolError as exc:
            await self._refuse(exc.error_status_hint, f"Bad request: {exc}")
            return False
        if body is None:
            await self._send(request, too_large(self.config.max_body_bytes), close=True)
            return False
        response = await self.api.respond(method, request.target, body)
        await self._send(request, response, close=self.drain.closing)
        return True

    async def _body_in_time(self) -> Optional[bytes]:
        """``_body`` within the request's total deadline (each read has its own as well)."""
        with trio.move_on_after(self.config.request_timeout):
            return await self._body()
        raise _Deadline

    async def _body(self) -> Optional[bytes]:
        """The request body; None once it grows past the limit (the rest is not read)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            event = await self._next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > self.config.max_body_bytes:
                    return None
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(chunks)
            elif isinstance(event, h11.ConnectionClosed):
                raise Closed("the client closed the connection mid-request")

    async def _send(self, request: h11.Request, response: Response, *, close: bool) -> None:
        headers = [SERVER_HEADER, *response.headers]
        if close:
            headers.append((b"connection", b"close"))
        body = b"" if request.method == b"HEAD" else response.body
        await self._send_all(
            h11.Response(status_code=response.status, headers=headers),
            h11.Data(data=body),
            h11.EndOfMessage(),
        )
        access_log.info(
            '%s "%s %s HTTP/%s" %d %d', self.peer, request.method.decode("ascii", "replace"),
            request.target.decode("ascii", "replace"),
            request.http_version.decode("ascii", "replace"), response.status, len(body),
        )  # fmt: skip

    async def _send_all(
        self, *events: h11.InformationalResponse | h11.Response | h11.Data | h11.EndOfMessage
    ) -> None:
        """Send the events' bytes in one write (one TLS record for a small answer)."""
        data = b"".join(self.h11.send(event) for event in events)
        with trio.move_on_after(self.config.read_timeout):
            await self.stream.send_all(data)
            return
        raise Closed("the client stopped reading")

    async def _refuse(self, status: int, reason: str) -> None:
        """Answer a request h11 could not parse, if the state still allows an answer."""
        log.info("Refusing a request from %s: %s", self.peer, reason)
        if self.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = envelope_response(failure(status, reason))
        headers = [SERVER_HEADER, *response.headers, (b"connection", b"close")]
        try:
            await self._send_all(
                h11.Response(status_code=status, headers=headers),
                h11.Data(data=response.body),
                h11.EndOfMessage(),
            )
        except h11.LocalProtocolError:
            pass


def _head_size(request: h11.Request) -> int:
    return len(request.target) + sum(len(name) + len(value) + 4 for name, value in request.headers)


def _has_header(request: h11.Request, name: bytes) -> bool:
    return any(have == name for have, _value in request.headers)


def _content_length(request: h11.Request) -> Optional[int]:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is a decimal number
    return None
