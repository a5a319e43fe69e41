"""The verifier's HTTP face: a Quart-Trio app with Keylime's routes and envelope.

Routes (keylime/cloud_verifier_tornado.py 7.14.3; ``{v}`` is ``v2.1`` ... ``v2.6``; every
route sits behind the mTLS listener, which demands a client certificate from
``trusted_client_ca`` in the handshake)::

    GET    /version, /versions                    current and supported API versions
    GET    /{v}/agents/[?verifier=ID][&bulk=1]    {"uuids": [[id], ...]} or {id: status, ...}
    GET    /{v}/agents/{id}                       status (process_get_status keys)
    POST   /{v}/agents/{id}                       add and start polling
    DELETE /{v}/agents/{id}                       stop polling and remove
    PUT    /{v}/agents/{id}/reactivate            START again
    PUT    /{v}/agents/{id}/stop                  TENANT_FAILED, polling ends
    GET    /{v}/allowlists/                       {"runtimepolicy names": [...]}
    GET|POST|PUT|DELETE /{v}/allowlists/{name}    runtime policies (also /allowlist/{name})
    GET    /{v}/mbpolicies/                       {"mbpolicy names": [...]}      (2.3+)
    GET|POST|PUT|DELETE /{v}/mbpolicies/{name}    measured-boot policies        (2.3+)
    GET    /{v}/verify/identity?agent_uuid=&quote=&nonce=&hash_alg=   {"valid": 0|1, ...}
"""

from __future__ import annotations

import http.client
import json
import logging
from collections.abc import Mapping
from typing import Any, Optional

from quart import Response, request
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from attest_protocol.api_version import (
    CURRENT_VERSION,
    SUPPORTED_VERSIONS,
    ApiVersion,
    version_from_path,
)
from attest_protocol.envelope import Envelope, failure, success
from attest_protocol.errors import AttestProtocolError
from verifier_lite import validation
from verifier_lite.errors import BodyTooLargeError, RequestError
from verifier_lite.identity import verify_identity
from verifier_lite.service import Verifier
from verifier_lite.store_health import StoreUnavailableError, store_health_view

log = logging.getLogger("limelet.verifier")

_INTERNAL_ERROR = "Internal Server Error"
# Measured-boot policies as a resource of their own came with API 2.3 (Keylime 7.x).
MB_POLICY_MIN_VERSION = ApiVersion(2, 3)


def _respond(envelope: Envelope) -> Response:
    return Response(
        json.dumps(envelope.to_json()), status=envelope.code, content_type="application/json"
    )


def _ok(results: Optional[Mapping[str, Any]] = None, code: int = 200) -> Response:
    status = "Success" if code == 200 else http.client.responses[code]
    return _respond(Envelope(code, status, results or {}))


def _check_version(ver: str, minimum: ApiVersion = SUPPORTED_VERSIONS[0]) -> None:
    """``ver`` is the first path segment ("v2.1"); ApiVersionError (400) when not served."""
    served = [v for v in SUPPORTED_VERSIONS if v >= minimum]
    version_from_path(f"/{ver}/", served)


async def _json_body(limit: int) -> dict[str, Any]:
    try:
        data = await request.get_data(cache=False, as_text=False)
    except RequestEntityTooLarge:
        raise BodyTooLargeError(limit) from None
    return validation.parse_json_object(data.encode("utf-8") if isinstance(data, str) else data)


def create_app(verifier: Verifier, *, max_body_bytes: int) -> QuartTrio:
    app = QuartTrio("limelet.verifier")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    app.url_map.strict_slashes = False
    # Werkzeug answers "//" with a 308 and an HTML page; an empty agent id is a JSON 404.
    app.url_map.merge_slashes = False

    @app.get("/version")
    @app.get("/versions")
    async def version() -> Response:
        results = {
            "current_version": str(CURRENT_VERSION),
            "supported_versions": [str(v) for v in SUPPORTED_VERSIONS],
        }
        return _respond(success(results))

    _agent_routes(app, verifier, max_body_bytes)
    _identity_route(app, verifier)
    _runtime_policy_routes(app, verifier, max_body_bytes)
    _mb_policy_routes(app, verifier, max_body_bytes)
    _install_error_handlers(app)
    return app


