"""attestation_status follows the age of the last good quote, not the state alone, and a
polling task that keeps raising is restarted, then FAILED, never left showing PASS."""

from __future__ import annotations

import sqlite3
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
from verifier_lite.records import attestation_status, status_view
from verifier_lite.restarts import RestartPolicy
from verifier_lite.service import MAX_INTERVAL_PERIODS
from verifier_lite.states import State
from verifier_lite.store_health import STORE_LOG_EVERY_SECONDS, StoreHealth

NOW = 1_000_000.0
SETTINGS = EngineSettings(
    quote_interval=2.0, retry_interval=1.0, exponential_backoff=True, max_retries=3
)


def test_keylime_multiplier_and_report() -> None:
    # keylime/push_agent_monitor.py _TIMEOUT_MULTIPLIER = 5.0
    assert MAX_INTERVAL_PERIODS == 5
    view = status_view(
        record(), has_runtime_policy=False, has_mb_policy=False,
        quote_interval=1.0, max_interval=1.0 * MAX_INTERVAL_PERIODS, now=NOW,
    )  # fmt: skip
    assert view["attestation_period"] == "1s"
    assert view["maximum_attestation_interval"] == "5s"


@pytest.mark.parametrize(
    ("state", "age", "expected"),
    [
        (State.GET_QUOTE, 1, "PASS"),
        (State.GET_QUOTE_RETRY, 10, "PASS"),
        (State.GET_QUOTE, 12, "PENDING"),  # the task stopped: stale, no longer PASS
        (State.PROVIDE_V, 3600, "PENDING"),
        (State.INVALID_QUOTE, 1, "FAIL"),
        (State.FAILED, 3600, "FAIL"),
        (State.START, 1, "PENDING"),
    ],
)
def test_status_from_freshness(state: State, age: int, expected: str) -> None:
    agent = record(operational_state=int(state), last_successful_attestation=int(NOW) - age)
    assert attestation_status(agent, now=NOW, max_interval=10.0) == expected


def test_never_attested_is_pending() -> None:
    agent = record(operational_state=int(State.GET_QUOTE), last_successful_attestation=0)
    assert attestation_status(agent, now=NOW, max_interval=10.0) == "PENDING"


def test_store_restarts_never_wait_more_than_one_interval() -> None:
    policy = RestartPolicy(SETTINGS)
    assert [policy.after_store_failure() for _ in range(5)] == [1.0, 2.0, 2.0, 2.0, 2.0]
    assert all(policy.after_store_failure() == 2.0 for _ in range(100))


def test_store_fault_logged_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    health = StoreHealth(lambda: clock[0])
    for _ in range(50):
        health.failed(sqlite3.OperationalError("disk I/O error"), write=True)
        clock[0] += 1.0
    health.succeeded(write=False)  # a read that works: still not writable
    assert health.view() == {
        "store_healthy": False,
        "last_store_error": "OperationalError: disk I/O error",
    }
    clock[0] = STORE_LOG_EVERY_SECONDS + 1.0
    health.failed(sqlite3.OperationalError("disk I/O error"), write=True)
    health.succeeded(write=True)
    errors = [r for r in caplog.records if "database unavailable" in r.getMessage()]
    assert len(errors) == 2
    assert health.view()["store_healthy"] is True


class Injected(RuntimeError):
    """A bug stand-in raised by every attempt."""


class AlwaysBroken:
    """Answers /version, then raises a non-contact error on every quote (``AgentChannel``)."""

    def __init__(self, calls: list[float]) -> None:
        self._calls = calls

    async def versions(self) -> tuple[ApiVersion, ...]:
        return (ApiVersion(2, 1),)

    async def integrity_quote(
        self, version: ApiVersion, request: QuoteRequest
    ) -> Mapping[str, Any]:
        self._calls.append(trio.current_time())
        raise Injected("boom")

    async def provide_v(self, version: ApiVersion, encrypted_v_b64: str) -> None:
        raise AssertionError("never reached")

    async def notify_revocation(self, version: ApiVersion, body: Mapping[str, str]) -> None:
        raise AssertionError("never asked")

    async def aclose(self) -> None:
        return None


async def test_a_task_that_keeps_failing_is_restarted_then_failed_never_pass(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryStore()
    # It had attested once, long ago (as before the task started failing).
    await store.add_agent(record(last_successful_attestation=1), None, None)
    calls: list[float] = []

    def channels(agent: Any) -> AgentChannel:
        return AlwaysBroken(calls)

    engine = Engine(store, SETTINGS, channels)
    seen: set[str] = set()
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(engine.serve)
        with trio.fail_after(120):
            while "a1" in engine.running() or not calls:
                agent = await store.get_agent("a1")
                assert agent is not None
                seen.add(attestation_status(agent, now=NOW, max_interval=10.0))
                await trio.sleep(0.1)
        nursery.cancel_scope.cancel()
    agent = await store.get_agent("a1")
    assert agent is not None
    assert agent.state is State.FAILED
    assert agent.last_event_id == "internal.polling_task"
    assert "PASS" not in seen and seen  # the loop above ran
    # One first attempt, then max_retries restarts after growing waits.
    waits = [retry_delay(SETTINGS, n) for n in range(1, SETTINGS.max_retries + 1)]
    gaps = [round(b - a, 3) for a, b in zip(calls, calls[1:])]
    assert gaps == waits
    assert round(calls[0] - start, 3) == 0.0
