"""``/metrics`` in Prometheus' text format, from a registry of the app's own (issue 19).

Each app gets its own ``CollectorRegistry`` rather than prometheus_client's global one, so
several services in one process (the tests run many) never share or collide on a metric.
``refresh`` runs before each scrape, for gauges read from the store at scrape time;
``allowed`` decides whether this request may read the metrics at all.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Callable, Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from quart import Response
from quart_trio import QuartTrio

from attest_protocol.errors import AttestProtocolError

METRICS_PATH = "/metrics"
RESULT_OK = "ok"
RESULT_REFUSED = "refused"  # a 4xx: the client's request did not hold
RESULT_ERROR = "error"  # a 5xx or anything unexpected


def result_of(exc: Optional[BaseException]) -> str:
    """The ``result`` label of a request that raised ``exc`` (None: it succeeded)."""
    if exc is None:
        return RESULT_OK
    if isinstance(exc, AttestProtocolError) and 400 <= exc.http_status < 500:
        return RESULT_REFUSED
    return RESULT_ERROR


def add_metrics_route(
    app: QuartTrio,
    registry: CollectorRegistry,
    *,
    refresh: Optional[Callable[[], Awaitable[None]]] = None,
    allowed: Optional[Callable[[], None]] = None,
) -> None:
    """Serve ``registry`` at ``/metrics``; ``allowed`` raises (a 4xx error) to refuse."""

    @app.get(METRICS_PATH)
    async def metrics() -> Response:
        if allowed is not None:
            allowed()
        if refresh is not None:
            await refresh()
        return Response(generate_latest(registry), status=200, content_type=CONTENT_TYPE_LATEST)
