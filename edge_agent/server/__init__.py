"""The agent's REST server: the Keylime agent API over mutual TLS, HTTP/1.1 by h11 on trio.

``serve``     serve_agent_api(ctx, host=, port=, tls=, shutdown=, task_status=): listeners,
              the TLS handshake, graceful shutdown
``http1``     one connection's HTTP/1.1 (h11): timeouts, limits, keep-alive
``handler``   AgentApi.respond: a request in, the JSON envelope out
``routes``    the route table per API version, /version, agent/info, notifications
``quotes``    quotes/identity and quotes/integrity
``keys``      keys/pubkey, ukey, vkey, verify (the U/V/K logic is edge_agent.bootstrap_keys)
``request``   the Request and strict readers for query and JSON body
``context``   AgentApiContext: what the handlers share, and the payload/revocation hooks
``tls``       TlsFiles and the server's SSL context
``errors``    the exception tree::

    AgentApiError            http_status, status (the envelope's text)
    ├── BadRequest           400
    ├── BodyTooLarge         413
    └── MethodNotAllowed     405, with the methods for the Allow header
"""

from __future__ import annotations

from edge_agent.server.context import AgentApiContext, PayloadDeployer, RevocationHandler
from edge_agent.server.errors import AgentApiError, BadRequest, BodyTooLarge, MethodNotAllowed
from edge_agent.server.handler import MAX_BODY_BYTES, AgentApi
from edge_agent.server.serve import serve_agent_api
from edge_agent.server.tls import TlsFiles

__all__ = [
    "MAX_BODY_BYTES",
    "AgentApi",
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
