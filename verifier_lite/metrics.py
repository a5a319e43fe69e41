"""The verifier's Prometheus metrics (issue 19), served at ``/metrics`` (service_kit/metrics.py).

Attestation results and polling errors are counted where every state change goes through
(``AgentStates.apply``, transitions.py), after the store has taken the change, so
``limelet_verifier_attestations_total{result="pass"}`` moves in step with the agents'
``attestation_count`` columns.  Agents by state are read from the store at scrape time: the
store, not any task's memory, is what the API answers from.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from verifier_lite.states import Event, State
from verifier_lite.store import VerifierStore

PASS = "pass"  # noqa: S105 - a label value, not a secret
FAIL = "fail"
# A quote over loopback takes tens of milliseconds on swtpm; a real TPM up to seconds.
ROUND_TRIP_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
CHECK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1.0, 5.0)
# The transitions that are a polling error, by the kind label they are counted under.
POLLING_ERRORS = {
    Event.CONTACT_FAILED: "contact_failed",
    Event.RETRIES_EXHAUSTED: "retries_exhausted",
    Event.TASK_CRASHED: "task_crashed",
}


class VerifierMetrics:
    """One verifier's metrics in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.attestations = Counter(
            "limelet_verifier_attestations", "Quotes checked, by result", ["result"], registry=r
        )
        self.round_trip = Histogram(
            "limelet_verifier_quote_round_trip_seconds",
            "Time from asking an agent for a quote to having its answer",
            buckets=ROUND_TRIP_BUCKETS,
            registry=r,
        )
        self.check_time = Histogram(
            "limelet_verifier_quote_check_seconds",
            "Time to check a quote and its event logs against the policies",
            buckets=CHECK_BUCKETS,
            registry=r,
        )
        self.agents = Gauge("limelet_verifier_agents", "Agents by state", ["state"], registry=r)
        self.polling_errors = Counter(
            "limelet_verifier_polling_errors", "Polling errors by kind", ["kind"], registry=r
        )
        self.store_errors = Counter(
            "limelet_verifier_store_errors", "Store calls that failed", registry=r
        )
        self.store_latency = Histogram(
            "limelet_verifier_store_seconds",
            "Store call latency",
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self.revocations = Counter(
            "limelet_verifier_revocations_sent",
            "Revocation notifications issued, by message type",
            ["msgtype"],
            registry=r,
        )
        for result in (PASS, FAIL):
            self.attestations.labels(result)
        for kind in POLLING_ERRORS.values():
            self.polling_errors.labels(kind)

    def transition(self, ev: Event, changes: Mapping[str, Any]) -> None:
        """Count a state change the store has taken."""
        if ev in (Event.QUOTE_OK, Event.QUOTE_OK_V_DUE) and "attestation_count" in changes:
            self.attestations.labels(PASS).inc()
        elif ev is Event.QUOTE_INVALID:
            self.attestations.labels(FAIL).inc()
        kind = POLLING_ERRORS.get(ev)
        if kind is not None:
            self.polling_errors.labels(kind).inc()

    def revocation(self, msgtype: str) -> None:
        self.revocations.labels(msgtype).inc()

    def store_call(self, seconds: float, *, failed: bool) -> None:
        self.store_latency.observe(seconds)
        if failed:
            self.store_errors.inc()

    async def refresh(self, store: VerifierStore, verifier_id: Optional[str]) -> None:
        """Set the agents-by-state gauge from the store (every state, zero included)."""
        tally = Tally(agent.state for agent in await store.list_agents(verifier_id))
        for state in State:
            self.agents.labels(state.name).set(tally.get(state, 0))


@contextmanager
def timed(histogram: Optional[Histogram]) -> Iterator[None]:
    """Observe the block's duration in ``histogram`` (None: metrics are off)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        if histogram is not None:
            histogram.observe(time.perf_counter() - started)
