"""The /v3.0 push routes, registered on the verifier's app beside the v2.x ones.

Paths, bodies and statuses are Keylime 7.14.3's (keylime/web/verifier_server.py routes,
session_controller.py, attestation_controller.py; ../shared/reference/push-model)::

    POST  /v3.0/sessions                              public: a PoP challenge (200)
    PATCH /v3.0/sessions/{id}                         public: the proof; a token (200) or 401
    POST  /v3.0/agents/{id}/attestations              agent token: capabilities -> 201
    PATCH /v3.0/agents/{id}/attestations/{index}      agent token: evidence -> 202
    GET   /v3.0/agents/{id}/attestations[/latest|/{index}]   admin: history
    GET   /v3.0/agents/{id}                           admin: the agent (Keylime answers 500)

Identity (keylime/web/base/action_handler.py): with an Authorization header only the bearer
token counts, never the client certificate; without one the caller is the admin whose client
certificate the mTLS listener already demanded.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any, Optional

import trio
from quart import Response, request
from quart_trio import QuartTrio

from service_kit.web import json_body
from verifier_lite import validation
from verifier_lite.config import VerifierConfig
from verifier_lite.errors import BodyTooLargeError
from verifier_lite.push.errors import JSON_API, PushError, bad_request, error_response
from verifier_lite.push.flow import PushFlow
from verifier_lite.push.persist import SESSION, session_from_text, session_to_text
from verifier_lite.push.session_routes import session_routes
from verifier_lite.push.sessions import Session, SessionSettings, SessionTable
from verifier_lite.service import Verifier

log = logging.getLogger("limelet.verifier")

EXTENSION = "limelet.push"
JSONAPI_VERSION = {"version": "1.1"}


class PushState:
    """What the push routes share; ``app.extensions["limelet.push"]`` for tests."""

    def __init__(self, verifier: Verifier, clock: Callable[[], float] = time.time) -> None:
        self.verifier = verifier
        self.sessions = SessionTable(session_settings(verifier.config), clock)
        self.flow = PushFlow(verifier, clock)
        self.flow.challenge_lifetime = verifier.config.challenge_lifetime
        self.clock = clock

    async def token_session(self, token: str) -> Optional[Session]:
        """The token's active session; read from the store when this process has not seen
        it (a restart): only its salted hash is there, as in memory."""
        session_id = token.partition(".")[0]
        if not self.sessions.known(session_id):
            text = await self.verifier.store.get_push_document(SESSION, session_id)
            if text is not None:
                self.sessions.restore(session_from_text(text))
        return self.sessions.agent_for(token)

    async def save_session(self, session: Session) -> None:
        doc = session_to_text(session)
        await self.verifier.store.put_push_document(
            SESSION, session.session_id, session.agent_id, doc
        )

    async def activate(self, session: Session) -> str:
        """Hand out the token; the agent's earlier sessions end, in the store too."""
        token, ended = self.sessions.activate(session)
        for session_id in ended:
            await self.verifier.store.delete_push_documents(SESSION, session_id)
        await self.save_session(session)
        return token


def session_settings(config: VerifierConfig) -> SessionSettings:
    return SessionSettings(
        session_lifetime=config.session_lifetime,
        per_address=config.session_create_rate_limit_per_ip,
        address_window=config.session_create_rate_limit_window_ip,
        per_agent=config.session_create_rate_limit_per_agent,
        agent_window=config.session_create_rate_limit_window_agent,
    )


def document(data: Any, status: int, self_link: str, **extra: Any) -> Response:
    body = {"data": data, **extra, "links": {"self": self_link}, "jsonapi": JSONAPI_VERSION}
    return Response(json.dumps(body), status=status, content_type=JSON_API)


async def attributes(limit: int, kind: str) -> dict[str, Any]:
    body = await json_body(limit, validation.parse_json_object, BodyTooLargeError)
    data = body.get("data")
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON:API document with a data object")
    if data.get("type") == "error":
        raise bad_request("the agent reported that it could not collect evidence")
    if data.get("type") != kind or not isinstance(data.get("attributes"), dict):
        raise bad_request(f"data must be of type {kind!r} with attributes")
    attrs: dict[str, Any] = data["attributes"]
    return attrs


