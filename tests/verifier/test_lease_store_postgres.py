"""The lease tables on a real PostgreSQL server (verifier_lite/lease_store.py): takes by
verifiers at once never overlap, the fenced write refuses a verifier without the lease, an
expired lease or a stopped agent, a released lease waits out its drain time, and a deleted
agent takes its lease with it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from tests.verifier.test_store import record
from verifier_lite.lease_store import FencedStore, LeaseStore
from verifier_lite.leases import LeaseLost
from verifier_lite.states import State
from verifier_lite.store_health import MonitoredStore
from verifier_lite.store_postgres import PostgresVerifierStore, postgres_conninfo

LONG = 60.0  # a lease that does not expire during a test
SHORT = 0.5  # one that does, after a wait of several times its length


@pytest.fixture
async def store(postgres_url: str) -> AsyncIterator[MonitoredStore]:
    opened = MonitoredStore(await PostgresVerifierStore.open(postgres_url))
    try:
        for i in range(10):
            await opened.add_agent(
                record(f"a{i}", operational_state=int(State.GET_QUOTE)), None, None
            )
        yield opened
    finally:
        await opened.aclose()


async def open_leases(url: str, me: str) -> LeaseStore:
    conninfo = postgres_conninfo(url)
    assert conninfo is not None
    return await LeaseStore.open(conninfo, me)


async def test_verifiers_taking_at_once_never_share_an_agent(
    store: MonitoredStore, postgres_url: str
) -> None:
    leases = [await open_leases(postgres_url, f"v{i}") for i in range(3)]
    try:
        for one in leases:
            result = await one.round(LONG)
            assert result.renewed == frozenset()
        assert result.agents == 10 and result.live_verifiers == 3
        taken: dict[int, frozenset[str]] = {}

        async def take(i: int) -> None:
            taken[i] = await leases[i].take(4, LONG)

        async with trio.open_nursery() as nursery:
            for i in range(len(leases)):
                nursery.start_soon(take, i)
        everything = [a for t in taken.values() for a in t]
        assert len(everything) == len(set(everything)) == 10  # 4 + 4 + 2, no agent twice
        for i, one in enumerate(leases):
            assert (await one.round(LONG)).renewed == taken[i]
            # The taker is recorded as the agent's verifier, as GET /agents/?verifier= lists.
            assert {a.agent_id for a in await store.list_agents(f"v{i}")} == taken[i]
    finally:
        for one in leases:
            await one.aclose()


async def test_the_fenced_write_needs_the_lease(store: MonitoredStore, postgres_url: str) -> None:
    a, b = await open_leases(postgres_url, "va"), await open_leases(postgres_url, "vb")
    try:
        await a.round(SHORT)
        assert await a.take(10, SHORT) == frozenset(f"a{i}" for i in range(10))
        fenced_a, fenced_b = FencedStore(store, "va"), FencedStore(store, "vb")
        assert await fenced_a.update_agent("a1", attestation_count=7)
        with pytest.raises(LeaseLost):
            await fenced_b.update_agent("a1", attestation_count=8)  # not B's
        await trio.sleep(SHORT * 4)
        with pytest.raises(LeaseLost):
            await fenced_a.update_agent("a1", attestation_count=9)  # A's lease expired
        await b.round(LONG)
        assert "a1" in await b.take(10, LONG)
        assert await fenced_b.update_agent("a1", attestation_count=10)
        await store.update_agent("a1", operational_state=int(State.TENANT_FAILED))  # a stop
        with pytest.raises(LeaseLost):
            await fenced_b.update_agent("a1", operational_state=int(State.GET_QUOTE))
        stored = await store.get_agent("a1")
        assert stored is not None
        assert (stored.attestation_count, stored.state) == (10, State.TENANT_FAILED)
        assert await fenced_a.get_agent("a2") == await store.get_agent("a2")  # reads pass
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_released_lease_waits_out_its_drain(
    store: MonitoredStore, postgres_url: str
) -> None:
    a, b = await open_leases(postgres_url, "va"), await open_leases(postgres_url, "vb")
    try:
        await a.round(LONG)
        await a.take(10, LONG)
        await a.release(frozenset({"a3"}), SHORT)
        assert await b.take(10, LONG) == frozenset()  # not yet: a request may still drain
        await trio.sleep(SHORT * 4)
        assert await b.take(10, LONG) == frozenset({"a3"})
        assert await store.delete_agent("a3")
        assert (await b.round(LONG)).renewed == frozenset()  # the lease went with the agent
        assert (await a.round(LONG)).agents == 9
        assert await b.polling(frozenset({"a4", "a3"})) == frozenset({"a4"})
        await a.leave()
        assert (await b.round(LONG)).live_verifiers == 1
    finally:
        await a.aclose()
        await b.aclose()
