"""Where the verifier's state lives: a ``VerifierStore`` Protocol and its SQLite implementation.

On service_kit/sqlite.py's worker, as registrar_lite/store.py: one connection in a worker
thread, WAL mode, ``BEGIN IMMEDIATE`` where a check and a write must be one step (adding an
agent whose name is free).  Everything the REST API returns is a column, so
nothing is lost on restart; list fields are JSON arrays.

Schema::

    verifier_agents(agent_id PRIMARY KEY, <every AgentRecord field>)
    runtime_policies(name PRIMARY KEY, runtime_policy, tpm_policy, has_policy)
    mb_policies(name PRIMARY KEY, mb_policy)
    agent_timeline(seq PRIMARY KEY, agent_id, at, from_state, to_state, event, event_id,
                   context)   the newest TIMELINE_EVENTS_PER_AGENT per agent (timeline.py)
    push_documents(kind, key, agent_id, doc; PRIMARY KEY (kind, key))   push mode's
        attestation histories and active sessions as JSON (verifier_lite/push/persist.py)
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple, fields
from pathlib import Path
from typing import Any, Optional, Protocol, TypeVar, runtime_checkable

from service_kit.sqlite import SqliteWorker, immediate
from verifier_lite.errors import ConflictError
from verifier_lite.records import AgentRecord, MbPolicyRecord, RuntimePolicyRecord
from verifier_lite.timeline import TimelineEvent

T = TypeVar("T")

_COLUMNS = tuple(f.name for f in fields(AgentRecord))
_LIST_COLUMNS = frozenset(
    {"accept_tpm_hash_algs", "accept_tpm_encryption_algs", "accept_tpm_signing_algs"}
)
# Push mode (verifier_lite/push/persist.py): one JSON document per (kind, key).
PUSH_DOCUMENTS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS push_documents (kind TEXT NOT NULL, key TEXT NOT NULL, "
    "agent_id TEXT NOT NULL, doc TEXT NOT NULL, PRIMARY KEY (kind, key))"
)
# Both engines (store_postgres.py too): the policies a bulk status reports as present.
RUNTIME_IN_FORCE_SQL = "SELECT name FROM runtime_policies WHERE has_policy"
MB_IN_FORCE_SQL = "SELECT name FROM mb_policies WHERE mb_policy IS NOT NULL"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS verifier_agents (agent_id TEXT PRIMARY KEY NOT NULL, "
    f"{', '.join(c for c in _COLUMNS if c != 'agent_id')})",
    "CREATE TABLE IF NOT EXISTS runtime_policies (name TEXT PRIMARY KEY NOT NULL, "
    "runtime_policy TEXT NOT NULL, tpm_policy TEXT, has_policy INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS mb_policies (name TEXT PRIMARY KEY NOT NULL, mb_policy TEXT)",
    # The status page's timeline (timeline.py); added later, so existing files gain it here.
    "CREATE TABLE IF NOT EXISTS agent_timeline (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "agent_id TEXT NOT NULL, at REAL NOT NULL, from_state INTEGER NOT NULL, "
    "to_state INTEGER NOT NULL, event TEXT NOT NULL, event_id TEXT, context TEXT)",
    "CREATE INDEX IF NOT EXISTS agent_timeline_agent ON agent_timeline (agent_id, seq)",
    PUSH_DOCUMENTS_SCHEMA,
)
# Shared with store_postgres.py: the timeline's columns, and its trim to the newest ``keep``.
TIMELINE_COLUMNS = "agent_id, at, from_state, to_state, event, event_id, context"
_TIMELINE_TRIM = (
    "DELETE FROM agent_timeline WHERE agent_id = {p} AND seq NOT IN (SELECT seq FROM "
    "agent_timeline WHERE agent_id = {p} ORDER BY seq DESC LIMIT {p})"
)
_TIMELINE_SELECT = (
    f"SELECT {TIMELINE_COLUMNS} FROM agent_timeline WHERE agent_id = {{p}} "  # noqa: S608
    "ORDER BY seq DESC LIMIT {p}"
)

_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM verifier_agents"  # noqa: S608 - constant
_INSERT = (
    f"INSERT INTO verifier_agents ({', '.join(_COLUMNS)}) "  # noqa: S608 - constant
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)


class VerifierStore(Protocol):
    async def add_agent(
        self,
        agent: AgentRecord,
        runtime_policy: Optional[RuntimePolicyRecord],
        mb_policy: Optional[MbPolicyRecord],
    ) -> None:
        """Insert the agent and any new policies in one transaction; ConflictError if taken."""
        ...

    async def get_agent(self, agent_id: str) -> Optional[AgentRecord]: ...

    async def list_agents(self, verifier_id: Optional[str] = None) -> list[AgentRecord]: ...

    async def update_agent(self, agent_id: str, **changes: Any) -> bool:
        """Set some columns; False when the agent is gone (deleted meanwhile)."""
        ...

    async def delete_agent(self, agent_id: str) -> bool: ...

    async def add_runtime_policy(self, policy: RuntimePolicyRecord, *, replace: bool) -> bool:
        """Insert (``replace=False``; False if the name exists) or update (False if absent)."""
        ...

    async def get_runtime_policy(self, name: str) -> Optional[RuntimePolicyRecord]: ...

    async def runtime_policy_names(self) -> list[str]: ...

    async def delete_runtime_policy(self, name: str) -> bool: ...

    async def add_mb_policy(self, policy: MbPolicyRecord, *, replace: bool) -> bool: ...

    async def get_mb_policy(self, name: str) -> Optional[MbPolicyRecord]: ...

    async def mb_policy_names(self) -> list[str]: ...

    async def delete_mb_policy(self, name: str) -> bool: ...

    async def policies_in_force(self) -> tuple[frozenset[str], frozenset[str]]:
        """The names of the runtime policies that hold a policy (not the empty stand-in) and
        of the measured-boot policies that hold one: a bulk status reads them in one go."""
        ...

    async def policy_users(self, kind: str, name: str) -> list[str]:
        """Agent ids whose ``runtime_policy_name`` (kind "runtime") or ``mb_policy_name``."""
        ...

    async def add_timeline_event(self, event: TimelineEvent, *, keep: int) -> None:
        """Append to the agent's timeline and drop its oldest events beyond ``keep``."""
        ...

    async def timeline(self, agent_id: str, limit: int) -> list[TimelineEvent]:
        """The agent's newest ``limit`` events, newest first."""
        ...

    async def aclose(self) -> None: ...

    # Push mode's documents (verifier_lite/push/persist.py).

    async def put_push_document(self, kind: str, key: str, agent_id: str, doc: str) -> None:
        """Insert or replace the document ``(kind, key)``."""
        ...

    async def get_push_document(self, kind: str, key: str) -> Optional[str]: ...

    async def delete_push_documents(self, kind: str, key: str) -> None: ...


