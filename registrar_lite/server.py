"""``serve_registrar``: both listeners, the store and the app in one Trio nursery.

Like Keylime's registrar (keylime/web/base/server.py) there are two listeners: plain HTTP on
``port`` for agents (registration, activation, /version) and HTTPS on ``tls_port`` that
*requires* a client certificate issued by ``trusted_client_ca``.  Limelet binds both sockets
itself, so the bound TLS port is known before the first request (the app's admin guard
compares it), then hands them to Hypercorn.

CVE-2023-38200 (a half-open TLS connection stalled Keylime's single-threaded loop): every
connection is its own task here, and Hypercorn drops one that does not finish the handshake
within ``handshake_timeout_seconds``, does not send a request within ``read_timeout_seconds``,
or idles past ``keep_alive_seconds``.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional

import trio
from cryptography import x509
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from registrar_lite.app import create_app
from registrar_lite.config import RegistrarConfig
from registrar_lite.identity import load_trust_store
from registrar_lite.service import Registrar
from registrar_lite.store import SqliteAgentStore

log = logging.getLogger("limelet.registrar")

# Pending connections the kernel queues per listener before refusing (Hypercorn's default).
LISTEN_BACKLOG = 100


@dataclass(frozen=True)
class BoundPorts:
    """What ``serve_registrar`` reports once both listeners accept connections."""

    ip: str
    port: int
    tls_port: int


def _bind(ip: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((ip, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


@contextmanager
def _listeners(config: RegistrarConfig) -> Iterator[tuple[socket.socket, socket.socket]]:
    plain = _bind(config.ip, config.port)
    try:
        tls = _bind(config.ip, config.tls_port)
        try:
            yield plain, tls
        finally:
            tls.close()
    finally:
        plain.close()


def hypercorn_config(config: RegistrarConfig) -> HypercornConfig:
    hc = HypercornConfig()
    hc.certfile = str(config.server_cert_path)
    hc.keyfile = str(config.server_key_path)
    hc.ca_certs = str(config.trusted_client_ca_path)
    hc.verify_mode = ssl.CERT_REQUIRED  # no client certificate, no TLS session
    hc.alpn_protocols = ["http/1.1"]
    hc.ssl_handshake_timeout = config.handshake_timeout_seconds
    hc.read_timeout = int(max(1, config.read_timeout_seconds))
    hc.keep_alive_timeout = config.keep_alive_seconds
    hc.graceful_timeout = config.shutdown_grace_seconds
    hc.h11_max_incomplete_size = config.max_body_bytes
    hc.accesslog = None
    hc.errorlog = log
    return hc


def _trust_store(config: RegistrarConfig) -> Optional[tuple[x509.Certificate, ...]]:
    path = config.tpm_cert_store_path
    return None if path is None else load_trust_store(path)


async def serve_registrar(
    config: RegistrarConfig,
    *,
    task_status: trio.TaskStatus[BoundPorts] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled; ``task_status.started(BoundPorts)`` once both listeners are up."""
    trust = _trust_store(config)
    hc = hypercorn_config(config)
    hc.create_ssl_context()  # fail now, naming the file, rather than at the first client
    store = await SqliteAgentStore.open(config.sqlite_path())
    try:
        with _listeners(config) as (plain, tls):
            ports = BoundPorts(config.ip, plain.getsockname()[1], tls.getsockname()[1])
            app = create_app(
                Registrar(store, trust),
                tls_port=ports.tls_port,
                max_body_bytes=config.max_body_bytes,
            )
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    lambda task_status: worker_serve(
                        wrap_app(app, hc.wsgi_max_body_size, "asgi"),
                        hc,
                        sockets=Sockets([tls], [plain], []),
                        task_status=task_status,
                    )
                )
                log.info("registrar on http %s and mTLS %s", ports.port, ports.tls_port)
                task_status.started(ports)
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
