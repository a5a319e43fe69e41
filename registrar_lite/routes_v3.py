"""The registrar's API 3.0 routes, as Keylime 7.14.3 declares them.

keylime/web/registrar_server.py ``_v3_routes`` serves, under both ``/v3`` and ``/v3.0``::

    GET    /v3.0/                        both listeners   200: "this version is served"
    POST   /v3.0/agents                  both listeners   register; the id is in the body
    POST   /v3.0/agents/{id}/activate    both listeners   activate with auth_tag
    GET    /v3.0/agents                  mTLS only        {"uuids": [...]}
    GET    /v3.0/agents/{id}             mTLS only        the record, once active
    DELETE /v3.0/agents/{id}             mTLS only        remove

The v2-compat spellings (``POST /agents/{id}``, ``PUT .../activate``, ``PUT /agents/{id}``)
are not part of 3.0: Keylime answers 405 for them and so do we.  ``POST /v2.x/agents`` with the
id in the body is in Keylime's v2 scope too (``_registration_routes`` is shared), so it is here.

Keylime 7.14.3's registrar answers every one of these 3.0 routes with 500 once the request
is well formed: its AgentsController calls ``respond()``, which raises for a major version of
3 or more (keylime/web/base/controller.py ``respond``).  The controller is the one v2 uses,
so the intended answer is the v2 envelope; that is what we send, with the same checks (EK
certificate, AK, auth tag) as the 2.x routes, because the same Registrar does the work.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from quart import Response
from quart_trio import QuartTrio
from werkzeug.exceptions import MethodNotAllowed

from attest_protocol.api_version import CURRENT_VERSION, SUPPORTED_VERSIONS, ApiVersion
from attest_protocol.envelope import success
from registrar_lite.errors import RequestError
from registrar_lite.service import Registrar
from service_kit.web import respond

log = logging.getLogger("limelet.registrar")

# Keylime scopes each major version under "/v<major>" and "/v<major>.<minor>"
# (keylime/web/base/server.py ``_make_versioned_routes``).
V3_VERSIONS: tuple[ApiVersion, ...] = (ApiVersion(3, 0),)
V3_PREFIXES = ("/v3", "/v3.0")
# v2.x prefixes for ``POST /agents`` with the id in the body (shared registration route).
V2_PREFIXES = tuple(f"/v{v}" for v in SUPPORTED_VERSIONS)
# Methods Keylime routes on these paths only for v2; 3.0 answers them 405.
V2_ONLY_METHODS = ["PUT", "POST"]

Guard = Callable[[Callable[..., Awaitable[Response]]], Callable[..., Awaitable[Response]]]
Body = Callable[[], Awaitable[Mapping[str, Any]]]


def served_versions() -> list[str]:
    """``supported_versions`` of ``GET /version``: the 2.x we serve, then 3.0 (as Keylime)."""
    return [str(v) for v in (*SUPPORTED_VERSIONS, *V3_VERSIONS)]


def add_version_route_v3(app: QuartTrio) -> None:
    """``GET /version`` listing 3.0 too; ``current_version`` stays the newest 2.x."""

    async def version() -> Response:
        results = {
            "current_version": str(CURRENT_VERSION),
            "supported_versions": served_versions(),
        }
        return respond(success(results))

    app.add_url_rule("/version", "version", version, methods=["GET"])


def body_agent_id(body: Mapping[str, Any]) -> str:
    """The ``agent_id`` of a ``POST /agents`` body; the Registrar checks its form."""
    agent_id = body.get("agent_id")
    if not isinstance(agent_id, str):
        raise RequestError("agent_id", "is required in the body of POST /agents")
    return agent_id


def add_v3_routes(app: QuartTrio, registrar: Registrar, admin: Guard, body: Body) -> None:
    """Everything under ``/v3`` and ``/v3.0``; ``admin`` guards the mTLS-only routes."""
    for prefix in V3_PREFIXES:
        _add_root(app, prefix)
        _add_registration(app, registrar, body, prefix)
        _add_admin(app, registrar, admin, prefix)
    for prefix in V2_PREFIXES:
        _add_create(app, registrar, body, prefix)


def _name(prefix: str, what: str) -> str:
    return f"{what}{prefix.replace('/', '_').replace('.', '_')}"


def _add_root(app: QuartTrio, prefix: str) -> None:
    async def root() -> Response:
        return respond(success())

    app.add_url_rule(f"{prefix}/", _name(prefix, "v3_root"), root, methods=["GET"])


def _add_create(app: QuartTrio, registrar: Registrar, body: Body, prefix: str) -> None:
    async def create() -> Response:
        data = await body()
        agent_id = body_agent_id(data)
        blob = await registrar.register(agent_id, data)
        log.info("agent %s registered over %s; awaiting activation", agent_id, prefix)
        return respond(success({"blob": blob}))

    app.add_url_rule(f"{prefix}/agents", _name(prefix, "create_body"), create, methods=["POST"])


def _add_registration(app: QuartTrio, registrar: Registrar, body: Body, prefix: str) -> None:
    _add_create(app, registrar, body, prefix)

    async def activate(agent_id: str) -> Response:
        await registrar.activate(agent_id, await body())
        log.info("agent %s activated over %s", agent_id, prefix)
        return respond(success())

    async def v2_only(agent_id: str) -> Response:
        raise MethodNotAllowed(valid_methods=["POST"])

    app.add_url_rule(
        f"{prefix}/agents/<agent_id>/activate",
        _name(prefix, "activate"),
        activate,
        methods=["POST"],
    )
    app.add_url_rule(
        f"{prefix}/agents/<agent_id>/activate", _name(prefix, "put_act"), v2_only, methods=["PUT"]
    )


def _add_admin(app: QuartTrio, registrar: Registrar, admin: Guard, prefix: str) -> None:
    @admin
    async def index() -> Response:
        return respond(success({"uuids": await registrar.list_ids()}))

    @admin
    async def show(agent_id: str) -> Response:
        return respond(success(await registrar.show(agent_id)))

    @admin
    async def delete(agent_id: str) -> Response:
        await registrar.delete(agent_id)
        log.info("agent %s deleted over %s", agent_id, prefix)
        return respond(success())

    async def v2_only(agent_id: str) -> Response:
        raise MethodNotAllowed(valid_methods=["GET", "DELETE"])

    for path in (f"{prefix}/agents", f"{prefix}/agents/"):
        app.add_url_rule(path, _name(path, "index"), index, methods=["GET"])
    one = f"{prefix}/agents/<agent_id>"
    app.add_url_rule(one, _name(prefix, "show"), show, methods=["GET"])
    app.add_url_rule(one, _name(prefix, "delete"), delete, methods=["DELETE"])
    app.add_url_rule(one, _name(prefix, "v2_only"), v2_only, methods=V2_ONLY_METHODS)
