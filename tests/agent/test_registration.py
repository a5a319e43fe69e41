"""Registration and activation against a fake registrar that speaks real HTTP, in virtual time."""

from __future__ import annotations

import base64
import dataclasses
import errno
import re
from collections.abc import AsyncIterator

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import rsa

from attest_protocol.api_version import ApiVersion
from edge_agent.app import AgentStarted, run_agent, start_agent
from edge_agent.config import AgentConfig
from edge_agent.http_client import Connector
from edge_agent.registrar_client import (
    NoCommonApiVersion,
    RegistrarUnavailable,
    RegistrationForbidden,
    RegistrationRejected,
)
from edge_agent.tpm import TpmConfig
from tests.agent.support import FakeRegistrar, MemoryListener, SoftTpm

# agent_config's backoff: 0.1 s doubling, capped at 1 s, 4 retries.
SCHEDULE = (0.1, 0.2, 0.4, 0.8)


@pytest.fixture
async def listener() -> AsyncIterator[MemoryListener]:
    listener = MemoryListener()
    yield listener
    await listener.aclose()


async def serve(nursery: trio.Nursery, registrar: FakeRegistrar, listener: MemoryListener) -> None:
    await nursery.start(registrar.serve, [listener])


async def test_registers_and_activates(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar()
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        started = await start_agent(agent_config, soft_tpm, connect=listener.connect)
        nursery.cancel_scope.cancel()
    assert started.api_version == ApiVersion(2, 6)
    agent = registrar.agents[started.agent_id]
    assert agent.active
    assert base64.b64decode(agent.body["ek_tpm"]) == soft_tpm.ek_public
    assert base64.b64decode(agent.body["aik_tpm"]) == soft_tpm.ak_public
    assert agent.body["ekcert"] is None  # SoftTpm has no EK certificate
    assert agent.body["mtls_cert"] == started.mtls_cert_pem
    assert agent.body["mtls_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert (agent.body["ip"], agent.body["port"]) == ("127.0.0.1", 9002)
    assert registrar.requests == [
        ("GET", "/version"),
        ("POST", f"/v2.6/agents/{started.agent_id}"),
        ("PUT", f"/v2.6/agents/{started.agent_id}/activate"),
    ]


async def test_mtls_disabled_registers_disabled(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar()
    config = dataclasses.replace(agent_config, enable_agent_mtls=False)
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        started = await start_agent(config, soft_tpm, connect=listener.connect)
        nursery.cancel_scope.cancel()
    assert registrar.agents[started.agent_id].body["mtls_cert"] == "disabled"
    assert started.mtls_cert_pem is None


async def test_5xx_answers_are_retried_on_the_backoff_schedule(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar(fail_first=3)
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        start = trio.current_time()
        started = await start_agent(agent_config, soft_tpm, connect=listener.connect)
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert registrar.agents[started.agent_id].active
    assert elapsed == pytest.approx(sum(SCHEDULE[:3]))
    assert registrar.requests[:4] == [("GET", "/version")] * 4


def refusing_first(count: int, connect: Connector) -> Connector:
    """A connector whose first ``count`` connections are refused, as by a closed port."""
    refused = 0

    async def maybe_connect() -> trio.abc.Stream:
        nonlocal refused
        if refused < count:
            refused += 1
            raise OSError(errno.ECONNREFUSED, "Connection refused")
        return await connect()

    return maybe_connect


async def test_unreachable_registrar_is_retried_until_it_answers(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar()
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        start = trio.current_time()
        connect = refusing_first(4, listener.connect)
        started = await start_agent(agent_config, soft_tpm, connect=connect)
        elapsed = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert registrar.agents[started.agent_id].active
    assert elapsed == pytest.approx(sum(SCHEDULE))


async def test_gives_up_after_max_retries(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar(fail_first=1000)
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        start = trio.current_time()
        with pytest.raises(RegistrarUnavailable, match="503"):
            await start_agent(agent_config, soft_tpm, connect=listener.connect)
        assert trio.current_time() - start == pytest.approx(sum(SCHEDULE))
        nursery.cancel_scope.cancel()
    assert len(registrar.requests) == len(SCHEDULE) + 1


async def test_403_stops_at_once_saying_the_id_is_bound_to_another_tpm(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar(forbid=True)
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        with pytest.raises(RegistrationForbidden) as caught:
            await start_agent(agent_config, soft_tpm, connect=listener.connect)
        nursery.cancel_scope.cancel()
    message = str(caught.value)
    assert agent_config.uuid in message
    assert "another TPM" in message
    assert "forbidden" in message  # the registrar's own words
    assert [m for m, _ in registrar.requests] == ["GET", "POST"]  # no retry
    assert soft_tpm.activations == 0


async def test_400_stops_with_the_registrars_message(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar(reject_registration=True)
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        with pytest.raises(RegistrationRejected) as caught:
            await start_agent(agent_config, soft_tpm, connect=listener.connect)
        nursery.cancel_scope.cancel()
    assert caught.value.status == 400
    assert "Could not register agent with invalid data" in str(caught.value)
    assert len(registrar.requests) == 2


async def test_without_version_endpoint_tries_enabled_versions_newest_first(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar(versions=None, accepted_versions=("2.1", "2.3"))
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        started = await start_agent(agent_config, soft_tpm, connect=listener.connect)
        nursery.cancel_scope.cancel()
    assert started.api_version == ApiVersion(2, 3)
    posted = [target.split("/")[1] for method, target in registrar.requests if method == "POST"]
    assert posted == ["v2.6", "v2.5", "v2.4", "v2.3"]


async def test_no_common_api_version(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar(versions=("3.0",))
    config = dataclasses.replace(agent_config, api_versions="2.1, 2.2")
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        with pytest.raises(NoCommonApiVersion, match=r"3\.0"):
            await start_agent(config, soft_tpm, connect=listener.connect)
        nursery.cancel_scope.cancel()


async def test_run_agent_reports_started_and_closes_the_tpm_when_cancelled(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar()
    opened: list[TpmConfig] = []

    async def open_soft_tpm(config: TpmConfig) -> SoftTpm:
        opened.append(config)
        return soft_tpm

    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        started: AgentStarted = await nursery.start(
            lambda task_status: run_agent(
                # Plain HTTP on a free port: this test has no verifier CA and no payloads.
                dataclasses.replace(
                    agent_config, enable_agent_mtls=False, payload_script="", port=0
                ),
                open_tpm=open_soft_tpm,
                connect=listener.connect,
                task_status=task_status,
            )
        )
        assert not soft_tpm.closed
        nursery.cancel_scope.cancel()
    assert soft_tpm.closed
    assert opened[0].data_dir == agent_config.data_dir
    assert registrar.agents[started.agent_id].active
    assert started.nk_public_pem.startswith(b"-----BEGIN PUBLIC KEY-----")


async def test_restart_with_the_same_data_dir_keeps_keys(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_tpm: SoftTpm,
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar()
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        first = await start_agent(agent_config, soft_tpm, connect=listener.connect)
        second = await start_agent(agent_config, soft_tpm, connect=listener.connect)
        nursery.cancel_scope.cancel()
    assert first.nk_public_pem == second.nk_public_pem
    assert first.mtls_cert_pem == second.mtls_cert_pem
    assert registrar.agents[second.agent_id].active


class WrongSecretTpm(SoftTpm):
    """A TPM whose ActivateCredential answer is not the registrar's secret."""

    async def activate_credential(self, blob: bytes) -> bytes:
        return b"not-the-challenge-" + (await super().activate_credential(blob))[:8]


async def test_refused_activation_does_not_echo_the_auth_tag(
    autojump_clock: trio.abc.Clock,
    agent_config: AgentConfig,
    soft_keys: tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey],
    listener: MemoryListener,
) -> None:
    registrar = FakeRegistrar()
    async with trio.open_nursery() as nursery:
        await serve(nursery, registrar, listener)
        with pytest.raises(RegistrationRejected) as caught:
            await start_agent(agent_config, WrongSecretTpm(*soft_keys), connect=listener.connect)
        nursery.cancel_scope.cancel()
    assert caught.value.status == 400
    assert "Auth tag '<auth_tag>'" in str(caught.value)
    assert not re.search(r"[0-9a-f]{96}", str(caught.value))  # no hex HMAC-SHA384
    assert not registrar.agents[agent_config.uuid].active
