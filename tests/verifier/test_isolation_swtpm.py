"""CVE-2022-3500: an error in one agent's polling task never stops the others."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import trio

from attest_protocol.api_version import ApiVersion
from tests.cv_ca import TlsFiles
from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import API, RunningVerifier, add_body, verifier_config
from tests.verifier.test_polling_swtpm import wait_status
from verifier_lite.agent_client import AgentChannel, QuoteRequest
from verifier_lite.records import AgentRecord
from verifier_lite.server import http_channels, serve_verifier
from verifier_lite.states import State

pytestmark = pytest.mark.swtpm

AGENTS = ("n0", "n1", "n2", "n3")
BROKEN = "n1"
BREAK_ON_QUOTE = 2


class Injected(RuntimeError):
    """A bug stand-in: what a parser or a library might raise unexpectedly."""


class BreakingChannel:
    """The real HTTP channel, raising :class:`Injected` on the Nth quote (implements
    ``AgentChannel``)."""

    def __init__(self, inner: AgentChannel) -> None:
        self._inner = inner
        self.quotes = 0

    async def versions(self) -> tuple[ApiVersion, ...]:
        return await self._inner.versions()

    async def integrity_quote(self, version: ApiVersion, request: QuoteRequest) -> Any:
        self.quotes += 1
        if self.quotes == BREAK_ON_QUOTE:
            raise Injected("boom")
        return await self._inner.integrity_quote(version, request)

    async def provide_v(self, version: ApiVersion, encrypted_v_b64: str) -> None:
        await self._inner.provide_v(version, encrypted_v_b64)

    async def notify_revocation(self, version: ApiVersion, body: Mapping[str, str]) -> None:
        await self._inner.notify_revocation(version, body)

    async def aclose(self) -> None:
        await self._inner.aclose()


def at_least(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda results: bool(results["attestation_count"] >= count)


async def test_one_failing_task_leaves_the_others_attesting(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path, fake_agent: FakeAgent
) -> None:
    config = verifier_config(tmp_path / "verifier", tls_files)
    real = http_channels(config)

    def channels(agent: AgentRecord) -> AgentChannel:
        inner = real(agent)
        return BreakingChannel(inner) if agent.agent_id == BROKEN else inner

    bound = await nursery.start(lambda task_status: serve_verifier(
        config, channels=channels, task_status=task_status
    ))  # fmt: skip
    verifier = RunningVerifier(config, bound, tls_files)
    body = add_body(
        ak_tpm=fake_agent.ak_public, mtls_cert=fake_agent.cert_pem, port=fake_agent.port
    )
    async with verifier.client() as client:
        for agent_id in AGENTS:
            assert (await client.post(f"/{API}/agents/{agent_id}", json=body)).status_code == 200
    broken = await wait_status(verifier, BROKEN, lambda r: r["operational_state"] == State.FAILED)
    assert broken["last_event_id"] == "internal.polling_task"
    counts = {}
    for agent_id in AGENTS:
        if agent_id != BROKEN:
            counts[agent_id] = (await wait_status(verifier, agent_id, lambda r: True))[
                "attestation_count"
            ]
    for agent_id, before in counts.items():
        status = await wait_status(verifier, agent_id, at_least(before + 2))
        assert status["operational_state"] == State.GET_QUOTE
    again = await wait_status(verifier, BROKEN, lambda r: True)
    assert again["operational_state"] == State.FAILED
    assert again["attestation_count"] == broken["attestation_count"]