def bearer() -> Optional[str]:
    """The token, "" for a malformed header, None when there is no header."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


async def agent_session(state: PushState, agent_id: str) -> Session:
    token = bearer()
    session = await state.token_session(token) if token else None
    if session is None:
        raise PushError(401, "unauthenticated", "a valid session token is required")
    if session.agent_id != agent_id:
        raise PushError(403, "forbidden", "the token belongs to another agent")
    return session


def admin_only() -> None:
    if request.headers.get("Authorization") is not None:
        raise PushError(403, "forbidden", "this action requires admin authentication")


def register_push_routes(app: QuartTrio, verifier: Verifier, limit: int) -> PushState:
    state = PushState(verifier)
    app.extensions[EXTENSION] = state

    register_agent_routes(app, state, limit)
    _admin_routes(app, state)
    return state


def register_agent_routes(app: QuartTrio, state: PushState, limit: int) -> None:
    """The routes push agents call; on the admin app and on the push listener's."""

    @app.errorhandler(PushError)
    async def push_error(exc: PushError) -> Response:
        log.info("%s %s refused: %d %s", request.method, request.path, exc.http_status, exc)
        return error_response(exc)

    session_routes(app, state, limit)
    _attestation_routes(app, state, limit)


def _attestation_routes(app: QuartTrio, state: PushState, limit: int) -> None:
    @app.post("/v3.0/agents/<agent_id>/attestations")
    async def push_negotiate(agent_id: str) -> Response:
        await agent_session(state, agent_id)
        attestation = await state.flow.negotiate(agent_id, await attributes(limit, "attestation"))
        base = f"/v3.0/agents/{agent_id}/attestations"
        response = document(attestation.resource(), 201, base)
        response.headers["Location"] = attestation.path()
        return response

    @app.patch("/v3.0/agents/<agent_id>/attestations/<index>")
    async def push_evidence(agent_id: str, index: str) -> Response:
        session = await agent_session(state, agent_id)
        attrs = await attributes(limit, "attestation")
        if not (index.isascii() and index.isdigit() and len(index) <= 12):
            raise PushError(404, "not_found", "no such attestation")
        with trio.CancelScope(shield=True):  # once accepted, judged and recorded whole
            attestation = await state.flow.submit(agent_id, int(index), attrs)
        if attestation.evaluation == "pass":
            state.sessions.extend(session)
            await state.save_session(session)
        wait = attestation.evidence_received_at or state.clock()
        wait += state.verifier.config.quote_interval - state.clock()
        meta = {"seconds_to_next_attestation": max(0, round(wait))}
        return document(attestation.resource(), 202, attestation.path(), meta=meta)


def _admin_routes(app: QuartTrio, state: PushState) -> None:
    @app.get("/v3.0/agents/<agent_id>")
    async def push_show_agent(agent_id: str) -> Response:
        admin_only()
        view = await state.verifier.status(validation.agent_id(agent_id))
        resource = {"type": "agent", "id": agent_id, "attributes": view}
        return document(resource, 200, f"/v3.0/agents/{agent_id}")

    @app.get("/v3.0/agents/<agent_id>/attestations")
    async def push_attestations(agent_id: str) -> Response:
        admin_only()
        await state.verifier.status(validation.agent_id(agent_id))
        items = [a.resource() for a in (await state.flow.history(agent_id)).attestations]
        return document(items, 200, f"/v3.0/agents/{agent_id}/attestations")

    @app.get("/v3.0/agents/<agent_id>/attestations/<which>")
    async def push_attestation(agent_id: str, which: str) -> Response:
        admin_only()
        await state.verifier.status(validation.agent_id(agent_id))
        history = await state.flow.history(agent_id)
        found = history.latest() if which == "latest" else None
        if which.isascii() and which.isdigit() and len(which) <= 12:
            found = history.get(int(which))
        if found is None:
            raise PushError(404, "not_found", "no such attestation")
        return document(found.resource(), 200, found.path())
