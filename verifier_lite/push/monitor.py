"""The push timeout: an agent that stops pushing becomes a failure, never a silent PASS.

Keylime 7.14.3 keylime/push_agent_monitor.py: no attestation within ``quote_interval * 5``
(``_TIMEOUT_MULTIPLIER``) sets ``accept_attestations = false`` and the status reads TIMEOUT.
Here the same deadline runs the pull engine's lost-agent path through ``AgentStates.apply``:
CONTACT_FAILED then RETRIES_EXHAUSTED, so the agent is FAILED (status FAIL) and, as for a
pull agent that had attested, a ``comm_error`` notification goes out.  Even before the
monitor acts, ``attestation_status`` reads PENDING once the last pass is older than the
same deadline (verifier_lite/records.py), so a stale PASS is never shown.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio

from verifier_lite.failures import Component, event
from verifier_lite.push.enrol import is_push_agent
from verifier_lite.records import AgentRecord
from verifier_lite.service import MAX_INTERVAL_PERIODS, Verifier
from verifier_lite.states import Event, State

log = logging.getLogger("limelet.verifier")

MIN_SWEEP_SECONDS = 0.5
ATTESTING = frozenset({State.GET_QUOTE, State.GET_QUOTE_RETRY})


def overdue(agent: AgentRecord, now: float, quote_interval: float) -> bool:
    """A push agent that passed since it was (re)started and has pushed nothing for 5
    intervals.  A just enrolled or reactivated agent (START) is PENDING until it passes."""
    if not is_push_agent(agent) or agent.state not in ATTESTING:
        return False
    return now - agent.last_received_quote > quote_interval * MAX_INTERVAL_PERIODS + 1


async def time_out(verifier: Verifier, agent: AgentRecord) -> None:
    message = f"no attestation within {MAX_INTERVAL_PERIODS} x quote_interval"
    failure = event(Component.INTERNAL, "push_timeout", message, False)
    log.warning("agent %s: %s", agent.agent_id, message)
    states = verifier.engine.states
    if agent.state is not State.GET_QUOTE_RETRY:
        agent = await states.apply(agent, Event.CONTACT_FAILED)
    await states.apply(agent, Event.RETRIES_EXHAUSTED, failure=failure)


async def sweep(verifier: Verifier, now: float) -> int:
    """Time out every overdue push agent of this verifier; how many were."""
    interval = verifier.config.quote_interval
    late = [
        a
        for a in await verifier.store.list_agents(verifier.config.uuid)
        if overdue(a, now, interval)
    ]
    for agent in late:
        await time_out(verifier, agent)
    return len(late)


async def run_monitor(verifier: Verifier, clock: Callable[[], float]) -> None:
    """Sweep every interval until cancelled; a failed sweep is logged and retried."""
    period = max(MIN_SWEEP_SECONDS, verifier.config.quote_interval)
    while True:
        await trio.sleep(period)
        try:
            await sweep(verifier, clock())
        except Exception:
            log.exception("push timeout sweep failed; retrying")
