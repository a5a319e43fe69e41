"""``serve_leases``: a verifier's part in a fleet shared on PostgreSQL (rules in leases.py).

Every ``lease_renew_seconds`` one round (lease_store.py): heartbeat and renew all held leases
in one transaction; stop polling (and forget) any lease that did not come back, adopt any of
ours we did not know of (a restart under the same uuid); release the
surplus above the fair share after stopping those tasks; take expired or unheld leases up to
the share; then start polling every held agent whose row says it is being polled and that has
no task yet (an agent added, or reactivated, through another verifier is started here).

A watchdog stops every polling task at :func:`~verifier_lite.leases.stop_polling_at` of the
last renewal that came back, so a verifier cut off from the database stops polling before
its leases can expire and be taken; every request to an agent is checked against that time
first (:class:`GuardedChannel`), and the fenced writes refuse what a stalled task still
reports.
A clean stop releases everything and marks the heartbeat expired, so the others take over at
their next round instead of after ``lease_seconds``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Optional

import psycopg
import trio

from attest_protocol.api_version import ApiVersion
from verifier_lite.agent_client import AgentChannel, QuoteRequest
from verifier_lite.config import VerifierConfig
from verifier_lite.engine import ChannelFactory, Engine
from verifier_lite.errors import ConfigError
from verifier_lite.lease_store import FencedStore, LeaseStore
from verifier_lite.leases import LeaseLost, LeaseTimes, fair_share, plan_round, stop_polling_at
from verifier_lite.store import VerifierStore
from verifier_lite.store_health import MonitoredStore
from verifier_lite.store_postgres import postgres_conninfo

log = logging.getLogger("limelet.verifier")

# A clean stop gives back its leases within this long, or leaves them to expire.
LEAVE_TIMEOUT_SECONDS = 5.0


class LeaseLoop:
    """Holds this verifier's leases and tells the engine what it may poll."""

    def __init__(self, leases: LeaseStore, times: LeaseTimes) -> None:
        self._leases = leases
        self._times = times
        self._engine: Optional[Engine] = None
        self.held: set[str] = set()
        self._deadline = -math.inf  # stop polling by then unless a renewal comes back
        self._deadline_moved = trio.Event()

    def attach(self, engine: Engine) -> None:
        """Let ``engine`` poll only what this verifier holds."""
        self._engine = engine
        engine.may_poll = self.held.__contains__

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise RuntimeError("lease loop not attached to an engine")
        return self._engine

    def may_send(self, agent_id: str) -> bool:
        """Held, and not past the stop time: checked before every request to an agent, so
        even a verifier that was frozen (SIGSTOP, a long GC pause) sends nothing once it
        wakes after its deadline, before the watchdog has run."""
        return agent_id in self.held and trio.current_time() < self._deadline

    def guarded(self, channels: ChannelFactory) -> ChannelFactory:
        """The engine's channel factory, each request first checked with :meth:`may_send`."""
        return lambda agent: GuardedChannel(channels(agent), agent.agent_id, self.may_send)

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._watchdog)
                task_status.started()
                while True:
                    await self.one_round()
                    await trio.sleep(self._times.renew)
        finally:
            with trio.move_on_after(LEAVE_TIMEOUT_SECONDS) as leaving:
                leaving.shield = True
                await self._leave()

    async def one_round(self) -> None:
        sent = trio.current_time()
        try:
            result = await self._leases.round(self._times.duration)
        except psycopg.Error as exc:
            log.warning("lease renewal failed (polling stops at the lease margin): %s", exc)
            return
        await self._stop(self.held - result.renewed, "lease not renewed")
        # Adopt every lease the database says is ours, known or not (a restart under the same
        # uuid within lease_seconds, or a take whose reply was lost): nobody else can poll it.
        self.held.clear()
        self.held.update(result.renewed)
        self._set_deadline(stop_polling_at(sent, self._times))
        plan = plan_round(self.held, fair_share(result.agents, result.live_verifiers))
        taken: frozenset[str] = frozenset()
        try:
            if plan.release:
                released = frozenset(plan.release)
                await self._stop(released, "released to another verifier")
                await self._leases.release(released, self._times.margin)
            taken = await self._leases.take(plan.take, self._times.duration)
            self.held.update(taken)
            await self._start_idle()
        except psycopg.Error as exc:
            log.warning("lease round incomplete: %s", exc)
        if plan.release or taken:
            log.info(
                "leases: hold %d of %d agents (%d live verifiers)",
                len(self.held), result.agents, result.live_verifiers,
            )  # fmt: skip

    async def _start_idle(self) -> None:
        idle = frozenset(self.held) - self.engine.running()
        if not idle:
            return
        for agent_id in sorted(await self._leases.polling(idle)):
            if agent_id in self.held:  # still held after the await
                self.engine.start(agent_id, resume=True)

    async def _stop(self, agent_ids: frozenset[str] | set[str], why: str) -> None:
        """Stop the tasks first, then forget the leases (the order the one-poller rule needs)."""
        for agent_id in sorted(agent_ids):
            await self.engine.stop_and_wait(agent_id)
        if agent_ids:
            log.info("leases: stopped polling %d agents: %s", len(agent_ids), why)
        self.held.difference_update(agent_ids)

    def _set_deadline(self, deadline: float) -> None:
        self._deadline = deadline
        self._deadline_moved.set()
        self._deadline_moved = trio.Event()

    async def _watchdog(self) -> None:
        while True:
            with trio.move_on_at(self._deadline):
                await self._deadline_moved.wait()
                continue
            if self.held and trio.current_time() >= self._deadline:
                log.warning("leases: no renewal in time; stopping all polling")
                await self._stop(set(self.held), "lease margin reached")
            await self._deadline_moved.wait()

    async def _leave(self) -> None:
        held = frozenset(self.held)
        await self._stop(set(held), "verifier stopping")
        try:
            await self._leases.release(held, self._times.margin)
            await self._leases.leave()
        except psycopg.Error as exc:
            log.warning("could not give leases back (they expire instead): %s", exc)


