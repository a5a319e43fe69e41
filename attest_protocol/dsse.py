"""DSSE envelopes (Dead Simple Signing Envelope, v1) as Keylime signs runtime policies.

``keylime-policy sign`` / ``keylime_sign_runtime_policy`` (keylime/policy/sign_runtime_policy.py,
keylime/dsse/dsse.py) wrap the policy JSON as::

    {"payload": b64(policy), "payloadType": "application/vnd.keylime+json",
     "signatures": [{"keyid": ..., "sig": b64(ECDSA-SHA256 over PAE)}]}

with ``PAE = b"DSSEv1 <len(type)> <type> <len(payload)> <payload>"``.  The ``ecdsa`` backend's
keyid is the SHA-256 hex of the public key's PEM; the ``x509`` backend's keyid is the base64
of the signing certificate's PEM.  Keylime decodes payload and signatures leniently (hex
first, then base64, then URL-safe base64: keylime/dsse/dsse.py ``b64dec``); so do we, so that
an envelope Keylime accepts is accepted here.

Pure: bytes in, a :class:`VerifiedPayload` out, :class:`DsseError` on anything else.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest_protocol.errors import AttestProtocolError

# keylime/policy/sign_runtime_policy.py KEYLIME_PAYLOAD_TYPE
KEYLIME_PAYLOAD_TYPE = "application/vnd.keylime+json"
# A policy carries one signature in practice; a bound keeps hostile envelopes cheap.
MAX_SIGNATURES = 16


class DsseError(AttestProtocolError):
    """An envelope that is malformed, or whose signatures do not verify (``reason`` says)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Signature:
    keyid: str  # "" when the envelope names none
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]


@dataclass(frozen=True)
class VerifiedPayload:
    payload_type: str
    payload: bytes
    signers: tuple[str, ...]  # names of the keys whose signature verified


EcKey = ec.EllipticCurvePublicKey


def lenient_b64decode(text: str) -> bytes:
    """Keylime's ``b64dec``: hex if it is hex, else base64, else URL-safe base64."""
    raw = text.encode("utf-8")
    try:
        decoded = binascii.unhexlify(raw)
        if decoded:
            return decoded
    except (binascii.Error, ValueError):
        pass
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.b64decode(raw, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise DsseError("not hex or base64") from None


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding that is signed."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(type_bytes), type_bytes, len(payload), payload)


def is_envelope(document: Any) -> bool:
    """Keylime's test (keylime/ima/ima.py ``verify_runtime_policy``): a truthy ``payload``."""
    return isinstance(document, dict) and bool(document.get("payload"))


def _signature(item: Any) -> Signature:
    if not isinstance(item, dict) or not isinstance(item.get("sig"), str):
        raise DsseError("each signature must be an object with a 'sig' string")
    keyid = item.get("keyid") or ""
    if not isinstance(keyid, str):
        raise DsseError("a signature's 'keyid' must be a string")
    try:
        return Signature(keyid, lenient_b64decode(item["sig"]))
    except DsseError:
        raise DsseError("a signature's 'sig' is not hex or base64") from None


def parse_envelope(document: Any) -> Envelope:
    """An already decoded JSON object as an :class:`Envelope`."""
    if not isinstance(document, dict):
        raise DsseError("the envelope must be a JSON object")
    payload_type, payload = document.get("payloadType"), document.get("payload")
    if not isinstance(payload_type, str):
        raise DsseError("'payloadType' must be a string")
    if not isinstance(payload, str) or not payload:
        raise DsseError("'payload' must be a non-empty string")
    signatures = document.get("signatures")
    if not isinstance(signatures, list) or not 0 < len(signatures) <= MAX_SIGNATURES:
        raise DsseError(f"'signatures' must be a list of 1-{MAX_SIGNATURES} signatures")
    try:
        body = lenient_b64decode(payload)
    except DsseError:
        raise DsseError("'payload' is not hex or base64") from None
    return Envelope(payload_type, body, tuple(_signature(s) for s in signatures))


def load_envelope(data: Union[bytes, str]) -> Envelope:
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise DsseError("the envelope is not JSON") from None
    return parse_envelope(document)


def ec_key_from_pem(pem: bytes) -> EcKey:
    """An ECDSA verification key from a PEM public key or a PEM certificate."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in pem:
            key: Any = x509.load_pem_x509_certificate(pem).public_key()
        else:
            key = serialization.load_pem_public_key(pem)
    except ValueError:
        raise DsseError("the policy key is not a PEM public key or certificate") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise DsseError("the policy key is not an EC key (DSSE policies are signed with ECDSA)")
    return key


def ecdsa_keyid(key: EcKey) -> str:
    """The ``ecdsa`` backend's keyid: SHA-256 hex of the SubjectPublicKeyInfo PEM."""
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(pem).hexdigest()


def certificate_keys(envelope: Envelope) -> list[tuple[str, EcKey]]:
    """The ``x509`` backend's keys: each signature's keyid is a base64 PEM certificate.

    Such a certificate proves nothing by itself (it travels with the signature); callers
    use these only when they trust the envelope's own certificates, as Keylime does when
    no key is given (keylime/signing.py ``verify_dsse_envelope``).
    """
    keys = []
    for signature in envelope.signatures:
        try:
            pem = base64.b64decode(signature.keyid, validate=True)
        except (binascii.Error, ValueError):
            raise DsseError("a signature's keyid is not a base64 certificate") from None
        keys.append((hashlib.sha256(pem).hexdigest(), ec_key_from_pem(pem)))
    return keys


def _verifies(key: EcKey, message: bytes, sig: bytes) -> bool:
    try:
        key.verify(sig, message, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def verify(envelope: Envelope, keys: Sequence[tuple[str, EcKey]]) -> VerifiedPayload:
    """The payload when at least one signature verifies under one of ``keys`` (any keyid:
    Keylime does not match keyids, keylime/dsse/dsse.py ``Verify`` strict_id_matching)."""
    message = pae(envelope.payload_type, envelope.payload)
    signers = [
        name
        for signature in envelope.signatures
        for name, key in keys
        if _verifies(key, message, signature.sig)
    ]
    if not signers:
        raise DsseError("No valid signature found")
    return VerifiedPayload(envelope.payload_type, envelope.payload, tuple(signers))
