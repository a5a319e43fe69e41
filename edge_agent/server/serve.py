"""``serve_agent_api``: the agent API on Hypercorn's Trio worker, with mutual TLS.

TLS as rust-keylime sets it up (keylime-agent/src/main.rs, ``crypto::generate_tls_context``):
the server presents the agent's mTLS certificate and key, and requires a client certificate
issued by ``trusted_client_ca`` (the verifier's and tenant's CA); a client without one is
refused in the handshake.  With ``enable_agent_mtls = false`` it serves plain HTTP, as
rust-keylime allows, and says so loudly.

Shutdown: when ``shutdown`` returns, Hypercorn stops accepting, lets requests in flight finish
for up to ``graceful_timeout`` and returns; cancelling the task stops everything at once.
"""

from __future__ import annotations

import ipaddress
import logging
import ssl
from collections.abc import Awaitable
from pathlib import Path
from typing import Callable, Optional

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from edge_agent.server.asgi import AgentApiApp
from edge_agent.server.context import AgentApiContext
from edge_agent.server.tls import TlsFiles

__all__ = [
    "GRACEFUL_TIMEOUT_SECONDS",
    "READ_TIMEOUT_SECONDS",
    "TLS_HANDSHAKE_TIMEOUT_SECONDS",
    "TlsFiles",
    "hypercorn_config",
    "prepare_server_config",
    "serve_agent_api",
]

log = logging.getLogger(__name__)

# A client that has not finished the TLS handshake by then is dropped (Hypercorn's default is
# 60 s, long enough for a slow-loris to hold many sockets on a small device).
TLS_HANDSHAKE_TIMEOUT_SECONDS = 10
# Idle time allowed while reading a request; Keylime's verifier sends its requests at once.
READ_TIMEOUT_SECONDS = 30
KEEP_ALIVE_TIMEOUT_SECONDS = 5
# Requests in flight when shutdown starts may finish within this (a quote takes < 1 s).
GRACEFUL_TIMEOUT_SECONDS = 5.0
# Keylime's clients (tornado, requests) speak HTTP/1.1.
ALPN_PROTOCOLS = ["http/1.1"]


class _MutualTlsConfig(Config):
    """Hypercorn's Config takes one CA file; ``trusted_client_ca`` is a list (base.rs).

    The context is built once and kept: ``prepare_server_config`` builds it while the agent
    can still read its key files, before a ``run_as`` privilege drop.
    """

    client_cas: tuple[Path, ...] = ()
    prebuilt: Optional[ssl.SSLContext] = None

    def create_ssl_context(self) -> Optional[ssl.SSLContext]:
        if self.prebuilt is not None:
            return self.prebuilt
        context = super().create_ssl_context()
        if context is not None:
            for ca in self.client_cas:
                context.load_verify_locations(cafile=str(ca))
            context.verify_mode = ssl.CERT_REQUIRED
        return context


def hypercorn_config(host: str, port: int, tls: Optional[TlsFiles]) -> Config:
    config = _MutualTlsConfig()
    config.bind = [_bind_address(host, port)]
    config.alpn_protocols = ALPN_PROTOCOLS
    config.ssl_handshake_timeout = TLS_HANDSHAKE_TIMEOUT_SECONDS
    config.read_timeout = READ_TIMEOUT_SECONDS
    config.keep_alive_timeout = KEEP_ALIVE_TIMEOUT_SECONDS
    config.graceful_timeout = GRACEFUL_TIMEOUT_SECONDS
    config.accesslog = logging.getLogger("edge_agent.server.access")
    config.errorlog = logging.getLogger("edge_agent.server.hypercorn")
    if tls is not None:
        config.certfile = str(tls.certfile)
        config.keyfile = str(tls.keyfile)
        config.keyfile_password = tls.keyfile_password or None
        config.client_cas = tls.client_cas
    return config


def prepare_server_config(host: str, port: int, tls: Optional[TlsFiles]) -> Config:
    """The server's config with its TLS context already loaded (blocking: reads key files)."""
    config = hypercorn_config(host, port, tls)
    if isinstance(config, _MutualTlsConfig) and tls is not None:
        config.prebuilt = config.create_ssl_context()
    return config


def _bind_address(host: str, port: int) -> str:
    try:
        if ipaddress.ip_address(host.strip("[]")).version == 6:
            return f"[{host.strip('[]')}]:{port}"
    except ValueError:
        pass  # a host name
    return f"{host}:{port}"


async def serve_agent_api(
    ctx: AgentApiContext,
    *,
    host: str,
    port: int,
    tls: Optional[TlsFiles],
    shutdown: Optional[Callable[[], Awaitable[object]]] = None,
    server_config: Optional[Config] = None,
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
    config = hypercorn_config(host, port, tls) if server_config is None else server_config
    app = AgentApiApp(ctx)
    async with trio.open_nursery() as background:
        ctx.background = background
        try:
            await serve(app, config, shutdown_trigger=shutdown, task_status=task_status)  # type: ignore[arg-type]
        finally:
            # Background hooks (payload, revocation) end with the server.
            background.cancel_scope.cancel()
            ctx.background = None