def _agent_routes(app: QuartTrio, verifier: Verifier, limit: int) -> None:
    @app.get("/<ver>/agents/")
    async def index(ver: str) -> Response:
        _check_version(ver)
        chosen = request.args.get("verifier") or None
        if "bulk" in request.args:
            return _ok(await verifier.bulk(chosen))
        uuids = await verifier.list_ids(chosen)
        return _ok({"uuids": uuids, **store_health_view(verifier.store)})

    @app.get("/<ver>/agents/<agent_id>")
    async def show_agent(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        return _ok(await verifier.status(validation.agent_id(agent_id)))

    @app.post("/<ver>/agents/<agent_id>")
    async def add_agent(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        validation.agent_id(agent_id)
        req = validation.add_agent_request(await _json_body(limit))
        await verifier.add(agent_id, req)
        return _ok()

    @app.delete("/<ver>/agents/<agent_id>")
    async def delete_agent(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        await verifier.delete(validation.agent_id(agent_id))
        return _ok()

    @app.put("/<ver>/agents/<agent_id>/reactivate")
    async def reactivate(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        await verifier.reactivate(validation.agent_id(agent_id))
        return _ok()

    @app.put("/<ver>/agents/<agent_id>/stop")
    async def stop(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        await verifier.stop(validation.agent_id(agent_id))
        return _ok()


def _identity_route(app: QuartTrio, verifier: Verifier) -> None:
    @app.get("/<ver>/verify/identity")
    async def identity(ver: str) -> Response:
        _check_version(ver)
        params = {}
        for name in ("agent_uuid", "quote", "nonce", "hash_alg"):
            value = request.args.get(name)
            if not value:
                raise RequestError(name, "missing query parameter")
            params[name] = value
        agent_id = validation.agent_id(params["agent_uuid"])
        agent = await verifier.store.get_agent(agent_id)
        if agent is None:
            await verifier.status(agent_id)  # raises the 404
            raise AssertionError("unreachable")
        return _ok(verify_identity(agent, params["quote"], params["nonce"], params["hash_alg"]))


def _runtime_policy_routes(app: QuartTrio, verifier: Verifier, limit: int) -> None:
    @app.get("/<ver>/allowlists/")
    async def runtime_policy_names(ver: str) -> Response:
        _check_version(ver)
        return _ok({"runtimepolicy names": await verifier.store.runtime_policy_names()})

    @app.get("/<ver>/allowlists/<name>")
    @app.get("/<ver>/allowlist/<name>")
    async def runtime_policy_show(ver: str, name: str) -> Response:
        _check_version(ver)
        return _ok(await verifier.runtime_policy(validation.policy_name(name)))

    @app.route("/<ver>/allowlists/<name>", methods=["POST", "PUT"])
    @app.route("/<ver>/allowlist/<name>", methods=["POST", "PUT"])
    async def runtime_policy_store(ver: str, name: str) -> Response:
        _check_version(ver)
        validation.policy_name(name)
        body = await _json_body(limit)
        text = validation.runtime_policy_text(body)
        if not text:
            raise RequestError("runtime_policy", "is required")
        tpm_policy = body.get("tpm_policy")
        if tpm_policy is not None and not isinstance(tpm_policy, str):
            tpm_policy = json.dumps(tpm_policy)
        await verifier.add_runtime_policy(name, text, tpm_policy, update=request.method == "PUT")
        return _ok(code=201)

    @app.delete("/<ver>/allowlists/<name>")
    @app.delete("/<ver>/allowlist/<name>")
    async def runtime_policy_remove(ver: str, name: str) -> Response:
        _check_version(ver)
        await verifier.delete_runtime_policy(validation.policy_name(name))
        return Response(b"", status=204, content_type="application/json")


def _mb_policy_routes(app: QuartTrio, verifier: Verifier, limit: int) -> None:
    @app.get("/<ver>/mbpolicies/")
    async def mb_policy_names(ver: str) -> Response:
        _check_version(ver, MB_POLICY_MIN_VERSION)
        return _ok({"mbpolicy names": await verifier.store.mb_policy_names()})

    @app.get("/<ver>/mbpolicies/<name>")
    async def mb_policy_show(ver: str, name: str) -> Response:
        _check_version(ver, MB_POLICY_MIN_VERSION)
        return _ok(await verifier.mb_policy(validation.policy_name(name)))

    @app.route("/<ver>/mbpolicies/<name>", methods=["POST", "PUT"])
    async def mb_policy_store(ver: str, name: str) -> Response:
        _check_version(ver, MB_POLICY_MIN_VERSION)
        validation.policy_name(name)
        text = validation.mb_policy_text(await _json_body(limit))
        if text is None:
            raise RequestError("mb_policy", "is required")
        await verifier.add_mb_policy(name, text, update=request.method == "PUT")
        return _ok(code=201)

    @app.delete("/<ver>/mbpolicies/<name>")
    async def mb_policy_remove(ver: str, name: str) -> Response:
        _check_version(ver, MB_POLICY_MIN_VERSION)
        await verifier.delete_mb_policy(validation.policy_name(name))
        return Response(b"", status=204, content_type="application/json")


def _install_error_handlers(app: QuartTrio) -> None:
    @app.errorhandler(AttestProtocolError)
    async def protocol_error(exc: AttestProtocolError) -> Response:
        if exc.http_status >= 500:
            log.error("request failed: %s", exc)
            return _respond(failure(exc.http_status, _INTERNAL_ERROR))
        return _respond(failure(exc.http_status, str(exc)))

    @app.errorhandler(StoreUnavailableError)
    async def store_unavailable(exc: StoreUnavailableError) -> Response:
        # Logged by StoreHealth once a minute, not here once per request.
        return _respond(failure(exc.http_status, "verifier database unavailable; try again"))

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
