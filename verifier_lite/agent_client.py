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

import httpx

from attest_protocol.api_version import ApiVersion
from attest_protocol.bootstrap_keys import encrypt_to_nk
from attest_protocol.envelope import parse_envelope
from attest_protocol.errors import ParseError
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
    """``AgentChannel`` over httpx; one connection pool per agent."""

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
        scheme = "http" if ssl_context is None else "https"
        host = f"[{ip}]" if ":" in ip else ip
        self._client = httpx.AsyncClient(
            base_url=f"{scheme}://{host}:{port}",
            verify=ssl_context if ssl_context is not None else False,
            timeout=timeout_seconds,
        )

    async def _get(self, path: str, params: Optional[dict[str, str]] = None) -> Mapping[str, Any]:
        return await self._request("GET", path, params=params)

    async def _request(self, method: str, path: str, **kwargs: Any) -> Mapping[str, Any]:
        try:
            response = await self._client.request(method, path, **kwargs)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            reason = f"{type(exc).__name__}: {str(exc)[:160]}"
            raise AgentContactError(self._agent_id, reason) from exc
        if response.status_code >= 500 or response.status_code in _RETRYABLE_STATUS:
            raise AgentContactError(self._agent_id, f"HTTP {response.status_code}")
        if len(response.content) > MAX_AGENT_RESPONSE_BYTES:
            raise AgentProtocolError(self._agent_id, "response too large")
        try:
            envelope = parse_envelope(json.loads(response.content))
        except (ValueError, ParseError) as exc:
            raise AgentProtocolError(self._agent_id, "response is not a Keylime envelope") from exc
        if response.status_code != 200:
            raise AgentProtocolError(
                self._agent_id, f"HTTP {response.status_code}: {envelope.status[:120]}"
            )
        return envelope.results

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
        await self._client.aclose()
