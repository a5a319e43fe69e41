"""Registering the agent with a Keylime registrar and activating it.

The exchange (keylime/src/registrar_client.rs and agent_registration.rs in rust-keylime; the
registrar side in keylime/web/registrar/agents_controller.py of Keylime 7.14):

1. ``GET /version`` -> ``current_version`` and ``supported_versions``; the agent uses the
   newest version both sides have.  A registrar without /version gets the agent's enabled
   versions tried newest first.
2. ``POST /v{ver}/agents/{id}`` with the EK, its certificate, the AK, the mTLS certificate
   and the contact address; the answer's ``blob`` is a credential only the TPM holding both
   the EK and the AK can open.
3. TPM2_ActivateCredential of the blob, then ``PUT /v{ver}/agents/{id}/activate`` with
   ``auth_tag`` = hex HMAC-SHA384 keyed with the Base64 text of the recovered secret over the
   agent id (the registrar's ``verify_ak_response``: ``crypto.do_hmac(key, agent_id)`` with
   key = ``base64(challenge)``).

Each request is retried with exponential backoff while the registrar is unreachable or
answers 5xx.  A 403 means the id is already registered with another TPM; it and any other 4xx
stop the agent without retrying.

::

    RegistrarError                  base
    ├── RegistrarUnavailable        unreachable, timing out or answering 5xx after all retries
    ├── RegistrationForbidden       403: the id is bound to another TPM
    ├── RegistrationRejected        another 4xx; carries the status and the registrar's text
    ├── RegistrarProtocolError      an answer that is not what a Keylime registrar sends
    └── NoCommonApiVersion          the registrar serves none of the enabled API versions
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from dataclasses import dataclass
from typing import Any, Optional

from attest_protocol.api_version import ApiVersion, negotiate
from attest_protocol.bootstrap_keys import hmac_sha384_hex
from attest_protocol.envelope import Envelope, parse_envelope
from attest_protocol.errors import ApiVersionError, AttestProtocolError
from edge_agent.backoff import retry
from edge_agent.http_client import (
    Connector,
    HttpConnectError,
    HttpConnectionLost,
    HttpError,
    HttpTimeout,
    Limits,
    request,
    tcp_connector,
)
from edge_agent.tpm.protocol import Tpm

__all__ = [
    "NoCommonApiVersion",
    "Registration",
    "RegistrarClient",
    "RegistrarError",
    "RegistrarProtocolError",
    "RegistrarUnavailable",
    "RegistrationForbidden",
    "RegistrationRejected",
    "auth_tag",
    "register_and_activate",
]

log = logging.getLogger(__name__)

# rust-keylime's registrar client times out after 5000 ms (https_client.rs default).
REGISTRAR_CONNECT_TIMEOUT_S = 5.0
# The registrar runs MakeCredential before answering; a loaded one may take seconds.
REGISTRAR_IO_TIMEOUT_S = 30.0
# The largest answer is the registration's credential blob, well under 2 KiB in Base64;
# 64 KiB leaves room for verbose error pages and refuses anything else.
MAX_REGISTRAR_RESPONSE_BYTES = 64 * 1024
DEFAULT_LIMITS = Limits(
    REGISTRAR_CONNECT_TIMEOUT_S, REGISTRAR_IO_TIMEOUT_S, MAX_REGISTRAR_RESPONSE_BYTES
)
# How much of a registrar's error text is kept in our messages.
MAX_STATUS_TEXT_CHARS = 300
MTLS_DISABLED = "disabled"
HTTP_FORBIDDEN = 403


class RegistrarError(Exception):
    """Registration or activation did not succeed."""


class RegistrarUnavailable(RegistrarError):
    pass


class RegistrationForbidden(RegistrarError):
    """403: the id is registered with another EK, EK certificate or AK.

    Keylime's 403 names no field, but the agent knows whether it made a new AK at this start
    (``ak_created``): then the AK is what changed, and the usual cause is a lost or unusable
    AK file (e.g. after swapping agents) rather than another TPM.
    """

    def __init__(self, agent_id: str, status_text: str, ak_created: Optional[bool] = None) -> None:
        head = f"the registrar refused agent id {agent_id!r} (403 Forbidden: {status_text}): "
        regdelete = f"keylime_tenant -c regdelete -u {agent_id}"
        if ak_created:
            detail = (
                "the AK changed: this start made a new AK because none could be reused from "
                "agent_data_path (default keylime_dir/agent_data.json). Put back the "
                "agent_data.json the previous agent wrote for this TPM, with the same "
                "tpm_hash_alg and tpm_signing_alg, and restart; or, if a new AK is intended, "
                f"delete the old registration ({regdelete}) and restart."
            )
        elif ak_created is False:
            detail = (
                "the EK or EK certificate changed (the AK was reloaded unchanged): this is "
                "another TPM, or its endorsement hierarchy was reset. Delete the old "
                f"registration ({regdelete}) or configure another uuid."
            )
        else:
            detail = (
                "this id is already registered with another TPM identity. Delete the old "
                f"registration ({regdelete}) or configure another uuid."
            )
        super().__init__(head + detail)
        self.agent_id = agent_id
        self.status_text = status_text
        self.ak_created = ak_created


class RegistrationRejected(RegistrarError):
    def __init__(self, what: str, status: int, status_text: str) -> None:
        super().__init__(f"the registrar rejected {what} ({status}): {status_text}")
        self.status = status
        self.status_text = status_text


class RegistrarProtocolError(RegistrarError):
    pass


class NoCommonApiVersion(RegistrarError):
    pass


class _ServerError(Exception):
    """A 5xx answer: transient, retried like an unreachable registrar."""

    def __init__(self, status: int) -> None:
        super().__init__(f"the registrar answered {status}")


_TRANSIENT = (HttpConnectError, HttpTimeout, HttpConnectionLost, _ServerError)


@dataclass(frozen=True)
class Registration:
    """What the agent registers.  TPM structures and the EK certificate are raw bytes."""

    agent_id: str
    ek_tpm: bytes
    ek_cert_der: Optional[bytes]
    aik_tpm: bytes
    mtls_cert_pem: Optional[str]
    contact_ip: str
    contact_port: int
    # Not sent: whether the AK was made at this start, so a 403 can say what changed.
    ak_created: Optional[bool] = None

    def to_json(self) -> dict[str, Any]:
        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode("ascii")

        return {
            "ekcert": None if self.ek_cert_der is None else b64(self.ek_cert_der),
            "ek_tpm": b64(self.ek_tpm),
            "aik_tpm": b64(self.aik_tpm),
            "mtls_cert": self.mtls_cert_pem or MTLS_DISABLED,
            "ip": self.contact_ip,
            "port": self.contact_port,
        }


def auth_tag(secret: bytes, agent_id: str) -> str:
    """The activation proof: hex HMAC-SHA384, key = Base64 text of ``secret``, msg = id."""
    return hmac_sha384_hex(base64.b64encode(secret), agent_id)


class RegistrarClient:
    """Requests to one registrar, each retried through ``schedule`` (seconds)."""

    def __init__(
        self,
        host: str,
        port: int,
        schedule: tuple[float, ...],
        *,
        connect: Optional[Connector] = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._connect = connect or tcp_connector(host, port)
        self._schedule = schedule
        self._limits = limits

    async def _call(self, method: str, target: str, payload: Optional[dict[str, Any]]) -> Envelope:
        """One request with retries; the answer as an envelope (whatever its code)."""
        body = None if payload is None else json.dumps(payload).encode("utf-8")

        async def attempt() -> Envelope:
            response = await request(
                self._connect, self.authority, method, target, body, self._limits
            )
            if response.status >= 500:
                raise _ServerError(response.status)
            return _envelope(response.status, response.body)

        what = f"{method} {target} to the registrar at {self.authority}"
        try:
            return await retry(attempt, self._schedule, _TRANSIENT, what)
        except _TRANSIENT as exc:
            raise RegistrarUnavailable(f"{what} failed after all retries: {exc}") from exc
        except HttpError as exc:
            raise RegistrarProtocolError(f"{what}: {exc}") from exc

    async def versions(self) -> Optional[tuple[ApiVersion, ...]]:
        """The registrar's API versions, or None when it has no /version endpoint."""
        answer = await self._call("GET", "/version", None)
        if not answer.ok:
            log.info("The registrar has no /version endpoint (%d)", answer.code)
            return None
        try:
            supported = answer.results.get("supported_versions")
            current = answer.results["current_version"]
            texts = supported if isinstance(supported, list) else [current]
            return tuple(ApiVersion.parse(str(text)) for text in texts)
        except (KeyError, AttestProtocolError) as exc:
            raise RegistrarProtocolError(f"malformed /version answer: {exc}") from exc

    async def register(self, version: ApiVersion, registration: Registration) -> bytes:
        """POST the registration; the credential blob from the answer, Base64-decoded."""
        target = f"/v{version}/agents/{registration.agent_id}"
        answer = await self._call("POST", target, registration.to_json())
        if answer.code == HTTP_FORBIDDEN:
            raise RegistrationForbidden(
                registration.agent_id, _short(answer.status), registration.ak_created
            )
        if not answer.ok:
            raise RegistrationRejected("the registration", answer.code, _short(answer.status))
        blob = answer.results.get("blob")
        if not isinstance(blob, str) or not blob:
            raise RegistrarProtocolError("the registration answer holds no blob")
        try:
            return base64.b64decode(blob, validate=True)
        except binascii.Error:
            raise RegistrarProtocolError("the registration blob is not Base64") from None

    async def activate(self, version: ApiVersion, agent_id: str, tag: str) -> None:
        """PUT the auth tag; raises RegistrationRejected when the registrar does not accept it."""
        target = f"/v{version}/agents/{agent_id}/activate"
        answer = await self._call("PUT", target, {"auth_tag": tag})
        if not answer.ok:
            # Keylime's refusal quotes the tag we sent; keep it out of logs.
            text = _short(answer.status.replace(tag, "<auth_tag>"))
            raise RegistrationRejected("the activation", answer.code, text)


