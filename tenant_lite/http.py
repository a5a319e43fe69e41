"""One client per service: mTLS contexts, API version negotiation, envelope decoding.

The tenant is a one-shot command, so it speaks synchronous httpx: each command makes a few
requests in sequence and nothing runs concurrently. Transport failures become
:class:`UnreachableError` naming the service, its address and, for TLS, the certificate and
CA involved; bodies that are not the Keylime ``{code, status, results}`` envelope become
:class:`ServiceError`.

Proxies from the environment are ignored (``trust_env=False``): the tenant talks to the
addresses in its config and nowhere else.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from typing import Any, Optional

import httpx

from attest_protocol.api_version import (
    CURRENT_VERSION,
    SUPPORTED_VERSIONS,
    ApiVersion,
    negotiate,
)
from attest_protocol.envelope import Envelope, parse_envelope
from attest_protocol.errors import ApiVersionError, ParseError
from tenant_lite.config import TenantConfig
from tenant_lite.errors import ConfigError, NotFoundError, ServiceError, UnreachableError

VERSION_PATH = "/version"
# A push-mode Keylime verifier answers GET /version with 410 Gone
# (keylime/web/verifier/server_info_controller.py ``show_versions``); its v2 admin routes still
# work, so the tenant uses its own newest version, as keylime/tenant.py
# ``_fetch_server_versions`` falls back to ``current_version()``.
VERSION_GONE = 410
FALLBACK_VERSION = CURRENT_VERSION
# Error texts from a service are shown to the operator; a hostile one is cut short.
MAX_SHOWN_STATUS_CHARS = 300


def service_ssl_context(config: TenantConfig) -> tuple[ssl.SSLContext, str]:
    """The mTLS context for verifier and registrar, and a description of its trust anchor."""
    ca = config.tls_path(config.trusted_server_ca)
    cert = config.tls_path(config.client_cert)
    key = config.tls_path(config.client_key)
    for option, path in (("trusted_server_ca", ca), ("client_cert", cert), ("client_key", key)):
        if not path.is_file():
            raise ConfigError(option, f"{path} does not exist (set tls_dir or {option})")
    try:
        ctx = ssl.create_default_context(cafile=str(ca))
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError("client_cert", f"{cert} / {key} cannot be loaded: {exc}") from exc
    return ctx, str(ca)


def agent_ssl_context(config: TenantConfig, agent_cert_pem: str) -> ssl.SSLContext:
    """Trust exactly the agent's registered ``mtls_cert``; present the tenant's client cert.

    The hostname check is off because the pinned certificate is the whole trust decision: an
    agent's self-signed certificate need not name the address it is reached at (Keylime's
    tenant pins the same way, web_util.generate_tls_context with ca_cert_string).
    """
    cert = config.tls_path(config.client_cert)
    key = config.tls_path(config.client_key)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    try:
        ctx.load_verify_locations(cadata=agent_cert_pem)
        ctx.load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError("client_cert", f"agent TLS context: {exc}") from exc
    return ctx


def _ssl_cause(exc: BaseException) -> Optional[ssl.SSLError]:
    seen: Optional[BaseException] = exc
    for _ in range(10):  # httpx -> httpcore -> ssl: a short chain
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def describe_transport_error(exc: httpx.TransportError, trust: str) -> str:
    """What went wrong on the wire, phrased as what the operator should check."""
    cause = _ssl_cause(exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        return (
            f"its TLS certificate does not verify against {trust} "
            f"({cause.verify_message}); check the CA the tenant trusts for it"
        )
    if cause is not None:
        return (
            f"TLS handshake failed ({cause.reason or cause}); check that the tenant's client "
            "certificate is issued by a CA the service trusts"
        )
    if isinstance(exc, httpx.RemoteProtocolError):
        # With TLS 1.3 a server that rejects the client certificate says so only after the
        # handshake, and httpx sees a closed connection.
        return (
            "it closed the connection without an answer; check that the tenant's client "
            "certificate is issued by a CA the service trusts"
        )
    if isinstance(exc, httpx.TimeoutException):
        return "no answer before the request timeout"
    return f"connection failed ({exc or type(exc).__name__}); is it running at that address?"


class ServiceClient:
    """Requests to one service under ``/v{negotiated}``; ``close()`` when done."""

    def __init__(
        self,
        service: str,
        base_url: str,
        ctx: Optional[ssl.SSLContext],
        trust: str,
        timeout: float,
    ) -> None:
        self.service = service
        self.address = base_url.split("://", 1)[-1]
        self._trust = trust
        self._client = httpx.Client(
            base_url=base_url,
            verify=ctx if ctx is not None else False,
            timeout=timeout,
            trust_env=False,
        )
        self._version: Optional[ApiVersion] = None

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            reason = describe_transport_error(exc, self._trust)
            raise UnreachableError(self.service, self.address, reason) from exc

    def _envelope(self, response: httpx.Response) -> Envelope:
        if response.status_code == httpx.codes.NO_CONTENT:
            # Keylime's verifier answers DELETE /allowlists/{name} with a bare 204.
            return Envelope(response.status_code, "Success", {})
        try:
            return parse_envelope(response.json())
        except (ValueError, ParseError) as exc:
            raise ServiceError(
                self.service,
                self.address,
                response.status_code,
                "the body is not a Keylime {code, status, results} envelope",
            ) from exc

    def version(self) -> ApiVersion:
        """The highest API version both sides speak, asked once per client."""
        if self._version is None:
            response = self._send("GET", VERSION_PATH)
            if response.status_code == VERSION_GONE:
                self._version = FALLBACK_VERSION
                return self._version
            env = self._envelope(response)
            self._version = negotiate(SUPPORTED_VERSIONS, _offered_versions(env))
        return self._version

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Optional[Mapping[str, Any]] = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> Envelope:
        """``path`` without the version prefix; returns the envelope whatever its code."""
        try:
            prefix = f"/v{self.version()}"
        except ApiVersionError as exc:
            raise ServiceError(
                self.service,
                self.address,
                0,
                f"no common API version (limelet speaks {_ours()})",
            ) from exc
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = dict(body)
        if params:
            kwargs["params"] = dict(params)
        return self._envelope(self._send(method, prefix + path, **kwargs))

    def checked(
        self,
        method: str,
        path: str,
        what: str,
        *,
        body: Optional[Mapping[str, Any]] = None,
        params: Optional[Mapping[str, str]] = None,
    ) -> Envelope:
        """Like ``call`` but 404 raises NotFoundError(``what``) and other failures ServiceError."""
        env = self.call(method, path, body=body, params=params)
        raise_for(env, self.service, self.address, what)
        return env


def raise_for(env: Envelope, service: str, address: str, what: str) -> None:
    if env.code == httpx.codes.NOT_FOUND:
        raise NotFoundError(service, address, what)
    if not env.ok:
        raise ServiceError(service, address, env.code, env.status[:MAX_SHOWN_STATUS_CHARS])


def _ours() -> str:
    return ", ".join(str(v) for v in SUPPORTED_VERSIONS)


def _offered_versions(env: Envelope) -> list[ApiVersion]:
    """``supported_versions`` (Keylime 7.x), else ``supported_version`` or ``current_version``."""
    offered = env.results.get("supported_versions")
    if not isinstance(offered, list):
        # rust-keylime agents before API 2.3 answer a single "supported_version".
        single = env.results.get("supported_version", env.results.get("current_version"))
        offered = [single]
    versions = []
    for text in offered:
        if isinstance(text, str):
            try:
                versions.append(ApiVersion.parse(text))
            except ParseError:
                continue  # a version we cannot read is one we do not speak (e.g. "3.0-rc")
    return versions
