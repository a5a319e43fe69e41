"""Talking to one agent: ``/version``, ``quotes/integrity`` and ``keys/vkey`` over mTLS.

The verifier presents its client certificate; the agent's ``mtls_cert`` (from the tenant's
POST, which took it from the registrar) is the ONLY certificate trusted for the server, as
Keylime's ``web_util.generate_agent_tls_context`` pins it.  Like Keylime, the host name is
not checked: the pinned certificate is the identity, and agents often sit behind NAT.  With
``mtls_cert`` absent or ``"disabled"`` the agent is reached over plain HTTP and a warning is
logged (Keylime does the same, for agents predating API 2.0).

Errors: a timeout, a refused connection or a 5xx is :class:`AgentContactError` (retried by
the engine); any other non-200 or a body that is not the envelope is
:class:`AgentProtocolError`.
"""

from __future__ import annotations

import base64
import json
import logging
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional, Protocol

from attest_protocol.api_version import ApiVersion
from attest_protocol.bootstrap_keys import encrypt_to_nk
from attest_protocol.envelope import parse_envelope
from attest_protocol.errors import ParseError
from verifier_lite.agent_http import KeepAliveConnection
from verifier_lite.errors import AgentContactError, AgentProtocolError

log = logging.getLogger("limelet.verifier")

MTLS_DISABLED = "disabled"
# Keylime retries these codes (cloud_verifier_tornado invoke_get_quote: 408, 500, 599).
_RETRYABLE_STATUS = frozenset({408})
# An agent answer is a quote plus an IMA log slice; 32 MiB bounds a first full IMA log.
MAX_AGENT_RESPONSE_BYTES = 32 * 1024 * 1024


@dataclass(frozen=True)
class QuoteRequest:
    nonce: str
    mask: str
    partial: bool
    ima_ml_entry: int


class AgentChannel(Protocol):
    async def versions(self) -> tuple[ApiVersion, ...]: ...

    async def integrity_quote(
        self, version: ApiVersion, request: QuoteRequest
    ) -> Mapping[str, Any]: ...

    async def provide_v(self, version: ApiVersion, encrypted_v_b64: str) -> None: ...

    async def notify_revocation(self, version: ApiVersion, body: Mapping[str, str]) -> None: ...

    async def aclose(self) -> None: ...


def encrypt_v(public_key_pem: str, v_b64: str) -> str:
    """V encrypted for the agent's NK: RSA-OAEP with SHA-1 (Keylime ``crypto.rsa_encrypt``)."""
    encrypted = encrypt_to_nk(public_key_pem, base64.b64decode(v_b64))
    return base64.b64encode(encrypted).decode("ascii")


def agent_ssl_context(mtls_cert: str, client_cert: str, client_key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # the pinned certificate is the identity (see module doc)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=mtls_cert)
    # The pinned certificate is the trust anchor even when it is a leaf some CA issued.
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.load_cert_chain(client_cert, client_key)
    return ctx


class HttpAgentChannel:
    """``AgentChannel`` over one kept-alive connection per agent (agent_http.py)."""

    def __init__(
        self,
        agent_id: str,
        ip: str,
        port: int,
        *,
        ssl_context: Optional[ssl.SSLContext],
        timeout_seconds: float,
    ) -> None:
        self._agent_id = agent_id
        self._conn = KeepAliveConnection(
            agent_id, ip, port, ssl_context=ssl_context, timeout_seconds=timeout_seconds,
            max_body_bytes=MAX_AGENT_RESPONSE_BYTES,
        )  # fmt: skip

    async def _get(self, path: str, params: Optional[dict[str, str]] = None) -> Mapping[str, Any]:
        return await self._request("GET", path, params=params)

    async def _request(
        self,
        method: str,
        path: str,
        params: Optional[dict[str, str]] = None,
        json: Optional[dict[str, str]] = None,
    ) -> Mapping[str, Any]:
        status, content = await self._conn.request(method, path, params, json)
        return _results(self._agent_id, status, content)

    async def versions(self) -> tuple[ApiVersion, ...]:
        results = await self._get("/version")
        # Agents since rust-keylime 0.2.6 send a list; older ones one version.
        names = results.get("supported_versions") or [results.get("supported_version")]
        versions = []
        for name in names if isinstance(names, list) else []:
            try:
                versions.append(ApiVersion.parse(str(name)))
            except ParseError:
                continue  # a version we cannot read is one we cannot speak
        return tuple(versions)

    async def integrity_quote(
        self, version: ApiVersion, request: QuoteRequest
    ) -> Mapping[str, Any]:
        params = {
            "nonce": request.nonce,
            "mask": request.mask,
            "partial": "1" if request.partial else "0",
            "ima_ml_entry": str(request.ima_ml_entry),
        }
        return await self._get(f"/v{version}/quotes/integrity", params)

    async def provide_v(self, version: ApiVersion, encrypted_v_b64: str) -> None:
        body = {"encrypted_key": encrypted_v_b64}
        await self._request("POST", f"/v{version}/keys/vkey", json=body)

    async def notify_revocation(self, version: ApiVersion, body: Mapping[str, str]) -> None:
        await self._request("POST", f"/v{version}/notifications/revocation", json=dict(body))

    async def aclose(self) -> None:
        await self._conn.aclose()


def _results(agent_id: str, status: int, content: bytes) -> Mapping[str, Any]:
    """The envelope's ``results``, or the error a status or a body means (module doc)."""
    if status >= 500 or status in _RETRYABLE_STATUS:
        raise AgentContactError(agent_id, f"HTTP {status}")
    try:
        envelope = parse_envelope(json.loads(content))
    except (ValueError, ParseError) as exc:
        raise AgentProtocolError(agent_id, "response is not a Keylime envelope") from exc
    if status != 200:
        raise AgentProtocolError(agent_id, f"HTTP {status}: {envelope.status[:120]}")
    return envelope.results
