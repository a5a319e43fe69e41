"""A small hand-written ASGI application for the agent API (no web framework in the agent).

Hypercorn's Trio worker calls it once per request (and once for the lifespan).  It reads the
body up to :data:`MAX_BODY_BYTES`, builds a :class:`~edge_agent.server.request.Request`,
lets :func:`~edge_agent.server.routes.dispatch` answer, and sends the JSON envelope.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, MutableMapping
from typing import Any, Callable

from attest_protocol.envelope import Envelope, failure
from edge_agent.server.context import AgentApiContext
from edge_agent.server.errors import AgentApiError, BodyTooLarge
from edge_agent.server.request import Request, parse_query
from edge_agent.server.routes import dispatch

__all__ = ["MAX_BODY_BYTES", "AgentApiApp"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# The largest legitimate body is a ukey with a payload: Keylime's tenant sends the payload
# file AES-GCM encrypted and base64-encoded in the JSON.  Payloads are small (scripts, keys,
# a zip of them); 8 MiB of JSON is ~6 MiB of payload.  Larger bodies get 413 unread.
MAX_BODY_BYTES = 8 * 1024 * 1024


class AgentApiApp:
    def __init__(self, ctx: AgentApiContext, *, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.ctx = ctx
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return  # no websockets here; hypercorn closes the connection
        allow: tuple[str, ...] = ()
        try:
            body = await self._body(scope, receive)
            request = Request(
                scope["method"], scope["path"], parse_query(scope.get("query_string", b"")), body
            )
            envelope, allow = await dispatch(self.ctx, request)
        except AgentApiError as exc:
            log.warning("%s %s: %d %s", scope["method"], scope["path"], exc.http_status, exc.status)
            envelope = failure(exc.http_status, exc.status)
        await _send_json(send, envelope, allow)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)


async def _send_json(send: Send, envelope: Envelope, allow: tuple[str, ...]) -> None:
    data = json.dumps(envelope.to_json()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    if allow:
        headers.append((b"allow", ", ".join(allow).encode()))
    await send({"type": "http.response.start", "status": envelope.code, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
