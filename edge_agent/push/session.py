"""Authentication: a session opened by TPM proof of possession, giving a bearer token.

``POST /v3.0/sessions`` returns a challenge; the AK certifies itself over it (TPM2_Certify,
``Tpm.certify_ak``) and ``PATCH /v3.0/sessions/{id}`` returns the token when the verifier's
evaluation is "pass" (Keylime keylime/web/verifier/session_controller.py; rust-keylime
keylime/src/auth.rs).  Each attempt is a fresh session; a failed one is deleted by the
verifier.  rust-keylime tries 3 times, 1 s apart (auth.rs DEFAULT_AUTH_MAX_RETRIES); so do we.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from edge_agent.push.errors import BadVerifierResponse, PushError, VerifierRefused
from edge_agent.push.jsonapi import attributes, b64, b64decode, document, field, resource
from edge_agent.push.transport import PushResponse, retry_after_seconds

__all__ = [
    "AUTH_ATTEMPTS",
    "AUTH_RETRY_SECONDS",
    "Challenge",
    "Requester",
    "authenticate",
    "parse_challenge",
    "parse_token",
    "proof_request",
    "session_request",
]

log = logging.getLogger(__name__)

API = "/v3.0"
AUTH_ATTEMPTS = 3
AUTH_RETRY_SECONDS = 1.0
# Session calls carry Accept: */* (PROTOCOL.md §0).
ANY = "*/*"
_POP = {"authentication_class": "pop", "authentication_type": "tpm_pop"}


class Requester(Protocol):
    async def request(
        self, method: str, path: str, doc: Any, token: str | None, accept: str
    ) -> PushResponse: ...


class Certifier(Protocol):
    async def certify_ak(self, qualifying_data: bytes) -> tuple[bytes, bytes]: ...


@dataclass(frozen=True)
class Challenge:
    session_id: str
    challenge: bytes


def session_request(agent_id: str) -> dict[str, Any]:
    attrs = {"agent_id": agent_id, "authentication_supported": [dict(_POP)]}
    return document("session", attrs)


def parse_challenge(doc: Any) -> Challenge:
    """The session id and the raw challenge of the tpm_pop method the verifier asked for."""
    session_id = field(resource(doc), "id", str)
    for method in field(attributes(doc), "authentication_requested", list):
        if isinstance(method, dict) and all(method.get(k) == v for k, v in _POP.items()):
            params = field(method, "chosen_parameters", dict)
            challenge = b64decode(field(params, "challenge", str), "challenge")
            if not challenge or len(challenge) > 64:
                raise BadVerifierResponse(f"a {len(challenge)}-byte challenge does not fit")
            return Challenge(session_id, challenge)
    raise BadVerifierResponse("the verifier requested no tpm_pop authentication")


def proof_request(
    agent_id: str, session_id: str, message: bytes, signature: bytes
) -> dict[str, Any]:
    proof = dict(_POP, data={"message": b64(message), "signature": b64(signature)})
    attrs = {"agent_id": agent_id, "authentication_provided": [proof]}
    return document("session", attrs, session_id)


def parse_token(doc: Any) -> str:
    """The bearer token of a session whose evaluation is "pass"; PushError otherwise."""
    attrs = attributes(doc)
    evaluation = attrs.get("evaluation")
    if evaluation != "pass":
        # Unenrolled agent or expired challenge (session_controller.py update_session).
        raise PushError(f"the verifier's evaluation of the proof is {evaluation!r}")
    token: str = field(attrs, "token", str)
    return token


def _expect(response: PushResponse, what: str, status: int = 200) -> Any:
    if response.status != status:
        retry = retry_after_seconds(response.headers.get("retry-after"))
        raise VerifierRefused(what, response.status, retry, response.body[:200].decode("latin-1"))
    return response.json()


async def open_session(client: Requester, tpm: Certifier, agent_id: str) -> str:
    """One session: challenge, proof, token."""
    answer = await client.request("POST", f"{API}/sessions", session_request(agent_id), None, ANY)
    challenge = parse_challenge(_expect(answer, "opening a session"))
    message, signature = await tpm.certify_ak(challenge.challenge)
    proof = proof_request(agent_id, challenge.session_id, message, signature)
    path = f"{API}/sessions/{challenge.session_id}"
    answer = await client.request("PATCH", path, proof, None, ANY)
    return parse_token(_expect(answer, "proving possession of the AK"))


async def authenticate(client: Requester, tpm: Certifier, agent_id: str) -> str:
    """``open_session`` up to AUTH_ATTEMPTS times; the last error propagates.

    A 429 waits its Retry-After instead of the usual second (rate_limiter.py answers it).
    """
    for attempt in range(1, AUTH_ATTEMPTS + 1):
        try:
            token = await open_session(client, tpm, agent_id)
            log.info("Authenticated to the verifier (attempt %d)", attempt)
            return token
        except PushError as exc:
            if attempt == AUTH_ATTEMPTS:
                raise
            wait = AUTH_RETRY_SECONDS
            if isinstance(exc, VerifierRefused) and exc.retry_after is not None:
                wait = max(wait, exc.retry_after)
            log.warning("Authentication attempt %d failed: %s; again in %.0f s", attempt, exc, wait)
            await trio.sleep(wait)
    raise AssertionError("unreachable")
