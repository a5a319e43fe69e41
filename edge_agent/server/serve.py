"""``serve_agent_api``: the agent API over HTTP/1.1 (h11) on trio, with mutual TLS.

TLS as rust-keylime sets it up (keylime-agent/src/main.rs, ``crypto::generate_tls_context``):
the server presents the agent's mTLS certificate and key, and requires a client certificate
issued by ``trusted_client_ca`` (the verifier's and tenant's CA); a client without one is
refused in the handshake.  With ``enable_agent_mtls = false`` it serves plain HTTP, as
rust-keylime allows, and says so loudly.

The HTTP layer is h11 (the protocol state machine Hypercorn itself uses) driven by a loop of
about a hundred lines: Keylime's verifier and tenant send one small request at a time, and a
general ASGI server cost the agent ~4 MB of resident memory and ~70 ms of start-up
(bench/agent_footprint.py).  Each connection is one task; every wait is bounded:

* the TLS handshake: :data:`TLS_HANDSHAKE_TIMEOUT_SECONDS`;
* an idle keep-alive connection: :data:`KEEP_ALIVE_TIMEOUT_SECONDS`;
* each read inside a request: :data:`READ_TIMEOUT_SECONDS`;
* request line and headers: :data:`MAX_HEAD_BYTES` (431), body: ``MAX_BODY_BYTES`` (413,
  answered unread when declared, as soon as crossed when streamed; the connection closes).

Bytes that are not HTTP/1.1 get 400 and the connection closes; a failing connection never
affects the others.

Shutdown: when ``shutdown`` returns, the listeners close, idle connections close, and requests
in flight may finish for up to :data:`GRACEFUL_TIMEOUT_SECONDS`; cancelling the task stops
everything at once.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Callable, Optional, Protocol

import h11
import trio

from attest_protocol.envelope import failure
from edge_agent.server.context import AgentApiContext
from edge_agent.server.handler import (
    MAX_BODY_BYTES,
    AgentApi,
    Response,
    envelope_response,
    too_large,
)
from edge_agent.server.tls import TlsFiles

__all__ = [
    "GRACEFUL_TIMEOUT_SECONDS",
    "KEEP_ALIVE_TIMEOUT_SECONDS",
    "MAX_HEAD_BYTES",
    "READ_TIMEOUT_SECONDS",
    "TLS_HANDSHAKE_TIMEOUT_SECONDS",
    "ServerConfig",
    "TlsFiles",
    "Responder",
    "prepare_server_config",
    "serve_agent_api",
    "serve_http",
    "server_ssl_context",
]

log = logging.getLogger(__name__)
access_log = logging.getLogger("edge_agent.server.access")

# A client that has not finished the TLS handshake by then is dropped (a slow-loris must not
# hold many sockets on a small device).
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10.0
# Idle time allowed while reading a request; Keylime's verifier sends its requests at once.
READ_TIMEOUT_SECONDS = 30.0
KEEP_ALIVE_TIMEOUT_SECONDS = 5.0
# Requests in flight when shutdown starts may finish within this (a quote takes < 1 s).
GRACEFUL_TIMEOUT_SECONDS = 5.0
# Request line plus headers; Keylime's requests carry a few hundred bytes of them.
MAX_HEAD_BYTES = 16 * 1024
RECEIVE_BYTES = 64 * 1024
# Keylime's clients (tornado, requests) speak HTTP/1.1.
ALPN_PROTOCOLS = ["http/1.1"]
# The suites Hypercorn offered before: forward secrecy and AEAD only (TLS 1.2); TLS 1.3's
# suites are all of that kind and are not affected by this string.
TLS12_CIPHERS = "ECDHE+AESGCM"
SERVER_HEADER = (b"server", b"limelet-agent")


@dataclass(frozen=True)
class ServerConfig:
    host: str
    port: int
    ssl_context: Optional[ssl.SSLContext]
    handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT_SECONDS
    keep_alive_timeout: float = KEEP_ALIVE_TIMEOUT_SECONDS
    read_timeout: float = READ_TIMEOUT_SECONDS
    graceful_timeout: float = GRACEFUL_TIMEOUT_SECONDS
    max_body_bytes: int = MAX_BODY_BYTES


def server_ssl_context(tls: TlsFiles) -> ssl.SSLContext:
    """The server's context: its certificate and key, client certificates required from
    ``tls.client_cas`` (``trusted_client_ca`` is a list, base.rs).  Blocking: reads files."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    # Keylime's clients open a new connection per request and never resume a session, so
    # TLS 1.3 session tickets would be work and bytes for nothing.
    context.num_tickets = 0
    context.load_cert_chain(
        certfile=str(tls.certfile), keyfile=str(tls.keyfile), password=tls.keyfile_password
    )
    for ca in tls.client_cas:
        context.load_verify_locations(cafile=str(ca))
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def prepare_server_config(host: str, port: int, tls: Optional[TlsFiles]) -> ServerConfig:
    """The server's config with its TLS context already loaded (blocking: reads key files,
    so it runs before a ``run_as`` privilege drop)."""
    context = None if tls is None else server_ssl_context(tls)
    return ServerConfig(host.strip("[]"), port, context)


