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

CVE-2026-1709: the admin routes are refused unless the request arrived on the TLS listener,
which demands a client certificate from ``trusted_client_ca`` in the handshake.  That is read
from the ASGI scope Hypercorn fills from the socket itself (``scheme`` is "https" only for a
TLS stream; ``server`` is the local address), never from a header a client controls.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from functools import wraps
from typing import Any, TypeVar

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from attest_protocol.api_version import CURRENT_VERSION, SUPPORTED_VERSIONS, version_from_path
from attest_protocol.envelope import Envelope, failure, success
from attest_protocol.errors import AttestProtocolError
from registrar_lite.errors import AdminListenerError, BodyTooLargeError, StoreUnavailableError
from registrar_lite.service import Registrar
from registrar_lite.validation import parse_json_object

log = logging.getLogger("limelet.registrar")

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Response]])
_INTERNAL_ERROR = "Internal Server Error"


def _respond(envelope: Envelope) -> Response:
    return Response(
        json.dumps(envelope.to_json()), status=envelope.code, content_type="application/json"
    )


def _check_version(ver: str) -> None:
    """``ver`` is the first path segment, e.g. "v2.1"; ApiVersionError (400) otherwise."""
    version_from_path(f"/{ver}/")


async def _json_body(limit: int) -> Mapping[str, Any]:
    try:
        data = await request.get_data(cache=False, as_text=False)
    except RequestEntityTooLarge:
        raise BodyTooLargeError(limit) from None
    return parse_json_object(data.encode("utf-8") if isinstance(data, str) else data)


def _on_admin_listener(tls_port: int) -> bool:
    scope = request.scope
    server = scope.get("server") or (None, None)
    return scope.get("scheme") == "https" and server[1] == tls_port


def create_app(registrar: Registrar, *, tls_port: int, max_body_bytes: int) -> QuartTrio:
    """The app; ``tls_port`` is the bound port of the mTLS listener (admin routes)."""
    app = QuartTrio("limelet.registrar")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.url_map.strict_slashes = False
    # Werkzeug answers "//" with a 308 and an HTML page; an empty agent id is a JSON 404.
    app.url_map.merge_slashes = False

    @app.get("/version")
    async def version() -> Response:
        results = {
            "current_version": str(CURRENT_VERSION),
            "supported_versions": [str(v) for v in SUPPORTED_VERSIONS],
        }
        return _respond(success(results))

    _add_admin_routes(app, registrar, tls_port)
    _add_agent_routes(app, registrar, max_body_bytes)
    _install_error_handlers(app)
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
        return _respond(success({"uuids": await registrar.list_ids()}))

    @app.get("/<ver>/agents/<agent_id>")
    @admin
    async def show(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        return _respond(success(await registrar.show(agent_id)))

    @app.delete("/<ver>/agents/<agent_id>")
    @admin
    async def delete(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        await registrar.delete(agent_id)
        log.info("agent %s deleted", agent_id)
        return _respond(success())


def _add_agent_routes(app: QuartTrio, registrar: Registrar, max_body_bytes: int) -> None:
    @app.post("/<ver>/agents/<agent_id>")
    async def create(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        blob = await registrar.register(agent_id, await _json_body(max_body_bytes))
        log.info("agent %s registered; awaiting activation", agent_id)
        return _respond(success({"blob": blob}))

    @app.route("/<ver>/agents/<agent_id>/activate", methods=["PUT", "POST"])
    @app.put("/<ver>/agents/<agent_id>")
    async def activate(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        await registrar.activate(agent_id, await _json_body(max_body_bytes))
        log.info("agent %s activated", agent_id)
        return _respond(success())


def _install_error_handlers(app: QuartTrio) -> None:
    @app.errorhandler(AttestProtocolError)
    async def protocol_error(exc: AttestProtocolError) -> Response:
        if exc.http_status >= 500 and not isinstance(exc, StoreUnavailableError):
            log.error("request failed: %s", exc)
            return _respond(failure(exc.http_status, _INTERNAL_ERROR))
        return _respond(failure(exc.http_status, str(exc)))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if isinstance(exc, RequestEntityTooLarge):
            return _respond(failure(code, str(BodyTooLargeError(app.config["MAX_CONTENT_LENGTH"]))))
        return _respond(failure(code, exc.name))

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        # Details go to the log only: they may hold paths or key material.
        log.exception("unexpected error while handling %s %s", request.method, request.path)
        return _respond(failure(500, _INTERNAL_ERROR))