def _envelope(status: int, body: bytes) -> Envelope:
    try:
        envelope = parse_envelope(json.loads(body))
        # The HTTP status decides; Keylime repeats it in "code" anyway.
        return Envelope(status, envelope.status, envelope.results)
    except (ValueError, AttestProtocolError):
        if 200 <= status < 300:
            raise RegistrarProtocolError(
                f"a {status} answer that is not a Keylime envelope"
            ) from None
        text = body[:MAX_STATUS_TEXT_CHARS].decode("utf-8", "replace")
        return Envelope(status, text or f"HTTP {status}", {})


def _short(text: str) -> str:
    return text[:MAX_STATUS_TEXT_CHARS]


def choose_versions(
    enabled: tuple[ApiVersion, ...], registrar: Optional[tuple[ApiVersion, ...]]
) -> tuple[ApiVersion, ...]:
    """The versions to try, best first: the negotiated one, or all enabled when unknown."""
    if registrar is None:
        return tuple(sorted(enabled, reverse=True))
    try:
        return (negotiate(enabled, registrar),)
    except ApiVersionError:
        ours = ", ".join(map(str, enabled))
        theirs = ", ".join(map(str, registrar))
        raise NoCommonApiVersion(
            f"the registrar serves API versions {theirs}; the agent enables {ours}"
        ) from None


async def register_and_activate(
    client: RegistrarClient,
    tpm: Tpm,
    registration: Registration,
    enabled: tuple[ApiVersion, ...],
) -> ApiVersion:
    """Register, open the challenge on the TPM, activate; the API version that was used.

    When the registrar has no /version, each enabled version is tried newest first and a
    version the registrar refuses (400 or 404) moves on to the next, as rust-keylime does.
    """
    registrar_versions = await client.versions()
    candidates = choose_versions(enabled, registrar_versions)
    blob: Optional[bytes] = None
    version = candidates[0]
    for version in candidates:
        try:
            blob = await client.register(version, registration)
            break
        except RegistrationRejected as exc:
            if registrar_versions is not None or exc.status not in (400, 404):
                raise
            log.info(
                "Registration with API version %s refused (%d); trying older", version, exc.status
            )
    if blob is None:
        tried = ", ".join(map(str, candidates))
        raise NoCommonApiVersion(f"the registrar refused every enabled API version ({tried})")
    log.info("Registered agent %s with the registrar (API %s)", registration.agent_id, version)
    secret = await tpm.activate_credential(blob)
    await client.activate(version, registration.agent_id, auth_tag(secret, registration.agent_id))
    log.info("Activated agent %s", registration.agent_id)
    return version
