"""The push agents' own HTTPS listener (``push_port``): server TLS, no client certificate.

Keylime 7.14.3 serves agents and admins on one port with ``CERT_OPTIONAL``
(keylime/web/base/server.py), so which routes an anonymous client reaches rests on its
authorisation layer alone.  Here the admin listener keeps demanding a client certificate on
every route, and push agents (which present none: rust-keylime verifies the server only)
get a second listener that serves nothing but ``/v3.0/sessions`` and the agent's own
attestation routes, sharing the admin app's PushState.  Its timeouts, body limit and
handshake deadline are the admin listener's (service_kit/listen.py).
"""

from __future__ import annotations

import logging
import ssl
from functools import partial
from typing import Optional

import trio
from hypercorn.config import Config as HypercornConfig
from quart_trio import QuartTrio

from service_kit.listen import bind, hypercorn_config, serve_app
from service_kit.web import create_service_app, install_error_handlers
from verifier_lite.config import VerifierConfig
from verifier_lite.errors import BodyTooLargeError
from verifier_lite.push.routes import PushState, register_agent_routes
from verifier_lite.store_health import StoreUnavailableError

log = logging.getLogger("limelet.verifier")


def push_hypercorn_config(config: VerifierConfig) -> HypercornConfig:
    hc = hypercorn_config(config, log)
    hc.verify_mode = ssl.CERT_NONE  # agents authenticate by TPM proof of possession
    hc.ca_certs = None
    return hc


def create_push_app(
    state: PushState, max_body_bytes: int, body_timeout_seconds: float
) -> QuartTrio:
    app = create_service_app("limelet.verifier.push", max_body_bytes, body_timeout_seconds)
    register_agent_routes(app, state, max_body_bytes)
    install_error_handlers(
        app,
        log,
        BodyTooLargeError,
        (StoreUnavailableError, "verifier database unavailable; try again"),
    )
    return app


async def serve_push_listener(
    config: VerifierConfig,
    state: PushState,
    shutdown: Optional[trio.Event] = None,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the push routes on ``push_ip:push_port``; ``started(port)`` once listening."""
    hc = push_hypercorn_config(config)
    sock = bind(config.push_ip, config.push_port)
    try:
        port = int(sock.getsockname()[1])
        app = create_push_app(state, config.max_body_bytes, config.read_timeout_seconds)
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve_app, app, hc, tls=(sock,), shutdown=shutdown))
            log.info("push agents on TLS %s:%d", config.push_ip, port)
            task_status.started(port)
    finally:
        sock.close()
