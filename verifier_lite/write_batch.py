"""Counters of good quotes written in batches: one store transaction per period, not per quote.

A quote that passes while the agent stays in Get Quote changes only counters and timestamps
(``attestation_count``, ``last_received_quote``, ``last_successful_attestation``, the
algorithms and boot time it reported).  Writing them at once meant one thread hand-off and
one SQLite commit per quote, a quarter of the verifier's CPU at a few hundred quotes a second.
:class:`CounterBatch` keeps the latest such changes per agent and writes them all every
``flush_seconds`` in one call (``update_agents_many`` where the store has it: one transaction).

What a crash (kill -9) may lose: the counters of the last period, never a verdict.  Every
state change -- an invalid quote, a failed agent, stop, delete, V delivered -- goes through
``AgentStates.apply`` and is written at once; the poller first takes the agent's pending
counters into that write (:meth:`take`), so nothing older overwrites it later.  The batch is
flushed when its task stops (service shutdown) and a polling task's pending counters when
that task ends.  A flush that fails (store outage) keeps its changes for the next one.

Keylime writes every quote's result with a synchronous SQLAlchemy commit in its event loop
(keylime/cloud_verifier_tornado.py ``process_agent``/``store_attestation_state``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Optional

import trio

from verifier_lite.store import BatchWriter, VerifierStore
from verifier_lite.store_health import StoreUnavailableError

log = logging.getLogger("limelet.verifier")

DEFAULT_FLUSH_SECONDS = 1.0


class CounterBatch:
    def __init__(self, store: VerifierStore, flush_seconds: float = DEFAULT_FLUSH_SECONDS) -> None:
        self._store = store
        self.flush_seconds = flush_seconds
        self._pending: dict[str, dict[str, Any]] = {}
        self.flushes = 0  # transactions written, for tests and the benchmark
        self._lock = trio.Lock()

    def defer(self, agent_id: str, changes: Mapping[str, Any]) -> None:
        self._pending.setdefault(agent_id, {}).update(changes)

    def take(self, agent_id: str) -> dict[str, Any]:
        """The agent's pending changes, no longer pending (the caller writes them)."""
        return self._pending.pop(agent_id, {})

    def pending(self, agent_id: str) -> Mapping[str, Any]:
        return self._pending.get(agent_id, {})

    async def flush(self, agent_id: Optional[str] = None) -> None:
        """Write what is pending (one agent's only, when given); kept again on failure."""
        async with self._lock:
            if agent_id is None:
                batch, self._pending = self._pending, {}
            else:
                batch = {agent_id: self._pending.pop(agent_id)} if agent_id in self._pending else {}
            if not batch:
                return
            try:
                await self._write(batch)
            except BaseException:
                for key, changes in batch.items():  # newer changes win over the failed ones
                    self._pending[key] = {**changes, **self._pending.get(key, {})}
                raise
            self.flushes += 1

    async def _write(self, batch: dict[str, dict[str, Any]]) -> None:
        if isinstance(self._store, BatchWriter):
            await self._store.update_agents_many(list(batch.items()))
            return
        for agent_id, changes in batch.items():
            await self._store.update_agent(agent_id, **changes)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Flush every period until cancelled, then once more (shielded)."""
        task_status.started()
        try:
            while True:
                await trio.sleep(self.flush_seconds)
                try:
                    await self.flush()
                except StoreUnavailableError:
                    log.warning("writing %d agents' counters failed; kept", len(self._pending))
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self.flush()
                except StoreUnavailableError:
                    log.exception("final write of %d agents' counters failed", len(self._pending))
