"""The registrar's ``AgentStore`` contract on both engines: SQLite (store.py, store_held.py)
and a real PostgreSQL server (store_postgres.py), with the same answers from each."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest
import trio

from registrar_lite.errors import ConfigError, IdentityChangedError
from registrar_lite.store import AgentRecord, AgentStore, SqliteAgentStore
from registrar_lite.store_postgres import PostgresAgentStore

Opener = Callable[[], Awaitable[AgentStore]]


@pytest.fixture(params=["sqlite", "postgres"])
def open_again(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the same database each time it is called."""
    if request.param == "sqlite":

        async def sqlite() -> AgentStore:
            return await SqliteAgentStore.open(tmp_path / "reg_data.sqlite")

        return sqlite
    url: str = request.getfixturevalue("postgres_url")

    async def postgres() -> AgentStore:
        return await PostgresAgentStore.open(url)

    return postgres


@pytest.fixture
async def store(open_again: Opener) -> AsyncIterator[AgentStore]:
    opened = await open_again()
    try:
        yield opened
    finally:
        await opened.aclose()


def record(agent_id: str = "a1", **changes: object) -> AgentRecord:
    base = AgentRecord(
        agent_id=agent_id, ek_tpm=b"\x00ek", ekcert=b"\x30cert", aik_tpm=b"\x00ak",
        iak_tpm=None, iak_cert=None, idevid_tpm=None, idevid_cert=None, iak_attest=None,
        iak_sign=None, mtls_cert="PEM", ip="127.0.0.1", port=9002, challenge_key="k1",
        active=False, regcount=0,
    )  # fmt: skip
    return replace(base, **changes)  # type: ignore[arg-type]


async def test_register_then_again_counts_and_survives_a_reopen(open_again: Opener) -> None:
    store = await open_again()
    try:
        assert (await store.register(record())).regcount == 1
        again = await store.register(record(port=9003, challenge_key="k2", iak_tpm=b"iak"))
        assert (again.regcount, again.active, again.port) == (2, False, 9003)
    finally:
        await store.aclose()
    store = await open_again()  # the schema step runs again on existing tables
    try:
        assert await store.get("a1") == record(
            port=9003, challenge_key="k2", iak_tpm=b"iak", regcount=2
        )
        assert await store.list_ids() == ["a1"]
    finally:
        await store.aclose()


async def test_a_changed_identity_changes_nothing(store: AgentStore) -> None:
    await store.register(record())
    with pytest.raises(IdentityChangedError):
        await store.register(record(aik_tpm=b"\x00other", port=1))
    assert await store.get("a1") == record(regcount=1)
    await store.register(record("a2", ekcert=None))  # an unset field may be set later
    assert (await store.register(record("a2"))).regcount == 2


async def test_activation_needs_the_current_challenge(store: AgentStore) -> None:
    await store.register(record())
    assert not await store.activate("a1", "wrong")
    assert await store.activate("a1", "k1")
    stored = await store.get("a1")
    assert stored is not None and stored.active
    assert not await store.delete_pending("a1", "k1")  # active: not pending any more


async def test_a_replayed_registration_is_held_until_activated(store: AgentStore) -> None:
    await store.register(record())
    await store.activate("a1", "k1")
    active = await store.get("a1")
    held = await store.register(record(ip="10.6.6.6", challenge_key="k2"))
    assert await store.get("a1") == active  # address, regcount, active: as they were
    assert await store.get_held("a1") == held
    assert not await store.delete_pending("a1", "k2")  # a wrong tag drops only the held row
    assert await store.get_held("a1") is None and await store.get("a1") == active
    await store.register(record(ip="10.0.0.9", challenge_key="k3"))
    assert await store.activate("a1", "k3")  # the TPM answered: the held row wins
    assert await store.get("a1") == record(ip="10.0.0.9", challenge_key="k3", regcount=2,
                                           active=True)  # fmt: skip
    assert await store.get_held("a1") is None


async def test_delete_and_delete_pending(store: AgentStore) -> None:
    await store.register(record())
    assert not await store.delete_pending("a1", "other")
    assert await store.delete_pending("a1", "k1")
    assert await store.get("a1") is None
    await store.register(record())
    await store.activate("a1", "k1")
    await store.register(record(challenge_key="k2"))
    assert await store.delete("a1")
    assert await store.get("a1") is None and await store.get_held("a1") is None
    assert not await store.delete("a1")
    assert await store.list_ids() == []


async def test_registrations_racing_for_one_id(open_again: Opener) -> None:
    """CVE-2025-13609: of two registrations of one id with different AKs, one wins."""
    stores = [await open_again(), await open_again()]
    outcomes: list[str] = []
    try:

        async def register(store: AgentStore, ak: bytes) -> None:
            try:
                await store.register(record(aik_tpm=ak))
                outcomes.append(ak.decode())
            except IdentityChangedError:
                outcomes.append("refused")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(register, stores[0], b"ak-one")
            nursery.start_soon(register, stores[1], b"ak-two")
        assert sorted(outcomes)[1] == "refused"
        stored = await stores[0].get("a1")
        assert stored is not None and stored.aik_tpm.decode() == sorted(outcomes)[0]
        assert stored.regcount == 1
    finally:
        for store in stores:
            await store.aclose()


async def test_a_url_that_is_not_postgresql_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        await PostgresAgentStore.open("postgresx://u@h/db")
    assert caught.value.key == "database_url"
