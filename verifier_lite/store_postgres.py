"""``VerifierStore`` on PostgreSQL, for several verifiers sharing one database.

Keylime's verifier scales out the same way: each process has its own ``uuid`` (the
``verifier_id`` column) and polls only its own rows (keylime/cloud_verifier_tornado.py,
``get_agents_by_verifier_id``), all of them on one database named by a SQLAlchemy-style
``database_url``.  We accept ``postgresql://`` and ``postgres://`` with or without a
``+driver`` part (``postgresql+psycopg2://``); the driver is always psycopg 3.

Like the SQLite store: one connection on service_kit/postgres.py's worker, autocommit except
where a check and a write must be one step.
Adding an agent is one transaction; a taken id is caught by the primary key (so two verifiers
racing for one id cannot both win) and rolls the new policies back.  A connection the server
drops is reopened and the call retried once (service_kit/postgres.py).

Schema (created on first start, idempotently, under an advisory lock so two verifiers
starting together do not race in ``CREATE TABLE``): the SQLite store's tables and columns,
typed (integers BIGINT, the list fields JSON text), plus an index on ``verifier_id``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from typing import Any, Optional, TypeVar

import psycopg
from psycopg import errors

from service_kit.postgres import POSTGRES_URL_FORMS, PostgresWorker, postgres_conninfo
from verifier_lite.errors import ConfigError, ConflictError
from verifier_lite.records import AgentRecord, MbPolicyRecord, RuntimePolicyRecord
from verifier_lite.store import (
    _COLUMNS,
    _LIST_COLUMNS,
    MB_IN_FORCE_SQL,
    PUSH_DOCUMENTS_SCHEMA,
    RUNTIME_IN_FORCE_SQL,
    _from_row,
    _to_row,
    timeline_row,
    timeline_sql,
)
from verifier_lite.timeline import TimelineEvent

T = TypeVar("T")

_CONFLICT = "Agent of uuid {} already exists. Please use delete or update."
__all__ = [
    "AGENT_SCHEMA", "PostgresVerifierStore", "postgres_conninfo", "update_agent_fenced",
]  # fmt: skip


def _column_type(name: str, annotation: object) -> str:
    text = str(annotation)
    sql = "BIGINT" if text.replace("Optional[", "").rstrip("]") == "int" else "TEXT"
    not_null = "" if text.startswith("Optional[") else " NOT NULL"
    if name == "agent_id":
        not_null = " PRIMARY KEY"
    return f"{name} {sql}{not_null}"


_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS verifier_agents ("
    + ", ".join(_column_type(f.name, f.type) for f in fields(AgentRecord))
    + ")",
    "CREATE INDEX IF NOT EXISTS verifier_agents_verifier_id ON verifier_agents (verifier_id)",
    "CREATE TABLE IF NOT EXISTS runtime_policies (name TEXT PRIMARY KEY, "
    "runtime_policy TEXT NOT NULL, tpm_policy TEXT, has_policy BOOLEAN NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mb_policies (name TEXT PRIMARY KEY, mb_policy TEXT)",
    # The status page's timeline (timeline.py), as in the SQLite store.
    "CREATE TABLE IF NOT EXISTS agent_timeline (seq BIGINT GENERATED ALWAYS AS IDENTITY "
    "PRIMARY KEY, agent_id TEXT NOT NULL, at DOUBLE PRECISION NOT NULL, "
    "from_state BIGINT NOT NULL, to_state BIGINT NOT NULL, event TEXT NOT NULL, "
    "event_id TEXT, context TEXT)",
    "CREATE INDEX IF NOT EXISTS agent_timeline_agent ON agent_timeline (agent_id, seq)",
    PUSH_DOCUMENTS_SCHEMA,  # push mode (verifier_lite/push/persist.py); the same DDL
)
_TIMELINE_INSERT, _TIMELINE_DELETE_OLD, _TIMELINE_LIST = timeline_sql("%s")
AGENT_SCHEMA = _SCHEMA  # lease_store.py's tables refer to these
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM verifier_agents"  # noqa: S608 - constant
_INSERT = (
    f"INSERT INTO verifier_agents ({', '.join(_COLUMNS)}) "  # noqa: S608 - constant
    f"VALUES ({', '.join('%s' for _ in _COLUMNS)})"
)
_INSERT_RUNTIME = (
    "INSERT INTO runtime_policies (name, runtime_policy, tpm_policy, has_policy) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (name) DO NOTHING"
)
_INSERT_MB = "INSERT INTO mb_policies (name, mb_policy) VALUES (%s, %s) ON CONFLICT DO NOTHING"
_USER_COLUMNS = {"runtime": "runtime_policy_name", "mb": "mb_policy_name"}


class PostgresVerifierStore:
    """``VerifierStore`` on one psycopg connection used from one worker thread at a time."""

    def __init__(self, db: PostgresWorker) -> None:
        self._db = db

    @classmethod
    async def open(cls, database_url: str) -> PostgresVerifierStore:
        conninfo = postgres_conninfo(database_url)
        if conninfo is None:
            raise ConfigError("database_url", POSTGRES_URL_FORMS)
        return cls(await PostgresWorker.open(conninfo, _SCHEMA))

    async def _run(self, fn: Callable[[psycopg.Connection[tuple[Any, ...]]], T]) -> T:
        return await self._db.run(fn)

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> Callable[..., list[Any]]:
        return lambda c: c.execute(sql, params).fetchall()

    def _changed(self, sql: str, params: tuple[Any, ...]) -> Callable[..., bool]:
        return lambda c: c.execute(sql, params).rowcount > 0

    async def add_agent(
        self,
        agent: AgentRecord,
        runtime_policy: Optional[RuntimePolicyRecord],
        mb_policy: Optional[MbPolicyRecord],
    ) -> None:
        await self._run(lambda conn: _add_agent(conn, agent, runtime_policy, mb_policy))

    async def get_agent(self, agent_id: str) -> Optional[AgentRecord]:
        rows = await self._run(self._rows(f"{_SELECT} WHERE agent_id = %s", (agent_id,)))
        return _from_row(tuple(rows[0])) if rows else None

    async def list_agents(self, verifier_id: Optional[str] = None) -> list[AgentRecord]:
        if verifier_id is None:
            query = self._rows(f"{_SELECT} ORDER BY agent_id")
        else:
            query = self._rows(
                f"{_SELECT} WHERE verifier_id = %s ORDER BY agent_id", (verifier_id,)
            )
        return [_from_row(tuple(r)) for r in await self._run(query)]

    async def update_agent(self, agent_id: str, **changes: Any) -> bool:
        unknown = set(changes) - set(_COLUMNS) | ({"agent_id"} & set(changes))
        if unknown:
            raise ValueError(f"not updatable: {sorted(unknown)}")
        names = sorted(changes)
        values = [json.dumps(list(changes[n])) if n in _LIST_COLUMNS else changes[n] for n in names]
        assignments = ", ".join(f"{n} = %s" for n in names)  # names checked against _COLUMNS
        sql = f"UPDATE verifier_agents SET {assignments} WHERE agent_id = %s"  # noqa: S608
        return await self._run(self._changed(sql, (*values, agent_id)))

    async def delete_agent(self, agent_id: str) -> bool:
        def delete(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
            with conn.transaction():
                conn.execute("DELETE FROM agent_timeline WHERE agent_id = %s", (agent_id,))
                sql = "DELETE FROM verifier_agents WHERE agent_id = %s"
                return conn.execute(sql, (agent_id,)).rowcount > 0

        return await self._run(delete)

    async def add_runtime_policy(self, policy: RuntimePolicyRecord, *, replace: bool) -> bool:
        if replace:
            sql = (
                "UPDATE runtime_policies SET runtime_policy = %s, tpm_policy = %s, "
                "has_policy = %s WHERE name = %s"
            )
            row = (policy.runtime_policy, policy.tpm_policy, policy.has_policy, policy.name)
            return await self._run(self._changed(sql, row))
        return await self._run(self._changed(_INSERT_RUNTIME, _runtime_row(policy)))

    async def get_runtime_policy(self, name: str) -> Optional[RuntimePolicyRecord]:
        sql = (
            "SELECT name, runtime_policy, tpm_policy, has_policy FROM runtime_policies "
            "WHERE name = %s"
        )
        rows = await self._run(self._rows(sql, (name,)))
        return RuntimePolicyRecord(*rows[0]) if rows else None

    async def runtime_policy_names(self) -> list[str]:
        rows = await self._run(self._rows("SELECT name FROM runtime_policies ORDER BY name"))
        return [str(r[0]) for r in rows]

    async def delete_runtime_policy(self, name: str) -> bool:
        return await self._run(
            self._changed("DELETE FROM runtime_policies WHERE name = %s", (name,))
        )

    async def add_mb_policy(self, policy: MbPolicyRecord, *, replace: bool) -> bool:
        if replace:
            sql = "UPDATE mb_policies SET mb_policy = %s WHERE name = %s"
            return await self._run(self._changed(sql, (policy.mb_policy, policy.name)))
        return await self._run(self._changed(_INSERT_MB, (policy.name, policy.mb_policy)))

    async def get_mb_policy(self, name: str) -> Optional[MbPolicyRecord]:
        sql = "SELECT name, mb_policy FROM mb_policies WHERE name = %s"
        rows = await self._run(self._rows(sql, (name,)))
        return MbPolicyRecord(*rows[0]) if rows else None

    async def mb_policy_names(self) -> list[str]:
        rows = await self._run(self._rows("SELECT name FROM mb_policies ORDER BY name"))
        return [str(r[0]) for r in rows]

    async def delete_mb_policy(self, name: str) -> bool:
        return await self._run(self._changed("DELETE FROM mb_policies WHERE name = %s", (name,)))

    async def policies_in_force(self) -> tuple[frozenset[str], frozenset[str]]:
        def query(conn: psycopg.Connection[tuple[Any, ...]]) -> tuple[frozenset[str], ...]:
            runtime = conn.execute(RUNTIME_IN_FORCE_SQL).fetchall()
            mb = conn.execute(MB_IN_FORCE_SQL).fetchall()
            return frozenset(r[0] for r in runtime), frozenset(r[0] for r in mb)

        runtime, mb = await self._run(query)
        return runtime, mb

    async def policy_users(self, kind: str, name: str) -> list[str]:
        column = _USER_COLUMNS[kind]
        sql = f"SELECT agent_id FROM verifier_agents WHERE {column} = %s ORDER BY agent_id"  # noqa: S608
        return [str(r[0]) for r in await self._run(self._rows(sql, (name,)))]

    async def add_timeline_event(self, event: TimelineEvent, *, keep: int) -> None:
        def add(conn: psycopg.Connection[tuple[Any, ...]]) -> None:
            with conn.transaction():
                conn.execute(_TIMELINE_INSERT, timeline_row(event))
                conn.execute(_TIMELINE_DELETE_OLD, (event.agent_id, event.agent_id, keep))

        await self._run(add)

    async def timeline(self, agent_id: str, limit: int) -> list[TimelineEvent]:
        rows = await self._run(self._rows(_TIMELINE_LIST, (agent_id, limit)))
        return [TimelineEvent(*r) for r in rows]

    async def put_push_document(self, kind: str, key: str, agent_id: str, doc: str) -> None:
        sql = (
            "INSERT INTO push_documents (kind, key, agent_id, doc) VALUES (%s, %s, %s, %s) "
            "ON CONFLICT (kind, key) DO UPDATE SET agent_id = EXCLUDED.agent_id, doc = EXCLUDED.doc"
        )
        await self._run(self._changed(sql, (kind, key, agent_id, doc)))

    async def get_push_document(self, kind: str, key: str) -> Optional[str]:
        sql = "SELECT doc FROM push_documents WHERE kind = %s AND key = %s"
        rows = await self._run(self._rows(sql, (kind, key)))
        return str(rows[0][0]) if rows else None

    async def delete_push_documents(self, kind: str, key: str) -> None:
        sql = "DELETE FROM push_documents WHERE kind = %s AND key = %s"
        await self._run(self._changed(sql, (kind, key)))

    async def aclose(self) -> None:
        await self._db.aclose()


def _runtime_row(policy: RuntimePolicyRecord) -> tuple[Any, ...]:
    return (policy.name, policy.runtime_policy, policy.tpm_policy, policy.has_policy)


def _add_agent(
    conn: psycopg.Connection[tuple[Any, ...]],
    agent: AgentRecord,
    runtime_policy: Optional[RuntimePolicyRecord],
    mb_policy: Optional[MbPolicyRecord],
) -> None:
    try:
        with conn.transaction():  # leaving by an exception rolls the policies back too
            if runtime_policy is not None:
                p = runtime_policy
                conn.execute(
                    _INSERT_RUNTIME, (p.name, p.runtime_policy, p.tpm_policy, p.has_policy)
                )
            if mb_policy is not None:
                conn.execute(_INSERT_MB, (mb_policy.name, mb_policy.mb_policy))
            conn.execute(_INSERT, _to_row(agent))
    except errors.UniqueViolation as exc:
        raise ConflictError(_CONFLICT.format(agent.agent_id)) from exc


# --- fenced writes for leased polling (verifier_lite/lease_store.py) -----------------------

# The polling task's write lands only while this verifier holds the agent's unexpired lease
# and the row still says the agent is being polled (a stop or delete through any verifier of
# the fleet ends the task at its next write).  FOR SHARE makes a competing take wait for the
# write, so a write and a take-over are ordered.  The agent_leases table is lease_store.py's.
_FENCE = (
    " WHERE agent_id = %s AND operational_state = ANY(%s) AND EXISTS (SELECT 1 FROM agent_leases"
    " WHERE agent_id = %s AND holder = %s AND expires_at > clock_timestamp() FOR SHARE)"
)


async def update_agent_fenced(
    store: PostgresVerifierStore,
    agent_id: str,
    holder: str,
    polling_states: list[int],
    changes: dict[str, Any],
) -> bool:
    """``update_agent`` that only writes under ``holder``'s lease; False when refused."""
    unknown = set(changes) - set(_COLUMNS) | ({"agent_id"} & set(changes))
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    names = sorted(changes)
    values = [json.dumps(list(changes[n])) if n in _LIST_COLUMNS else changes[n] for n in names]
    assignments = ", ".join(f"{n} = %s" for n in names)  # names checked against _COLUMNS
    sql = f"UPDATE verifier_agents SET {assignments}{_FENCE}"  # noqa: S608 - constants
    params = (*values, agent_id, polling_states, agent_id, holder)
    return await store._run(store._changed(sql, params))
