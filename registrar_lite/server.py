"""``serve_registrar``: both listeners, the store and the app in one Trio nursery.

Like Keylime's registrar (keylime/web/base/server.py) there are two listeners: plain HTTP on
``port`` for agents (registration, activation, /version) and HTTPS on ``tls_port`` that
*requires* a client certificate issued by ``trusted_client_ca``.  Limelet binds both sockets
itself, so the bound TLS port is known before the first request (the app's admin guard
compares it), then hands them to Hypercorn.

Binding, the Hypercorn config and its CVE-2023-38200 timeouts are service_kit/listen.py's.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Optional

import trio
from cryptography import x509

from registrar_lite.app import create_app
from registrar_lite.config import RegistrarConfig
from registrar_lite.errors import ConfigError
from registrar_lite.identity import load_trust_store
from registrar_lite.metrics import MeteredRegistrar, RegistrarMetrics, attach_metrics
from registrar_lite.store import AgentStore, SqliteAgentStore
from service_kit.listen import bind, hypercorn_config, serve_app

log = logging.getLogger("limelet.registrar")


@dataclass(frozen=True)
class BoundPorts:
    """What ``serve_registrar`` reports once both listeners accept connections."""

    ip: str
    port: int
    tls_port: int


@contextmanager
def _listeners(config: RegistrarConfig) -> Iterator[tuple[socket.socket, socket.socket]]:
    plain = bind(config.ip, config.port)
    try:
        tls = bind(config.ip, config.tls_port)
        try:
            yield plain, tls
        finally:
            tls.close()
    finally:
        plain.close()


def _trust_store(config: RegistrarConfig) -> Optional[tuple[x509.Certificate, ...]]:
    path = config.tpm_cert_store_path
    return None if path is None else load_trust_store(path)


async def open_store(config: RegistrarConfig) -> AgentStore:
    """SQLite, or PostgreSQL (registrar_lite/store_postgres.py) when ``database_url`` names
    it; psycopg comes with the optional ``postgres`` extra, so it is imported only then."""
    if not config.uses_postgres:
        return await SqliteAgentStore.open(config.sqlite_path())
    try:
        from registrar_lite.store_postgres import PostgresAgentStore
    except ImportError as exc:
        raise ConfigError("database_url", "PostgreSQL needs limelet[postgres] (psycopg)") from exc
    return await PostgresAgentStore.open(config.database_url)


async def serve_registrar(
    config: RegistrarConfig,
    *,
    shutdown: Optional[trio.Event] = None,
    task_status: trio.TaskStatus[BoundPorts] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled or ``shutdown`` is set (a graceful stop, open requests drain);
    ``task_status.started(BoundPorts)`` once both listeners are up."""
    trust = _trust_store(config)
    hc = hypercorn_config(config, log)
    hc.create_ssl_context()  # fail now, naming the file, rather than at the first client
    store = await open_store(config)
    try:
        with _listeners(config) as (plain, tls):
            ports = BoundPorts(config.ip, plain.getsockname()[1], tls.getsockname()[1])
            metrics = RegistrarMetrics()
            app = create_app(
                MeteredRegistrar(store, trust, metrics=metrics),
                tls_port=ports.tls_port,
                max_body_bytes=config.max_body_bytes,
                body_timeout_seconds=config.read_timeout_seconds,
            )
            attach_metrics(app, metrics, ports.tls_port)
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    partial(serve_app, app, hc, tls=(tls,), plain=(plain,), shutdown=shutdown)
                )
                log.info("registrar on http %s and mTLS %s", ports.port, ports.tls_port)
                task_status.started(ports)
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