async def serve_agent_api(
    ctx: AgentApiContext,
    *,
    host: str,
    port: int,
    tls: Optional[TlsFiles],
    shutdown: Optional[Callable[[], Awaitable[object]]] = None,
    server_config: Optional[ServerConfig] = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until ``shutdown`` returns (then drain) or until cancelled.

    Reports the bound URLs (``https://127.0.0.1:9002``) through ``task_status``.
    ``server_config`` (from ``prepare_server_config``) is used as given; without it one is
    built here from ``host``, ``port`` and ``tls``.
    """
    if tls is None:
        log.warning("INSECURE: mTLS is disabled; the agent API is served over plain HTTP.")
        log.warning(
            "INSECURE: anyone who can reach %s:%d can ask for quotes and send keys.", host, port
        )
    config = server_config
    if config is None:
        config = await trio.to_thread.run_sync(prepare_server_config, host, port, tls)
    async with trio.open_nursery() as background:
        ctx.background = background
        try:
            await serve_http(AgentApi(ctx), config, shutdown=shutdown, task_status=task_status)
        finally:
            # Background hooks (payload, revocation) end with the server.
            background.cancel_scope.cancel()
            ctx.background = None


class Responder(Protocol):
    async def respond(self, method: str, target: bytes, body: bytes) -> Response: ...


async def serve_http(
    api: Responder,
    config: ServerConfig,
    *,
    shutdown: Optional[Callable[[], Awaitable[object]]] = None,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The HTTP/1.1 (and TLS) layer alone: every request read off a connection goes to
    ``api.respond``.  Serves until ``shutdown`` returns (then drains) or until cancelled."""
    listeners = await trio.open_tcp_listeners(config.port, host=config.host or None)
    await _Server(api, config).run(listeners, shutdown, task_status)


def _urls(listeners: list[trio.SocketListener], tls: bool) -> list[str]:
    scheme = "https" if tls else "http"
    urls = []
    for listener in listeners:
        address, port = listener.socket.getsockname()[:2]
        if ipaddress.ip_address(address).version == 6:
            address = f"[{address}]"
        urls.append(f"{scheme}://{address}:{port}")
    return urls


class _Timeout(Exception):
    pass


class _Closed(Exception):
    """The peer went away (EOF, reset, TLS error) or the server is shutting down."""


@dataclass
class _Server:
    api: Responder
    config: ServerConfig
    closing: bool = False
    # The cancel scopes of connections waiting for their next request (cancelled on shutdown).
    idle: set[trio.CancelScope] = field(default_factory=set)

    async def run(
        self,
        listeners: list[trio.SocketListener],
        shutdown: Optional[Callable[[], Awaitable[object]]],
        task_status: trio.TaskStatus[list[str]],
    ) -> None:
        async with trio.open_nursery() as connections:
            try:
                async with trio.open_nursery() as acceptors:
                    for listener in listeners:
                        acceptors.start_soon(self._accept, listener, connections)
                    urls = _urls(listeners, self.config.ssl_context is not None)
                    log.info("Serving the agent API on %s", ", ".join(urls))
                    task_status.started(urls)
                    if shutdown is None:
                        await trio.sleep_forever()
                    await shutdown()
                    acceptors.cancel_scope.cancel()
            finally:
                for listener in listeners:
                    with trio.CancelScope(shield=True):
                        await listener.aclose()
            self.closing = True
            for scope in self.idle:
                scope.cancel()
            connections.cancel_scope.deadline = trio.current_time() + self.config.graceful_timeout

    async def _accept(self, listener: trio.SocketListener, connections: trio.Nursery) -> None:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and the like: wait rather than spin
                log.warning("Cannot accept a connection: %s", exc)
                await trio.sleep(0.1)
                continue
            connections.start_soon(self._connection, stream)

    async def _connection(self, tcp: trio.SocketStream) -> None:
        try:
            address, port = tcp.socket.getpeername()[:2]
            peer = f"{address}:{port}"
        except OSError:
            peer = "?"
        stream: trio.abc.Stream = tcp
        try:
            if self.config.ssl_context is not None:
                stream = await self._handshake(tcp, self.config.ssl_context, peer)
            await _Connection(self, stream, peer).serve()
        except (trio.BrokenResourceError, trio.ClosedResourceError, _Closed) as exc:
            log.debug("Connection from %s ended: %r", peer, exc.__cause__ or exc)
        except Exception:  # one bad connection must not stop the server
            log.exception("Connection from %s failed", peer)
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(1):
                try:
                    await stream.aclose()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass

    async def _handshake(
        self, tcp: trio.SocketStream, context: ssl.SSLContext, peer: str
    ) -> trio.abc.Stream:
        stream = trio.SSLStream(tcp, context, server_side=True, https_compatible=True)
        with trio.move_on_after(self.config.handshake_timeout):
            try:
                await stream.do_handshake()
            except trio.BrokenResourceError as exc:
                # No client certificate, one from another CA, a plain-HTTP client...
                log.info("TLS handshake with %s failed: %s", peer, exc.__cause__ or exc)
                raise _Closed("TLS handshake failed") from exc
            return stream
        log.info("TLS handshake with %s timed out", peer)
        raise _Closed("TLS handshake timed out")


class _Connection:
    def __init__(self, server: _Server, stream: trio.abc.Stream, peer: str) -> None:
        self.server = server
        self.config = server.config
        self.stream = stream
        self.peer = peer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def serve(self) -> None:
        while not self.server.closing:
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
        self.server.idle.add(scope)
        try:
            with scope:
                event = await self._next_event(bound=False)
        finally:
            self.server.idle.discard(scope)
        if scope.cancelled_caught:
            return None  # idle too long, or shutting down
        # In a new cycle h11 yields a Request, or ConnectionClosed when the peer hung up.
        return event if isinstance(event, h11.Request) else None

    async def _next_event(self, *, bound: bool = True) -> object:
        while True:
            event = self.h11.next_event()
            if event is h11.PAUSED:  # cannot happen inside one request; never spin on it
                raise _Closed("the HTTP state machine paused mid-request")
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
        declared = _content_length(request)
        if declared is not None and declared > self.config.max_body_bytes:
            await self._send(request, too_large(self.config.max_body_bytes), close=True)
            return False
        if self.h11.they_are_waiting_for_100_continue:
            await self._send_all(h11.InformationalResponse(status_code=100, headers=[]))
        try:
            body = await self._body()
        except _Timeout:
            return False
        except h11.RemoteProtocolError as exc:
            await self._refuse(exc.error_status_hint, f"Bad request: {exc}")
            return False
        if body is None:
            await self._send(request, too_large(self.config.max_body_bytes), close=True)
            return False
        response = await self.server.api.respond(method, request.target, body)
        await self._send(request, response, close=self.server.closing)
        return True

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
                raise _Closed("the client closed the connection mid-request")

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
        raise _Closed("the client stopped reading")

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


def _content_length(request: h11.Request) -> Optional[int]:
    for name, value in request.headers:
        if name == b"content-length":
            return int(value)  # h11 has checked it is a decimal number
    return None
