"""Wires a verifier's metrics into its engine, its store and its app's ``/metrics``.

``/metrics`` is served on the verifier's one listener, the mTLS one of the admin API: only a
client holding a certificate of the verifier's CA reads it (docs/verifier.md says why).
"""

from __future__ import annotations

from functools import partial
from typing import Optional

from quart_trio import QuartTrio

from service_kit.metrics import add_metrics_route
from verifier_lite.engine import Engine
from verifier_lite.metrics import VerifierMetrics
from verifier_lite.store import VerifierStore
from verifier_lite.store_health import MonitoredStore


def attach_metrics(
    app: QuartTrio, store: VerifierStore, engine: Engine, verifier_id: Optional[str]
) -> VerifierMetrics:
    metrics = VerifierMetrics()
    engine.states.metrics = metrics
    if isinstance(store, MonitoredStore):
        store.metrics = metrics
    add_metrics_route(app, metrics.registry, refresh=partial(metrics.refresh, store, verifier_id))
    return metrics
