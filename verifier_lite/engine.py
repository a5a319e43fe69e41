"""The polling engine: one supervised Trio task per agent, all in the service's nursery.

Per agent (keylime/cloud_verifier_tornado.py ``process_agent`` / ``invoke_get_quote`` /
``invoke_provide_v``, as a loop instead of callbacks)::

    negotiate the API version from the agent's /version
    START      -> full quote (partial=0: the agent sends its NK public key, bound in PCR 16)
    PROVIDE_V  -> POST keys/vkey with V encrypted for that key (only when the tenant gave V)
    GET_QUOTE  -> partial=1 quotes every quote_interval, IMA log from the next entry on

A timeout, refused connection or 5xx moves to the matching *_RETRY state and is retried after
``retry_interval`` (doubling each time when ``exponential_backoff``); ``max_retries`` failures
in a row end in FAILED.  Evidence that does not hold ends in INVALID_QUOTE, recorded with
Keylime's event id and severity.  Every state change goes through ``AgentStates.apply``
(transitions.py), which reads the table in states.py.

CVE-2022-3500 (one agent's error stopped Keylime's whole polling loop): each task runs under
:meth:`Engine._supervise`, which catches ``Exception`` from that task alone, logs it and
restarts it with backoff (restarts.py): a store fault is retried until the store recovers, any
other error at most ``max_retries`` times before only that agent is marked FAILED.
``trio.Cancelled`` is a BaseException and passes untouched.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Optional

import trio

from verifier_lite.agent_client import AgentChannel
from verifier_lite.failures import Component, event
from verifier_lite.lag_governor import LagGovernor
from verifier_lite.leases import LeaseLost
from verifier_lite.poller import (
    MAX_BACKOFF_SECONDS,
    AgentGone,
    AgentPoller,
    EngineSettings,
    PollerLevers,
    new_nonce,
    retry_delay,
)
from verifier_lite.records import AgentRecord
from verifier_lite.restarts import RestartPolicy
from verifier_lite.revocation import Notifier
from verifier_lite.states import POLLING, Event
from verifier_lite.store import VerifierStore
from verifier_lite.store_health import StoreUnavailableError
from verifier_lite.transitions import AgentStates
from verifier_lite.write_batch import CounterBatch

__all__ = [
    "MAX_BACKOFF_SECONDS",
    "AgentGone",
    "ChannelFactory",
    "Engine",
    "EngineSettings",
    "new_nonce",
    "retry_delay",
]

log = logging.getLogger("limelet.verifier")

ChannelFactory = Callable[[AgentRecord], AgentChannel]


class Engine:
    """Starts, stops and supervises the per-agent tasks."""

    def __init__(
        self,
        store: VerifierStore,
        settings: EngineSettings,
        channels: ChannelFactory,
        notifier: Optional[Notifier] = None,
        *,
        verifier_id: Optional[str] = None,
        poll_store: Optional[VerifierStore] = None,
    ) -> None:
        self._store = store
        self._settings = settings
        self._channels = channels
        self.states = AgentStates(store, notifier)  # the one way a state changes
        self._verifier_id = verifier_id  # resume only this verifier's agents (None: all)
        self._nursery: Optional[trio.Nursery] = None
        self._scopes: dict[str, trio.CancelScope] = {}
        # Shared fleet (lease_loop.py): the polling tasks write through a fenced store, the
        # lease loop decides what runs (``may_poll``), and nothing is resumed at start-up.
        self._poll_store = store if poll_store is None else poll_store
        self._poll_states = self.states if poll_store is None else AgentStates(poll_store, notifier)
        self.may_poll: Callable[[str], bool] = lambda _agent_id: True
        self.resume_at_start = poll_store is None
        self._done: dict[str, trio.Event] = {}
        self.levers = _levers(store, settings, self, shared=poll_store is not None)
        self.policy_generation = 0  # bumped by policy_changed; pollers reload on a change

    def policy_changed(self) -> None:
        """A runtime or measured-boot policy was updated: polling tasks reload theirs."""
        self.policy_generation += 1

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled; resumes every agent the store says is being polled."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self.states.nursery = nursery
            self._poll_states.nursery = nursery
            if self.levers.counters is not None:
                await nursery.start(self.levers.counters.serve)
            if self.levers.governor is not None:
                await nursery.start(self.levers.governor.serve)
            resumable = []
            if self.resume_at_start:
                resumable = await self._store.list_agents(self._verifier_id)
            for agent in resumable:
                if agent.state in POLLING and not (agent.ip == "" and agent.port == 0):
                    # Push agents (no address; verifier_lite/push/enrol.py) are not polled.
                    # As Keylime's verifier does at start-up: back to START, so the first
                    # quote is a full one (the NK key, clock and IMA position are rebuilt).
                    await self.states.apply(agent, Event.REACTIVATE)
                    self.start(agent.agent_id)
            task_status.started()
            await trio.sleep_forever()

    def running(self) -> frozenset[str]:
        return frozenset(self._scopes)

    def start(self, agent_id: str, *, resume: bool = False) -> None:
        """(Re)start polling ``agent_id``; its row must already say START or a polling state
        (``resume``: any polling state, taken back to START first).  A verifier of a shared
        fleet starts only agents it holds the lease of; the holder starts the others."""
        if self._nursery is None:
            raise RuntimeError("engine not serving")
        if not self.may_poll(agent_id):
            return
        self.stop(agent_id)
        scope = trio.CancelScope()
        self._scopes[agent_id] = scope
        self._done[agent_id] = done = trio.Event()
        self._nursery.start_soon(
            self._supervise, agent_id, scope, done, resume, name=f"poll {agent_id}"
        )

    def stop(self, agent_id: str) -> None:
        scope = self._scopes.pop(agent_id, None)
        if scope is not None:
            scope.cancel()

    async def stop_and_wait(self, agent_id: str) -> None:
        """Stop polling ``agent_id`` and return once its task has ended (no request left)."""
        done = self._done.get(agent_id)
        self.stop(agent_id)
        if done is not None:
            await done.wait()

    async def _supervise(
        self, agent_id: str, scope: trio.CancelScope, done: trio.Event, restart: bool
    ) -> None:
        try:
            with scope:
                policy = RestartPolicy(self._settings)
                while (delay := await self._attempt(agent_id, policy, restart=restart)) is not None:
                    await trio.sleep(delay)
                    restart = True
        finally:
            if self._scopes.get(agent_id) is scope:
                del self._scopes[agent_id]
            if self._done.get(agent_id) is done:
                del self._done[agent_id]
            done.set()

    async def _attempt(
        self, agent_id: str, policy: RestartPolicy, *, restart: bool
    ) -> Optional[float]:
        """Poll once; the wait before restarting, or None when the task is done."""
        try:
            await self._poll(agent_id, restart=restart)
        except LeaseLost:
            log.info("agent %s: no longer polled here (lease lost, stopped or deleted)", agent_id)
        except AgentGone:
            log.info("agent %s: deleted while polling", agent_id)
        except StoreUnavailableError:
            # Logged once a minute by StoreHealth; the task is retried, never given up.
            return policy.after_store_failure()
        except Exception:
            # CVE-2022-3500: contained here; the other agents' tasks never see it.
            delay = policy.after_crash()
            if delay is not None:
                log.exception("agent %s: polling task failed; restarting", agent_id)
                return delay
            log.exception("agent %s: polling task failed again; agent marked FAILED", agent_id)
            with trio.CancelScope(shield=True):
                await self._crashed(agent_id)
        return None

    async def _crashed(self, agent_id: str) -> None:
        """Mark the agent FAILED; even if that fails too, nothing leaves this task."""
        try:
            agent = await self._store.get_agent(agent_id)
            if agent is not None and agent.state in POLLING:
                failure = event(Component.INTERNAL, "polling_task", "polling task raised", False)
                await self._poll_states.apply(agent, Event.TASK_CRASHED, failure=failure)
        except Exception:
            log.exception("agent %s: could not record the failure", agent_id)

    async def _poll(self, agent_id: str, *, restart: bool = False) -> None:
        agent = await self._store.get_agent(agent_id)
        if agent is None:
            raise AgentGone(agent_id)
        if restart:
            if agent.state not in POLLING:
                return  # stopped, failed or deleted meanwhile: nothing to resume
            # Back to START as at start-up, through the one transition function: the first
            # quote after a restart is a full one.
            agent = await self._poll_states.apply(agent, Event.REACTIVATE)
        channel = self._channels(agent)
        states = self._poll_states
        states.metrics = self.states.metrics
        try:
            await AgentPoller(
                self._poll_store, self._settings, states.apply, states.metrics, self.levers
            ).run(agent, channel)
        finally:
            with trio.CancelScope(shield=True):
                await channel.aclose()
                await self._flush_counters(agent_id)

    async def _flush_counters(self, agent_id: str) -> None:
        """A task that ends writes its pending counters (a failure leaves them to the batch)."""
        if self.levers.counters is not None:
            try:
                await self.levers.counters.flush(agent_id)
            except StoreUnavailableError:
                log.warning("agent %s: counters left for the next batch", agent_id)


def _levers(
    store: VerifierStore, settings: EngineSettings, engine: Engine, *, shared: bool
) -> PollerLevers:
    """The throughput levers the settings turn on (poller.py EngineSettings).  In a shared
    fleet (leases) every write must pass the lease fence row by row (lease_store.py
    FencedStore), so counters are not batched there."""
    flush = 0.0 if shared else settings.counter_flush_seconds
    ceiling = settings.max_in_flight or math.inf
    limiter = None
    if settings.max_in_flight or settings.in_flight_lag_seconds > 0:
        limiter = trio.CapacityLimiter(ceiling)
    governor = None
    if limiter is not None and settings.in_flight_lag_seconds > 0:
        governor = LagGovernor(limiter, settings.in_flight_lag_seconds, ceiling)
    return PollerLevers(
        counters=CounterBatch(store, flush) if flush > 0 else None,
        limiter=limiter,
        governor=governor,
        policy_generation=lambda: engine.policy_generation,
        ima_progress=engine._poll_states.ima_progress,
    )
