"""The store contract on SQLite and on a real PostgreSQL server, and two verifiers sharing one
PostgreSQL database: each polls only its own agents, and both come back after a restart."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest
import trio

from tests.cv_ca import TlsFiles
from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import API, RunningVerifier, verifier_config
from tests.verifier.test_polling_swtpm import add, wait_status
from tests.verifier.test_store import record
from verifier_lite.config import VerifierConfig
from verifier_lite.errors import ConfigError, ConflictError
from verifier_lite.records import MbPolicyRecord, RuntimePolicyRecord
from verifier_lite.server import open_store, serve_verifier
from verifier_lite.states import State
from verifier_lite.store import SqliteVerifierStore, VerifierStore
from verifier_lite.store_postgres import PostgresVerifierStore, postgres_conninfo

Opener = Callable[[], Awaitable[VerifierStore]]


@pytest.fixture(params=["sqlite", "postgres"])
def open_store_again(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens the same database each time it is called, so a test can close and reopen it."""
    if request.param == "sqlite":
        path = tmp_path / "cv.sqlite"

        async def sqlite() -> VerifierStore:
            return await SqliteVerifierStore.open(path)

        return sqlite
    url: str = request.getfixturevalue("postgres_url")

    async def postgres() -> VerifierStore:
        return await PostgresVerifierStore.open(url)

    return postgres


CHANGES: dict[str, Any] = {
    "operational_state": int(State.GET_QUOTE),
    "attestation_count": 5,
    "last_event_id": "pcr_validation.invalid_pcr_16",
    "severity_level": 6,
    "accept_tpm_hash_algs": ("sha384", "sha256"),
    "boottime": 1_700_000_000,
}


async def test_everything_survives_a_restart(open_store_again: Opener) -> None:
    store = await open_store_again()
    try:
        runtime = RuntimePolicyRecord("a1", '{"x": 1}', None, True)
        await store.add_agent(record(), runtime, MbPolicyRecord("a1", None))
        assert await store.update_agent("a1", **CHANGES)
    finally:
        await store.aclose()
    store = await open_store_again()  # the schema step runs again on existing tables
    try:
        assert await store.get_agent("a1") == record(**CHANGES)
        assert await store.get_runtime_policy("a1") == RuntimePolicyRecord(
            "a1", '{"x": 1}', None, True
        )
        assert await store.get_mb_policy("a1") == MbPolicyRecord("a1", None)
    finally:
        await store.aclose()


async def test_adding_a_taken_id_changes_nothing(open_store_again: Opener) -> None:
    store = await open_store_again()
    try:
        await store.add_agent(record(), None, None)
        policy = RuntimePolicyRecord("new-policy", "{}", None, True)
        with pytest.raises(ConflictError):
            await store.add_agent(record(port=1), policy, MbPolicyRecord("new-mb", "{}"))
        assert (await store.get_agent("a1")) == record()
        assert await store.get_runtime_policy("new-policy") is None  # rolled back
        assert await store.get_mb_policy("new-mb") is None
    finally:
        await store.aclose()


async def test_policies_by_name_and_their_users(open_store_again: Opener) -> None:
    store = await open_store_again()
    try:
        rp = RuntimePolicyRecord("shared", "{}", None, True)
        assert await store.add_runtime_policy(rp, replace=False)
        assert not await store.add_runtime_policy(rp, replace=False)
        assert not await store.add_runtime_policy(replace(rp, name="absent"), replace=True)
        assert await store.add_runtime_policy(replace(rp, has_policy=False), replace=True)
        assert await store.get_runtime_policy("shared") == replace(rp, has_policy=False)
        assert await store.add_mb_policy(MbPolicyRecord("mb", "{}"), replace=False)
        assert await store.add_mb_policy(MbPolicyRecord("mb", None), replace=True)
        await store.add_agent(record(runtime_policy_name="shared", mb_policy_name="mb"), None, None)
        assert await store.policy_users("runtime", "shared") == ["a1"]
        assert await store.policy_users("mb", "mb") == ["a1"]
        assert await store.runtime_policy_names() == ["shared"]
        assert await store.mb_policy_names() == ["mb"]
        assert await store.get_mb_policy("mb") == MbPolicyRecord("mb", None)
        assert await store.delete_agent("a1")
        assert not await store.delete_agent("a1")
        assert not await store.update_agent("a1", attestation_count=1)
        assert await store.delete_runtime_policy("shared")
        assert await store.delete_mb_policy("mb")
        assert await store.runtime_policy_names() == []
        with pytest.raises(ValueError, match="not updatable"):
            await store.update_agent("a1", verifier="x")
    finally:
        await store.aclose()


