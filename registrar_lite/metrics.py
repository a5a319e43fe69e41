"""The registrar's Prometheus metrics (issue 19): registrations and activations by result.

``MeteredRegistrar`` counts each call of the service layer as it ends: ``ok``, ``refused``
(a 4xx: bad input, a changed identity, a wrong auth tag) or ``error`` (service_kit/metrics.py
``result_of``).  ``/metrics`` is served on the mTLS listener only, as the admin routes are.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter
from quart_trio import QuartTrio

from registrar_lite.app import _on_admin_listener
from registrar_lite.errors import AdminListenerError
from registrar_lite.service import Registrar
from service_kit.metrics import (
    RESULT_ERROR,
    RESULT_OK,
    RESULT_REFUSED,
    add_metrics_route,
    result_of,
)

RESULTS = (RESULT_OK, RESULT_REFUSED, RESULT_ERROR)


class RegistrarMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.registrations = Counter(
            "limelet_registrar_registrations",
            "Agent registrations, by result",
            ["result"],
            registry=self.registry,
        )
        self.activations = Counter(
            "limelet_registrar_activations",
            "Agent activations, by result",
            ["result"],
            registry=self.registry,
        )
        for result in RESULTS:
            self.registrations.labels(result)
            self.activations.labels(result)


class MeteredRegistrar(Registrar):
    """A Registrar whose register and activate calls are counted in ``metrics``."""

    def __init__(self, *args: Any, metrics: RegistrarMetrics, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.metrics = metrics

    async def register(self, agent_id: str, body: Mapping[str, Any]) -> str:
        try:
            blob = await super().register(agent_id, body)
        except Exception as exc:
            self.metrics.registrations.labels(result_of(exc)).inc()
            raise
        self.metrics.registrations.labels(RESULT_OK).inc()
        return blob

    async def activate(self, agent_id: str, body: Mapping[str, Any]) -> None:
        try:
            await super().activate(agent_id, body)
        except Exception as exc:
            self.metrics.activations.labels(result_of(exc)).inc()
            raise
        self.metrics.activations.labels(RESULT_OK).inc()


def attach_metrics(app: QuartTrio, metrics: RegistrarMetrics, tls_port: int) -> None:
    add_metrics_route(app, metrics.registry, allowed=_admin_check(tls_port))


def _admin_check(tls_port: int) -> Callable[[], None]:
    def check() -> None:
        if not _on_admin_listener(tls_port):
            raise AdminListenerError()

    return check
