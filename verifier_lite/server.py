"""``serve_verifier``: the store, the polling engine and the mTLS REST listener in one nursery.

Start order (each ``await nursery.start``): TLS material (``tls_dir = generate``), the store
(SQLite, or PostgreSQL for ``database_url = postgresql://...``), the engine (which resumes
polling every agent the store says is being polled), then Hypercorn on one listener that
*requires* a client certificate from ``trusted_client_ca`` (Keylime's verifier: every route is
mTLS).  Cancelling the scope stops all of it; the store is closed shielded.

Binding, the Hypercorn config and its CVE-2023-38200 timeouts are service_kit/listen.py's.
"""

from __future__ import annotations

import dataclasses
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Optional

import httpx
import trio

from attest_protocol.api_version import ApiVersion
from service_kit.listen import bind, hypercorn_config, serve_app
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
from verifier_lite.metrics_http import attach_metrics
from verifier_lite.push.listener import serve_push_listener
from verifier_lite.push.monitor import run_monitor
from verifier_lite.push.routes import EXTENSION as PUSH_EXTENSION
from verifier_lite.records import AgentRecord
from verifier_lite.revocation import Notifier
from verifier_lite.service import Verifier
from verifier_lite.status_page import serve_status_page
from verifier_lite.store import SqliteVerifierStore, VerifierStore
from verifier_lite.store_health import MonitoredStore
from verifier_lite.store_lock import lock_database
from verifier_lite.tls import ensure_tls_dir

if TYPE_CHECKING:  # psycopg is optional: lease_loop.py is imported only for PostgreSQL
    from verifier_lite.lease_loop import Fleet

log = logging.getLogger("limelet.verifier")


@dataclass(frozen=True)
class BoundPort:
    ip: str
    port: int
    status_url: Optional[str] = None  # the status page's, when status_page_address is set
    push_port: Optional[int] = None  # the push agents' listener, when push_port >= 0


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
        measured_boot_policy_name=config.measured_boot_policy_name,
        severity=config.severity,
        counter_flush_seconds=config.counter_flush_seconds,
        max_in_flight=config.max_in_flight,
        in_flight_lag_seconds=config.in_flight_lag_ms / 1000,
    )


async def open_store(config: VerifierConfig) -> VerifierStore:
    """SQLite, or PostgreSQL (verifier_lite/store_postgres.py) when ``database_url`` names it;
    psycopg comes with the optional ``postgres`` extra, so it is imported only then."""
    if not config.uses_postgres:
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
    shutdown: Optional[trio.Event] = None,
    task_status: trio.TaskStatus[BoundPort] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run until cancelled or ``shutdown`` is set (open requests drain, then polling stops);
    ``task_status.started(BoundPort)`` once the listener is up."""
    if ensure_tls_dir(config):
        log.info("generated a CA and certificates in %s", config.tls_path)
    hc = hypercorn_config(config, log)
    hc.create_ssl_context()  # fail now, naming the file, rather than at the first client
    store = await open_store(config)
    fleet: Optional[Fleet] = None
    try:
        if config.shares_fleet:  # several verifiers on PostgreSQL: lease_loop.py
            from verifier_lite.lease_loop import open_fleet

            fleet = await open_fleet(config, store)
        factory = channels or http_channels(config)
        sink = HttpRevocationSink(factory, config.webhook_url, config.request_timeout)
        notifier = Notifier(config.revocation_notifiers, sink)
        engine = Engine(
            store,
            engine_settings(config),
            factory if fleet is None else fleet.loop.guarded(factory),
            notifier,
            verifier_id=config.uuid,
            poll_store=None if fleet is None else fleet.poll_store,
        )
        if fleet is not None:
            fleet.loop.attach(engine)
        sock = bind(config.ip, config.port)
        try:
            bound = BoundPort(config.ip, sock.getsockname()[1])
            verifier = Verifier(store, engine, config)
            app = create_app(verifier, max_body_bytes=config.max_body_bytes)
            attach_metrics(app, store, engine, config.uuid)
            push_state = app.extensions[PUSH_EXTENSION]
            async with trio.open_nursery() as nursery:
                await nursery.start(engine.serve)
                # In this nursery, not the app's: Hypercorn 0.17 (Debian 13) logs a cancelled
                # lifespan task as a traceback on every stop.
                nursery.start_soon(run_monitor, verifier, push_state.clock)
                if config.push_port >= 0:  # push agents' own listener (push/listener.py)
                    push_port = await nursery.start(
                        serve_push_listener, config, push_state, shutdown
                    )
                    bound = dataclasses.replace(bound, push_port=push_port)
                if fleet is not None:
                    await nursery.start(fleet.loop.serve)
                await nursery.start(
                    _serve_then_stop,
                    nursery,
                    partial(serve_app, app, hc, tls=(sock,), shutdown=shutdown),
                )
                if config.status_page_address:
                    status = await nursery.start(serve_status_page, verifier, shutdown)
                    bound = BoundPort(bound.ip, bound.port, status)
                log.info("verifier %s on mTLS %s:%d", config.uuid, bound.ip, bound.port)
                task_status.started(bound)
        finally:
            sock.close()
    finally:
        with trio.CancelScope(shield=True):
            if fleet is not None:
                await fleet.aclose()
            await store.aclose()


async def _serve_then_stop(
    nursery: trio.Nursery,
    serve: Callable[..., Awaitable[None]],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the listener; once it returned after a graceful stop, stop the engine too."""
    await serve(task_status=task_status)
    nursery.cancel_scope.cancel()
