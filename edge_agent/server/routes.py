"""The route table of the agent API and the dispatcher that applies it.

Layout as rust-keylime keylime-agent/src/api.rs builds it: ``GET /version``, and under each
enabled ``/vX.Y``: ``/keys/{pubkey,verify}`` (GET), ``/keys/{ukey,vkey}`` (POST),
``/quotes/{identity,integrity}`` (GET), ``/notifications/revocation`` (POST), and from 2.2
``/agent/info`` (GET).  A ``/vX.Y`` prefix that is not enabled answers 400
``API version not supported: vX.Y`` (errors_handler.rs), which is what makes Keylime's
verifier and tenant renegotiate.  Unknown paths answer 400, a known path with the wrong
method 405, with the texts of rust-keylime's default services.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import Any, Callable

from attest_protocol.api_version import ApiVersion
from attest_protocol.envelope import Envelope, failure, success
from edge_agent.server import keys, quotes
from edge_agent.server.context import AgentApiContext
from edge_agent.server.errors import AgentApiError, BadRequest, MethodNotAllowed
from edge_agent.server.request import Request, json_object, required_str

__all__ = ["ROUTES", "dispatch"]

log = logging.getLogger(__name__)

Handler = Callable[[AgentApiContext, Request, ApiVersion], Awaitable[dict[str, Any]]]
_VERSIONED = re.compile(r"/v([0-9]+)\.([0-9]+)(/.*)?")
AGENT_INFO_SINCE = ApiVersion(2, 2)
FIRST_VERSION = ApiVersion(2, 1)


@dataclass(frozen=True)
class Route:
    method: str
    handler: Handler
    since: ApiVersion = FIRST_VERSION


async def agent_info(ctx: AgentApiContext, request: Request, version: ApiVersion) -> dict[str, Any]:
    """rust-keylime agent_handler.rs AgentInfo.

    ``ak_handle`` is the AK's TPM handle there; limelet's TPM layer does not expose its
    transient handle and no Keylime component reads the field, so it is 0.
    """
    return {
        "agent_uuid": ctx.agent_id,
        "tpm_hash_alg": ctx.hash_alg,
        "tpm_enc_alg": quotes.enc_alg_for_version(ctx.enc_alg, version),
        "tpm_sign_alg": ctx.sign_alg,
        "ak_handle": 0,
    }


async def revocation(ctx: AgentApiContext, request: Request, version: ApiVersion) -> dict[str, Any]:
    """Verify a notification ``{"msg": ..., "signature": ...}``, then act in the background."""
    body = json_object(request.body)
    required_str(body, "msg")
    required_str(body, "signature")
    actions = await ctx.on_revocation(request.body)
    if actions is not None:
        ctx.spawn(actions)
    return {}


# (scope, resource) -> route.  The scope's name also picks the default-service text.
ROUTES: Mapping[tuple[str, str], Route] = {
    ("keys", "pubkey"): Route("GET", keys.pubkey),
    ("keys", "verify"): Route("GET", keys.verify),
    ("keys", "ukey"): Route("POST", keys.ukey),
    ("keys", "vkey"): Route("POST", keys.vkey),
    ("quotes", "identity"): Route("GET", quotes.identity_quote),
    ("quotes", "integrity"): Route("GET", quotes.integrity_quote),
    ("notifications", "revocation"): Route("POST", revocation),
    ("agent", "info"): Route("GET", agent_info, AGENT_INFO_SINCE),
}


async def dispatch(ctx: AgentApiContext, request: Request) -> tuple[Envelope, tuple[str, ...]]:
    """The envelope to answer ``request`` with, and the Allow header's methods (on a 405)."""
    try:
        return success(await _route(ctx, request)), ()
    except MethodNotAllowed as exc:
        log.warning("%s %s: 405 %s", request.method, request.path, exc.status)
        return failure(exc.http_status, exc.status), exc.allow
    except AgentApiError as exc:
        log.warning("%s %s: %d %s", request.method, request.path, exc.http_status, exc.status)
        return failure(exc.http_status, exc.status), ()


async def _route(ctx: AgentApiContext, request: Request) -> dict[str, Any]:
    if request.path == "/version":
        if request.method != "GET":
            raise MethodNotAllowed("Method is not supported", ("GET",))
        return version_results(ctx.versions)
    match = _VERSIONED.fullmatch(request.path)
    if match is None:
        raise _not_implemented(ctx, request)
    major, minor, tail = match.groups()
    version = ApiVersion(int(major), int(minor))
    if version not in ctx.versions:
        raise BadRequest(f"API version not supported: v{version}")
    parts = (tail or "/").strip("/").split("/")
    route = ROUTES.get((parts[0], parts[1])) if len(parts) == 2 else None
    if route is None or version < route.since:
        raise BadRequest(f"URI not supported: {request.path}")
    if request.method != route.method:
        raise MethodNotAllowed(
            f"Method is not supported in /{parts[0]}/ interface", (route.method,)
        )
    return await route.handler(ctx, request, version)


def version_results(versions: tuple[ApiVersion, ...]) -> dict[str, Any]:
    """rust-keylime api.rs ``version``: the newest enabled version and the whole list."""
    return {
        "supported_version": str(versions[-1]),
        "supported_versions": [str(v) for v in versions],
    }


def _not_implemented(ctx: AgentApiContext, request: Request) -> AgentApiError:
    if request.method not in ("GET", "POST"):
        return MethodNotAllowed("Method is not supported", ("GET", "POST"))
    listed = ", ".join(f"/v{v}" for v in ctx.versions)
    return BadRequest(f"Not Implemented: Use {listed} or /version interfaces")