def timeline_row(event: TimelineEvent) -> tuple[Any, ...]:
    return astuple(event)


def timeline_sql(placeholder: str) -> tuple[str, str, str]:
    """The timeline's insert, trim and select statements with a driver's placeholder."""
    marks = ", ".join(placeholder for _ in range(7))
    insert = f"INSERT INTO agent_timeline ({TIMELINE_COLUMNS}) VALUES ({marks})"  # noqa: S608
    return insert, _TIMELINE_TRIM.format(p=placeholder), _TIMELINE_SELECT.format(p=placeholder)


_TIMELINE_INSERT, _TIMELINE_DELETE_OLD, _TIMELINE_LIST = timeline_sql("?")


@runtime_checkable
class BatchWriter(Protocol):
    """A store that can apply many agents' column changes in one transaction."""

    async def update_agents_many(self, updates: Sequence[tuple[str, Mapping[str, Any]]]) -> int:
        """Apply each (agent_id, changes); the number of rows changed (gone agents skip)."""
        ...


def _update_statement(agent_id: str, changes: Mapping[str, Any]) -> tuple[str, tuple[Any, ...]]:
    unknown = set(changes) - set(_COLUMNS) | ({"agent_id"} & set(changes))
    if unknown:
        raise ValueError(f"not updatable: {sorted(unknown)}")
    names = sorted(changes)
    values = [json.dumps(list(changes[n])) if n in _LIST_COLUMNS else changes[n] for n in names]
    assignments = ", ".join(f"{n} = ?" for n in names)  # names checked against _COLUMNS
    sql = f"UPDATE verifier_agents SET {assignments} WHERE agent_id = ?"  # noqa: S608
    return sql, (*values, agent_id)


