"""Real time, real TCP: the registrar is not listening when the agent starts, then comes up."""

from __future__ import annotations

import dataclasses
import socket

import trio

from edge_agent.app import start_agent
from edge_agent.config import AgentConfig
from tests.agent.support import FakeRegistrar, SoftTpm

REGISTRAR_LATE_S = 1.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_agent_waits_for_a_registrar_that_starts_later(
    agent_config: AgentConfig, soft_tpm: SoftTpm
) -> None:
    port = free_port()
    # Retry every 0.2 s (doubling to at most 0.5 s) for up to ~10 s.
    config = dataclasses.replace(
        agent_config,
        registrar_port=port,
        exponential_backoff_initial_delay=200,
        exponential_backoff_max_delay=500,
        exponential_backoff_max_retries=20,
    )
    registrar = FakeRegistrar()

    async def registrar_comes_up_late() -> None:
        await trio.sleep(REGISTRAR_LATE_S)
        listeners = await trio.open_tcp_listeners(port, host="127.0.0.1")
        await registrar.serve(list(listeners))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(registrar_comes_up_late)
        with trio.fail_after(10):
            started = await start_agent(config, soft_tpm)
        nursery.cancel_scope.cancel()
    assert trio.current_time() - start >= REGISTRAR_LATE_S
    assert registrar.agents[started.agent_id].active
    assert registrar.requests[0] == ("GET", "/version")
