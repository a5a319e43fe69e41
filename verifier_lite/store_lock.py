"""One verifier per SQLite file: an exclusive lock taken before the store is opened.

Two verifiers started on one SQLite file both polled every agent and overwrote each other's
counts.  SQLite's own locking only serialises single statements, so the verifier holds
``flock(LOCK_EX | LOCK_NB)`` on ``<database>.lock`` for as long as it runs, and a second one
refuses to start naming the file.  PostgreSQL is the scale-out configuration (several
verifiers, each polling the agents of its own ``uuid``) and takes no lock.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional

from verifier_lite.errors import ConfigError

LOCK_SUFFIX = ".lock"


class DatabaseLock:
    """The held lock; ``release`` is idempotent (the kernel also drops it when we exit)."""

    def __init__(self, fd: int) -> None:
        self._fd: Optional[int] = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def lock_database(sqlite_path: Path) -> DatabaseLock:
    """Take the lock or raise ConfigError saying another verifier uses this file."""
    lock_path = sqlite_path.with_name(sqlite_path.name + LOCK_SUFFIX)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(
            "database_url",
            f"{sqlite_path} is in use by another verifier (lock {lock_path} is held); "
            "run one verifier per SQLite file, or use PostgreSQL to run several",
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return DatabaseLock(fd)
