"""``serve_verifier``: the store, the polling engine and the mTLS REST listener in one nursery.

Start order (each ``await nursery.start``): TLS material (``tls_dir = generate``), the store
(SQLite, or PostgreSQL for ``database_url = postgresql://...``), the engine (which resumes
polling every agent the store says is being polled), then Hypercorn on one listener that
*requires* a client certificate from ``trusted_client_ca`` (Keylime's verifier: every route is
mTLS).  Cancelling the scope stops all of it; the store is closed shielded.

CVE-2023-38200: Hypercorn drops a connection that does not finish its TLS handshake within
``handshake_timeout_seconds`` or its request within ``read_timeout_seconds``.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

import httpx
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.config import Sockets
from hypercorn.trio.run import worker_serve
from hypercorn.utils import wrap_app

from attest_protocol.api_version import ApiVersion
from verifier_lite.agent_client import (
    MTLS_DISABLED,
    AgentChannel,
    HttpAgentChannel,
    agent_ssl_context,
)
from verifier_lite.app import create_app
from verifier_lite.config import VerifierConfig
from verifier_lite.engine import ChannelFactory, Engine, EngineSettings
from verifier_lite.errors import ConfigError
from verifier_lite.records import AgentRecord
from verifier_lite.revocation import Notifier
from verifier_lite.service import Verifier
from verifier_lite.store import SqliteVerifierStore, VerifierStore
from verifier_lite.store_health import MonitoredStore
from verifier_lite.store_lock import lock_database
from verifier_lite.tls import ensure_tls_dir

log = logging.getLogger("limelet.verifier")

LISTEN_BACKLOG = 100  # Hypercorn's default
POSTGRES_URL_START = "postgres"  # postgresql://, postgres://, postgresql+psycopg2://, ...


@dataclass(frozen=True)
class BoundPort:
    ip: str
    port: int


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


def hypercorn_config(config: VerifierConfig) -> HypercornConfig:
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


def http_channels(config: VerifierConfig) -> ChannelFactory:
    """The production channel factory: mTLS with the agent's certificate pinned."""
    client_cert, client_key = str(config.client_cert_path), str(config.client_key_path)

    def make(agent: AgentRecord) -> AgentChannel:
        context: Optional[ssl.SSLContext] = None
        if agent.mtls_cert and agent.mtls_cert != MTLS_DISABLED:
            context = agent_ssl_context(agent.mtls_cert, client_cert, client_key)
        else:
            log.warning("connecting to agent %s without mTLS", agent.agent_id)
        return HttpAgentChannel(
            agent.agent_id,
            agent.ip,
            agent.port,
            ssl_context=context,
            timeout_seconds=config.request_timeout,
        )

    return make


class HttpRevocationSink:
    """``RevocationSink`` over the agents' channels and httpx for the webhook."""

    def __init__(self, channels: ChannelFactory, webhook_url: str, timeout: float) -> None:
        self._channels = channels
        self._webhook_url = webhook_url
        self._timeout = timeout

    async def send(self, agent: AgentRecord, version: ApiVersion, body: Mapping[str, str]) -> None:
        channel = self._channels(agent)
        try:
            await channel.notify_revocation(version, body)
        finally:
            with trio.CancelScope(shield=True):
                await channel.aclose()

    async def webhook(self, body: Mapping[str, str]) -> None:
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            response = await client.post(self._webhook_url, json=dict(body))
            response.raise_for_status()


def engine_settings(config: VerifierConfig) -> EngineSettings:
    return EngineSettings(
        quote_interval=config.quote_interval,
        retry_interval=config.retry_interval,
        exponential_backoff=config.exponential_backoff,
        max_retries=config.max_retries,
    )


async def open_store(config: VerifierConfig) -> VerifierStore:
    """SQLite, or PostgreSQL (verifier_lite/store_postgres.py) when ``database_url`` names it;
    psycopg comes with the optional ``postgres`` extra, so it is imported only then."""
    if not config.database_url.startswith(POSTGRES_URL_START):
        lock = lock_database(config.sqlite_path())  # store_lock.py: one verifier per file
        try:
            return MonitoredStore(await SqliteVerifierStore.open(config.sqlite_path()), lock)
        except BaseException:
            lock.release()
            raise
    try:
        from verifier_lite.store_postgres import PostgresVerifierStore
    except ImportError as exc:
        raise ConfigError("database_url", "PostgreSQL needs limelet[postgres] (psycopg)") from exc
    return MonitoredStore(await PostgresVerifierStore.open(config.database_url))


async def serve_verifier(
    config: VerifierConfig,
    *,
    channels: Optional[ChannelFactory] = None,
    task_status: trio.TaskStatus[BoundPort] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled; ``task_status.started(BoundPort)`` once the listener is up."""
    if ensure_tls_dir(config):
        log.info("generated a CA and certificates in %s", config.tls_path)
    hc = hypercorn_config(config)
    hc.create_ssl_context()  # fail now, naming the file, rather than at the first client
    store = await open_store(config)
    try:
        factory = channels or http_channels(config)
        sink = HttpRevocationSink(factory, config.webhook_url, config.request_timeout)
        notifier = Notifier(config.revocation_notifiers, sink)
        engine = Engine(store, engine_settings(config), factory, notifier, verifier_id=config.uuid)
        sock = _bind(config.ip, config.port)
        try:
            bound = BoundPort(config.ip, sock.getsockname()[1])
            app = create_app(Verifier(store, engine, config), max_body_bytes=config.max_body_bytes)
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.serve)
                await nursery.start(
                    lambda task_status: worker_serve(
                        wrap_app(app, hc.wsgi_max_body_size, "asgi"),
                        hc,
                        sockets=Sockets([sock], [], []),
                        task_status=task_status,
                    )
                )
                log.info("verifier %s on mTLS %s:%d", config.uuid, bound.ip, bound.port)
                task_status.started(bound)
        finally:
            sock.close()
    finally:
        with trio.CancelScope(shield=True):
            await store.aclose()
