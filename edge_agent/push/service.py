"""The push agent as a task of the daemon's nursery (started instead of the API server).

``push_service`` runs before any privilege drop: it reads the verifier's CA now.  The task it
returns reports started once the AK is known, then attests until ``stop`` is set or it is
cancelled.  It opens no listening socket: every connection is outgoing, to ``verifier_url``.
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Optional

import trio

from edge_agent.backoff import BackoffPolicy
from edge_agent.config import AgentConfig
from edge_agent.ima import ImaLogReader, MeasuredBootLogReader
from edge_agent.push.collect import Collector, boot_time_iso
from edge_agent.push.loop import PushLoop, PushSettings
from edge_agent.push.transport import PushClient, verifier_tls
from edge_agent.tpm import Tpm

__all__ = ["PushTask", "push_service"]

log = logging.getLogger(__name__)

PushTask = Callable[..., Awaitable[None]]


def push_service(
    config: AgentConfig,
    tpm: Tpm,
    agent_id: str,
    ima: Optional[ImaLogReader],
    boot_log: MeasuredBootLogReader,
    stop: Optional[trio.Event],
) -> PushTask:
    """The push task for ``nursery.start``; raises PushError if the CA cannot be read."""
    client = PushClient(config.verifier_url, verifier_tls(config.verifier_tls_ca_path))
    policy = BackoffPolicy(
        config.exponential_backoff_initial_delay,
        config.exponential_backoff_max_retries,
        config.exponential_backoff_max_delay,
    )
    settings = PushSettings(
        agent_id=agent_id,
        interval_s=float(config.attestation_interval_seconds),
        unreachable_backoff=policy.schedule(),
        path_prefix=urllib.parse.urlsplit(config.verifier_url).path.rstrip("/"),
    )
    boot_time = boot_time_iso()

    async def serve(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        collector = Collector(
            tpm,
            await tpm.ak(),
            ima,
            boot_log,
            server_identifier=config.certification_keys_server_identifier,
            uefi_version=config.uefi_logs_evidence_version,
            boot_time=boot_time,
        )
        loop = PushLoop(client, tpm, collector, settings)
        log.info("Push mode: attesting to %s; no port is opened", config.verifier_url)
        task_status.started()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(loop.run)
            if stop is not None:
                await stop.wait()
                nursery.cancel_scope.cancel()

    return serve
