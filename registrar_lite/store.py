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

import sqlite3
from collections.abc import Callable
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path
from typing import Optional, Protocol, TypeVar

from registrar_lite.errors import IdentityChangedError
from service_kit.sqlite import SqliteWorker, immediate

T = TypeVar("T")

# Keylime compares exactly these on re-registration (registrar_agent.py
# ``_check_tpm_identity_immutable``); IAK/IDevID may change.
IDENTITY_FIELDS = ("ek_tpm", "ekcert", "aik_tpm")


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
_SCHEMA = """
CREATE TABLE IF NOT EXISTS registrar_agents (
    agent_id TEXT PRIMARY KEY NOT NULL,
    ek_tpm BLOB NOT NULL, ekcert BLOB, aik_tpm BLOB NOT NULL,
    iak_tpm BLOB, iak_cert BLOB, idevid_tpm BLOB, idevid_cert BLOB,
    iak_attest BLOB, iak_sign BLOB,
    mtls_cert TEXT, ip TEXT, port INTEGER,
    challenge_key TEXT NOT NULL, active INTEGER NOT NULL, regcount INTEGER NOT NULL
)
"""
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

    async def activate(self, agent_id: str, challenge_key: str) -> bool:
        """Mark active if the row still has ``challenge_key`` (no re-registration meanwhile)."""
        ...

    async def delete_pending(self, agent_id: str, challenge_key: str) -> bool:
        """Delete the row if it is inactive and still has ``challenge_key``."""
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
        return cls(await SqliteWorker.open(path, (_SCHEMA,)))

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await self._db.run(fn)

    async def register(self, record: AgentRecord) -> AgentRecord:
        return await self._run(lambda conn: _register(conn, record))

    async def get(self, agent_id: str) -> Optional[AgentRecord]:
        return await self._run(lambda conn: _get(conn, agent_id))

    async def list_ids(self) -> list[str]:
        def query(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute("SELECT agent_id FROM registrar_agents ORDER BY agent_id")
            return [str(r[0]) for r in rows]

        return await self._run(query)

    async def delete(self, agent_id: str) -> bool:
        sql = "DELETE FROM registrar_agents WHERE agent_id = ?"
        return await self._run(lambda conn: conn.execute(sql, (agent_id,)).rowcount > 0)

    async def activate(self, agent_id: str, challenge_key: str) -> bool:
        sql = "UPDATE registrar_agents SET active = 1 WHERE agent_id = ? AND challenge_key = ?"
        return await self._run(lambda c: c.execute(sql, (agent_id, challenge_key)).rowcount > 0)

    async def delete_pending(self, agent_id: str, challenge_key: str) -> bool:
        sql = "DELETE FROM registrar_agents WHERE agent_id = ? AND challenge_key = ? AND active = 0"
        return await self._run(lambda c: c.execute(sql, (agent_id, challenge_key)).rowcount > 0)

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
        conn.execute(_UPSERT, astuple(stored))
    return stored
