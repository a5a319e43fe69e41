"""``serve_agent_api``: the agent API over HTTP/1.1 (h11) on trio, with mutual TLS.

The listeners, the TLS handshake and the drain live here; one connection's HTTP is
edge_agent.server.http1, the TLS context edge_agent.server.tls.  With
``enable_agent_mtls = false`` the API is served over plain HTTP, as rust-keylime allows, and
the agent says so loudly.

No ASGI server: Hypercorn served the API until bench/agent_footprint.py showed what it cost the
agent (~4 MB resident, ~70 ms of start-up, ~2.5 ms per request) for features Keylime's clients
never use.  Each connection is one task and a failing connection never affects the others.

Connections are capped (:func:`connection_cap`): at most ``max_connections`` at once
(``MAX_CONNECTIONS`` unless configured), and never
so many that the descriptors kept for the TPM's TCTI, the logs and the key files
(``RESERVED_DESCRIPTORS``) could run out.  At the cap the acceptor first ends the oldest
connection still in its TLS handshake (nobody we know, holding a slot), or else one idle
between requests, then waits for a slot before it accepts again, so further connects wait in
the kernel's backlog instead of taking descriptors (backpressure).  A flood of idle connects
therefore never starves the TPM of its socket, and a verifier that connects after it is
served once its turn comes.

Shutdown: when ``shutdown`` returns, the listeners close, idle connections close, and requests
in flight may finish for up to ``GRACEFUL_TIMEOUT_SECONDS``; cancelling the task stops
everything at once.
"""

from __future__ import annotations

import ipaddress
import logging
import resource
import ssl
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Callable, Optional

import trio

from edge_agent.server.context import AgentApiContext
from edge_agent.server.handler import AgentApi
from edge_agent.server.http1 import (
    GRACEFUL_TIMEOUT_SECONDS,
    KEEP_ALIVE_TIMEOUT_SECONDS,
    MAX_CONNECTIONS,
    MAX_HEAD_BYTES,
    READ_TIMEOUT_SECONDS,
    REQUEST_TIMEOUT_SECONDS,
    TLS_HANDSHAKE_TIMEOUT_SECONDS,
    Closed,
    Drain,
    Responder,
    ServerConfig,
    serve_connection,
)
from edge_agent.server.tls import TlsFiles, server_ssl_context

__all__ = [
    "GRACEFUL_TIMEOUT_SECONDS",
    "KEEP_ALIVE_TIMEOUT_SECONDS",
    "MAX_CONNECTIONS",
    "RESERVED_DESCRIPTORS",
    "MAX_HEAD_BYTES",
    "READ_TIMEOUT_SECONDS",
    "REQUEST_TIMEOUT_SECONDS",
    "TLS_HANDSHAKE_TIMEOUT_SECONDS",
    "Responder",
    "ServerConfig",
    "TlsFiles",
    "connection_cap",
    "prepare_server_config",
    "serve_agent_api",
    "serve_http",
    "server_ssl_context",
]

log = logging.getLogger(__name__)

# Descriptors never given to API connections: the TCTI socket or /dev/tpmrm0 (reopened after
# a TPM error), log files, key and state files, the listeners, trio's wakeup pipe, thread
# pools and the payload's child process pipes.
RESERVED_DESCRIPTORS = 64
# Under a flood the acceptor sheds a connection per accept; it says so at most this often.
SHED_LOG_INTERVAL_SECONDS = 60.0
# How long the acceptor waits before trying again after accept() itself failed (EMFILE).
ACCEPT_RETRY_SECONDS = 0.1


def connection_cap(limit: int = MAX_CONNECTIONS) -> int:
    """``limit``, lowered so that ``RESERVED_DESCRIPTORS`` stay free under RLIMIT_NOFILE."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return limit
    return max(1, min(limit, soft - RESERVED_DESCRIPTORS))


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


@dataclass
class _Server:
    api: Responder
    config: ServerConfig
    drain: Drain = field(default_factory=Drain)
    cap: int = field(init=False)
    slots: trio.Semaphore = field(init=False)
    # Connections still in their TLS handshake, oldest first (dicts keep insertion order).
    unauthenticated: dict[trio.CancelScope, None] = field(default_factory=dict)
    shed: int = 0
    shed_logged_at: float = -SHED_LOG_INTERVAL_SECONDS

    def __post_init__(self) -> None:
        self.cap = connection_cap(self.config.max_connections)
        self.slots = trio.Semaphore(self.cap)

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
            self.drain.start()
            connections.cancel_scope.deadline = trio.current_time() + self.config.graceful_timeout

    async def _accept(self, listener: trio.SocketListener, connections: trio.Nursery) -> None:
        while True:
            await self._free_slot()
            try:
                stream = await listener.accept()
            except OSError as exc:  # EMFILE and the like: wait rather than spin
                self.slots.release()
                log.warning("Cannot accept a connection: %s", exc)
                await trio.sleep(ACCEPT_RETRY_SECONDS)
                continue
            connections.start_soon(self._connection, stream)

    async def _free_slot(self) -> None:
        """Take a connection slot; at the cap, shed the oldest unauthenticated or idle one."""
        if self.slots.value == 0:
            # Plain HTTP has no handshake: then one that waits for its next request goes
            # (it loses nothing; HTTP/1.1 clients retry a request on an idle close).
            waiting = self.unauthenticated or self.drain.idle
            if waiting:
                oldest = next(iter(waiting))
                del waiting[oldest]
                oldest.cancel()
                self._log_shed("in its handshake" if waiting is self.unauthenticated else "idle")
        await self.slots.acquire()

    def _log_shed(self, what: str) -> None:
        """One line per SHED_LOG_INTERVAL_SECONDS: a flood must not flood the log too."""
        self.shed += 1
        now = trio.current_time()
        if now >= self.shed_logged_at + SHED_LOG_INTERVAL_SECONDS:
            log.warning("At %d connections: dropping the oldest one %s (%d dropped so far)",
                        self.cap, what, self.shed)  # fmt: skip
            self.shed_logged_at = now

    async def _connection(self, tcp: trio.SocketStream) -> None:
        try:
            await self._serve_one(tcp)
        finally:
            self.slots.release()

    async def _serve_one(self, tcp: trio.SocketStream) -> None:
        try:
            address, port = tcp.socket.getpeername()[:2]
            peer = f"{address}:{port}"
        except OSError:
            peer = "?"
        stream: trio.abc.Stream = tcp
        try:
            if self.config.ssl_context is not None:
                stream = await self._handshake(tcp, self.config.ssl_context, peer)
            await serve_connection(stream, peer, self.api, self.config, self.drain)
        except (trio.BrokenResourceError, trio.ClosedResourceError, Closed) as exc:
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
        scope = trio.CancelScope(deadline=trio.current_time() + self.config.handshake_timeout)
        self.unauthenticated[scope] = None
        try:
            with scope:
                try:
                    await stream.do_handshake()
                except trio.BrokenResourceError as exc:
                    # No client certificate, one from another CA, a plain-HTTP client...
                    log.info("TLS handshake with %s failed: %s", peer, exc.__cause__ or exc)
                    raise Closed("TLS handshake failed") from exc
                return stream
        finally:
            self.unauthenticated.pop(scope, None)
        log.info("TLS handshake with %s timed out or was shed", peer)
        raise Closed("TLS handshake timed out")
