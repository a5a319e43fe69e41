"""The one way an agent's operational state changes: ``AgentStates.apply``.

Like h11 applying every event through its one state table (h11/_state.py), every change of
``operational_state`` (the polling task's, the REST API's stop/reactivate/delete, the engine's
resume at start-up) goes through ``apply``: look the transition up in states.py, write it with
the other changes to the store, log it, and notify as Keylime does (a revocation on an invalid
quote, a comm_error when an agent that had attested is lost; cloud_verifier_tornado.py).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional

import trio

from verifier_lite.failures import FailureEvent
from verifier_lite.metrics import VerifierMetrics
from verifier_lite.poller import AgentGone
from verifier_lite.records import AgentRecord
from verifier_lite.revocation import Notifier
from verifier_lite.states import Event, State, next_state
from verifier_lite.store import VerifierStore
from verifier_lite.timeline import TIMELINE_EVENTS_PER_AGENT, plain_reason, timeline_event

log = logging.getLogger("limelet.verifier")


class AgentStates:
    """Applies transitions; ``nursery`` (set while the engine serves) runs notifications."""

    def __init__(self, store: VerifierStore, notifier: Optional[Notifier] = None) -> None:
        self._store = store
        self._notifier = notifier
        self.nursery: Optional[trio.Nursery] = None
        self.metrics: Optional[VerifierMetrics] = None  # counted once the store took a change
        # IMA log entries checked per agent: the polling task's memory, rebuilt from entry 0
        # after a restart as Keylime rebuilds it, so it is kept here and not in the store.
        self.ima_progress: dict[str, int] = {}

    async def apply(
        self,
        agent: AgentRecord,
        ev: Event,
        *,
        failure: Optional[FailureEvent] = None,
        ima_entries: Optional[int] = None,
        **changes: Any,
    ) -> AgentRecord:
        """The agent after ``ev``; AgentGone when its row vanished; IllegalTransition
        (states.py) when the table has none, before anything is written."""
        new = next_state(agent.state, ev)
        if failure is not None:
            changes["severity_level"] = failure.severity_level
            changes["last_event_id"] = failure.event_id
            log.warning(
                "agent %s: %s %s",
                agent.agent_id,
                failure.event_id,
                failure.context,
                extra=_fields(agent.agent_id, failure),
            )
        if not await self._store.update_agent(
            agent.agent_id, operational_state=int(new), **changes
        ):
            raise AgentGone(agent.agent_id)
        if self.metrics is not None:
            self.metrics.transition(ev, changes)
        if ima_entries is not None:
            self.ima_progress[agent.agent_id] = ima_entries
        elif ev in (Event.REACTIVATE, Event.DELETE):
            self.ima_progress.pop(agent.agent_id, None)  # polling starts over from entry 0
        if new != agent.state or failure is not None:
            await self._record(agent, new, ev, failure)
        updated = await self._store.get_agent(agent.agent_id)
        if updated is None:
            raise AgentGone(agent.agent_id)
        await self._maybe_notify(updated, ev, failure)
        return updated

    async def _record(
        self, agent: AgentRecord, new: State, ev: Event, failure: Optional[FailureEvent]
    ) -> None:
        """Log the change and keep it in the agent's timeline (timeline.py)."""
        if new != agent.state:
            log.info(
                "agent %s: %s -> %s on %s",
                agent.agent_id,
                agent.state.name,
                new.name,
                ev.value,
                extra=_fields(agent.agent_id, failure),
            )
        entry = timeline_event(agent.agent_id, time.time(), agent.state, new, ev, failure)
        await self._store.add_timeline_event(entry, keep=TIMELINE_EVENTS_PER_AGENT)

    async def _maybe_notify(
        self, agent: AgentRecord, ev: Event, failure: Optional[FailureEvent]
    ) -> None:
        """Keylime notifies on an invalid quote, and when an agent that had attested is lost."""
        if self._notifier is None or self.nursery is None:
            return
        if ev in (Event.QUOTE_INVALID, Event.QUOTE_INVALID_RECOVERABLE):
            msgtype = "revocation"
        elif ev is Event.RETRIES_EXHAUSTED and agent.attestation_count > 0:
            msgtype = "comm_error"
        else:
            return
        others = await self._store.list_agents(agent.verifier_id)
        self._notifier.notify(self.nursery, agent, others, msgtype, failure)
        if self.metrics is not None and self._notifier.enabled:
            self.metrics.revocation(msgtype)


def _fields(agent_id: str, failure: Optional[FailureEvent]) -> dict[str, Any]:
    """The JSON log fields of a change (service_kit/jsonlog.py EXTRA_FIELDS)."""
    if failure is None:
        return {"agent_id": agent_id}
    return {
        "agent_id": agent_id,
        "event_id": failure.event_id,
        "reason": plain_reason(failure.event_id),
    }
