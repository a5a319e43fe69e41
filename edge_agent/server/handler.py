"""The agent API as one call: a parsed request in, the JSON envelope out.

edge_agent.server.serve reads each request off the connection (method, target, body up to
:data:`MAX_BODY_BYTES`) and calls :meth:`AgentApi.respond`, which builds a
:class:`~edge_agent.server.request.Request`, lets :func:`~edge_agent.server.routes.dispatch`
answer and encodes the envelope.  No I/O of its own beyond what the handlers do.
"""

from __future__ import annotations

import json
import logging
import urllib.parse
from dataclasses import dataclass

from attest_protocol.envelope import Envelope, failure
from edge_agent.server.context import AgentApiContext
from edge_agent.server.errors import AgentApiError, BodyTooLarge
from edge_agent.server.request import Request, parse_query
from edge_agent.server.routes import dispatch

__all__ = ["MAX_BODY_BYTES", "AgentApi", "Response", "envelope_response"]

log = logging.getLogger(__name__)

# The largest legitimate body is a ukey with a payload: Keylime's tenant sends the payload
# file AES-GCM encrypted and base64-encoded in the JSON.  Payloads are small (scripts, keys,
# a zip of them); 8 MiB of JSON is ~6 MiB of payload.  Larger bodies get 413 unread.
MAX_BODY_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def envelope_response(envelope: Envelope, allow: tuple[str, ...] = ()) -> Response:
    body = json.dumps(envelope.to_json()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    if allow:
        headers.append((b"allow", ", ".join(allow).encode()))
    return Response(envelope.code, headers, body)


def too_large(limit: int) -> Response:
    error = BodyTooLarge(limit)
    return envelope_response(failure(error.http_status, error.status))


class AgentApi:
    def __init__(self, ctx: AgentApiContext) -> None:
        self.ctx = ctx

    async def respond(self, method: str, target: bytes, body: bytes) -> Response:
        """The answer to ``method target`` (``/v2.1/quotes/integrity?nonce=...``) with ``body``.

        The path is percent-decoded, the query parsed strictly; an error in a handler that is
        not an AgentApiError is logged with its traceback and answers 500.
        """
        raw_path, _, query = target.partition(b"?")
        allow: tuple[str, ...] = ()
        try:
            path = urllib.parse.unquote(raw_path.decode("ascii"), errors="strict")
            request = Request(method, path, parse_query(query), body)
            envelope, allow = await dispatch(self.ctx, request)
        except UnicodeDecodeError:
            envelope = failure(400, "Request path is not ASCII")
        except AgentApiError as exc:
            log.warning("%s %s: %d %s", method, raw_path.decode("ascii", "replace"),
                        exc.http_status, exc.status)  # fmt: skip
            envelope = failure(exc.http_status, exc.status)
        except Exception:
            log.exception("%s %s failed", method, raw_path.decode("ascii", "replace"))
            envelope = failure(500, "Internal Server Error")
        return envelope_response(envelope, allow)
