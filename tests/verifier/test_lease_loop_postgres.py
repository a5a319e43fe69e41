"""The lease loop (verifier_lite/lease_loop.py) on a real PostgreSQL server with a stand-in
engine that records what it is told: takes start polling, a restart under the same uuid
adopts its leases, renewals that fail stop all polling at the margin (and the guarded
channel refuses to send from then on), and a clean stop hands everything back."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, cast

import psycopg
import pytest
import trio

from attest_protocol.api_version import ApiVersion
from tests.verifier.test_store import record
from verifier_lite.agent_client import QuoteRequest
from verifier_lite.engine import Engine
from verifier_lite.lease_loop import GuardedChannel, LeaseLoop
from verifier_lite.lease_store import LeaseStore, RoundResult
from verifier_lite.leases import LeaseLost, LeaseTimes
from verifier_lite.states import State
from verifier_lite.store_postgres import PostgresVerifierStore, postgres_conninfo

TIMES = LeaseTimes(duration=3.0, renew=0.5, margin=1.0)
WAIT_SECONDS = 60.0  # generous: a loaded machine


class RecordingEngine:
    """What LeaseLoop uses of an Engine: start, stop_and_wait, running, may_poll."""

    def __init__(self) -> None:
        self.polling: set[str] = set()
        self.started: list[str] = []
        self.may_poll: Any = None

    def running(self) -> frozenset[str]:
        return frozenset(self.polling)

    def start(self, agent_id: str, *, resume: bool = False) -> None:
        assert resume and self.may_poll(agent_id)
        self.polling.add(agent_id)
        self.started.append(agent_id)

    async def stop_and_wait(self, agent_id: str) -> None:
        self.polling.discard(agent_id)


class FlakyLeases(LeaseStore):
    """A LeaseStore whose rounds fail while ``down`` is set (a database out of reach)."""

    down = False

    async def round(self, duration: float) -> RoundResult:
        if self.down:
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await super().round(duration)


@pytest.fixture
async def conninfo(postgres_url: str) -> AsyncIterator[str]:
    store = await PostgresVerifierStore.open(postgres_url)
    try:
        for i in range(6):
            agent = record(f"a{i}", operational_state=int(State.GET_QUOTE))
            await store.add_agent(agent, None, None)
        await store.update_agent("a5", operational_state=int(State.INVALID_QUOTE))
    finally:
        await store.aclose()
    info = postgres_conninfo(postgres_url)
    assert info is not None
    yield info


async def loop_for(conninfo: str, me: str) -> tuple[LeaseLoop, RecordingEngine, FlakyLeases]:
    leases = await FlakyLeases.open(conninfo, me)
    assert isinstance(leases, FlakyLeases)
    loop, engine = LeaseLoop(leases, TIMES), RecordingEngine()
    loop.attach(cast(Engine, engine))
    return loop, engine, leases


async def test_take_adopt_and_give_back(conninfo: str) -> None:
    loop, engine, leases = await loop_for(conninfo, "va")
    try:
        await loop.one_round()
        assert loop.held == {f"a{i}" for i in range(6)}  # alone: the whole fleet
        assert engine.polling == {f"a{i}" for i in range(5)}  # a5 failed: held, not polled
        again, engine2, leases2 = await loop_for(conninfo, "va")  # a restart, same uuid
        try:
            await again.one_round()
            assert again.held == loop.held  # adopted, not waited out
            assert engine2.polling == engine.polling
        finally:
            await leases2.aclose()
        other, engine3, leases3 = await loop_for(conninfo, "vb")
        try:
            await other.one_round()  # counted live; nothing free yet
            assert other.held == set()
            await loop.one_round()  # share 3: releases a3, a4, a5 (the highest ids)
            assert loop.held == {"a0", "a1", "a2"} and engine.polling == loop.held
            assert await leases3.take(3, TIMES.duration) == frozenset()  # still draining
            with trio.fail_after(WAIT_SECONDS):
                while other.held != {"a3", "a4", "a5"}:
                    await trio.sleep(0.2)
                    await other.one_round()
            assert engine3.polling == {"a3", "a4"}
        finally:
            await leases3.aclose()
    finally:
        await leases.aclose()


async def test_failed_renewals_stop_polling_at_the_margin(conninfo: str) -> None:
    loop, engine, leases = await loop_for(conninfo, "va")
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(loop.serve)
            with trio.fail_after(WAIT_SECONDS):
                while len(engine.polling) < 5:  # noqa: ASYNC110 - the loop has no event
                    await trio.sleep(0.1)
            channel = GuardedChannel(Refusing(), "a0", loop.may_send)
            assert await channel.versions() == ()  # held and in time: passes
            leases.down = True
            with trio.fail_after(WAIT_SECONDS):
                while engine.polling:  # noqa: ASYNC110 - the watchdog has no event
                    await trio.sleep(0.1)
            assert loop.held == set()
            with pytest.raises(LeaseLost):
                await channel.integrity_quote(ApiVersion(2, 1), QUOTE)
            leases.down = False  # the database is back: the leases are still ours
            with trio.fail_after(WAIT_SECONDS):
                while len(engine.polling) < 5:  # noqa: ASYNC110
                    await trio.sleep(0.1)
            nursery.cancel_scope.cancel()  # a clean stop: leases handed back
        other, _, leases2 = await loop_for(conninfo, "vb")
        try:
            await trio.sleep(TIMES.margin * 2)  # the release drain
            await other.one_round()
            assert other.held == {f"a{i}" for i in range(6)}  # va counted gone at once
        finally:
            await leases2.aclose()
    finally:
        await leases.aclose()


QUOTE = QuoteRequest(nonce="n" * 20, mask="0x10000", partial=True, ima_ml_entry=0)


class Refusing:
    """An AgentChannel that answers versions and must never be asked for a quote."""

    async def versions(self) -> tuple[ApiVersion, ...]:
        return ()

    async def integrity_quote(
        self, version: ApiVersion, request: QuoteRequest
    ) -> Mapping[str, Any]:
        raise AssertionError("sent after the lease margin")

    async def provide_v(self, version: ApiVersion, encrypted_v_b64: str) -> None:
        raise AssertionError("sent after the lease margin")

    async def notify_revocation(self, version: ApiVersion, body: Mapping[str, str]) -> None:
        return None

    async def aclose(self) -> None:
        return None