async def test_policies_in_force_name_only_real_policies(open_store_again: Opener) -> None:
    store = await open_store_again()
    try:
        assert await store.policies_in_force() == (frozenset(), frozenset())
        await store.add_runtime_policy(RuntimePolicyRecord("held", "{}", None, True), replace=False)
        empty = RuntimePolicyRecord("empty", "", None, False)  # Keylime's empty stand-in
        await store.add_runtime_policy(empty, replace=False)
        await store.add_mb_policy(MbPolicyRecord("refstate", "{}"), replace=False)
        await store.add_mb_policy(MbPolicyRecord("none", None), replace=False)
        assert await store.policies_in_force() == (frozenset({"held"}), frozenset({"refstate"}))
    finally:
        await store.aclose()


async def test_each_verifier_lists_its_own_agents(open_store_again: Opener) -> None:
    store = await open_store_again()
    try:
        for agent_id, owner in (("b2", "vb"), ("a1", "va"), ("b1", "vb")):
            await store.add_agent(record(agent_id, verifier_id=owner), None, None)
        assert [a.agent_id for a in await store.list_agents("vb")] == ["b1", "b2"]
        assert [a.agent_id for a in await store.list_agents("va")] == ["a1"]
        assert [a.agent_id for a in await store.list_agents()] == ["a1", "b1", "b2"]
        assert await store.list_agents("nobody") == []
    finally:
        await store.aclose()


@pytest.mark.parametrize(
    ("url", "conninfo"),
    [
        ("postgresql://u@127.0.0.1:5432/cv", "postgresql://u@127.0.0.1:5432/cv"),
        ("postgresql+psycopg2://u:pw@db/cv", "postgresql://u:pw@db/cv"),
        ("postgresql+psycopg://u@db/cv?sslmode=require", "postgresql://u@db/cv?sslmode=require"),
        ("postgres://u@db/cv", "postgresql://u@db/cv"),
        ("sqlite", None),
        ("sqlite:////var/lib/cv.sqlite", None),
        ("mysql+pymysql://u@db/cv", None),
        ("postgresqlx://u@db/cv", None),
    ],
)
def test_database_urls(url: str, conninfo: str | None) -> None:
    assert postgres_conninfo(url) == conninfo


async def test_a_url_that_is_not_postgresql_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        await open_store(VerifierConfig(database_url="postgresx://u@h/db"))
    assert caught.value.key == "database_url"


async def test_two_verifiers_racing_for_one_id(postgres_url: str) -> None:
    async with trio.open_nursery() as nursery:  # both create the schema at once, too
        stores: list[VerifierStore] = []

        async def open_one() -> None:
            stores.append(await PostgresVerifierStore.open(postgres_url))

        nursery.start_soon(open_one)
        nursery.start_soon(open_one)
    outcomes: list[str] = []
    try:

        async def add_as(store: VerifierStore, owner: str) -> None:
            try:
                await store.add_agent(record(verifier_id=owner), None, None)
                outcomes.append(owner)
            except ConflictError:
                outcomes.append("conflict")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(add_as, stores[0], "va")
            nursery.start_soon(add_as, stores[1], "vb")
        assert sorted(outcomes)[0] == "conflict"
        winner = sorted(outcomes)[1]
        stored = await stores[0].get_agent("a1")
        assert stored is not None and stored.verifier_id == winner
    finally:
        for store in stores:
            await store.aclose()


