"""The PostgreSQL worker both services' stores run on (psycopg 3, optional ``postgres`` extra).

Like service_kit/sqlite.py: one synchronous connection used from a worker thread behind a
one-slot CapacityLimiter, autocommit except where a store opens a transaction.  The schema
(``CREATE ... IF NOT EXISTS``) runs at every connect under an advisory lock, so several
services starting together against one database do not race in ``CREATE TABLE``.  A
connection the server dropped is reopened and the call retried once.

``database_url`` is SQLAlchemy-style, as Keylime's: ``postgresql://`` or ``postgres://``, with
or without a ``+driver`` part (``postgresql+psycopg2://``); the driver is always psycopg 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Callable, TypeVar

import psycopg
import trio

# The URL rule is pure, so config checks use it without psycopg installed.
from attest_protocol.settings import POSTGRES_URL_FORMS, postgres_conninfo

__all__ = ["POSTGRES_URL_FORMS", "PostgresWorker", "connect", "postgres_conninfo"]

T = TypeVar("T")
Conn = psycopg.Connection[tuple[Any, ...]]

CONNECT_TIMEOUT_SECONDS = 10
# Any fixed key: pg_advisory_xact_lock serialises schema creation across processes.
SCHEMA_LOCK_KEY = 0x11E1E7


def connect(conninfo: str, schema: Sequence[str]) -> Conn:
    """An autocommit connection with ``schema`` (constant statements) applied."""
    conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS)
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            for statement in schema:
                conn.execute(statement)  # constants only
    except BaseException:
        conn.close()
        raise
    return conn


class PostgresWorker:
    """One psycopg connection, used from one worker thread at a time."""

    def __init__(self, conn: Conn, conninfo: str, schema: Sequence[str]) -> None:
        self._conn = conn
        self._conninfo = conninfo
        self._schema = tuple(schema)
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, conninfo: str, schema: Sequence[str]) -> PostgresWorker:
        return cls(await trio.to_thread.run_sync(connect, conninfo, schema), conninfo, schema)

    async def run(self, fn: Callable[[Conn], T]) -> T:
        return await trio.to_thread.run_sync(self._call, fn, limiter=self._limiter)

    def _call(self, fn: Callable[[Conn], T]) -> T:
        if self._conn.broken:
            self._reconnect()
        try:
            return fn(self._conn)
        except psycopg.OperationalError:
            if not self._conn.broken:
                raise
        # The server restarted or ended our session: retry once on a fresh connection, so a
        # database restart does not fail every caller.  At worst an insert whose COMMIT reply
        # was lost is seen as a conflict when it is retried.
        self._reconnect()
        return fn(self._conn)

    def _reconnect(self) -> None:
        self._conn.close()
        self._conn = connect(self._conninfo, self._schema)

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self._conn.close, limiter=self._limiter)
