"""Listening sockets and Hypercorn: what both services do to put an app on the network.

Limelet binds its sockets itself, so the bound port (``port = 0`` in tests) is known before the
first request, then hands them to Hypercorn's trio worker.  CVE-2023-38200 (a half-open TLS
connection stalled Keylime's single-threaded loop): every connection is its own task here, and
Hypercorn drops one that does not finish the handshake within ``handshake_timeout_seconds`` or
whose request line and headers have not arrived within ``keep_alive_seconds`` (its idle timer
runs until a whole request head is parsed, and again between requests).  A body that stalls
is answered 408 after ``read_timeout_seconds`` (the app's BODY_TIMEOUT, service_kit/web.py).

Hypercorn's own ``read_timeout`` stays off: it times every socket read, also while the client
waits for its answer, so a request that takes longer than it to serve (a bulk status of a
thousand agents on a busy verifier) was dropped without a response.

A stop is graceful: ``serve_app`` hands Hypercorn a shutdown trigger instead of cancelling it,
so open requests drain for ``shutdown_grace_seconds`` and the app's ASGI lifespan sees its
``lifespan.shutdown``.  Cancelling Hypercorn's worker instead makes Hypercorn 0.17 (Debian 13)
log "ASGI Framework Lifespan error" with a traceback on every SIGTERM (pgjones/hypercorn#238).
"""

from __future__ import annotations

import logging
import socket
import ssl
from pathlib import Path
from typing import Any, Optional, Protocol

import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

# Pending connections the kernel queues per listener before refusing (Hypercorn's default).
LISTEN_BACKLOG = 100


class ListenerSettings(Protocol):
    """The options of a service's mTLS listener (both services' configs have them)."""

    @property
    def server_cert_path(self) -> Path: ...
    @property
    def server_key_path(self) -> Path: ...
    @property
    def trusted_client_ca_path(self) -> Path: ...
    @property
    def handshake_timeout_seconds(self) -> float: ...
    @property
    def read_timeout_seconds(self) -> float: ...
    @property
    def keep_alive_seconds(self) -> float: ...
    @property
    def shutdown_grace_seconds(self) -> float: ...
    @property
    def max_body_bytes(self) -> int: ...


def bind(ip: str, port: int, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """A listening, non-blocking TCP socket on ``ip`` (IPv6 when it has a colon)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def mtls_config(
    cert: Path, key: Path, client_ca: Path, errorlog: Optional[logging.Logger] = None
) -> HypercornConfig:
    """TLS that *requires* a client certificate issued by ``client_ca``, HTTP/1.1 only."""
    hc = HypercornConfig()
    hc.certfile = str(cert)
    hc.keyfile = str(key)
    hc.ca_certs = str(client_ca)
    hc.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no TLS session
    hc.alpn_protocols = ["http/1.1"]
    hc.accesslog = None
    if errorlog is not None:
        hc.errorlog = errorlog
    return hc


def hypercorn_config(settings: ListenerSettings, log: logging.Logger) -> HypercornConfig:
    """The mTLS listener of a service, with its timeouts and body limit."""
    hc = mtls_config(
        settings.server_cert_path, settings.server_key_path, settings.trusted_client_ca_path, log
    )
    hc.ssl_handshake_timeout = settings.handshake_timeout_seconds
    set_connection_timeouts(hc, settings)
    hc.h11_max_incomplete_size = settings.max_body_bytes
    return hc


def set_connection_timeouts(hc: HypercornConfig, settings: ListenerSettings) -> None:
    """Idle and drain timers of a listener; no socket read timeout (module docstring)."""
    hc.read_timeout = None
    hc.keep_alive_timeout = settings.keep_alive_seconds
    hc.graceful_timeout = settings.shutdown_grace_seconds


async def serve_app(
    app: Any,
    hc: HypercornConfig,
    *,
    tls: tuple[socket.socket, ...] = (),
    plain: tuple[socket.socket, ...] = (),
    shutdown: Optional[trio.Event] = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the ASGI ``app`` on the bound sockets; ``task_status.started()`` once they accept.

    Returns after ``shutdown`` is set and open requests drained (or the grace ran out).
    Cancelling still stops it at once, as a test's nursery does.
    """
    trigger = None if shutdown is None else shutdown.wait

    async def serve(task_status: trio.TaskStatus[list[str]]) -> None:
        await worker_serve(
            wrap_app(app, hc.wsgi_max_body_size, "asgi"),
            hc,
            sockets=Sockets(list(tls), list(plain), []),
            shutdown_trigger=trigger,
            task_status=task_status,
        )

    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        task_status.started()
