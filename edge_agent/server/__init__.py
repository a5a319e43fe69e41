"""The agent's REST server: the Keylime agent API over mutual TLS, on Hypercorn's Trio worker.

``serve``     serve_agent_api(ctx, host=, port=, tls=, shutdown=, task_status=)
``asgi``      the hand-written ASGI app (body limit, envelope, lifespan)
``routes``    the route table per API version, /version, agent/info, notifications
``quotes``    quotes/identity and quotes/integrity
``keys``      keys/pubkey, ukey, vkey, verify (the U/V/K logic is edge_agent.bootstrap_keys)
``request``   the Request and strict readers for query and JSON body
``context``   AgentApiContext: what the handlers share, and the payload/revocation hooks
``tls``       TlsFiles
``errors``    the exception tree::

    AgentApiError            http_status, status (the envelope's text)
    ├── BadRequest           400
    ├── BodyTooLarge         413
    └── MethodNotAllowed     405, with the methods for the Allow header
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from edge_agent.server.asgi import MAX_BODY_BYTES, AgentApiApp
from edge_agent.server.context import AgentApiContext, PayloadDeployer, RevocationHandler
from edge_agent.server.errors import AgentApiError, BadRequest, BodyTooLarge, MethodNotAllowed
from edge_agent.server.tls import TlsFiles

if TYPE_CHECKING:
    from edge_agent.server.serve import serve_agent_api

__all__ = [
    "MAX_BODY_BYTES",
    "AgentApiApp",
    "AgentApiContext",
    "AgentApiError",
    "BadRequest",
    "BodyTooLarge",
    "MethodNotAllowed",
    "PayloadDeployer",
    "RevocationHandler",
    "TlsFiles",
    "serve_agent_api",
]


def __getattr__(name: str) -> Any:
    # ``serve`` imports Hypercorn (~70 ms, ~4 MB); it is loaded on first use so that the
    # agent can import it in the background while the TPM works (edge_agent.preload).
    if name == "serve_agent_api":
        from edge_agent.server.serve import serve_agent_api

        return serve_agent_api
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
