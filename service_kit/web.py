"""The parts of a Quart-Trio app both services share: Keylime's envelope, ``/version``, the
request body and the error handlers.

Every answer is the ``{code, status, results}`` envelope (attest_protocol/envelope.py; Keylime
keylime/web/base/... and cloud_verifier_tornado.py answer so).  Errors of the
AttestProtocolError tree carry their HTTP status; a 5xx among them, and anything unexpected,
is logged here and answered with a bare "Internal Server Error": details may hold paths or key
material (CVE-2023-38201).
"""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Mapping
from typing import Any, Callable, Optional, TypeVar

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from attest_protocol.api_version import CURRENT_VERSION, SUPPORTED_VERSIONS
from attest_protocol.envelope import Envelope, failure, success
from attest_protocol.errors import AttestProtocolError
from service_kit.settings import DEFAULT_READ_TIMEOUT_SECONDS

INTERNAL_ERROR = "Internal Server Error"
# Logged when the ASGI lifespan ends: proof that a stop was graceful, not a cancellation.
STOPPED_MESSAGE = "stopped serving; open requests drained"
Parsed = TypeVar("Parsed")


def respond(envelope: Envelope) -> Response:
    return Response(
        json.dumps(envelope.to_json()), status=envelope.code, content_type="application/json"
    )


def ok(results: Optional[Mapping[str, Any]] = None, code: int = 200) -> Response:
    """Success with ``results``; another 2xx ``code`` carries its reason phrase as status."""
    status = "Success" if code == 200 else http.client.responses[code]
    return respond(Envelope(code, status, results or {}))


def create_service_app(
    name: str, max_body_bytes: int, body_timeout_seconds: float = DEFAULT_READ_TIMEOUT_SECONDS
) -> QuartTrio:
    """An app that refuses bodies over ``max_body_bytes`` and takes paths with or without a
    trailing slash, as Keylime's routes do; it logs ``STOPPED_MESSAGE`` to logger ``name``
    when Hypercorn ends its lifespan after a graceful stop.

    A request body that has not all arrived ``body_timeout_seconds`` after the route asked
    for it is answered 408: the listener itself no longer times reads (service_kit/listen.py).
    """
    app = QuartTrio(name)
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.config["BODY_TIMEOUT"] = body_timeout_seconds
    app.url_map.strict_slashes = False
    # Werkzeug answers "//" with a 308 and an HTML page; an empty agent id is a JSON 404.
    app.url_map.merge_slashes = False

    @app.after_serving
    async def stopped() -> None:
        logging.getLogger(name).info(STOPPED_MESSAGE)

    return app


def add_version_route(app: QuartTrio, *paths: str) -> None:
    """``GET /version`` (and any other ``paths``): the current and supported API versions."""

    async def version() -> Response:
        results = {
            "current_version": str(CURRENT_VERSION),
            "supported_versions": [str(v) for v in SUPPORTED_VERSIONS],
        }
        return respond(success(results))

    for path in ("/version", *paths):
        app.get(path)(version)


async def json_body(
    limit: int, parse: Callable[[bytes], Parsed], too_large: Callable[[int], Exception]
) -> Parsed:
    """The request body through ``parse``; ``too_large(limit)`` when it exceeds the limit."""
    try:
        data = await request.get_data(cache=False, as_text=False)
    except RequestEntityTooLarge:
        raise too_large(limit) from None
    return parse(data.encode("utf-8") if isinstance(data, str) else data)


def install_error_handlers(
    app: QuartTrio,
    log: logging.Logger,
    too_large: Callable[[int], Exception],
    unavailable: Optional[tuple[type[AttestProtocolError], str]] = None,
) -> None:
    """Map the error tree, Werkzeug's HTTP errors and anything unexpected to envelopes.

    ``unavailable`` is the service's store-outage error and the message it is answered with:
    a 5xx the client should hear about (try again later), logged by the store's own health
    tracking rather than once per request here."""

    @app.errorhandler(AttestProtocolError)
    async def protocol_error(exc: AttestProtocolError) -> Response:
        if unavailable is not None and isinstance(exc, unavailable[0]):
            return respond(failure(exc.http_status, unavailable[1]))
        if exc.http_status >= 500:
            log.error("request failed: %s", exc)
            return respond(failure(exc.http_status, INTERNAL_ERROR))
        return respond(failure(exc.http_status, str(exc)))

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if isinstance(exc, RequestEntityTooLarge):
            return respond(failure(code, str(too_large(app.config["MAX_CONTENT_LENGTH"]))))
        return respond(failure(code, exc.name))

    @app.errorhandler(Exception)
    async def unexpected(exc: Exception) -> Response:
        # Details go to the log only: they may hold paths or key material.
        log.exception("unexpected error while handling %s %s", request.method, request.path)
        return respond(failure(500, INTERNAL_ERROR))
