"""A store that says when it cannot be used: ``MonitoredStore`` and its ``StoreHealth``.

The issue this answers: with the SQLite file unwritable for a few seconds, a polling task died
on the ``disk I/O error`` and the agent kept showing PASS.  Here every store call goes through
:class:`MonitoredStore`, which turns a database fault (not a conflict or a bug) into
:class:`StoreUnavailableError`: the engine retries the task on it (engine.py ``_supervise``),
the REST routes answer 503, and :class:`StoreHealth` records it for the list response and logs
it at most once a minute however many requests hit it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Optional, TypeVar

from attest_protocol.errors import AttestProtocolError
from verifier_lite.metrics import VerifierMetrics
from verifier_lite.records import AgentRecord, MbPolicyRecord, RuntimePolicyRecord
from verifier_lite.store import BatchWriter, VerifierStore
from verifier_lite.store_lock import DatabaseLock
from verifier_lite.timeline import TimelineEvent

log = logging.getLogger("limelet.verifier")

T = TypeVar("T")

# One log line per this many seconds while the store keeps failing (not one per request).
STORE_LOG_EVERY_SECONDS = 60.0
# sqlite3 errors that say the query or the data is wrong: bugs or conflicts, not an outage.
_NOT_AN_OUTAGE = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


def _outage_types() -> tuple[type[BaseException], ...]:
    try:
        import psycopg
    except ImportError:
        return (sqlite3.Error,)
    return (sqlite3.Error, psycopg.OperationalError)


_OUTAGE = _outage_types()


class StoreUnavailableError(AttestProtocolError):
    """The database could not be read or written; the request may be repeated later."""

    http_status = 503

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"verifier database unavailable: {cause}")
        self.cause = cause


class StoreHealth:
    """The last store fault and whether the last store call succeeded."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.healthy = True
        self.last_error: Optional[str] = None
        self.failures = 0
        self._write_failed = False
        self._logged_at: Optional[float] = None

    def failed(self, exc: BaseException, *, write: bool) -> None:
        self.healthy = False
        self._write_failed = self._write_failed or write
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:200]
        now = self._clock()
        if self._logged_at is None or now - self._logged_at >= STORE_LOG_EVERY_SECONDS:
            self._logged_at = now
            log.error("verifier database unavailable (%d failures): %s", self.failures, exc)

    def succeeded(self, *, write: bool) -> None:
        """A read that works says nothing of a store that cannot be written."""
        if self._write_failed and not write:
            return
        if not self.healthy:
            log.warning("verifier database usable again after %d failures", self.failures)
        self.healthy = True
        self.failures = 0
        self._write_failed = False
        self._logged_at = None

    def view(self) -> dict[str, Any]:
        """The fields the agent list answers with (``store_healthy``, ``last_store_error``)."""
        return {"store_healthy": self.healthy, "last_store_error": self.last_error}


