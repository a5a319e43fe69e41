"""The timeline table on SQLite and on a real PostgreSQL: bounded per agent, newest first,
kept across a restart, gone with its agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.verifier.test_store import record
from tests.verifier.test_store_postgres import Opener
from verifier_lite.states import State
from verifier_lite.timeline import TimelineEvent

KEEP = 100
WRITTEN = 130


def entry(agent_id: str, n: int) -> TimelineEvent:
    failed = n % 2 == 1
    return TimelineEvent(
        agent_id, 1_800_000_000.0 + n, int(State.GET_QUOTE),
        int(State.INVALID_QUOTE if failed else State.GET_QUOTE), f"e{n}",
        "pcr_validation.invalid_pcr_23" if failed else None,
        '{"got": "ab"}' if failed else None,
    )  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    from verifier_lite.store import SqliteVerifierStore

    if request.param == "sqlite":
        path = tmp_path / "cv.sqlite"

        async def sqlite() -> SqliteVerifierStore:
            return await SqliteVerifierStore.open(path)

        return sqlite
    url: str = request.getfixturevalue("postgres_url")
    from verifier_lite.store_postgres import PostgresVerifierStore

    async def postgres() -> PostgresVerifierStore:
        return await PostgresVerifierStore.open(url)

    return postgres


async def test_the_timeline_keeps_the_newest_per_agent(opener: Opener) -> None:
    store = await opener()
    try:
        for agent_id in ("a1", "a2"):
            await store.add_agent(record(agent_id), None, None)
        for n in range(WRITTEN):
            await store.add_timeline_event(entry("a1", n), keep=KEEP)
        for n in range(3):
            await store.add_timeline_event(entry("a2", n), keep=KEEP)
    finally:
        await store.aclose()
    store = await opener()  # and it is all still there after a restart
    try:
        kept = await store.timeline("a1", KEEP * 2)
        assert [e.event for e in kept] == [
            f"e{n}" for n in reversed(range(WRITTEN - KEEP, WRITTEN))
        ]
        assert kept[0] == entry("a1", WRITTEN - 1)
        assert [e.event for e in await store.timeline("a1", 5)] == [
            f"e{n}" for n in range(WRITTEN - 1, WRITTEN - 6, -1)
        ]
        assert await store.timeline("a2", KEEP) == [entry("a2", n) for n in (2, 1, 0)]
        assert await store.delete_agent("a1")
        assert await store.timeline("a1", KEEP) == []
        assert len(await store.timeline("a2", KEEP)) == 3
    finally:
        await store.aclose()
