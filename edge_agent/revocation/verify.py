"""Check a revocation notification the way Keylime signs it.

What arrives (POST /v{v}/notifications/revocation, keylime/cloud_verifier_tornado.py
``invoke_notify_error``) is the JSON object ``{"msg": <str>, "signature": <str>}`` made by
keylime/cloud_verifier_common.py ``prepare_error``: ``msg`` is ``json.dumps`` of the
revocation event (type, agent_id, ip, port, tpm_policy, meta_data, event_time, ...) and
``signature`` is ``crypto.rsa_sign(revocation_key, msg)``: base64 of RSA-PSS with SHA-256,
MGF1-SHA-256 and the maximum salt length, over exactly the UTF-8 bytes of ``msg``.
Verification makes the same call as Keylime's own ``crypto.rsa_verify`` (and rust-keylime's
``asym_verify`` in keylime/src/crypto.rs): PSS, SHA-256, ``PSS.MAX_LENGTH``; the
``cryptography`` verifier then recovers the salt length from the signature, as Keylime's does.
The key is the public key of the RevocationNotifier certificate.

Strict: a body that is not exactly that object, a signature that is not canonical base64,
or a ``msg`` that is not a JSON object is refused; an unsigned notification (Keylime sends
``signature: ""`` when the agent has no revocation key) is refused as a bad signature.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from edge_agent.revocation.cert import parse_revocation_cert
from edge_agent.revocation.errors import (
    NoRevocationCertError,
    RevocationFormatError,
    RevocationSignatureError,
)

__all__ = ["MAX_NOTIFICATION_BYTES", "RevocationMessage", "verify_notification"]

# A notification carries the agent's tpm_policy and meta_data and an event context: a few
# KiB in practice.  A megabyte is far above that and still cheap to hold.
MAX_NOTIFICATION_BYTES = 1024 * 1024
_FIELDS = frozenset({"msg", "signature"})


@dataclass(frozen=True)
class RevocationMessage:
    """A verified notification: ``msg`` exactly as signed, ``content`` its parsed object."""

    msg: str
    content: Mapping[str, Any]

    @property
    def type(self) -> Optional[str]:
        value = self.content.get("type")
        return value if isinstance(value, str) else None

    @property
    def agent_id(self) -> Optional[str]:
        value = self.content.get("agent_id")
        return value if isinstance(value, str) else None


def verify_notification(body: bytes, cert_pem: Optional[bytes]) -> RevocationMessage:
    """The verified message in ``body``, checked against the RevocationNotifier certificate.

    Raises RevocationFormatError, NoRevocationCertError (``cert_pem`` is None: no payload
    has brought a certificate yet), RevocationCertError or RevocationSignatureError.
    """
    msg, signature = _parse_body(body)
    if cert_pem is None:
        raise NoRevocationCertError("no revocation certificate is available yet")
    key = parse_revocation_cert(cert_pem)
    try:
        key.verify(
            signature,
            msg.encode("utf-8"),
            padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH),
            hashes.SHA256(),
        )
    except InvalidSignature as exc:
        raise RevocationSignatureError("signature does not verify") from exc
    try:
        content = json.loads(msg)
    except ValueError as exc:
        raise RevocationFormatError("signed msg is not JSON") from exc
    if not isinstance(content, dict):
        raise RevocationFormatError("signed msg is not a JSON object")
    return RevocationMessage(msg=msg, content=content)


def _parse_body(body: bytes) -> tuple[str, bytes]:
    if len(body) > MAX_NOTIFICATION_BYTES:
        raise RevocationFormatError(f"body exceeds {MAX_NOTIFICATION_BYTES} bytes")
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise RevocationFormatError("body is not JSON") from exc
    if not isinstance(document, dict) or set(document) != _FIELDS:
        raise RevocationFormatError('body must be an object with exactly "msg" and "signature"')
    msg, signature = document["msg"], document["signature"]
    if not isinstance(msg, str) or not isinstance(signature, str):
        raise RevocationFormatError('"msg" and "signature" must be strings')
    if not signature:
        raise RevocationSignatureError("notification is unsigned")
    try:
        raw = base64.b64decode(signature.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise RevocationFormatError('"signature" is not base64') from exc
    return msg, raw
