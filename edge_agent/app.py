"""The agent daemon: start-up in rust-keylime's order, then one nursery until cancelled.

Start-up (keylime-agent/src/main.rs): open the TPM (the TPM layer warns loudly about a
software TPM), read the EK and its certificate, load or create the AK, settle the agent id
(``hash_ek`` needs the EK), load or create the NK and the mTLS identity, then register with
the registrar and activate.  Any failure there stops the agent with the error; the registrar
being unreachable is retried first (edge_agent.backoff).

After that the long-running parts live in one nursery (``serve_x(..., task_status=...)``
started in order): the agent API server (edge_agent.server) on ``ip:port``, over mTLS with
``trusted_client_ca`` unless ``enable_agent_mtls`` is false (edge_agent.pull_mode, imported
only by a pull agent), or in push mode the push task (edge_agent.push), which listens nowhere.

Start-up time (docs/agent-api.md, Footprint): ``cli`` opens the TPM in the background while
trio and the app are imported (edge_agent.tpm.early).  The order of the steps above, and the
agent serving only once it is registered and activated, are kept.

Stopping: when ``stop`` is set (the CLI sets it on SIGTERM), the server stops accepting and
drains the requests in flight, then ``run_agent`` closes the IMA log and the TPM and returns;
the CLI gives all of that ``SHUTDOWN_GRACE_SECONDS`` before it cancels.  Cancelling
``run_agent`` directly stops at once, and still closes the TPM, shielded.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Optional

import trio
from cryptography.hazmat.primitives.asymmetric import rsa

from attest_protocol.api_version import ApiVersion
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.backoff import BackoffPolicy
from edge_agent.config import AgentConfig, OptionValueError, parse_api_versions, resolve_agent_id
from edge_agent.http_client import Connector
from edge_agent.ima import ImaLogReader, MeasuredBootLogReader
from edge_agent.keys import (
    ServerIdentity,
    load_or_create_nk,
    load_or_create_server_identity,
    nk_public_pem,
)
from edge_agent.registrar_client import RegistrarClient, Registration, register_and_activate
from edge_agent.tpm import EkCertificateMissing, Tpm, TpmConfig

__all__ = ["SHUTDOWN_GRACE_SECONDS", "AgentStarted", "TpmOpener", "run_agent", "start_agent"]

log = logging.getLogger(__name__)

TpmOpener = Callable[[TpmConfig], Awaitable[Tpm]]
# From SIGTERM to exit: the server's drain (GRACEFUL_TIMEOUT_SECONDS) plus closing the IMA
# log and the TPM.  systemd's default TimeoutStopSec is 90 s; we stay well inside it.
SHUTDOWN_GRACE_SECONDS = 10.0


@dataclass(frozen=True)
class AgentStarted:
    """What ``run_agent`` reports through ``task_status.started()``."""

    agent_id: str
    api_version: ApiVersion
    nk_public_pem: bytes
    mtls_cert_pem: Optional[str]
    # Where the agent API listens ("https://127.0.0.1:9002"); empty before it started.
    api_urls: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """start_agent's result plus what the server needs and AgentStarted does not carry."""

    started: AgentStarted
    nk: rsa.RSAPrivateKey
    enc_alg: str
    hash_alg: str
    sign_alg: str


async def open_pytss_tpm(config: TpmConfig) -> Tpm:
    """The real backend; imported here so that importing the app does not load tpm2-pytss."""
    from edge_agent.tpm.pytss_backend import open_tpm

    return await open_tpm(config)


