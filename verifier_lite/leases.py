"""The pure rules of agent leases: who may poll which agent when verifiers share PostgreSQL.

Keylime partitions agents statically by ``verifier_id`` (keylime/cloud_verifier_tornado.py,
``get_agents_by_verifier_id``): an agent whose verifier died is not polled until an operator
moves it.  limelet's verifiers on one PostgreSQL database instead hold a *lease* per agent
(lease_store.py keeps them, lease_loop.py renews them) and divide the fleet among themselves:

- every verifier heartbeats; it is *live* while its heartbeat has not expired;
- its fair share is ``ceil(agents / live verifiers)``: it takes unheld or expired leases up to
  that share and releases (after it stopped polling them) what it holds above it;
- it polls an agent only while it holds the lease, and stops ``margin`` seconds before the
  lease could expire unless a renewal came back in time (:func:`stop_polling_at`).

Take-over bound: a verifier that dies renewed its leases and heartbeat at most ``duration``
seconds before they expire; the others look every ``renew`` seconds, so each of its agents is
taken within ``duration + renew`` seconds of the death (:attr:`LeaseTimes.takeover_bound`),
then quoted at once (a full quote, as after a verifier restart).

No I/O here; times are seconds on one monotonic clock.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Optional

# Defaults of the verifier options lease_seconds, lease_renew_seconds, lease_margin_seconds.
DEFAULT_LEASE_SECONDS = 30.0
DEFAULT_LEASE_RENEW_SECONDS = 10.0
DEFAULT_LEASE_MARGIN_SECONDS = 5.0


class LeaseLost(Exception):
    """A polling task's write was refused (lease_store.py ``FencedStore``): the lease is no
    longer this verifier's, or the agent was stopped or deleted through another verifier.
    The engine ends that task without marking anything; the lease loop decides what next."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"agent {agent_id}: write refused, lease not held")
        self.agent_id = agent_id


@dataclass(frozen=True)
class LeaseTimes:
    """``duration``: how long a lease lasts from a renewal; ``renew``: the period of the
    renew/take/release round; ``margin``: how long before expiry a verifier stops polling."""

    duration: float = DEFAULT_LEASE_SECONDS
    renew: float = DEFAULT_LEASE_RENEW_SECONDS
    margin: float = DEFAULT_LEASE_MARGIN_SECONDS

    @property
    def takeover_bound(self) -> float:
        """Seconds from a verifier's death until all its agents have a new holder."""
        return self.duration + self.renew

    def problem(self) -> Optional[tuple[str, str]]:
        """(option, reason) when the times cannot keep the one-poller rule; None when fine."""
        if self.renew <= 0:
            return "lease_renew_seconds", "must be > 0"
        if self.margin <= 0:
            return "lease_margin_seconds", "must be > 0"
        if self.renew + self.margin >= self.duration:
            # Otherwise a verifier would stop polling before every renewal it is due to make.
            return "lease_seconds", "must exceed lease_renew_seconds + lease_margin_seconds"
        return None


def fair_share(agents: int, live_verifiers: int) -> int:
    """How many agents one live verifier should hold; the shares always cover the fleet."""
    if agents < 0 or live_verifiers < 0:
        raise ValueError("counts must not be negative")
    return math.ceil(agents / max(live_verifiers, 1))


@dataclass(frozen=True)
class LeasePlan:
    """One round's decision: leases to give back (stop polling first) and how many to take."""

    release: tuple[str, ...]
    take: int


def plan_round(held: Iterable[str], share: int) -> LeasePlan:
    """Release the surplus above ``share`` (the highest ids, so the choice is stable) or ask
    for the shortfall; never both."""
    ordered = sorted(held)
    if len(ordered) > share:
        return LeasePlan(tuple(ordered[share:]), 0)
    return LeasePlan((), share - len(ordered))


def stop_polling_at(renewal_sent: float, times: LeaseTimes) -> float:
    """When a verifier must have stopped polling the leases a renewal sent at ``renewal_sent``
    extended.  The database computes the new expiry after it received the request, so on the
    verifier's clock the lease lasts at least ``renewal_sent + duration``; the margin covers
    stopping the polling tasks and clocks that run at slightly different rates."""
    return renewal_sent + times.duration - times.margin
