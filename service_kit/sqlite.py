"""The SQLite worker both services' stores run on.

Stdlib ``sqlite3`` in a worker thread (``trio.to_thread.run_sync``) behind a one-slot
CapacityLimiter: one connection, one statement at a time, never on the event loop.  The
database is in WAL mode so a reader in another process (a backup, an operator's
``sqlite3``) never blocks the service.  ``immediate`` is the ``BEGIN IMMEDIATE`` transaction
a check-then-write needs (CVE-2025-13609: two registrations of one id must not both win); it
also serialises services in other processes sharing the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, TypeVar

import trio

T = TypeVar("T")

# How long a statement waits for another process's write lock before failing.
SQLITE_BUSY_TIMEOUT_SECONDS = 5.0


def connect(path: Path, schema: Sequence[str]) -> sqlite3.Connection:
    """Open (creating the directory) in WAL mode and run the ``CREATE ... IF NOT EXISTS``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(
        str(path),
        timeout=SQLITE_BUSY_TIMEOUT_SECONDS,
        isolation_level=None,  # autocommit; BEGIN IMMEDIATE where it matters
        check_same_thread=False,  # one thread at a time, guaranteed by the limiter
    )
    conn.execute("PRAGMA journal_mode=WAL")
    for statement in schema:
        conn.execute(statement)
    return conn


@contextmanager
def immediate(conn: sqlite3.Connection) -> Iterator[None]:
    """One write transaction: committed when the block ends, rolled back when it raises."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


class SqliteWorker:
    """One sqlite3 connection, used from one worker thread at a time."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def open(cls, path: Path, schema: Sequence[str]) -> SqliteWorker:
        return cls(await trio.to_thread.run_sync(connect, path, schema))

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await trio.to_thread.run_sync(fn, self._conn, limiter=self._limiter)

    async def aclose(self) -> None:
        await self.run(lambda conn: conn.close())