class GuardedChannel:
    """An ``AgentChannel`` that refuses to send (LeaseLost) once ``may_send`` says no."""

    def __init__(self, inner: AgentChannel, agent_id: str, may_send: Callable[[str], bool]) -> None:
        self._inner = inner
        self._agent_id = agent_id
        self._may_send = may_send

    def _check(self) -> None:
        if not self._may_send(self._agent_id):
            raise LeaseLost(self._agent_id)

    async def versions(self) -> tuple[ApiVersion, ...]:
        self._check()
        return await self._inner.versions()

    async def integrity_quote(
        self, version: ApiVersion, request: QuoteRequest
    ) -> Mapping[str, Any]:
        self._check()
        return await self._inner.integrity_quote(version, request)

    async def provide_v(self, version: ApiVersion, encrypted_v_b64: str) -> None:
        self._check()
        await self._inner.provide_v(version, encrypted_v_b64)

    async def notify_revocation(self, version: ApiVersion, body: Mapping[str, str]) -> None:
        await self._inner.notify_revocation(version, body)  # not polling: never refused

    async def aclose(self) -> None:
        await self._inner.aclose()


@dataclass
class Fleet:
    """What ``serve_verifier`` needs to run one verifier of a shared fleet."""

    leases: LeaseStore
    poll_store: FencedStore
    loop: LeaseLoop

    async def aclose(self) -> None:
        await self.leases.aclose()


async def open_fleet(config: VerifierConfig, store: VerifierStore) -> Fleet:
    """The lease store and the fenced store for ``config`` (``shares_fleet`` must hold)."""
    conninfo = postgres_conninfo(config.database_url)
    if conninfo is None or not isinstance(store, MonitoredStore):
        raise ConfigError("database_url", "leases need a PostgreSQL database_url")
    leases = await LeaseStore.open(conninfo, config.uuid)
    times = LeaseTimes(
        config.lease_seconds, config.lease_renew_seconds, config.lease_margin_seconds
    )
    log.info(
        "verifier %s shares its fleet: lease %.1fs, renewed every %.1fs, take-over within %.1fs",
        config.uuid, times.duration, times.renew, times.takeover_bound,
    )  # fmt: skip
    return Fleet(leases, FencedStore(store, config.uuid), LeaseLoop(leases, times))