async def test_a_dropped_connection_is_reopened(postgres_url: str) -> None:
    store = await PostgresVerifierStore.open(postgres_url)
    try:
        await store.add_agent(record(), None, None)
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            ended = admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchall()
        assert ended == [(True,)]
        assert await store.get_agent("a1") == record()
    finally:
        await store.aclose()


# --- two verifier_lite processes (in-process here) sharing one database -------------------

FULL = "0"  # the fake agent's record of a quotes/integrity request without a partial quote


def attested(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda r: bool(
        r["operational_state"] == State.GET_QUOTE and r["attestation_count"] >= count
    )


async def start_verifier(
    nursery: trio.Nursery, tls: TlsFiles, tmp_path: Path, url: str, uuid: str
) -> tuple[RunningVerifier, trio.CancelScope]:
    # lease_seconds=0: Keylime's static split by verifier_id (test_failover_postgres.py has
    # the shared fleet).
    config = verifier_config(tmp_path / uuid, tls, uuid=uuid, database_url=url, lease_seconds=0)
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[Any]) -> None:
        with scope:
            await serve_verifier(config, task_status=task_status)

    bound = await nursery.start(run)
    return RunningVerifier(config, bound, tls), scope


async def counts(url: str) -> dict[str, int]:
    """Each agent's attestation_count, read from the database (a stopped verifier can't)."""
    store = await PostgresVerifierStore.open(url)
    try:
        return {a.agent_id: a.attestation_count for a in await store.list_agents()}
    finally:
        await store.aclose()


async def listed(verifier: RunningVerifier, owner: str) -> list[str]:
    async with verifier.client() as client:
        response = await client.get(f"/{API}/agents/", params={"verifier": owner})
    assert response.status_code == 200, response.text
    return sorted(row[0] for row in response.json()["results"]["uuids"])


@pytest.mark.swtpm
async def test_two_verifiers_share_one_database(
    nursery: trio.Nursery,
    tls_files: TlsFiles,
    tmp_path: Path,
    fake_agent: FakeAgent,
    postgres_url: str,
) -> None:
    owners = {"a1": "verifier-a", "a2": "verifier-a", "b1": "verifier-b"}
    va, stop_a = await start_verifier(nursery, tls_files, tmp_path, postgres_url, "verifier-a")
    vb, stop_b = await start_verifier(nursery, tls_files, tmp_path, postgres_url, "verifier-b")
    of = {"verifier-a": va, "verifier-b": vb}
    for agent_id, owner in owners.items():
        await add(of[owner], fake_agent, agent_id)
    for agent_id, owner in owners.items():
        await wait_status(of[owner], agent_id, attested(2))
    assert await listed(vb, "verifier-a") == ["a1", "a2"]  # one table, listed by owner
    assert await listed(va, "verifier-b") == ["b1"]
    async with va.client() as client:  # as Keylime: another verifier's agent is not found
        assert (await client.get(f"/{API}/agents/b1")).status_code == 404

    stop_b.cancel()  # B's agent stands still while A keeps polling its own
    await trio.sleep(0.2)
    frozen = await counts(postgres_url)
    await wait_status(va, "a1", attested(frozen["a1"] + 3))
    assert (await counts(postgres_url))["b1"] == frozen["b1"]

    stop_a.cancel()
    await trio.sleep(0.2)
    before = await counts(postgres_url)
    full_before = sum(r["partial"] == FULL for r in fake_agent.state.integrity_requests)
    assert full_before == len(owners)  # one verifier made each agent's first, full quote

    va, _ = await start_verifier(nursery, tls_files, tmp_path, postgres_url, "verifier-a")
    vb, _ = await start_verifier(nursery, tls_files, tmp_path, postgres_url, "verifier-b")
    of = {"verifier-a": va, "verifier-b": vb}
    for agent_id, owner in owners.items():
        status = await wait_status(of[owner], agent_id, attested(before[agent_id] + 2))
        assert status["verifier_id"] == owner
    full_after = sum(r["partial"] == FULL for r in fake_agent.state.integrity_requests)
    assert full_after == 2 * len(owners)  # each agent resumed by exactly one verifier
