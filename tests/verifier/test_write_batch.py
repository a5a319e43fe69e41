"""The throughput levers keep their promises: batched counters are flushed on stop, a crash
(kill -9) loses at most the counters of the last period and never a verdict, a state change
carries the counters still pending, cached policies are reloaded when a policy is updated,
and the in-flight cap holds.  Agents are tests/verifier/soft_channel.py (valid quotes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from tests.verifier.memory_store import MemoryStore
from tests.verifier.soft_channel import SoftChannel, soft_record
from tests.verifier.support import runtime_policy_json
from tests.verifier.test_store import record
from verifier_lite.agent_client import AgentChannel
from verifier_lite.engine import Engine, EngineSettings
from verifier_lite.records import AgentRecord, RuntimePolicyRecord
from verifier_lite.states import State
from verifier_lite.store import SqliteVerifierStore
from verifier_lite.store_health import StoreUnavailableError
from verifier_lite.write_batch import CounterBatch

REPO = Path(__file__).resolve().parents[2]


def settings(**changes: Any) -> EngineSettings:
    base: dict[str, Any] = {
        "quote_interval": 1.0, "retry_interval": 1.0, "exponential_backoff": False,
        "max_retries": 3, "counter_flush_seconds": 1000.0,
    }  # fmt: skip
    return EngineSettings(**{**base, **changes})


async def _run_until(engine: Engine, channels: dict[str, SoftChannel], quotes: int) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.serve)
        with trio.fail_after(600):
            while min(len(c.requests) for c in channels.values()) < quotes:  # noqa: ASYNC110
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()


async def test_counters_are_pending_then_flushed_when_the_engine_stops(tmp_path: Path) -> None:
    # Real time: SQLite works in a thread, and a virtual clock would race past it.
    store = await SqliteVerifierStore.open(tmp_path / "cv.sqlite")
    channels = {f"a{i}": SoftChannel(i) for i in range(3)}
    for index in range(3):
        await store.add_agent(soft_record(index), None, None)
    fast = settings(quote_interval=0.05, retry_interval=0.05)
    engine = Engine(store, fast, lambda agent: channels[agent.agent_id])
    seen: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.serve)
        with trio.fail_after(120):
            while min(len(c.requests) for c in channels.values()) < 6:  # noqa: ASYNC110
                await trio.sleep(0.05)
        stored = await store.get_agent("a0")
        assert stored is not None
        seen.append(stored.attestation_count)
        nursery.cancel_scope.cancel()
    assert engine.levers.counters is not None
    assert engine.levers.counters.pending("a0") == {}
    for agent_id, channel in channels.items():
        agent = await store.get_agent(agent_id)
        assert agent is not None and agent.state is State.GET_QUOTE
        # Every quote that passed is counted (the last request may be cut by the stop).
        assert agent.attestation_count in (len(channel.requests) - 1, len(channel.requests))
    assert seen[0] < 5  # while running, the good quotes' counters were batched, not written
    await store.aclose()


async def test_a_state_change_writes_the_pending_counters_with_it(tmp_path: Path) -> None:
    store = await SqliteVerifierStore.open(tmp_path / "cv.sqlite")
    await store.add_agent(record(), None, None)
    batch = CounterBatch(store, 1000.0)
    batch.defer("a1", {"attestation_count": 7, "last_received_quote": 70})
    batch.defer("a1", {"attestation_count": 8, "last_received_quote": 80})
    await store.update_agent("a1", operational_state=int(State.INVALID_QUOTE), **batch.take("a1"))
    await batch.flush()  # nothing left that could overwrite the verdict's row
    agent = await store.get_agent("a1")
    assert agent is not None
    assert (agent.state, agent.attestation_count, agent.last_received_quote) == (
        State.INVALID_QUOTE, 8, 80,
    )  # fmt: skip
    assert batch.flushes == 0
    await store.aclose()


class FailingOnce(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail = True

    async def update_agent(self, agent_id: str, **changes: Any) -> bool:
        if self.fail:
            self.fail = False
            raise StoreUnavailableError(OSError("disk I/O error"))
        return await super().update_agent(agent_id, **changes)


async def test_a_failed_flush_keeps_its_counters_and_newer_ones_win() -> None:
    store = FailingOnce()
    await store.add_agent(record(), None, None)
    batch = CounterBatch(store, 1000.0)
    batch.defer("a1", {"attestation_count": 3, "last_received_quote": 30})
    with pytest.raises(StoreUnavailableError):
        await batch.flush()
    batch.defer("a1", {"attestation_count": 4})
    await batch.flush()
    agent = await store.get_agent("a1")
    assert agent is not None
    assert (agent.attestation_count, agent.last_received_quote) == (4, 30)


_CRASHER = textwrap.dedent(
    """
    import sys, trio
    from pathlib import Path
    from tests.verifier.test_store import record
    from verifier_lite.states import State
    from verifier_lite.store import SqliteVerifierStore
    from verifier_lite.write_batch import CounterBatch

    class Announcing(CounterBatch):
        async def flush(self, agent_id=None):
            counts = [c.get("attestation_count", 0) for c in self._pending.values()]
            await super().flush(agent_id)
            if counts:
                print("flushed", max(counts), flush=True)

    async def main(path):
        store = await SqliteVerifierStore.open(Path(path))
        await store.add_agent(record("verdict"), None, None)
        await store.add_agent(record("counted"), None, None)
        batch = Announcing(store, 0.05)
        async with trio.open_nursery() as nursery:
            await nursery.start(batch.serve)
            count = 0
            while True:
                count += 1
                batch.defer("counted", {"attestation_count": count})
                if count == 20:  # a verdict: written at once, as AgentStates.apply does
                    await store.update_agent(
                        "verdict", operational_state=int(State.INVALID_QUOTE), severity_level=6
                    )
                    print("verdict", flush=True)
                await trio.sleep(0.005)

    trio.run(main, sys.argv[1])
    """
)


def test_kill_9_loses_at_most_the_last_batch_of_counters_never_a_verdict(tmp_path: Path) -> None:
    path = tmp_path / "cv.sqlite"
    child = subprocess.Popen(
        [sys.executable, "-c", _CRASHER, str(path)], stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
    )  # fmt: skip
    assert child.stdout is not None
    flushed, verdict = 0, False
    try:
        for line in child.stdout:
            word, _, value = line.strip().partition(" ")
            verdict = verdict or word == "verdict"
            flushed = int(value) if word == "flushed" else flushed
            if verdict and flushed >= 60:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(30)
    finally:
        child.stdout.close()
        if child.poll() is None:
            child.kill()
            child.wait()
    assert verdict and flushed >= 60, "the child never got that far"
    rows = trio.run(_read_rows, path)
    assert rows["verdict"] == (int(State.INVALID_QUOTE), 6)
    # At least what was reported flushed is there; what was lost is the unflushed tail only.
    assert rows["counted"][1] >= flushed


async def _read_rows(path: Path) -> dict[str, tuple[Any, Any]]:
    store = await SqliteVerifierStore.open(path)
    try:
        verdict, counted = await store.get_agent("verdict"), await store.get_agent("counted")
    finally:
        await store.aclose()
    assert verdict is not None and counted is not None
    return {
        "verdict": (verdict.operational_state, verdict.severity_level),
        "counted": (counted.operational_state, counted.attestation_count),
    }


async def test_a_policy_update_reaches_running_agents(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Policies are cached per agent; Engine.policy_changed (the service calls it on every
    policy update) makes each task reload: here the new runtime policy adds PCR 10 to the
    very next quote request (which then fails: this agent keeps no IMA log)."""
    store = MemoryStore()
    empty = RuntimePolicyRecord("a0", "", None, False)
    await store.add_agent(soft_record(0, runtime_policy_name="a0"), empty, None)
    channel = SoftChannel(0)
    engine = Engine(store, settings(), lambda agent: channel)
    policy = runtime_policy_json()
    async with trio.open_nursery() as nursery:
        await nursery.start(engine.serve)
        with trio.fail_after(600):
            while len(channel.requests) < 3:  # noqa: ASYNC110
                await trio.sleep(0.5)
        await store.add_runtime_policy(RuntimePolicyRecord("a0", policy, None, True), replace=True)
        before = len(channel.requests)
        engine.policy_changed()
        with trio.fail_after(600):
            while len(channel.requests) < before + 1:  # noqa: ASYNC110
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    masks = [int(r.mask, 16) for r in channel.requests]
    assert all(not m >> 10 & 1 for m in masks[:before])
    assert masks[-1] >> 10 & 1


async def test_in_flight_cap_holds(autojump_clock: trio.testing.MockClock) -> None:
    store = MemoryStore()
    channels = {f"a{i}": SoftChannel(i, answer_delay=0.5) for i in range(6)}
    for index in range(6):
        await store.add_agent(soft_record(index), None, None)
    shared = _Shared()

    def make(agent: AgentRecord) -> AgentChannel:
        return shared.track(channels[agent.agent_id])

    engine = Engine(store, settings(max_in_flight=2, quote_interval=0.0), make)
    await _run_until(engine, channels, 4)
    assert shared.most == 2
    for agent_id in channels:
        agent = await store.get_agent(agent_id)
        assert agent is not None and agent.state is State.GET_QUOTE


class _Shared:
    """Counts quote requests in flight across all channels."""

    def __init__(self) -> None:
        self.now = 0
        self.most = 0

    def track(self, channel: SoftChannel) -> SoftChannel:
        original = channel.integrity_quote
        shared = self

        async def counted(version: Any, request: Any) -> Any:
            shared.now += 1
            shared.most = max(shared.most, shared.now)
            try:
                return await original(version, request)
            finally:
                shared.now -= 1

        channel.integrity_quote = counted  # type: ignore[method-assign]
        return channel
