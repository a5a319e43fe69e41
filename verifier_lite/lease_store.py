"""Agent leases and verifier heartbeats in PostgreSQL (the rules are leases.py's).

Tables, created beside store_postgres.py's under the same advisory lock::

    verifier_heartbeats (verifier_id PK, expires_at)            one row per verifier ever seen
    agent_leases (agent_id PK -> verifier_agents ON DELETE CASCADE, holder, expires_at)

Every time comparison uses the database's ``clock_timestamp()``, so verifiers on different
machines need no synchronised clocks.  One round (:meth:`LeaseStore.round`) is one
transaction: heartbeat, a lease row for every new agent, renew this verifier's unexpired
leases, count the live verifiers and the agents.  Taking uses ``FOR UPDATE SKIP LOCKED`` so
verifiers taking at once never wait on or steal from each other, and records the taker in
``verifier_agents.verifier_id`` (what ``GET /agents/?verifier=`` lists).

The lease store has its own connection and worker thread (service_kit/postgres.py), so a
renewal never queues behind the polling tasks' writes.  :class:`FencedStore` is the store the
polling tasks write through: its ``update_agent`` goes through ``update_agent_fenced``
(store_postgres.py) and raises :class:`LeaseLost` when the lease is no longer this verifier's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import psycopg

from service_kit.postgres import PostgresWorker
from verifier_lite.leases import LeaseLost
from verifier_lite.states import POLLING
from verifier_lite.store_health import MonitoredStore
from verifier_lite.store_postgres import AGENT_SCHEMA, PostgresVerifierStore, update_agent_fenced

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS verifier_heartbeats "
    "(verifier_id TEXT PRIMARY KEY, expires_at TIMESTAMPTZ NOT NULL)",
    "CREATE TABLE IF NOT EXISTS agent_leases (agent_id TEXT PRIMARY KEY REFERENCES "
    "verifier_agents (agent_id) ON DELETE CASCADE, holder TEXT, expires_at TIMESTAMPTZ NOT NULL)",
    "CREATE INDEX IF NOT EXISTS agent_leases_holder ON agent_leases (holder)",
)
# Written out in each statement (no f-strings, so no query is built from variables).
_HEARTBEAT = (
    "INSERT INTO verifier_heartbeats (verifier_id, expires_at) "
    "VALUES (%s, clock_timestamp() + %s * interval '1 second') "
    "ON CONFLICT (verifier_id) DO UPDATE SET expires_at = EXCLUDED.expires_at"
)
# Sorted, so two verifiers adding the same new rows lock them in one order (no deadlock).
_NEW_AGENTS = (
    "INSERT INTO agent_leases (agent_id, holder, expires_at) SELECT agent_id, NULL, "
    "'-infinity' FROM verifier_agents ORDER BY agent_id ON CONFLICT (agent_id) DO NOTHING"
)
_RENEW = (
    "UPDATE agent_leases SET expires_at = clock_timestamp() + %s * interval '1 second' "
    "WHERE holder = %s AND expires_at > clock_timestamp() RETURNING agent_id"
)
_LIVE = "SELECT count(*) FROM verifier_heartbeats WHERE expires_at > clock_timestamp()"
_AGENTS = "SELECT count(*) FROM agent_leases"
_TAKE = (
    "UPDATE agent_leases SET holder = %s, "
    "expires_at = clock_timestamp() + %s * interval '1 second' WHERE agent_id IN "
    "(SELECT agent_id FROM agent_leases WHERE expires_at <= clock_timestamp() "
    "ORDER BY agent_id LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING agent_id"
)
_OWNER = "UPDATE verifier_agents SET verifier_id = %s WHERE agent_id = ANY(%s)"
# A released lease is free only after the margin, so a quote request the releaser cancelled
# has drained at the agent before the next holder asks.
_RELEASE = (
    "UPDATE agent_leases SET holder = NULL, "
    "expires_at = clock_timestamp() + %s * interval '1 second' "
    "WHERE holder = %s AND agent_id = ANY(%s)"
)
_LEAVE = "UPDATE verifier_heartbeats SET expires_at = '-infinity' WHERE verifier_id = %s"
# Push agents (no address; verifier_lite/push/enrol.py) are leased but never polled.
_STATES = (
    "SELECT agent_id, operational_state FROM verifier_agents WHERE agent_id = ANY(%s) "
    "AND NOT (ip = '' AND port = 0)"
)
_POLLING_CODES = sorted(int(s) for s in POLLING)


@dataclass(frozen=True)
class RoundResult:
    renewed: frozenset[str]
    agents: int
    live_verifiers: int


def _ids(rows: list[tuple[Any, ...]]) -> frozenset[str]:
    return frozenset(str(r[0]) for r in rows)


class LeaseStore:
    """The lease tables on their own connection, used from one worker thread at a time."""

    def __init__(self, db: PostgresWorker, verifier_id: str) -> None:
        self._db = db
        self._me = verifier_id

    @classmethod
    async def open(cls, conninfo: str, verifier_id: str) -> LeaseStore:
        # The agent tables first: agent_leases refers to them.
        return cls(await PostgresWorker.open(conninfo, (*AGENT_SCHEMA, *_SCHEMA)), verifier_id)

    async def _run(self, fn: Callable[[Conn], T]) -> T:
        # A round the worker retries after a reconnect may have committed once already:
        # harmless, as the lease loop adopts every lease the database says is its own.
        return await self._db.run(fn)

    async def round(self, duration: float) -> RoundResult:
        def run(conn: Conn) -> RoundResult:
            with conn.transaction():
                conn.execute(_HEARTBEAT, (self._me, duration))
                conn.execute(_NEW_AGENTS)
                renewed = _ids(conn.execute(_RENEW, (duration, self._me)).fetchall())
                live = conn.execute(_LIVE).fetchone()
                agents = conn.execute(_AGENTS).fetchone()
            return RoundResult(
                renewed, int(agents[0]) if agents else 0, int(live[0]) if live else 0
            )

        return await self._run(run)

    async def take(self, count: int, duration: float) -> frozenset[str]:
        def run(conn: Conn) -> frozenset[str]:
            with conn.transaction():
                taken = _ids(conn.execute(_TAKE, (self._me, duration, count)).fetchall())
                if taken:
                    conn.execute(_OWNER, (self._me, sorted(taken)))
            return taken

        return await self._run(run) if count > 0 else frozenset()

    async def release(self, agent_ids: frozenset[str], drain: float) -> None:
        """Give leases back; others may take them ``drain`` seconds from now."""
        if agent_ids:
            params = (drain, self._me, sorted(agent_ids))
            await self._run(lambda c: c.execute(_RELEASE, params))

    async def leave(self) -> None:
        """Say this verifier is gone (a clean stop): the others re-divide at once."""
        await self._run(lambda c: c.execute(_LEAVE, (self._me,)))

    async def polling(self, agent_ids: frozenset[str]) -> frozenset[str]:
        """Those of ``agent_ids`` whose row says they are being polled."""
        rows = await self._run(lambda c: c.execute(_STATES, (sorted(agent_ids),)).fetchall())
        return frozenset(str(r[0]) for r in rows if int(r[1]) in _POLLING_CODES)

    async def aclose(self) -> None:
        await self._db.aclose()


class FencedStore(MonitoredStore):
    """The store the polling tasks use in a shared fleet: reads as ``monitored``, writes of
    an agent's row only under this verifier's lease (shares its health record)."""

    def __init__(self, monitored: MonitoredStore, verifier_id: str) -> None:
        super().__init__(monitored.inner)
        if not isinstance(monitored.inner, PostgresVerifierStore):
            raise TypeError("leases need the PostgreSQL store")
        self._pg = monitored.inner
        self._monitored = monitored
        self.health = monitored.health
        self._me = verifier_id

    def _observe(self, started: float, *, failed: bool) -> None:
        self._monitored._observe(started, failed=failed)  # metrics are attached to it

    async def update_agent(self, agent_id: str, **changes: Any) -> bool:
        written = await self._call(
            lambda: update_agent_fenced(self._pg, agent_id, self._me, _POLLING_CODES, changes),
            write=True,
        )
        if not written:
            raise LeaseLost(agent_id)
        return True

    async def aclose(self) -> None:
        """Nothing: the monitored store is closed by whoever opened it."""