class MonitoredStore:
    """``VerifierStore`` around another one, recording faults in ``health``."""

    def __init__(self, inner: VerifierStore, lock: Optional[DatabaseLock] = None) -> None:
        self.inner = inner
        self.health = StoreHealth()
        self._lock = lock  # store_lock.py: released when the store is closed
        self.metrics: Optional[VerifierMetrics] = None  # latency and faults, when served

    async def _call(self, op: Callable[[], Awaitable[T]], *, write: bool = False) -> T:
        started = time.perf_counter()
        try:
            result = await op()
        except _NOT_AN_OUTAGE:
            raise
        except _OUTAGE as exc:
            self._observe(started, failed=True)
            self.health.failed(exc, write=write)
            raise StoreUnavailableError(exc) from exc
        self._observe(started, failed=False)
        self.health.succeeded(write=write)
        return result

    def _observe(self, started: float, *, failed: bool) -> None:
        if self.metrics is not None:
            self.metrics.store_call(time.perf_counter() - started, failed=failed)

    async def add_agent(
        self,
        agent: AgentRecord,
        runtime_policy: Optional[RuntimePolicyRecord],
        mb_policy: Optional[MbPolicyRecord],
    ) -> None:
        await self._call(lambda: self.inner.add_agent(agent, runtime_policy, mb_policy), write=True)

    async def get_agent(self, agent_id: str) -> Optional[AgentRecord]:
        return await self._call(lambda: self.inner.get_agent(agent_id))

    async def list_agents(self, verifier_id: Optional[str] = None) -> list[AgentRecord]:
        return await self._call(lambda: self.inner.list_agents(verifier_id))

    async def update_agent(self, agent_id: str, **changes: Any) -> bool:
        return await self._call(lambda: self.inner.update_agent(agent_id, **changes), write=True)

    async def delete_agent(self, agent_id: str) -> bool:
        return await self._call(lambda: self.inner.delete_agent(agent_id), write=True)

    async def update_agents_many(self, updates: Sequence[tuple[str, Mapping[str, Any]]]) -> int:
        """The batch API (write_batch.py), in one transaction when the inner store has it."""
        inner = self.inner
        if isinstance(inner, BatchWriter):
            return await self._call(lambda: inner.update_agents_many(updates), write=True)
        changed = 0
        for agent_id, changes in updates:
            changed += await self.update_agent(agent_id, **changes)
        return changed

    async def add_runtime_policy(self, policy: RuntimePolicyRecord, *, replace: bool) -> bool:
        return await self._call(
            lambda: self.inner.add_runtime_policy(policy, replace=replace), write=True
        )

    async def get_runtime_policy(self, name: str) -> Optional[RuntimePolicyRecord]:
        return await self._call(lambda: self.inner.get_runtime_policy(name))

    async def runtime_policy_names(self) -> list[str]:
        return await self._call(self.inner.runtime_policy_names)

    async def delete_runtime_policy(self, name: str) -> bool:
        return await self._call(lambda: self.inner.delete_runtime_policy(name), write=True)

    async def add_mb_policy(self, policy: MbPolicyRecord, *, replace: bool) -> bool:
        return await self._call(
            lambda: self.inner.add_mb_policy(policy, replace=replace), write=True
        )

    async def get_mb_policy(self, name: str) -> Optional[MbPolicyRecord]:
        return await self._call(lambda: self.inner.get_mb_policy(name))

    async def mb_policy_names(self) -> list[str]:
        return await self._call(self.inner.mb_policy_names)

    async def delete_mb_policy(self, name: str) -> bool:
        return await self._call(lambda: self.inner.delete_mb_policy(name), write=True)

    async def policies_in_force(self) -> tuple[frozenset[str], frozenset[str]]:
        return await self._call(self.inner.policies_in_force)

    async def policy_users(self, kind: str, name: str) -> list[str]:
        return await self._call(lambda: self.inner.policy_users(kind, name))

    async def add_timeline_event(self, event: TimelineEvent, *, keep: int) -> None:
        await self._call(lambda: self.inner.add_timeline_event(event, keep=keep), write=True)

    async def timeline(self, agent_id: str, limit: int) -> list[TimelineEvent]:
        return await self._call(lambda: self.inner.timeline(agent_id, limit))

    async def put_push_document(self, kind: str, key: str, agent_id: str, doc: str) -> None:
        await self._call(lambda: self.inner.put_push_document(kind, key, agent_id, doc), write=True)

    async def get_push_document(self, kind: str, key: str) -> Optional[str]:
        return await self._call(lambda: self.inner.get_push_document(kind, key))

    async def delete_push_documents(self, kind: str, key: str) -> None:
        await self._call(lambda: self.inner.delete_push_documents(kind, key), write=True)

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            if self._lock is not None:
                self._lock.release()


def store_health_view(store: VerifierStore) -> dict[str, Any]:
    """The health fields for a store that is monitored; none for one that is not."""
    return store.health.view() if isinstance(store, MonitoredStore) else {}
