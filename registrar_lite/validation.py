"""Pure checks of what a client sends: agent ids, JSON bodies, and registration fields.

Every rejection is a ``RequestError`` naming the field; nothing here touches the store, so a
rejected request changes nothing.  Field names and encodings are Keylime's
(keylime/models/registrar/registrar_agent.py ``update`` and the REST API v2.1 "Cloud
Registrar" section): ``ekcert`` base64 DER, ``ek_tpm``/``aik_tpm`` base64 TPM2B_PUBLIC,
``mtls_cert`` PEM or ``"disabled"``, ``port`` a number or a decimal string.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attest_protocol.bounded_json import JsonFieldError, load_object
from attest_protocol.errors import ParseError
from attest_protocol.tpm2.public import TpmPublic, parse_tpm2b_public
from registrar_lite.ek_template import ek_public_from_key
from registrar_lite.errors import RequestError

# CVE-2022-23949: ids end up in logs, file names and SQL; ASCII letters, digits and ._- only,
# no newline or escape codes, no Unicode look-alikes.  fullmatch, so "$" cannot admit "\n".
AGENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")
# A DNS name or a hostname label run (RFC 1123 characters); IP literals are parsed apart.
_HOSTNAME_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}[A-Za-z0-9])?")
# An HMAC-SHA384 in hex (keylime/crypto.py ``do_hmac``).
AUTH_TAG_RE = re.compile(r"[0-9a-f]{96}")
_MAX_PORT = 65535
MTLS_DISABLED = "disabled"
_PEM_PREFIX = "-----BEGIN"


@dataclass(frozen=True)
class Registration:
    """A syntactically valid registration; ``ek_tpm`` is derived from ``ekcert`` if absent."""

    agent_id: str
    ek_tpm: bytes
    ekcert: Optional[bytes]
    aik_tpm: bytes
    mtls_cert: Optional[str]
    ip: Optional[str]
    port: Optional[int]
    iak_tpm: Optional[bytes] = None
    idevid_tpm: Optional[bytes] = None
    iak_cert: Optional[bytes] = None
    idevid_cert: Optional[bytes] = None
    iak_attest: Optional[bytes] = None
    iak_sign: Optional[bytes] = None


def check_agent_id(agent_id: str) -> str:
    if not AGENT_ID_RE.fullmatch(agent_id):
        # The id itself is not echoed: it is what failed to be safe to print.
        raise RequestError(
            "agent_id", "must be 1-255 of A-Z a-z 0-9 . _ - (not starting with . _ -)"
        )
    return agent_id


def parse_json_object(data: bytes) -> dict[str, Any]:
    """Decode a JSON object body; any Content-Type (or none) is accepted, as Keylime does.
    Depth and Unicode are checked (attest_protocol/bounded_json.py), naming the field."""
    try:
        return load_object(data)
    except JsonFieldError as exc:
        raise RequestError(exc.field, exc.reason) from None


def _b64(body: Mapping[str, Any], field: str, *, required: bool) -> Optional[bytes]:
    value = body.get(field)
    if value is None:
        if required:
            raise RequestError(field, "is required")
        return None
    if not isinstance(value, str):
        raise RequestError(field, "must be a base64 string")
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(field, "is not valid base64") from None
    if not raw:
        raise RequestError(field, "is empty")
    return raw


def _tpm_public(body: Mapping[str, Any], field: str, *, required: bool) -> Optional[bytes]:
    raw = _b64(body, field, required=required)
    if raw is not None:
        try:
            parse_tpm2b_public(raw)
        except ParseError as exc:
            raise RequestError(field, f"is not a TPM2B_PUBLIC ({exc.reason})") from None
    return raw


def load_cert(field: str, der: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError:
        raise RequestError(field, "is not a DER X.509 certificate") from None


def _cert(body: Mapping[str, Any], field: str) -> Optional[bytes]:
    """A certificate as base64 DER (Keylime's wire form) or PEM text; returned as DER."""
    value = body.get(field)
    if isinstance(value, str) and value.lstrip().startswith(_PEM_PREFIX):
        try:
            cert = x509.load_pem_x509_certificate(value.encode("ascii"))
        except (UnicodeEncodeError, ValueError):
            raise RequestError(field, "is not a PEM X.509 certificate") from None
        return cert.public_bytes(serialization.Encoding.DER)
    der = _b64(body, field, required=False)
    if der is not None:
        load_cert(field, der)
    return der


def _mtls_cert(body: Mapping[str, Any]) -> Optional[str]:
    value = body.get("mtls_cert")
    if value is None or value == MTLS_DISABLED:
        return value
    if not isinstance(value, str):
        raise RequestError("mtls_cert", 'must be a PEM string, "disabled" or null')
    try:
        cert = x509.load_pem_x509_certificate(value.encode("ascii"))
    except (UnicodeEncodeError, ValueError):
        raise RequestError("mtls_cert", "is not a PEM X.509 certificate") from None
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def _ip(body: Mapping[str, Any]) -> Optional[str]:
    value = body.get("ip")
    if value is None:
        return None
    if not isinstance(value, str):
        raise RequestError("ip", "must be a string")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        if _HOSTNAME_RE.fullmatch(value):
            return value
    raise RequestError("ip", "is neither an IP address nor a host name")


def _port(body: Mapping[str, Any]) -> Optional[int]:
    value = body.get("port")
    if value is None:
        return None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 5:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_PORT:
        raise RequestError("port", "must be a TCP port number (1-65535)")
    return value


def _ek_public(body: Mapping[str, Any], ekcert: Optional[bytes]) -> bytes:
    ek_tpm = _tpm_public(body, "ek_tpm", required=False)
    if ek_tpm is not None:
        return ek_tpm
    if ekcert is None:
        raise RequestError("ek_tpm", "is required (or an ekcert to derive it from)")
    derived: TpmPublic = ek_public_from_key(load_cert("ekcert", ekcert).public_key())
    return derived.to_tpm2b()


def parse_registration(agent_id: str, body: Mapping[str, Any]) -> Registration:
    """Check every field's type and encoding; trust decisions are identity.py's."""
    ekcert = _cert(body, "ekcert")
    return Registration(
        agent_id=check_agent_id(agent_id),
        ek_tpm=_ek_public(body, ekcert),
        ekcert=ekcert,
        aik_tpm=_tpm_public(body, "aik_tpm", required=True) or b"",
        mtls_cert=_mtls_cert(body),
        ip=_ip(body),
        port=_port(body),
        iak_tpm=_tpm_public(body, "iak_tpm", required=False),
        idevid_tpm=_tpm_public(body, "idevid_tpm", required=False),
        iak_cert=_cert(body, "iak_cert"),
        idevid_cert=_cert(body, "idevid_cert"),
        iak_attest=_b64(body, "iak_attest", required=False),
        iak_sign=_b64(body, "iak_sign", required=False),
    )


def parse_auth_tag(body: Mapping[str, Any]) -> str:
    value = body.get("auth_tag")
    if not isinstance(value, str) or not AUTH_TAG_RE.fullmatch(value):
        raise RequestError("auth_tag", "must be an HMAC-SHA384 in lower-case hex")
    return value
