"""The agent daemon: start-up in rust-keylime's order, then one nursery until cancelled.

Start-up (keylime-agent/src/main.rs): open the TPM (the TPM layer warns loudly about a
software TPM), read the EK and its certificate, load or create the AK, settle the agent id
(``hash_ek`` needs the EK), load or create the NK and the mTLS identity, then register with
the registrar and activate.  Any failure there stops the agent with the error; the registrar
being unreachable is retried first (edge_agent.backoff).

After that the long-running parts live in one nursery (``serve_x(..., task_status=...)``
started in order); the REST server joins it in the next release.  Cancelling ``run_agent``
(SIGTERM in the CLI) closes the TPM, shielded, and returns.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NoReturn, Optional

import trio

from attest_protocol.api_version import ApiVersion
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.backoff import BackoffPolicy
from edge_agent.config import AgentConfig, parse_api_versions, resolve_agent_id
from edge_agent.http11 import Connector
from edge_agent.keys import (
    ServerIdentity,
    load_or_create_nk,
    load_or_create_server_identity,
    nk_public_pem,
)
from edge_agent.registrar_client import RegistrarClient, Registration, register_and_activate
from edge_agent.tpm import EkCertificateMissing, Tpm, TpmConfig

__all__ = ["AgentStarted", "TpmOpener", "run_agent", "start_agent"]

log = logging.getLogger(__name__)

TpmOpener = Callable[[TpmConfig], Awaitable[Tpm]]


@dataclass(frozen=True)
class AgentStarted:
    """What ``run_agent`` reports through ``task_status.started()``."""

    agent_id: str
    api_version: ApiVersion
    nk_public_pem: bytes
    mtls_cert_pem: Optional[str]


async def open_pytss_tpm(config: TpmConfig) -> Tpm:
    """The real backend; imported here so that importing the app does not load tpm2-pytss."""
    from edge_agent.tpm.pytss_backend import open_tpm

    return await open_tpm(config)


async def run_agent(
    config: AgentConfig,
    *,
    open_tpm: TpmOpener = open_pytss_tpm,
    connect: Optional[Connector] = None,
    task_status: trio.TaskStatus[AgentStarted] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Start the agent and keep it running until cancelled."""
    tpm = await open_tpm(config.tpm_config())
    try:
        started = await start_agent(config, tpm, connect=connect)
        async with trio.open_nursery():
            # The one nursery of the daemon: serve_* tasks are started here, in order.
            task_status.started(started)
            log.info("Agent %s is up; waiting for SIGTERM", started.agent_id)
            await trio.sleep_forever()
    finally:
        with trio.CancelScope(shield=True):
            await tpm.aclose()


async def start_agent(
    config: AgentConfig, tpm: Tpm, *, connect: Optional[Connector] = None
) -> AgentStarted:
    """Everything before serving: identity, keys, registration and activation."""
    ek = await tpm.ek()
    ek_cert = await _ek_certificate(tpm)
    ak = await tpm.ak()
    log.info("AK %s (%s)", "created" if ak.created else "reloaded", ak.signing_alg)
    agent_id = resolve_agent_id(config.uuid, parse_tpm2b_public(ek.public).public_key_pem())
    log.info("Agent id: %s", agent_id)
    nk = await trio.to_thread.run_sync(
        load_or_create_nk, config.payload_key_path, config.payload_key_password
    )
    identity = await _mtls_identity(config, agent_id)
    registration = Registration(
        agent_id=agent_id,
        ek_tpm=ek.public,
        ek_cert_der=ek_cert,
        aik_tpm=ak.public,
        mtls_cert_pem=None if identity is None else identity.cert_pem,
        contact_ip=config.contact_ip,
        contact_port=config.contact_port,
    )
    policy = BackoffPolicy(
        config.exponential_backoff_initial_delay,
        config.exponential_backoff_max_retries,
        config.exponential_backoff_max_delay,
    )
    client = RegistrarClient(
        config.registrar_ip, config.registrar_port, policy.schedule(), connect=connect
    )
    enabled = parse_api_versions(config.api_versions, warn=False)  # the loader warned
    version = await register_and_activate(client, tpm, registration, enabled)
    return AgentStarted(agent_id, version, nk_public_pem(nk), registration.mtls_cert_pem)


async def _ek_certificate(tpm: Tpm) -> Optional[bytes]:
    try:
        return await tpm.ek_certificate()
    except EkCertificateMissing as exc:
        # Registrars that require an EK certificate will refuse us; others do not need it.
        log.warning("Registering without an EK certificate: %s", exc)
        return None


async def _mtls_identity(config: AgentConfig, agent_id: str) -> Optional[ServerIdentity]:
    if not config.enable_agent_mtls:
        log.warning("mTLS disabled: the verifier and tenant will reach the agent over HTTP")
        return None
    make = functools.partial(
        load_or_create_server_identity,
        config.server_key_path,
        config.server_cert_path,
        agent_id=agent_id,
        contact_address=config.contact_ip,
        password=config.server_key_password,
    )
    return await trio.to_thread.run_sync(make)
