"""The verifier's read-only status page, on a plain-HTTP listener bound to loopback only.

Why its own listener: every route of the admin API sits behind mTLS (a client certificate
of the verifier's CA), and a browser has none by default.  Rather than hand operators a
client key to import into their browser, the page is served when ``status_page_address``
names a loopback address (config.py refuses any other), reached from the verifier's host or
through an SSH tunnel.  It only reads; it never shows V, K, keys, certificates or payloads
(status_html.AgentRow holds none of them).  A browser on the host could be steered to it by
another web site (DNS rebinding), so a request whose Host header is not this listener's
address is refused, and the Content-Security-Policy lets the page load only its own files.

Routes::

    GET /                          the fleet: counts, then one row per agent (failures first)
    GET /fleet?status=&q=          that table alone, refreshed by status.js every few seconds
    GET /agents/{id}               one agent: facts, last failure with its evidence, timeline
    GET /agents/{id}/fragment      that, refreshed
    GET /static/status.css|.js
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from functools import partial
from typing import Optional

import trio
from hypercorn.config import Config as HypercornConfig
from quart import Response, request
from quart_trio import QuartTrio

from service_kit.listen import bind, serve_app, set_connection_timeouts
from service_kit.web import create_service_app, install_error_handlers
from verifier_lite import status_html as html
from verifier_lite import validation
from verifier_lite.config import VerifierConfig, status_page_host_port
from verifier_lite.errors import AgentNotFoundError, BodyTooLargeError, RequestError
from verifier_lite.service import MAX_INTERVAL_PERIODS, Verifier
from verifier_lite.status_assets import STATUS_CSS, STATUS_JS
from verifier_lite.store_health import StoreUnavailableError
from verifier_lite.timeline import TIMELINE_EVENTS_PER_AGENT

log = logging.getLogger("limelet.verifier")

# The search box filters on agent ids, which the agent id rule bounds well below this.
MAX_QUERY_CHARS = 256
# Nothing is posted to the page; a body is refused outright.
MAX_BODY_BYTES = 1024
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class StatusPage:
    """What the routes read: this verifier's agents, their timelines, the IMA progress."""

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier
        self.max_interval = verifier.config.quote_interval * MAX_INTERVAL_PERIODS

    async def rows(self, now: float) -> list[html.AgentRow]:
        progress = self.verifier.engine.states.ima_progress
        agents = await self.verifier.store.list_agents(self.verifier.config.uuid)
        return [
            html.agent_row(
                a, now=now, max_interval=self.max_interval, ima_entries=progress.get(a.agent_id)
            )
            for a in agents
        ]

    async def fleet(self, status: str, query: str) -> str:
        now = time.time()
        rows = await self.rows(now)
        shown = html.select_rows(rows, status, query)
        return html.fleet_fragment(rows, shown, self.max_interval, now)

    async def agent(self, agent_id: str) -> str:
        now = time.time()
        record = await self.verifier.store.get_agent(agent_id)
        if record is None or record.verifier_id != self.verifier.config.uuid:
            raise AgentNotFoundError(agent_id)
        progress = self.verifier.engine.states.ima_progress.get(agent_id)
        row = html.agent_row(record, now=now, max_interval=self.max_interval, ima_entries=progress)
        row = await self._policy_names(row)
        events = await self.verifier.store.timeline(agent_id, TIMELINE_EVENTS_PER_AGENT)
        return html.agent_fragment(row, events, now)

    async def _policy_names(self, row: html.AgentRow) -> html.AgentRow:
        """Blank a policy name that stands for no policy: Keylime stores the empty runtime
        policy under the agent's id, and a measured-boot record may hold none."""
        runtime = await self.verifier.store.get_runtime_policy(row.runtime_policy_name)
        mb = await self.verifier.store.get_mb_policy(row.mb_policy_name)
        return replace(
            row,
            runtime_policy_name=row.runtime_policy_name if runtime and runtime.has_policy else "",
            mb_policy_name=row.mb_policy_name if mb and mb.mb_policy is not None else "",
        )


def _filters() -> tuple[str, str]:
    status = request.args.get("status", "")
    query = request.args.get("q", "")
    if status not in html.STATUS_FILTERS:
        raise RequestError("status", f"expected one of {list(html.STATUS_FILTERS)}")
    if len(query) > MAX_QUERY_CHARS:
        raise RequestError("q", f"longer than {MAX_QUERY_CHARS} characters")
    return status, query


def _html(text: str, content_type: str = "text/html; charset=utf-8") -> Response:
    return Response(text, status=200, content_type=content_type, headers=_HEADERS)


def create_status_app(page: StatusPage, allowed_hosts: frozenset[str]) -> QuartTrio:
    app = create_service_app("limelet.verifier.status", MAX_BODY_BYTES)

    @app.before_request
    async def same_host_only() -> None:
        if request.headers.get("Host", "") not in allowed_hosts:
            raise RequestError("Host", "not this status page's address")

    @app.get("/")
    async def fleet_page() -> Response:
        status, query = _filters()
        body = await page.fleet(status, query)
        controls = html.filter_form(status, query)
        return _html(html.page("fleet", body, f"/fleet?{request.query_string.decode()}", controls))

    @app.get("/fleet")
    async def fleet_fragment() -> Response:
        return _html(await page.fleet(*_filters()))

    @app.get("/agents/<agent_id>")
    async def agent_page(agent_id: str) -> Response:
        body = await page.agent(validation.agent_id(agent_id))
        return _html(html.page(agent_id, body, f"/agents/{agent_id}/fragment"))

    @app.get("/agents/<agent_id>/fragment")
    async def agent_fragment(agent_id: str) -> Response:
        return _html(await page.agent(validation.agent_id(agent_id)))

    @app.get("/static/status.css")
    async def css() -> Response:
        return _html(STATUS_CSS, "text/css; charset=utf-8")

    @app.get("/static/status.js")
    async def js() -> Response:
        return _html(STATUS_JS, "text/javascript; charset=utf-8")

    install_error_handlers(
        app,
        log,
        BodyTooLargeError,
        (StoreUnavailableError, "verifier database unavailable; try again"),
    )
    return app


def status_hypercorn_config(config: VerifierConfig) -> HypercornConfig:
    """Plain HTTP/1.1 with the admin listener's timeouts (CVE-2023-38200 class)."""
    hc = HypercornConfig()
    hc.accesslog = None
    hc.errorlog = log
    set_connection_timeouts(hc, config)
    hc.h11_max_incomplete_size = MAX_BODY_BYTES * 16
    return hc


async def serve_status_page(
    verifier: Verifier,
    shutdown: Optional[trio.Event] = None,
    *,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the page on ``status_page_address``; ``task_status.started(its URL)``."""
    ip, port = status_page_host_port(verifier.config.status_page_address)
    sock = bind(ip, port)
    try:
        bound = sock.getsockname()[1]
        host = f"[{ip}]" if ":" in ip else ip
        hosts = frozenset({f"{host}:{bound}", f"localhost:{bound}"})
        app = create_status_app(StatusPage(verifier), hosts)
        hc = status_hypercorn_config(verifier.config)
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_app, app, hc, plain=(sock,), shutdown=shutdown))
            url = f"http://{host}:{bound}/"
            log.info("status page on %s (loopback only)", url)
            task_status.started(url)
    finally:
        sock.close()
