"""``POST /v3.0/sessions`` and ``PATCH /v3.0/sessions/{id}``: TPM proof of possession.

Keylime 7.14.3 keylime/web/verifier/session_controller.py.  Creation always succeeds for a
well-formed request (enrolment is checked only at the proof).  The proof's checks, in
Keylime's order: agent_id present (400), the session pending (404), the same agent_id (400),
the challenge unexpired and the agent enrolled (else 200 with ``evaluation: fail``), the
proof itself (401 ``fail``).  Every failed proof ends the session, so a challenge is
answered at most once.  Both answers are ``application/json``, as Keylime's are.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import TYPE_CHECKING, Any, Optional

from quart import Response, request
from quart_trio import QuartTrio

from attest_protocol.errors import AttestProtocolError
from attest_protocol.tpm2.public import parse_tpm2b_public
from verifier_lite.push.attestations import iso
from verifier_lite.push.enrol import is_push_agent
from verifier_lite.push.errors import PushError, bad_request
from verifier_lite.push.pop import ProofError, verify_proof
from verifier_lite.push.sessions import Session

if TYPE_CHECKING:
    from verifier_lite.push.routes import PushState

POP = {"authentication_class": "pop", "authentication_type": "tpm_pop"}


def _pop_item(items: Any, key: str) -> dict[str, Any]:
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and all(item.get(k) == v for k, v in POP.items()):
            return item
    raise bad_request(f"{key} must offer tpm_pop")


def _agent_id(attrs: dict[str, Any]) -> str:
    agent_id = attrs.get("agent_id")
    if not isinstance(agent_id, str) or not 0 < len(agent_id) <= 255:
        raise bad_request("agent_id is required")
    return agent_id


def _view(
    session: Session,
    evaluation: Optional[str] = None,
    proof: Optional[dict[str, str]] = None,
    **extra: Any,
) -> Response:
    """The session document; after a proof, its ``authentication`` echoes the proof (the
    push agent's SessionIdResponseAuth requires ``data``, keylime/src/structures/sessions.rs)."""
    requested: dict[str, Any] = {**POP, "chosen_parameters": {"challenge": _b64(session.challenge)}}
    if proof is not None:
        requested["data"] = proof
    attrs: dict[str, Any] = {"agent_id": session.agent_id}
    if evaluation is not None:
        attrs["evaluation"] = evaluation
    attrs.update(extra)
    attrs["authentication_requested" if evaluation is None else "authentication"] = [requested]
    attrs["created_at"] = iso(session.created_at)
    attrs["challenges_expire_at"] = iso(session.challenges_expire_at)
    body = {"data": {"type": "session", "id": session.session_id, "attributes": attrs}}
    return Response(json.dumps(body), status=200, content_type="application/json")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _proof_parts(attrs: dict[str, Any]) -> tuple[bytes, bytes]:
    data = _pop_item(attrs.get("authentication_provided"), "authentication_provided").get("data")
    try:
        if not isinstance(data, dict):
            raise ValueError
        return (
            base64.b64decode(data["message"], validate=True),
            base64.b64decode(data["signature"], validate=True),
        )
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise bad_request("tpm_pop data needs base64 message and signature") from None


def session_routes(app: QuartTrio, state: PushState, limit: int) -> None:
    from verifier_lite.push.routes import attributes

    @app.post("/v3.0/sessions")
    async def create_session() -> Response:
        attrs = await attributes(limit, "session")
        agent_id = _agent_id(attrs)
        _pop_item(attrs.get("authentication_supported"), "authentication_supported")
        address = request.remote_addr or "unknown"
        return _view(state.sessions.create(agent_id, address))

    @app.patch("/v3.0/sessions/<session_id>")
    async def prove(session_id: str) -> Response:
        attrs = await attributes(limit, "session")
        agent_id = _agent_id(attrs)
        session = state.sessions.pending(session_id)
        if session is None:
            raise PushError(404, "not_found", "no such session")
        if session.agent_id != agent_id:
            raise bad_request("agent_id does not match the session")
        message, signature = _proof_parts(attrs)
        received: dict[str, Any] = {"response_received_at": iso(state.clock())}
        received["proof"] = {"message": _b64(message), "signature": _b64(signature)}
        state.sessions.discard(session_id)  # single use, whatever follows
        agent = await state.verifier.store.get_agent(agent_id)
        expired = state.clock() >= session.challenges_expire_at
        if expired or agent is None or not is_push_agent(agent):
            return _view(session, "fail", **received)
        try:
            ak = parse_tpm2b_public(base64.b64decode(agent.ak_tpm))
            verify_proof(ak, session.challenge, message, signature, agent.accept_tpm_hash_algs)
        except (ProofError, AttestProtocolError, binascii.Error):
            response = _view(session, "fail", **received)
            response.status_code = 401
            return response
        state.sessions.restore(session)
        token = await state.activate(session)
        expires: dict[str, Any] = {"token_expires_at": iso(session.token_expires_at)}
        return _view(session, "pass", token=token, **received, **expires)