# Rows per batched UPDATE: (1 + columns) * rows stays far below SQLite's 32,766 variables.
_BATCH_ROWS = 500


def _batch_statements(
    updates: Sequence[tuple[str, Mapping[str, Any]]],
) -> list[tuple[str, tuple[Any, ...]]]:
    """One UPDATE ... FROM (VALUES ...) per set of columns and _BATCH_ROWS agents; an agent
    named twice gets its changes merged in order, as consecutive updates would leave it."""
    merged: dict[str, dict[str, Any]] = {}
    for agent_id, changes in updates:
        _update_statement(agent_id, changes)  # the same checks as a single update
        merged.setdefault(agent_id, {}).update(changes)
    groups: dict[tuple[str, ...], list[tuple[Any, ...]]] = {}
    for agent_id, changes in merged.items():
        names = tuple(sorted(changes))
        if names:
            _, values = _update_statement(agent_id, changes)
            groups.setdefault(names, []).append((agent_id, *values[:-1]))
    statements = []
    for names, rows in groups.items():
        columns = ", ".join(
            ["column1 AS agent_id", *(f"column{i + 2} AS {n}" for i, n in enumerate(names))]
        )
        assignments = ", ".join(f"{n} = v.{n}" for n in names)  # names checked against _COLUMNS
        row_marks = "(" + ", ".join("?" * (len(names) + 1)) + ")"
        for start in range(0, len(rows), _BATCH_ROWS):
            chunk = rows[start : start + _BATCH_ROWS]
            sql = (
                f"UPDATE verifier_agents SET {assignments} FROM (SELECT {columns} FROM "  # noqa: S608
                f"(VALUES {', '.join([row_marks] * len(chunk))})) AS v "
                "WHERE verifier_agents.agent_id = v.agent_id"
            )
            statements.append((sql, tuple(value for row in chunk for value in row)))
    return statements


def _to_row(agent: AgentRecord) -> tuple[Any, ...]:
    return tuple(
        json.dumps(list(value)) if name in _LIST_COLUMNS else value
        for name, value in zip(_COLUMNS, astuple(agent))
    )


def _from_row(row: tuple[Any, ...]) -> AgentRecord:
    values: dict[str, Any] = {
        name: tuple(json.loads(value)) if name in _LIST_COLUMNS else value
        for name, value in zip(_COLUMNS, row)
    }
    return AgentRecord(**values)


