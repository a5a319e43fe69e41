"""``AgentStore`` on PostgreSQL, so a registrar can run beside several verifiers on one server.

The same interface and semantics as store.py + store_held.py (SQLite): ``registrar_agents``
and ``registrar_held`` are made from one column list (:data:`_COLUMNS_SQL`, derived from
store.py's ``AgentRecord``, so the two tables and the record cannot drift); a
re-registration of an active agent is held until activated.  Keylime names the database the
same way (``database_url`` in registrar.conf, SQLAlchemy-style); the connection code is
service_kit/postgres.py's.

CVE-2025-13609 (two registrations of one id must not both win): SQLite's ``BEGIN IMMEDIATE``
serialises all writers; here ``register`` takes a transaction-scoped advisory lock on the
agent id first, so registrations of one id (from any number of registrar processes) run one
after the other and the second sees the first's row, while other ids do not wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import astuple, fields, replace
from typing import Any, Optional, TypeVar

import psycopg

from registrar_lite.errors import ConfigError, IdentityChangedError, StoreUnavailableError
from registrar_lite.store import AgentRecord, changed_identity
from service_kit.postgres import POSTGRES_URL_FORMS, PostgresWorker, postgres_conninfo

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]

log = logging.getLogger("limelet.registrar")

_TYPES = {"bytes": "BYTEA", "str": "TEXT", "int": "BIGINT", "bool": "BOOLEAN"}


def _column(name: str, annotation: object) -> str:
    text = str(annotation)
    optional = text.startswith("Optional[")
    sql = _TYPES[text.removeprefix("Optional[").removesuffix("]")]
    return f"{name} {sql}{'' if optional else ' NOT NULL'}"


_NAMES = tuple(f.name for f in fields(AgentRecord))
_COLUMNS_SQL = ", ".join(_column(f.name, f.type) for f in fields(AgentRecord))
_TABLES = ("registrar_agents", "registrar_held")
_SCHEMA = tuple(
    f"CREATE TABLE IF NOT EXISTS {t} ({_COLUMNS_SQL}, PRIMARY KEY (agent_id))" for t in _TABLES
)
_LIST = ", ".join(_NAMES)
_VALUES = ", ".join("%s" for _ in _NAMES)
_UPDATES = ", ".join(f"{n} = EXCLUDED.{n}" for n in _NAMES if n != "agent_id")
_UPSERT = {
    t: f"INSERT INTO {t} ({_LIST}) VALUES ({_VALUES}) "  # noqa: S608 - constants
    f"ON CONFLICT (agent_id) DO UPDATE SET {_UPDATES}"
    for t in _TABLES
}
_SELECT = {t: f"SELECT {_LIST} FROM {t} WHERE agent_id = %s" for t in _TABLES}  # noqa: S608
_PROMOTE = (
    f"INSERT INTO registrar_agents ({_LIST}) "  # noqa: S608 - constants
    f"SELECT {_LIST} FROM registrar_held WHERE agent_id = %s AND challenge_key = %s "
    f"ON CONFLICT (agent_id) DO UPDATE SET {_UPDATES}"
)
# hashtextextended: a 64-bit key per agent id for pg_advisory_xact_lock.
_LOCK_ID = "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))"


def _row(row: Optional[tuple[Any, ...]]) -> Optional[AgentRecord]:
    if row is None:
        return None
    values: list[Any] = [bytes(v) if isinstance(v, memoryview) else v for v in row]
    return AgentRecord(*values)


def _fetch(conn: Conn, table: str, agent_id: str) -> Optional[AgentRecord]:
    return _row(conn.execute(_SELECT[table], (agent_id,)).fetchone())


class PostgresAgentStore:
    """``AgentStore`` on one psycopg connection used from one worker thread at a time."""

    def __init__(self, db: PostgresWorker) -> None:
        self._db = db

    @classmethod
    async def open(cls, database_url: str) -> PostgresAgentStore:
        conninfo = postgres_conninfo(database_url)
        if conninfo is None:
            raise ConfigError("database_url", POSTGRES_URL_FORMS)
        try:
            return cls(await PostgresWorker.open(conninfo, _SCHEMA))
        except psycopg.OperationalError as exc:
            raise ConfigError("database_url", f"cannot connect: {exc}"[:300]) from exc

    async def _run(self, fn: Callable[[Conn], T]) -> T:
        try:
            return await self._db.run(fn)
        except psycopg.OperationalError as exc:
            # The server is down or refuses us: a 503 with a message, the process lives on.
            log.error("registrar database: %s", exc)
            raise StoreUnavailableError() from exc

    async def register(self, record: AgentRecord) -> AgentRecord:
        return await self._run(lambda conn: _register(conn, record))

    async def get(self, agent_id: str) -> Optional[AgentRecord]:
        return await self._run(
            lambda c: _row(c.execute(_SELECT[_TABLES[0]], (agent_id,)).fetchone())
        )

    async def get_held(self, agent_id: str) -> Optional[AgentRecord]:
        return await self._run(
            lambda c: _row(c.execute(_SELECT[_TABLES[1]], (agent_id,)).fetchone())
        )

    async def list_ids(self) -> list[str]:
        sql = "SELECT agent_id FROM registrar_agents ORDER BY agent_id"
        return await self._run(lambda c: [str(r[0]) for r in c.execute(sql).fetchall()])

    async def delete(self, agent_id: str) -> bool:
        def work(conn: Conn) -> bool:
            with conn.transaction():
                conn.execute("DELETE FROM registrar_held WHERE agent_id = %s", (agent_id,))
                sql = "DELETE FROM registrar_agents WHERE agent_id = %s"
                return conn.execute(sql, (agent_id,)).rowcount > 0

        return await self._run(work)

    async def activate(self, agent_id: str, challenge_key: str) -> bool:
        return await self._run(lambda conn: _activate(conn, agent_id, challenge_key))

    async def delete_pending(self, agent_id: str, challenge_key: str) -> bool:
        def work(conn: Conn) -> bool:
            with conn.transaction():
                held = "DELETE FROM registrar_held WHERE agent_id = %s AND challenge_key = %s"
                if conn.execute(held, (agent_id, challenge_key)).rowcount > 0:
                    return False  # the active record stays: nothing the caller knew was deleted
                sql = (
                    "DELETE FROM registrar_agents WHERE agent_id = %s AND challenge_key = %s "
                    "AND NOT active"
                )
                return conn.execute(sql, (agent_id, challenge_key)).rowcount > 0

        return await self._run(work)

    async def aclose(self) -> None:
        await self._db.aclose()


def _register(conn: Conn, record: AgentRecord) -> AgentRecord:
    with conn.transaction():
        conn.execute(_LOCK_ID, (record.agent_id,))
        old = _fetch(conn, _TABLES[0], record.agent_id)
        if old is not None:
            changed = changed_identity(old, record)
            if changed:
                raise IdentityChangedError(changed)  # leaving the block rolls back
        stored = replace(record, active=False, regcount=1 if old is None else old.regcount + 1)
        table = _TABLES[1] if old is not None and old.active else _TABLES[0]
        conn.execute(_UPSERT[table], astuple(stored))  # held: the active row stays
    return stored


def _activate(conn: Conn, agent_id: str, challenge_key: str) -> bool:
    with conn.transaction():
        conn.execute(_LOCK_ID, (agent_id,))
        if conn.execute(_PROMOTE, (agent_id, challenge_key)).rowcount > 0:
            conn.execute(
                "UPDATE registrar_agents SET active = TRUE WHERE agent_id = %s", (agent_id,)
            )
            conn.execute("DELETE FROM registrar_held WHERE agent_id = %s", (agent_id,))
            return True
        sql = "UPDATE registrar_agents SET active = TRUE WHERE agent_id = %s AND challenge_key = %s"
        return conn.execute(sql, (agent_id, challenge_key)).rowcount > 0
