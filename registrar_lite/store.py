"""Where registrations live: a small ``AgentStore`` Protocol and its SQLite implementation.

The Protocol is what the service needs and nothing more, so a PostgreSQL store can be added
beside this one.  SQLite runs on service_kit/sqlite.py's worker: one connection in a worker
thread, one statement at a time, WAL mode.

CVE-2025-13609: two registrations of one agent id must not both win.  ``register`` runs the
identity comparison and the insert/update in one ``BEGIN IMMEDIATE`` transaction, which also
serialises registrars in other processes sharing the file.

Schema (created on start; ``agent_id`` is the primary key)::

    registrar_agents(agent_id, ek_tpm, ekcert, aik_tpm, iak_tpm, iak_cert, idevid_tpm,
                     idevid_cert, iak_attest, iak_sign, mtls_cert, ip, port,
                     challenge_key, active, regcount)
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path
from typing import Optional, Protocol, TypeVar

from registrar_lite import store_held
from registrar_lite.errors import IdentityChangedError, StoreUnavailableError
from service_kit.sqlite import SqliteWorker, immediate

T = TypeVar("T")

log = logging.getLogger("limelet.registrar")

# Keylime compares exactly these on re-registration (registrar_agent.py
# ``_check_tpm_identity_immutable``); IAK/IDevID may change.
IDENTITY_FIELDS = ("ek_tpm", "ekcert", "aik_tpm")
# sqlite3 errors that mean a bug in a query, not an unusable database.
_NOT_AN_OUTAGE = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


@dataclass(frozen=True)
class AgentRecord:
    """One registrar row.  ``challenge_key`` is the HMAC key for activation: keep it private."""

    agent_id: str
    ek_tpm: bytes
    ekcert: Optional[bytes]
    aik_tpm: bytes
    iak_tpm: Optional[bytes]
    iak_cert: Optional[bytes]
    idevid_tpm: Optional[bytes]
    idevid_cert: Optional[bytes]
    iak_attest: Optional[bytes]
    iak_sign: Optional[bytes]
    mtls_cert: Optional[str]
    ip: Optional[str]
    port: Optional[int]
    challenge_key: str
    active: bool
    regcount: int


_COLUMNS = tuple(f.name for f in fields(AgentRecord))
assert _COLUMNS == store_held.COLUMNS  # noqa: S101 - the held table mirrors this one
_SCHEMA = store_held.record_table_schema("registrar_agents")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM registrar_agents"  # noqa: S608 - constant
_UPSERT = (
    f"INSERT OR REPLACE INTO registrar_agents ({', '.join(_COLUMNS)}) "  # noqa: S608 - constant
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)


class AgentStore(Protocol):
    async def register(self, record: AgentRecord) -> AgentRecord:
        """Insert, or update an agent with the same identity (regcount + 1, inactive).

        Raises IdentityChangedError, changing nothing, if the stored EK, EK certificate or
        AK differ.  Returns the record as stored.
        """
        ...

    async def get(self, agent_id: str) -> Optional[AgentRecord]: ...

    async def list_ids(self) -> list[str]: ...

    async def delete(self, agent_id: str) -> bool:
        """True when a row was deleted."""
        ...

    async def get_held(self, agent_id: str) -> Optional[AgentRecord]:
        """A re-registration of an active agent, held until activated (store_held.py)."""
        ...

    async def activate(self, agent_id: str, challenge_key: str) -> bool:
        """Mark active if the row still has ``challenge_key`` (no re-registration meanwhile);
        a held re-registration with that key replaces the active row."""
        ...

    async def delete_pending(self, agent_id: str, challenge_key: str) -> bool:
        """Delete the row if it is inactive and still has ``challenge_key``; a held row with
        that key is dropped instead (the active row stays)."""
        ...

    async def aclose(self) -> None: ...


def changed_identity(old: AgentRecord, new: AgentRecord) -> tuple[str, ...]:
    """Identity fields that differ; setting a field that was unset is allowed (Keylime)."""
    return tuple(
        name
        for name in IDENTITY_FIELDS
        if getattr(old, name) is not None and getattr(old, name) != getattr(new, name)
    )


def _row(row: tuple[object, ...]) -> AgentRecord:
    record = AgentRecord(*row)  # type: ignore[arg-type]
    return replace(record, active=bool(record.active))


class SqliteAgentStore:
    """``AgentStore`` on one sqlite3 connection used from one worker thread at a time."""

    def __init__(self, db: SqliteWorker) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> SqliteAgentStore:
        return cls(await SqliteWorker.open(path, (_SCHEMA, store_held.HELD_SCHEMA)))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        try:
            return await self._db.run(fn)
        except _NOT_AN_OUTAGE:
            raise
        except sqlite3.DatabaseError as exc:
            # Read-only file, full disk, I/O error: a 503 with a message, and the process
            # lives on; reads that still work keep answering.
            log.error("registrar database: %s", exc)
            raise StoreUnavailableError() from exc

    async def register(self, record: AgentRecord) -> AgentRecord:
        return await self._run(lambda conn: _register(conn, record))

    async def get(self, agent_id: str) -> Optional[AgentRecord]:
        return await self._run(lambda conn: _get(conn, agent_id))

    async def get_held(self, agent_id: str) -> Optional[AgentRecord]:
        row = await self._run(lambda conn: store_held.get_held(conn, agent_id))
        return None if row is None else _row(row)

    async def list_ids(self) -> list[str]:
        def query(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT agent_id FROM registrar_agents ORDER BY agent_id")
            return [str(r[0]) for r in rows]

        return await self._run(query)

    async def delete(self, agent_id: str) -> bool:
        sql = "DELETE FROM registrar_agents WHERE agent_id = ?"

        def work(conn: sqlite3.Connection) -> bool:
            store_held.drop_held(conn, agent_id, None)
            return conn.execute(sql, (agent_id,)).rowcount > 0

        return await self._run(work)

    async def activate(self, agent_id: str, challenge_key: str) -> bool:
        sql = "UPDATE registrar_agents SET active = 1 WHERE agent_id = ? AND challenge_key = ?"

        def work(conn: sqlite3.Connection) -> bool:
            if store_held.promote(conn, agent_id, challenge_key):
                return True
            return conn.execute(sql, (agent_id, challenge_key)).rowcount > 0

        return await self._run(work)

    async def delete_pending(self, agent_id: str, challenge_key: str) -> bool:
        sql = "DELETE FROM registrar_agents WHERE agent_id = ? AND challenge_key = ? AND active = 0"

        def work(conn: sqlite3.Connection) -> bool:
            if store_held.drop_held(conn, agent_id, challenge_key):
                return False  # the active record stays: nothing the caller knew was deleted
            return conn.execute(sql, (agent_id, challenge_key)).rowcount > 0

        return await self._run(work)

    async def aclose(self) -> None:
        await self._db.aclose()


def _get(conn: sqlite3.Connection, agent_id: str) -> Optional[AgentRecord]:
    row = conn.execute(f"{_SELECT} WHERE agent_id = ?", (agent_id,)).fetchone()
    return None if row is None else _row(tuple(row))


def _register(conn: sqlite3.Connection, record: AgentRecord) -> AgentRecord:
    with immediate(conn):
        old = _get(conn, record.agent_id)
        if old is not None:
            changed = changed_identity(old, record)
            if changed:
                raise IdentityChangedError(changed)
        stored = replace(record, active=False, regcount=1 if old is None else old.regcount + 1)
        if old is not None and old.active:
            store_held.hold(conn, astuple(stored))  # the active row stays until activation
        else:
            conn.execute(_UPSERT, astuple(stored))
    return stored
