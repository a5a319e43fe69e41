"""Retry and backoff in virtual time (pytest-trio autojump_clock), through the real engine
and store, with an agent channel that is unreachable (implements ``AgentChannel``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import trio
import trio.testing

from attest_protocol.api_version import ApiVersion
from tests.verifier.memory_store import MemoryStore
from tests.verifier.test_store import record
from verifier_lite.agent_client import AgentChannel, QuoteRequest
from verifier_lite.engine import Engine, EngineSettings, retry_delay
from verifier_lite.errors import AgentContactError
from verifier_lite.records import AgentRecord
from verifier_lite.states import State


class Unreachable:
    def __init__(self, calls: list[float]) -> None:
        self._calls = calls

    async def versions(self) -> tuple[ApiVersion, ...]:
        self._calls.append(trio.current_time())
        raise AgentContactError("a1", "ConnectError")

    async def integrity_quote(
        self, version: ApiVersion, request: QuoteRequest
    ) -> Mapping[str, Any]:
        raise AssertionError("never reached")

    async def provide_v(self, version: ApiVersion, encrypted_v_b64: str) -> None:
        raise AssertionError("never reached")

    async def notify_revocation(self, version: ApiVersion, body: Mapping[str, str]) -> None:
        raise AssertionError("never asked")

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(
    ("exponential", "expected"), [(True, [0.0, 1.0, 3.0, 7.0]), (False, [0.0, 1.0, 2.0, 3.0])]
)
async def test_retries_then_failed(
    autojump_clock: trio.testing.MockClock, exponential: bool, expected: list[float]
) -> None:
    settings = EngineSettings(
        quote_interval=2.0, retry_interval=1.0, exponential_backoff=exponential, max_retries=3
    )
    calls: list[float] = []

    def channels(agent: AgentRecord) -> AgentChannel:
        return Unreachable(calls)

    store = MemoryStore()
    await store.add_agent(record(), None, None)
    engine = Engine(store, settings, channels)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(engine.serve)  # resumes a1 (START) from the store
        with trio.fail_after(60):
            # The engine offers no completion event (its tasks run until cancelled).
            while "a1" in engine.running() or not calls:  # noqa: ASYNC110
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    agent = await store.get_agent("a1")
    assert agent is not None
    assert agent.state is State.FAILED
    assert agent.last_event_id == "internal.unreachable"
    assert [round(t - start, 3) for t in calls] == expected


def test_backoff_is_capped() -> None:
    settings = EngineSettings(2.0, 2.0, True, 100)
    assert [retry_delay(settings, n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert retry_delay(settings, 30) == 300.0


class Recording:
    """Answers /version, then records quote requests and fails them as unreachable."""

    def __init__(self, log: list[str]) -> None:
        self._log = log

    async def versions(self) -> tuple[ApiVersion, ...]:
        return (ApiVersion(2, 1),)

    async def integrity_quote(
        self, version: ApiVersion, request: QuoteRequest
    ) -> Mapping[str, Any]:
        self._log.append(f"quote partial={request.partial}")
        raise AgentContactError("a1", "ConnectError")

    async def provide_v(self, version: ApiVersion, encrypted_v_b64: str) -> None:
        self._log.append("provide_v")

    async def notify_revocation(self, version: ApiVersion, body: Mapping[str, str]) -> None:
        raise AssertionError("never asked")

    async def aclose(self) -> None:
        return None


async def test_resumed_agent_restarts_with_a_full_quote(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A verifier restarted while V was due must not skip the quote that proves the NK key."""
    store = MemoryStore()
    await store.add_agent(record(operational_state=int(State.PROVIDE_V)), None, None)
    calls: list[str] = []
    settings = EngineSettings(
        quote_interval=1.0, retry_interval=1.0, exponential_backoff=False, max_retries=1
    )
    engine = Engine(store, settings, lambda agent: Recording(calls), verifier_id="default")
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.serve)
        with trio.fail_after(60):
            while "a1" in engine.running():  # noqa: ASYNC110 - no completion event by design
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert calls == ["quote partial=False", "quote partial=False"]
    agent = await store.get_agent("a1")
    assert agent is not None and agent.state is State.FAILED
