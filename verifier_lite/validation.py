"""Request bodies and path parameters, checked before anything is stored.

Every check names the offending field in a :class:`RequestError` (400); nothing is written
unless the whole request is valid.  Field names are the keys Keylime 7.14.3's tenant sends
(keylime/tenant.py ``do_cvadd``, ``do_add_runtime_policy``, ``do_add_mb_policy``).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from attest_protocol.bounded_json import loads_bounded
from attest_protocol.errors import AttestProtocolError
from attest_protocol.policy import load_runtime_policy
from attest_protocol.tpm2.public import check_attestation_key, parse_tpm2b_public
from service_kit import request_checks
from service_kit.request_checks import AGENT_ID_RE
from verifier_lite.errors import RequestError
from verifier_lite.ima_keys import check_agent_keys
from verifier_lite.measured_boot import load_mb_policy
from verifier_lite.signed_policy import PolicySignatures, unwrap
from verifier_lite.tpm_policy import parse_tpm_policy

# Policy names follow the agent id's rule (service_kit/request_checks.py AGENT_ID_RE).
POLICY_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
_MAX_PORT = 65535
# The tenant's algorithm lists are short; a bound keeps hostile input small.
MAX_ALGORITHMS = 16
MAX_ALG_NAME_CHARS = 32


def agent_id(value: str) -> str:
    if not AGENT_ID_RE.fullmatch(value):
        raise RequestError("agent_id", "must be 1-255 letters, digits, '.', '_' or '-'")
    return value


def policy_name(value: str) -> str:
    if not POLICY_NAME_RE.fullmatch(value):
        raise RequestError("name", "must be 1-255 letters, digits, '.', '_' or '-'")
    return value


def parse_json_object(data: bytes) -> dict[str, Any]:
    """Any Content-Type (or none) is accepted, as Keylime does; depth and Unicode are checked
    (attest_protocol/bounded_json.py), naming the field at fault."""
    if not data:
        raise RequestError("body", "Expected non zero content length")
    return request_checks.parse_json_object(data, RequestError)


def _bounded_json(value: str, field: str) -> None:
    """A JSON text field must decode within the depth limit before a parser recurses into it."""
    try:
        loads_bounded(value)
    except ValueError as exc:
        raise RequestError(field, f"must be JSON: {exc}") from None


def _opt_str(body: Mapping[str, Any], field: str) -> Optional[str]:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise RequestError(field, "must be a string")
    return value


def _str_list(body: Mapping[str, Any], field: str) -> tuple[str, ...]:
    value = body.get(field)
    if not isinstance(value, list) or not 0 < len(value) <= MAX_ALGORITHMS:
        raise RequestError(field, f"must be a list of 1-{MAX_ALGORITHMS} names")
    for item in value:
        if not isinstance(item, str) or not 0 < len(item) <= MAX_ALG_NAME_CHARS:
            raise RequestError(field, "must hold algorithm names")
    return tuple(value)


def _port(body: Mapping[str, Any], field: str) -> int:
    value = body.get(field)
    # isascii first: str.isdigit accepts "²", which int() refuses.
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= _MAX_PORT:
        raise RequestError(field, "must be a TCP port number")
    return value


def _ip(body: Mapping[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str):
        raise RequestError(field, "must be an IP address or host name")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252}[A-Za-z0-9])?", value):
            raise RequestError(field, "must be an IP address or host name") from None
    return value


def _b64(value: Optional[str], field: str) -> bytes:
    if value is None:
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII characters
        raise RequestError(field, "must be base64") from None


@dataclass(frozen=True)
class AddAgentRequest:
    """A validated ``POST /agents/{id}`` body."""

    v: Optional[str]
    ip: str
    port: int
    verifier_ip: Optional[str]
    verifier_port: Optional[int]
    tpm_policy: str
    runtime_policy: str  # decoded JSON text; "" when none was sent
    runtime_policy_name: Optional[str]
    mb_policy: Optional[str]
    mb_policy_name: Optional[str]
    ima_sign_verification_keys: str
    metadata: str
    revocation_key: str
    accept_tpm_hash_algs: tuple[str, ...]
    accept_tpm_encryption_algs: tuple[str, ...]
    accept_tpm_signing_algs: tuple[str, ...]
    ak_tpm: str
    mtls_cert: Optional[str]
    supported_version: Optional[str]


def _tpm_policy(body: Mapping[str, Any]) -> str:
    value = body.get("tpm_policy")
    if isinstance(value, dict):
        value = json.dumps(value)
    if not isinstance(value, str):
        raise RequestError("tpm_policy", "must be a JSON object (as a string)")
    _bounded_json(value, "tpm_policy")
    try:
        parse_tpm_policy(value)
    except ValueError as exc:
        raise RequestError("tpm_policy", str(exc)) from None
    return value


def _ak(body: Mapping[str, Any]) -> str:
    value = _opt_str(body, "ak_tpm")
    if not value:
        raise RequestError("ak_tpm", "is required")
    try:
        check_attestation_key(parse_tpm2b_public(_b64(value, "ak_tpm")))
    except AttestProtocolError as exc:
        raise RequestError("ak_tpm", str(exc)) from None
    return value


def runtime_policy_text(
    body: Mapping[str, Any], signatures: Optional[PolicySignatures] = None
) -> str:
    """The base64 ``runtime_policy`` decoded and loaded (so a bad policy is a 400 now).

    A DSSE envelope's signature is judged by ``signatures`` (verifier_lite/signed_policy.py)
    before its payload is loaded, in Keylime's order (keylime/ima/ima.py
    ``verify_runtime_policy``)."""
    text = _b64(_opt_str(body, "runtime_policy"), "runtime_policy")
    if not text:
        return ""
    try:
        loads_bounded(text)
    except ValueError as exc:
        raise RequestError("runtime_policy", f"must be JSON: {exc}") from None
    if signatures is not None:
        signatures.check(text, _opt_str(body, "runtime_policy_key"))
    try:
        load_runtime_policy(unwrap(text))
        return text.decode("utf-8")
    except (AttestProtocolError, UnicodeDecodeError) as exc:
        raise RequestError("runtime_policy", str(exc)[:200]) from None


def _json_text(body: Mapping[str, Any], field: str, default: str) -> str:
    value = body.get(field, default)
    if value is None:
        return default
    if not isinstance(value, str):
        value = json.dumps(value)
    _bounded_json(value, field)
    return value


def mb_policy_text(body: Mapping[str, Any]) -> Optional[str]:
    """The measured-boot policy as JSON text, checked by ``load_mb_policy`` (None: none sent)."""
    value = body.get("mb_policy")
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        value = json.dumps(value)
    _bounded_json(value, "mb_policy")
    try:
        load_mb_policy(value)
    except ValueError as exc:
        raise RequestError("mb_policy", str(exc)) from None
    return value


def _opt_name(body: Mapping[str, Any], field: str) -> Optional[str]:
    value = _opt_str(body, field)
    if not value:
        return None
    if not POLICY_NAME_RE.fullmatch(value):
        raise RequestError(field, "must be 1-255 letters, digits, '.', '_' or '-'")
    return value


def add_agent_request(
    body: Mapping[str, Any], signatures: Optional[PolicySignatures] = None
) -> AddAgentRequest:
    v = _opt_str(body, "v")
    if v is not None and len(_b64(v, "v")) == 0:
        v = None
    mtls_cert = _opt_str(body, "mtls_cert")
    runtime_policy = runtime_policy_text(body, signatures)
    if signatures is not None and not runtime_policy and not body.get("runtime_policy_name"):
        signatures.check_default_policy()
    return AddAgentRequest(
        v=v,
        ip=_ip(body, "cloudagent_ip"),
        port=_port(body, "cloudagent_port"),
        verifier_ip=_opt_str(body, "verifier_ip"),
        verifier_port=_port(body, "verifier_port") if body.get("verifier_port") else None,
        tpm_policy=_tpm_policy(body),
        runtime_policy=runtime_policy,
        runtime_policy_name=_opt_name(body, "runtime_policy_name"),
        mb_policy=mb_policy_text(body),
        mb_policy_name=_opt_name(body, "mb_policy_name"),
        ima_sign_verification_keys=check_agent_keys(
            _opt_str(body, "ima_sign_verification_keys") or ""
        ),
        metadata=_json_text(body, "metadata", "{}"),
        revocation_key=_opt_str(body, "revocation_key") or "",
        accept_tpm_hash_algs=_str_list(body, "accept_tpm_hash_algs"),
        accept_tpm_encryption_algs=_str_list(body, "accept_tpm_encryption_algs"),
        accept_tpm_signing_algs=_str_list(body, "accept_tpm_signing_algs"),
        ak_tpm=_ak(body),
        mtls_cert=mtls_cert,
        supported_version=_opt_str(body, "supported_version"),
    )
