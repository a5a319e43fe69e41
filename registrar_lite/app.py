"""The registrar's HTTP face: a Quart-Trio app with Keylime's routes and envelope.

Routes (keylime/web/registrar_server.py, API 2.x; ``{v}`` is ``v2.1`` ... ``v2.6``)::

    GET    /version                          both listeners   current and supported versions
    POST   /{v}/agents/{agent_id}            both listeners   register; answers {"blob": ...}
    PUT    /{v}/agents/{agent_id}/activate   both listeners   activate with auth_tag
    POST   /{v}/agents/{agent_id}/activate   both listeners   (Keylime's RFC 9110 spelling)
    PUT    /{v}/agents/{agent_id}            both listeners   activate (what agents really use)
    GET    /{v}/agents/                      mTLS only        {"uuids": [...]}
    GET    /{v}/agents/{agent_id}            mTLS only        the record, once active
    DELETE /{v}/agents/{agent_id}            mTLS only        remove
    POST   /{v}/agents                       both listeners   register, id in the body

API 3.0 (``/v3``, ``/v3.0``) is in routes_v3.py; ``/version`` lists it after the 2.x.

CVE-2026-1709: the admin routes are refused unless the request arrived on the TLS listener,
which demands a client certificate from ``trusted_client_ca`` in the handshake.  That is read
from the ASGI scope Hypercorn fills from the socket itself (``scheme`` is "https" only for a
TLS stream; ``server`` is the local address), never from a header a client controls.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

from quart import Response, request
from quart_trio import QuartTrio

from attest_protocol.api_version import version_from_path
from attest_protocol.envelope import success
from registrar_lite.errors import AdminListenerError, BodyTooLargeError, StoreUnavailableError
from registrar_lite.routes_v3 import add_v3_routes, add_version_route_v3
from registrar_lite.service import Registrar
from registrar_lite.validation import parse_json_object
from service_kit.settings import DEFAULT_READ_TIMEOUT_SECONDS
from service_kit.web import (
    create_service_app,
    install_error_handlers,
    json_body,
    respond,
)

log = logging.getLogger("limelet.registrar")

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Response]])


def _check_version(ver: str) -> None:
    """``ver`` is the first path segment, e.g. "v2.1"; ApiVersionError (400) otherwise."""
    version_from_path(f"/{ver}/")


async def _json_body(limit: int) -> Mapping[str, Any]:
    return await json_body(limit, parse_json_object, BodyTooLargeError)


def _on_admin_listener(tls_port: int) -> bool:
    scope = request.scope
    server = scope.get("server") or (None, None)
    return scope.get("scheme") == "https" and server[1] == tls_port


def create_app(
    registrar: Registrar,
    *,
    tls_port: int,
    max_body_bytes: int,
    body_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS,
) -> QuartTrio:
    """The app; ``tls_port`` is the bound port of the mTLS listener (admin routes)."""
    app = create_service_app("limelet.registrar", max_body_bytes, body_timeout_seconds)
    add_version_route_v3(app)
    _add_admin_routes(app, registrar, tls_port)
    _add_agent_routes(app, registrar, max_body_bytes)
    # API 3.0 (routes_v3.py): same Registrar, same admin guard, same body limit.
    add_v3_routes(app, registrar, _admin_only(tls_port), lambda: _json_body(max_body_bytes))
    install_error_handlers(
        app, log, BodyTooLargeError, (StoreUnavailableError, str(StoreUnavailableError()))
    )
    return app


def _admin_only(tls_port: int) -> Callable[[Handler], Handler]:
    def decorate(handler: Handler) -> Handler:
        @wraps(handler)
        async def guarded(*args: Any, **kwargs: Any) -> Response:
            if not _on_admin_listener(tls_port):
                raise AdminListenerError()
            return await handler(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def _add_admin_routes(app: QuartTrio, registrar: Registrar, tls_port: int) -> None:
    admin = _admin_only(tls_port)

    @app.get("/<ver>/agents/")
    @admin
    async def index(ver: str) -> Response:
        _check_version(ver)
        return respond(success({"uuids": await registrar.list_ids()}))

    @app.get("/<ver>/agents/<agent_id>")
    @admin
    async def show(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        return respond(success(await registrar.show(agent_id)))

    @app.delete("/<ver>/agents/<agent_id>")
    @admin
    async def delete(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        await registrar.delete(agent_id)
        log.info("agent %s deleted", agent_id)
        return respond(success())


def _add_agent_routes(app: QuartTrio, registrar: Registrar, max_body_bytes: int) -> None:
    @app.post("/<ver>/agents/<agent_id>")
    async def create(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        blob = await registrar.register(agent_id, await _json_body(max_body_bytes))
        log.info("agent %s registered; awaiting activation", agent_id)
        return respond(success({"blob": blob}))

    @app.route("/<ver>/agents/<agent_id>/activate", methods=["PUT", "POST"])
    @app.put("/<ver>/agents/<agent_id>")
    async def activate(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        await registrar.activate(agent_id, await _json_body(max_body_bytes))
        log.info("agent %s activated", agent_id)
        return respond(success())
