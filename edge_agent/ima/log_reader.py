"""The Trio side of the IMA reader: one lock, blocking reads in a worker thread.

:class:`ImaLogReader` wraps an :class:`~edge_agent.ima.log_file.ImaLogFile`.  Each request
takes the reader's lock and runs the blocking seek-and-read in ``trio.to_thread.run_sync``, so
two requests never interleave seeks on the one file offset, and the event loop never waits for
securityfs.  The worker is not abandoned on cancellation: the lock is released only once the
file is no longer in use, keeping the index consistent for the next request.
"""

from __future__ import annotations

import os
from types import TracebackType
from typing import BinaryIO, Optional

import trio

from edge_agent.ima.checkpoints import CHECKPOINT_SPACING_ENTRIES, MAX_CHECKPOINTS
from edge_agent.ima.errors import ImaLogOpenError, ImaLogReadError
from edge_agent.ima.log_file import ImaLogFile, ImaSlice, open_log

# Where the kernel publishes the IMA measurement list (Documentation/ABI/testing/ima_policy,
# securityfs); rust-keylime's agent.conf default for ``ima_ml_path``.
DEFAULT_IMA_ML_PATH = "/sys/kernel/security/ima/ascii_runtime_measurements"


class ImaLogReader:
    """Serves ``read_from(N)`` requests on one IMA log; owns the file it is given."""

    def __init__(
        self,
        file: BinaryIO,
        *,
        spacing: int = CHECKPOINT_SPACING_ENTRIES,
        max_checkpoints: int = MAX_CHECKPOINTS,
    ) -> None:
        self._log = ImaLogFile(file, spacing=spacing, max_checkpoints=max_checkpoints)
        self._lock = trio.Lock()
        self._path = str(getattr(file, "name", "<IMA log>"))

    @classmethod
    def open(cls, path: str | os.PathLike[str] = DEFAULT_IMA_ML_PATH) -> ImaLogReader:
        """Open ``path`` now (call before dropping privileges); raises ImaLogOpenError.

        Blocking, but a single open at start-up, before the agent serves anything.
        """
        try:
            file = open_log(path)
        except OSError as exc:
            raise ImaLogOpenError(os.fspath(path), exc.strerror or str(exc)) from exc
        return cls(file)

    @classmethod
    def open_if_present(
        cls, path: str | os.PathLike[str] = DEFAULT_IMA_ML_PATH
    ) -> Optional[ImaLogReader]:
        """As :meth:`open`, but ``None`` if the log does not exist (IMA not enabled).

        rust-keylime's agent then serves quotes without a measurement list (quotes_handler.rs,
        ``ima_ml_file`` is None); any other error still raises.
        """
        try:
            return cls.open(path)
        except ImaLogOpenError as exc:
            if isinstance(exc.__cause__, FileNotFoundError):
                return None
            raise

    @property
    def sync(self) -> ImaLogFile:
        """The blocking core, for callers already in a worker thread (and benchmarks)."""
        return self._log

    async def read_from(self, entry: int) -> ImaSlice:
        """Entries ``entry``.. with Keylime's ``ima_ml_entry`` semantics (see log_file)."""
        async with self._lock:
            try:
                return await trio.to_thread.run_sync(self._log.read_from, entry)
            except OSError as exc:
                raise ImaLogReadError(self._path, exc.strerror or str(exc)) from exc

    async def aclose(self) -> None:
        async with self._lock:
            self._log.close()

    async def __aenter__(self) -> ImaLogReader:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.aclose()