async def run_agent(
    config: AgentConfig,
    *,
    open_tpm: TpmOpener = open_pytss_tpm,
    connect: Optional[Connector] = None,
    stop: Optional[trio.Event] = None,
    before_serving: Optional[Callable[[], Awaitable[None]]] = None,
    task_status: trio.TaskStatus[AgentStarted] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Start the agent and serve until ``stop`` is set (then drain) or until cancelled.

    ``before_serving`` runs once the TPM, the IMA log and the boot log are open and before the
    server binds: the daemon drops privileges there (``run_as``); in-process callers (tests)
    pass nothing, so they never change their own process's credentials.
    """
    # Push mode (edge_agent.push) serves nothing: no server TLS files, no payloads, and the
    # server's modules are never imported (bench/push_footprint.py measures the difference).
    if config.push_model:
        if not config.verifier_tls_ca_path.is_file():
            path = repr(str(config.verifier_tls_ca_path))
            raise OptionValueError("verifier_tls_ca_cert", path, "file not found", "")
    else:
        from edge_agent import pull_mode  # only pull agents load the server

        tls = pull_mode.checked_tls_files(config)
    tpm = await open_tpm(config.tpm_config())
    ima: Optional[ImaLogReader] = None
    boot_log = MeasuredBootLogReader(config.measuredboot_ml_file)
    try:
        prepared = await _prepare(config, tpm, connect)
        # Opened once, before serving (and before any privilege drop, as rust-keylime does).
        ima = ImaLogReader.open_if_present(config.ima_ml_file)
        if ima is None:
            log.warning("No IMA log at %s: quotes carry no IMA list", config.ima_ml_file)
        await trio.to_thread.run_sync(boot_log.open_now)
        if config.push_model:
            await _run_push(config, tpm, prepared, ima, boot_log, stop, before_serving, task_status)
            return
        serve = await pull_mode.server_ready(config, tls, stop)
        if before_serving is not None:
            await before_serving()
        ctx = pull_mode.api_context(config, tpm, prepared, ima, boot_log)
        async with trio.open_nursery() as nursery:
            # The one nursery of the daemon: serve_* tasks are started here, in order.
            urls: list[str] = await nursery.start(serve, ctx)
            task_status.started(dataclasses.replace(prepared.started, api_urls=tuple(urls)))
            log.info("Agent %s is up; waiting for SIGTERM", prepared.started.agent_id)
    finally:
        with trio.CancelScope(shield=True):
            if ima is not None:
                await ima.aclose()
            boot_log.close()
            await tpm.aclose()
    log.info("Agent stopped")


async def _run_push(
    config: AgentConfig,
    tpm: Tpm,
    prepared: Prepared,
    ima: Optional[ImaLogReader],
    boot_log: MeasuredBootLogReader,
    stop: Optional[trio.Event],
    before_serving: Optional[Callable[[], Awaitable[None]]],
    task_status: trio.TaskStatus[AgentStarted],
) -> None:
    """Push mode: the push task in the daemon's one nursery instead of the server."""
    from edge_agent.push.service import push_service  # only push agents load it

    serve = push_service(config, tpm, prepared.started.agent_id, ima, boot_log, stop)
    if before_serving is not None:
        await before_serving()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve)
        task_status.started(prepared.started)
        log.info("Agent %s is up in push mode; waiting for SIGTERM", prepared.started.agent_id)


async def start_agent(
    config: AgentConfig, tpm: Tpm, *, connect: Optional[Connector] = None
) -> AgentStarted:
    """Everything before serving: identity, keys, registration and activation."""
    return (await _prepare(config, tpm, connect)).started


async def _prepare(config: AgentConfig, tpm: Tpm, connect: Optional[Connector]) -> Prepared:
    ek = await tpm.ek()
    ek_cert = await _ek_certificate(tpm)
    ak = await tpm.ak()
    log.info("AK %s (%s)", "created" if ak.created else "reloaded", ak.signing_alg)
    agent_id = resolve_agent_id(config.uuid, parse_tpm2b_public(ek.public).public_key_pem())
    log.info("Agent id: %s", agent_id)
    nk = await trio.to_thread.run_sync(
        load_or_create_nk, config.payload_key_path, config.payload_key_password
    )
    # A push agent serves nothing, so it has no mTLS identity to register.
    identity = None if config.push_model else await _mtls_identity(config, agent_id)
    registration = Registration(
        agent_id=agent_id,
        ek_tpm=ek.public,
        ek_cert_der=ek_cert,
        aik_tpm=ak.public,
        mtls_cert_pem=None if identity is None else identity.cert_pem,
        contact_ip=config.contact_ip,
        contact_port=config.contact_port,
        ak_created=ak.created,
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
    started = AgentStarted(agent_id, version, nk_public_pem(nk), registration.mtls_cert_pem)
    return Prepared(started, nk, ek.encryption_alg, ak.hash_alg, ak.signing_alg)


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
