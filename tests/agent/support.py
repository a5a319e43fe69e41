"""Test peers for the agent: a registrar that speaks real HTTP/1.1, a software TPM, a listener.

* ``MemoryListener`` -- a ``trio.abc.Listener`` over in-memory stream pairs, so the agent's
  HTTP client and the fake registrar talk through real bytes while virtual time
  (``autojump_clock``) drives the backoff.
* ``FakeRegistrar`` -- Keylime's registration endpoints over h11: GET /version, POST
  /v{ver}/agents/{id} answering with a real MakeCredential blob, PUT .../activate checking
  the HMAC exactly as Keylime's ``verify_ak_response`` does.  Knobs make it fail with 503,
  refuse with 403 or 400, or lack /version.
* ``SoftTpm`` -- the agent's ``Tpm`` Protocol over software keys; ActivateCredential is the
  reference implementation in tests/unit/soft_tpm.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Optional

import h11
import trio
import trio.testing
from cryptography.hazmat.primitives.asymmetric import rsa

from attest_protocol.credential import make_credential
from attest_protocol.quote import KeylimeQuote
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.tpm import AkInfo, EkCertificateMissing, EkInfo
from tests.unit.soft_tpm import activate, ek_public_bytes

ALL_VERSIONS = ("2.1", "2.2", "2.3", "2.4", "2.5", "2.6")
_AGENT_PATH = re.compile(r"/v(\d+\.\d+)/agents/([\w.-]+)(/activate)?")
EK_CERT_NV_INDEX = 0x01C00002


class MemoryListener(trio.abc.Listener[trio.abc.Stream]):
    """Hands the server end of a fresh memory stream pair to ``accept`` per ``connect``."""

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[trio.abc.Stream](0)
        self.connections = 0

    async def connect(self) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self.connections += 1
        await self._send.send(server)
        return client

    async def accept(self) -> trio.abc.Stream:
        return await self._receive.receive()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


@dataclass
class Agent:
    body: dict[str, Any]
    key: str
    active: bool = False


@dataclass
class FakeRegistrar:
    versions: Optional[tuple[str, ...]] = ALL_VERSIONS
    accepted_versions: tuple[str, ...] = ALL_VERSIONS
    fail_first: int = 0
    forbid: bool = False
    reject_registration: bool = False
    requests: list[tuple[str, str]] = field(default_factory=list)
    agents: dict[str, Agent] = field(default_factory=dict)

    async def handle(self, stream: trio.abc.Stream) -> None:
        async with stream:
            conn = h11.Connection(h11.SERVER)
            method, target, body = await _read_request(conn, stream)
            self.requests.append((method, target))
            status, status_text, results = self.answer(method, target, body)
            payload = json.dumps({"code": status, "status": status_text, "results": results})
            data = payload.encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(data)))]
            out = conn.send(h11.Response(status_code=status, headers=headers)) or b""
            out += (conn.send(h11.Data(data=data)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
            await stream.send_all(out)

    def answer(self, method: str, target: str, body: bytes) -> tuple[int, str, dict[str, Any]]:
        if len(self.requests) <= self.fail_first:
            return 503, "Service Unavailable", {}
        if method == "GET" and target == "/version":
            if self.versions is None:
                return 404, "Not Found", {}
            current = self.versions[-1]
            return (
                200,
                "Success",
                {"current_version": current, "supported_versions": list(self.versions)},
            )
        match = _AGENT_PATH.fullmatch(target)
        if match is None:
            return 404, "Not Found", {}
        version, agent_id, activate_suffix = match.groups()
        if version not in self.accepted_versions:
            return 400, f"API version not supported: v{version}", {}
        if method == "POST" and not activate_suffix:
            return self.register(agent_id, json.loads(body))
        if method == "PUT" and activate_suffix:
            return self.activate(agent_id, json.loads(body)["auth_tag"])
        return 405, "Method Not Allowed", {}

    def register(self, agent_id: str, body: dict[str, Any]) -> tuple[int, str, dict[str, Any]]:
        if self.forbid:
            return 403, "Agent re-registration with different TPM identity is forbidden", {}
        if self.reject_registration:
            return 400, "Could not register agent with invalid data", {}
        ek = parse_tpm2b_public(base64.b64decode(body["ek_tpm"]))
        ak = parse_tpm2b_public(base64.b64decode(body["aik_tpm"]))
        # As Keylime's encrypt_aik_with_ek: 32 random letters and digits, key = their Base64.
        alphabet = string.ascii_letters + string.digits
        challenge = "".join(secrets.choice(alphabet) for _ in range(32)).encode()
        blob = make_credential(ek, ak.name(), challenge)
        self.agents[agent_id] = Agent(body, base64.b64encode(challenge).decode())
        return 200, "Success", {"blob": base64.b64encode(blob).decode()}

    def activate(self, agent_id: str, tag: str) -> tuple[int, str, dict[str, Any]]:
        agent = self.agents[agent_id]
        expected = hmac.new(agent.key.encode(), agent_id.encode(), hashlib.sha384).hexdigest()
        if not hmac.compare_digest(tag, expected):
            return 400, f"Auth tag '{tag}' for agent '{agent_id}' does not match", {}
        agent.active = True
        return 200, "Success", {}

    async def serve(
        self,
        listeners: list[trio.abc.Listener[trio.abc.Stream]],
        *,
        task_status: trio.TaskStatus[list[trio.abc.Listener[trio.abc.Stream]]] = (
            trio.TASK_STATUS_IGNORED
        ),
    ) -> None:
        await trio.serve_listeners(self.handle, listeners, task_status=task_status)


async def _read_request(conn: h11.Connection, stream: trio.abc.Stream) -> tuple[str, str, bytes]:
    method = target = ""
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request):
            method, target = event.method.decode(), event.target.decode()
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return method, target, body
        else:
            raise AssertionError(f"unexpected {event!r}")


class SoftTpm:
    """The ``Tpm`` Protocol over software keys (only what registration uses)."""

    def __init__(self, ek_key: rsa.RSAPrivateKey, ak_key: rsa.RSAPrivateKey) -> None:
        self._ek_key = ek_key
        self.ek_public = ek_public_bytes(ek_key)
        # Any TPM2B_PUBLIC has a Name; registration needs nothing else from the AK.
        self.ak_public = ek_public_bytes(ak_key)
        self.closed = False
        self.activations = 0

    async def ek(self) -> EkInfo:
        return EkInfo(self.ek_public, 0x80000000, "rsa")

    async def ek_certificate(self) -> bytes:
        raise EkCertificateMissing(EK_CERT_NV_INDEX, "RSA 2048")

    async def ak(self) -> AkInfo:
        name = parse_tpm2b_public(self.ak_public).name()
        return AkInfo(self.ak_public, name, "sha256", "rsassa", created=False)

    async def read_pcrs(self, hash_alg: str, pcrs: Iterable[int]) -> dict[int, bytes]:
        raise NotImplementedError("not needed for registration")

    async def bind_data_pcr(self, nk_public_pem: bytes) -> None:
        raise NotImplementedError("not needed for registration")

    async def quote(self, nonce: bytes, mask: int, hash_alg: Optional[str] = None) -> KeylimeQuote:
        raise NotImplementedError("not needed for registration")

    async def bound_quote(
        self, nk_public_pem: bytes, nonce: bytes, mask: int, hash_alg: Optional[str] = None
    ) -> KeylimeQuote:
        raise NotImplementedError("not needed for registration")

    async def certify_ak(self, qualifying_data: bytes) -> tuple[bytes, bytes]:
        raise NotImplementedError("not needed for registration")

    async def activate_credential(self, blob: bytes) -> bytes:
        self.activations += 1
        ek = parse_tpm2b_public(self.ek_public)
        return activate(self._ek_key, ek, parse_tpm2b_public(self.ak_public).name(), blob)

    async def aclose(self) -> None:
        self.closed = True
