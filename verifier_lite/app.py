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
    POST   /{v}/verify/evidence                   one-shot verdict, nothing stored (evidence.py)
"""

from __future__ import annotations

import json
import logging
from typing import Any

from quart import Response, request
from quart_trio import QuartTrio

from attest_protocol.api_version import SUPPORTED_VERSIONS, ApiVersion, version_from_path
from attest_protocol.envelope import Envelope
from service_kit.web import (
    add_version_route,
    create_service_app,
    install_error_handlers,
    json_body,
    ok,
    respond,
)
from verifier_lite import evidence, signed_policy, validation
from verifier_lite.errors import BodyTooLargeError, RequestError
from verifier_lite.identity import verify_identity
from verifier_lite.push import enrol as push_enrol
from verifier_lite.push.routes import EXTENSION as PUSH_EXTENSION
from verifier_lite.push.routes import register_push_routes
from verifier_lite.service import Verifier
from verifier_lite.signed_policy import PolicySignatures
from verifier_lite.store_health import StoreUnavailableError, store_health_view

log = logging.getLogger("limelet.verifier")

# Measured-boot policies as a resource of their own came with API 2.3 (Keylime 7.x).
MB_POLICY_MIN_VERSION = ApiVersion(2, 3)


def _check_version(ver: str, minimum: ApiVersion = SUPPORTED_VERSIONS[0]) -> None:
    """``ver`` is the first path segment ("v2.1"); ApiVersionError (400) when not served."""
    served = [v for v in SUPPORTED_VERSIONS if v >= minimum]
    version_from_path(f"/{ver}/", served)


async def _json_body(limit: int) -> dict[str, Any]:
    return await json_body(limit, validation.parse_json_object, BodyTooLargeError)


def _signatures(verifier: Verifier) -> PolicySignatures:
    """Keylime's signed-policy rules under this verifier's configuration."""
    config = verifier.config
    return signed_policy.from_config(config.require_allow_list_signatures, config.data_dir)


def create_app(verifier: Verifier, *, max_body_bytes: int) -> QuartTrio:
    app = create_service_app(
        "limelet.verifier", max_body_bytes, verifier.config.read_timeout_seconds
    )
    add_version_route(app, "/versions")
    _agent_routes(app, verifier, max_body_bytes)
    _identity_route(app, verifier)
    _evidence_route(app, max_body_bytes)
    _runtime_policy_routes(app, verifier, max_body_bytes)
    _mb_policy_routes(app, verifier, max_body_bytes)
    register_push_routes(app, verifier, max_body_bytes)  # /v3.0 push mode (push/routes.py)
    install_error_handlers(
        app,
        log,
        BodyTooLargeError,
        (StoreUnavailableError, "verifier database unavailable; try again"),
    )
    return app


def _agent_routes(app: QuartTrio, verifier: Verifier, limit: int) -> None:
    @app.get("/<ver>/agents/")
    async def index(ver: str) -> Response:
        _check_version(ver)
        chosen = request.args.get("verifier") or None
        if "bulk" in request.args:
            return ok(await verifier.bulk(chosen))
        uuids = await verifier.list_ids(chosen)
        return ok({"uuids": uuids, **store_health_view(verifier.store)})

    @app.get("/<ver>/agents/<agent_id>")
    async def show_agent(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        return ok(await verifier.status(validation.agent_id(agent_id)))

    @app.post("/<ver>/agents/<agent_id>")
    async def add_agent(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        validation.agent_id(agent_id)
        body = await _json_body(limit)
        # Push agents (push/enrol.py) have no contact address and are never polled.
        push = push_enrol.is_push_enrolment(body, verifier.config.mode)
        req = validation.add_agent_request(
            push_enrol.contactless(body) if push else body, _signatures(verifier)
        )
        if push:
            req = push_enrol.as_push(req)
        await verifier.add(agent_id, req)
        if push:  # a re-enrolled push agent starts a fresh attestation history
            await app.extensions[PUSH_EXTENSION].flow.forget(agent_id)
        return ok()

    @app.delete("/<ver>/agents/<agent_id>")
    async def delete_agent(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        await verifier.delete(validation.agent_id(agent_id))
        return ok()

    @app.put("/<ver>/agents/<agent_id>/reactivate")
    async def reactivate(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        await verifier.reactivate(validation.agent_id(agent_id))
        return ok()

    @app.put("/<ver>/agents/<agent_id>/stop")
    async def stop(ver: str, agent_id: str) -> Response:
        _check_version(ver)
        await verifier.stop(validation.agent_id(agent_id))
        return ok()


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
        return ok(verify_identity(agent, params["quote"], params["nonce"], params["hash_alg"]))


def _evidence_route(app: QuartTrio, limit: int) -> None:
    @app.post("/<ver>/verify/evidence")
    async def verify_evidence(ver: str) -> Response:
        _check_version(ver)
        verdict = evidence.verify_request(await _json_body(limit))
        status = "Success" if verdict.code == 200 else "Bad Request"
        return respond(Envelope(verdict.code, status, verdict.results))


def _runtime_policy_routes(app: QuartTrio, verifier: Verifier, limit: int) -> None:
    @app.get("/<ver>/allowlists/")
    async def runtime_policy_names(ver: str) -> Response:
        _check_version(ver)
        return ok({"runtimepolicy names": await verifier.store.runtime_policy_names()})

    @app.get("/<ver>/allowlists/<name>")
    @app.get("/<ver>/allowlist/<name>")
    async def runtime_policy_show(ver: str, name: str) -> Response:
        _check_version(ver)
        return ok(await verifier.runtime_policy(validation.policy_name(name)))

    @app.route("/<ver>/allowlists/<name>", methods=["POST", "PUT"])
    @app.route("/<ver>/allowlist/<name>", methods=["POST", "PUT"])
    async def runtime_policy_store(ver: str, name: str) -> Response:
        _check_version(ver)
        validation.policy_name(name)
        body = await _json_body(limit)
        text = validation.runtime_policy_text(body, _signatures(verifier))
        if not text:
            raise RequestError("runtime_policy", "is required")
        tpm_policy = body.get("tpm_policy")
        if tpm_policy is not None and not isinstance(tpm_policy, str):
            tpm_policy = json.dumps(tpm_policy)
        await verifier.add_runtime_policy(name, text, tpm_policy, update=request.method == "PUT")
        return ok(code=201)

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
        return ok({"mbpolicy names": await verifier.store.mb_policy_names()})

    @app.get("/<ver>/mbpolicies/<name>")
    async def mb_policy_show(ver: str, name: str) -> Response:
        _check_version(ver, MB_POLICY_MIN_VERSION)
        return ok(await verifier.mb_policy(validation.policy_name(name)))

    @app.route("/<ver>/mbpolicies/<name>", methods=["POST", "PUT"])
    async def mb_policy_store(ver: str, name: str) -> Response:
        _check_version(ver, MB_POLICY_MIN_VERSION)
        validation.policy_name(name)
        text = validation.mb_policy_text(await _json_body(limit))
        if text is None:
            raise RequestError("mb_policy", "is required")
        await verifier.add_mb_policy(name, text, update=request.method == "PUT")
        return ok(code=201)

    @app.delete("/<ver>/mbpolicies/<name>")
    async def mb_policy_remove(ver: str, name: str) -> Response:
        _check_version(ver, MB_POLICY_MIN_VERSION)
        await verifier.delete_mb_policy(validation.policy_name(name))
        return Response(b"", status=204, content_type="application/json")
