"""A scripted push verifier and a software TPM for the push agent's unit tests.

``FakeVerifier.request`` stands in for ``PushClient.request``: it answers the API 3.0 routes
as Keylime 7.14.3 does in the capture (PROTOCOL.md §3-5), records every request, and lets a
test queue other answers per route ("sessions", "proof", "negotiate", "evidence").
"""

from __future__ import annotations

import base64
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Optional

import trio
from cryptography.hazmat.primitives.asymmetric import rsa

from attest_protocol.quote import KeylimeQuote
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.push.errors import VerifierUnreachable
from edge_agent.push.transport import PushResponse
from edge_agent.tpm import AkInfo
from tests.unit.soft_tpm import ek_public_bytes

AGENT_ID = "push-unit-agent"
CHALLENGE = bytes(range(16))
QUOTE_CHALLENGE = bytes(range(100, 116))
TOKEN_TAIL = "s3cr3t"  # noqa: S105 -- a fake token for a fake verifier


def make_ak() -> AkInfo:
    public = ek_public_bytes(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return AkInfo(public, parse_tpm2b_public(public).name(), "sha256", "rsassa", created=False)


class FakeTpm:
    """Certify and quote in software: the bytes only need to reach the verifier intact."""

    def __init__(self, ak: AkInfo) -> None:
        self._ak = ak
        self.certified: list[bytes] = []
        self.quotes: list[tuple[bytes, int, Optional[str]]] = []

    async def ak(self) -> AkInfo:
        return self._ak

    async def certify_ak(self, qualifying_data: bytes) -> tuple[bytes, bytes]:
        self.certified.append(qualifying_data)
        return b"attest:" + qualifying_data, b"signature"

    async def quote(self, nonce: bytes, mask: int, hash_alg: Optional[str] = None) -> KeylimeQuote:
        self.quotes.append((nonce, mask, hash_alg))
        return KeylimeQuote(b"quote:" + nonce, b"quote-signature", b"pcr-blob")


@dataclass
class Seen:
    method: str
    path: str
    doc: Any
    token: Optional[str]
    accept: str
    at: float


def response(status: int, doc: Any = None, **headers: str) -> PushResponse:
    body = b"" if doc is None else json.dumps(doc).encode()
    return PushResponse(status, {k.replace("_", "-"): v for k, v in headers.items()}, body)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def quote_requested(pcrs: list[int]) -> dict[str, Any]:
    params = {
        "challenge": b64(QUOTE_CHALLENGE),
        "signature_scheme": "rsassa",
        "hash_algorithm": "sha256",
        "selected_subjects": {"sha256": pcrs},
    }
    return {
        "evidence_class": "certification",
        "evidence_type": "tpm_quote",
        "chosen_parameters": params,
    }


def ima_requested(offset: int) -> dict[str, Any]:
    params = {"starting_offset": offset, "format": "text/plain"}
    return {"evidence_class": "log", "evidence_type": "ima_log", "chosen_parameters": params}


@dataclass
class FakeVerifier:
    next_seconds: float = 2
    requested: list[dict[str, Any]] = field(
        default_factory=lambda: [quote_requested([10, 23]), ima_requested(0)]
    )
    seen: list[Seen] = field(default_factory=list)
    queued: dict[str, deque[Any]] = field(default_factory=lambda: defaultdict(deque))
    sessions: int = 0
    index: int = 0

    def queue(self, route: str, *answers: Any) -> None:
        """Answers (a PushResponse, or an exception to raise) for the next calls of ``route``."""
        self.queued[route].extend(answers)

    def valid_tokens(self) -> set[str]:
        return {f"s{n}.{TOKEN_TAIL}" for n in range(1, self.sessions + 1)}

    async def request(
        self, method: str, path: str, doc: Any, token: Optional[str], accept: str
    ) -> PushResponse:
        await trio.lowlevel.checkpoint()
        self.seen.append(Seen(method, path, doc, token, accept, trio.current_time()))
        route = _route(method, path)
        if self.queued[route]:
            answer = self.queued[route].popleft()
            if isinstance(answer, Exception):
                raise answer
            assert isinstance(answer, PushResponse)
            return answer
        handler = {
            "sessions": self._sessions,
            "proof": self._proof,
            "negotiate": self._negotiate,
            "evidence": self._evidence,
        }[route]
        return handler(path, doc)

    def _sessions(self, path: str, doc: Any) -> PushResponse:
        self.sessions += 1
        method: dict[str, Any] = {"authentication_class": "pop", "authentication_type": "tpm_pop"}
        method["chosen_parameters"] = {"challenge": b64(CHALLENGE)}
        attrs = {"agent_id": AGENT_ID, "authentication_requested": [method]}
        return response(
            200, {"data": {"type": "session", "id": f"s{self.sessions}", "attributes": attrs}}
        )

    def _proof(self, path: str, doc: Any) -> PushResponse:
        session_id = path.rsplit("/", 1)[1]
        attrs = {"evaluation": "pass", "token": f"{session_id}.{TOKEN_TAIL}"}
        return response(200, {"data": {"type": "session", "id": session_id, "attributes": attrs}})

    def _negotiate(self, path: str, doc: Any) -> PushResponse:
        attrs = {"stage": "awaiting_evidence", "evidence_requested": self.requested}
        location = f"/v3.0/agents/{AGENT_ID}/attestations/{self.index}"
        self.index += 1
        return response(
            201, {"data": {"type": "attestation", "attributes": attrs}}, location=location
        )

    def _evidence(self, path: str, doc: Any) -> PushResponse:
        body: dict[str, Any] = {
            "data": {"type": "attestation", "attributes": {"stage": "evaluating_evidence"}},
            "meta": {"seconds_to_next_attestation": self.next_seconds},
        }
        return response(202, body, location=f"/3/agents/{AGENT_ID}/attestations/0")


def _route(method: str, path: str) -> str:
    if path == "/v3.0/sessions":
        return "sessions"
    if path.startswith("/v3.0/sessions/"):
        return "proof"
    if method == "POST":
        return "negotiate"
    return "evidence"


UNREACHABLE = VerifierUnreachable("connection refused")