class SqliteVerifierStore:
    """``VerifierStore`` on one sqlite3 connection used from one worker thread at a time."""

    def __init__(self, db: SqliteWorker) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteVerifierStore:
        return cls(await SqliteWorker.open(path, _SCHEMA))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(fn)

    async def add_agent(
        self,
        agent: AgentRecord,
        runtime_policy: Optional[RuntimePolicyRecord],
        mb_policy: Optional[MbPolicyRecord],
    ) -> None:
        await self._run(lambda conn: _add_agent(conn, agent, runtime_policy, mb_policy))

    async def get_agent(self, agent_id: str) -> Optional[AgentRecord]:
        def query(conn: sqlite3.Connection) -> Optional[AgentRecord]:
            row = conn.execute(f"{_SELECT} WHERE agent_id = ?", (agent_id,)).fetchone()
            return None if row is None else _from_row(tuple(row))

        return await self._run(query)

    async def list_agents(self, verifier_id: Optional[str] = None) -> list[AgentRecord]:
        def query(conn: sqlite3.Connection) -> list[AgentRecord]:
            if verifier_id is None:
                rows = conn.execute(f"{_SELECT} ORDER BY agent_id")
            else:
                sql = f"{_SELECT} WHERE verifier_id = ? ORDER BY agent_id"
                rows = conn.execute(sql, (verifier_id,))
            return [_from_row(tuple(r)) for r in rows]

        return await self._run(query)

    async def update_agent(self, agent_id: str, **changes: Any) -> bool:
        sql, values = _update_statement(agent_id, changes)
        return await self._run(lambda c: c.execute(sql, values).rowcount > 0)

    async def update_agents_many(self, updates: Sequence[tuple[str, Mapping[str, Any]]]) -> int:
        """Batch API (verifier_lite/write_batch.py): every update in one transaction, so one
        commit for a period's counters; the number of agents changed (deleted ones skip).

        Agents whose changes name the same columns are written by one ``UPDATE ... FROM
        (VALUES ...)`` each ``_BATCH_ROWS``: a statement per agent would hand the GIL back
        and forth with the busy event loop once per row, and each hand-off can wait out the
        interpreter's 5 ms switch interval (1,000 rows took 4 s instead of 2 ms)."""
        statements = _batch_statements(updates)

        def write(conn: sqlite3.Connection) -> int:
            with immediate(conn):
                return sum(conn.execute(sql, values).rowcount for sql, values in statements)

        return await self._run(write)

    async def delete_agent(self, agent_id: str) -> bool:
        def delete(conn: sqlite3.Connection) -> bool:
            with immediate(conn):
                conn.execute("DELETE FROM agent_timeline WHERE agent_id = ?", (agent_id,))
                sql = "DELETE FROM verifier_agents WHERE agent_id = ?"
                return conn.execute(sql, (agent_id,)).rowcount > 0

        return await self._run(delete)

    async def add_runtime_policy(self, policy: RuntimePolicyRecord, *, replace: bool) -> bool:
        row = (policy.runtime_policy, policy.tpm_policy, int(policy.has_policy), policy.name)
        if replace:
            sql = (
                "UPDATE runtime_policies SET runtime_policy = ?, tpm_policy = ?, has_policy = ? "
                "WHERE name = ?"
            )
        else:
            sql = (
                "INSERT OR IGNORE INTO runtime_policies (runtime_policy, tpm_policy, has_policy, "
                "name) VALUES (?, ?, ?, ?)"
            )
        return await self._run(lambda c: c.execute(sql, row).rowcount > 0)

    async def get_runtime_policy(self, name: str) -> Optional[RuntimePolicyRecord]:
        sql = (
            "SELECT name, runtime_policy, tpm_policy, has_policy FROM runtime_policies "
            "WHERE name = ?"
        )

        def query(conn: sqlite3.Connection) -> Optional[RuntimePolicyRecord]:
            row = conn.execute(sql, (name,)).fetchone()
            if row is None:
                return None
            return RuntimePolicyRecord(row[0], row[1], row[2], bool(row[3]))

        return await self._run(query)

    async def runtime_policy_names(self) -> list[str]:
        sql = "SELECT name FROM runtime_policies ORDER BY name"
        return await self._run(lambda c: [str(r[0]) for r in c.execute(sql)])

    async def delete_runtime_policy(self, name: str) -> bool:
        sql = "DELETE FROM runtime_policies WHERE name = ?"
        return await self._run(lambda c: c.execute(sql, (name,)).rowcount > 0)

    async def add_mb_policy(self, policy: MbPolicyRecord, *, replace: bool) -> bool:
        if replace:
            sql = "UPDATE mb_policies SET mb_policy = ? WHERE name = ?"
        else:
            sql = "INSERT OR IGNORE INTO mb_policies (mb_policy, name) VALUES (?, ?)"
        row = (policy.mb_policy, policy.name)
        return await self._run(lambda c: c.execute(sql, row).rowcount > 0)

    async def get_mb_policy(self, name: str) -> Optional[MbPolicyRecord]:
        sql = "SELECT name, mb_policy FROM mb_policies WHERE name = ?"

        def query(conn: sqlite3.Connection) -> Optional[MbPolicyRecord]:
            row = conn.execute(sql, (name,)).fetchone()
            return None if row is None else MbPolicyRecord(row[0], row[1])

        return await self._run(query)

    async def mb_policy_names(self) -> list[str]:
        sql = "SELECT name FROM mb_policies ORDER BY name"
        return await self._run(lambda c: [str(r[0]) for r in c.execute(sql)])

    async def delete_mb_policy(self, name: str) -> bool:
        sql = "DELETE FROM mb_policies WHERE name = ?"
        return await self._run(lambda c: c.execute(sql, (name,)).rowcount > 0)

    async def policies_in_force(self) -> tuple[frozenset[str], frozenset[str]]:
        def query(conn: sqlite3.Connection) -> tuple[frozenset[str], frozenset[str]]:
            runtime = conn.execute(RUNTIME_IN_FORCE_SQL).fetchall()
            mb = conn.execute(MB_IN_FORCE_SQL).fetchall()
            return frozenset(r[0] for r in runtime), frozenset(r[0] for r in mb)

        return await self._run(query)

    async def policy_users(self, kind: str, name: str) -> list[str]:
        column = {"runtime": "runtime_policy_name", "mb": "mb_policy_name"}[kind]
        sql = f"SELECT agent_id FROM verifier_agents WHERE {column} = ?"  # noqa: S608 - fixed
        return await self._run(lambda c: [str(r[0]) for r in c.execute(sql, (name,))])

    async def add_timeline_event(self, event: TimelineEvent, *, keep: int) -> None:
        def add(conn: sqlite3.Connection) -> None:
            with immediate(conn):
                conn.execute(_TIMELINE_INSERT, timeline_row(event))
                conn.execute(_TIMELINE_DELETE_OLD, (event.agent_id, event.agent_id, keep))

        await self._run(add)

    async def timeline(self, agent_id: str, limit: int) -> list[TimelineEvent]:
        def query(conn: sqlite3.Connection) -> list[TimelineEvent]:
            rows = conn.execute(_TIMELINE_LIST, (agent_id, limit))
            return [TimelineEvent(*r) for r in rows]

        return await self._run(query)

    async def aclose(self) -> None:
        await self._db.aclose()

    async def put_push_document(self, kind: str, key: str, agent_id: str, doc: str) -> None:
        sql = "INSERT OR REPLACE INTO push_documents VALUES (?, ?, ?, ?)"
        await self._run(lambda c: c.execute(sql, (kind, key, agent_id, doc)))

    async def get_push_document(self, kind: str, key: str) -> Optional[str]:
        sql = "SELECT doc FROM push_documents WHERE kind = ? AND key = ?"

        def query(conn: sqlite3.Connection) -> Optional[str]:
            row = conn.execute(sql, (kind, key)).fetchone()
            return None if row is None else str(row[0])

        return await self._run(query)

    async def delete_push_documents(self, kind: str, key: str) -> None:
        sql = "DELETE FROM push_documents WHERE kind = ? AND key = ?"
        await self._run(lambda c: c.execute(sql, (kind, key)))


def _add_agent(
    conn: sqlite3.Connection,
    agent: AgentRecord,
    runtime_policy: Optional[RuntimePolicyRecord],
    mb_policy: Optional[MbPolicyRecord],
) -> None:
    with immediate(conn):
        taken = conn.execute(
            "SELECT 1 FROM verifier_agents WHERE agent_id = ?", (agent.agent_id,)
        ).fetchone()
        if taken is not None:
            raise ConflictError(
                f"Agent of uuid {agent.agent_id} already exists. Please use delete or update."
            )
        if runtime_policy is not None:
            conn.execute(
                "INSERT OR IGNORE INTO runtime_policies VALUES (?, ?, ?, ?)",
                (
                    runtime_policy.name,
                    runtime_policy.runtime_policy,
                    runtime_policy.tpm_policy,
                    int(runtime_policy.has_policy),
                ),
            )
        if mb_policy is not None:
            sql = "INSERT OR IGNORE INTO mb_policies VALUES (?, ?)"
            conn.execute(sql, (mb_policy.name, mb_policy.mb_policy))
        conn.execute(_INSERT, _to_row(agent))
