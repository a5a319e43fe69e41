"""The pull agent's server side, imported only when the agent serves (not in push mode).

The agent API server (edge_agent.server) with its TLS files, payload deployment and
revocation hooks: a push agent never loads these modules, which is most of the difference in
bench/push_footprint.py.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Optional

import trio

from edge_agent.bootstrap_keys import BootstrapKeys
from edge_agent.config import AgentConfig, OptionValueError, parse_api_versions
from edge_agent.ima import ImaLogReader, MeasuredBootLogReader
from edge_agent.payload import check_payload_policy
from edge_agent.server import AgentApiContext, TlsFiles, serve_agent_api
from edge_agent.server.hooks import PayloadSettings, payload_deployer, revocation_handler
from edge_agent.server.serve import prepare_server_config
from edge_agent.tpm import Tpm

if TYPE_CHECKING:
    from edge_agent.app import Prepared

__all__ = ["api_context", "checked_tls_files", "server_ready", "tls_files"]


def checked_tls_files(config: AgentConfig) -> Optional[TlsFiles]:
    """The server's TLS files, after the payload policy check: both stop the agent before
    the TPM opens."""
    tls = tls_files(config)
    check_payload_policy(
        config.payload_script, config.enable_agent_mtls, config.enable_insecure_payload
    )
    return tls


async def server_ready(
    config: AgentConfig, tls: Optional[TlsFiles], stop: Optional[trio.Event]
) -> Callable[..., Awaitable[None]]:
    """``serve_agent_api`` bound to its config, with the TLS key already read into memory
    (while it is still readable: a ``run_as`` drop comes after this)."""
    prepare = functools.partial(prepare_server_config, config.ip, config.port, tls)
    server_config = await trio.to_thread.run_sync(prepare)
    return functools.partial(
        serve_agent_api,
        host=config.ip,
        port=config.port,
        tls=tls,
        server_config=server_config,
        shutdown=None if stop is None else stop.wait,
    )


def tls_files(config: AgentConfig) -> Optional[TlsFiles]:
    """The server's TLS files; a missing client CA stops the agent before it starts."""
    if not config.enable_agent_mtls:
        return None
    cas = config.trusted_client_ca_paths
    for ca in cas:
        if not ca.is_file():
            raise OptionValueError("trusted_client_ca", repr(str(ca)), "file not found", "")
    return TlsFiles(
        certfile=config.server_cert_path,
        keyfile=config.server_key_path,
        client_cas=cas,
        keyfile_password=config.server_key_password or None,
    )


def api_context(
    config: AgentConfig,
    tpm: Tpm,
    prepared: Prepared,
    ima: Optional[ImaLogReader],
    boot_log: MeasuredBootLogReader,
) -> AgentApiContext:
    started = prepared.started
    return AgentApiContext(
        agent_id=started.agent_id,
        tpm=tpm,
        nk=prepared.nk,
        nk_public_pem=started.nk_public_pem,
        hash_alg=prepared.hash_alg,
        enc_alg=prepared.enc_alg,
        sign_alg=prepared.sign_alg,
        versions=parse_api_versions(config.api_versions, warn=False),
        keys=BootstrapKeys(started.agent_id),
        ima=ima,
        boot_log=boot_log,
        deploy_payload=payload_deployer(PayloadSettings.from_config(config, started.agent_id)),
        on_revocation=revocation_handler(config),
    )
