"""Key options for signed runtime policies and IMA signatures (keylime/tenant.py).

``--runtime-policy-key FILE``: the PEM public key a DSSE-signed runtime policy verifies
under, sent base64-encoded as ``runtime_policy_key`` (Keylime's ``--runtime-policy-sig-key``).
``--sign-verification-key FILE`` (repeatable): public keys (PEM or DER) that check IMA
ima-sig entries, sent as one keyring string in ``ima_sign_verification_keys``
(keylime/ima/file_signatures.py ``ImaKeyring.to_string``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Optional

from cryptography.hazmat.primitives import serialization

from tenant_lite.errors import UsageError


def runtime_policy_key(raw: Optional[bytes], source: str) -> str:
    if raw is None:
        return ""
    try:
        serialization.load_pem_public_key(raw)
    except ValueError:
        raise UsageError(f"runtime policy key {source} is not a PEM public key") from None
    return base64.b64encode(raw).decode("ascii")


def _der(raw: bytes, source: str) -> bytes:
    try:
        key = (
            serialization.load_pem_public_key(raw)
            if raw.lstrip().startswith(b"-----")
            else serialization.load_der_public_key(raw)
        )
    except ValueError:
        raise UsageError(f"signature verification key {source} is not a public key") from None
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def verification_keyring(keys: Sequence[tuple[bytes, str]]) -> str:
    """The keyring string of ``(file bytes, file name)`` pairs; "" for none."""
    if not keys:
        return ""
    pubkeys = [base64.b64encode(_der(raw, source)).decode("ascii") for raw, source in keys]
    return json.dumps({"meta": {"version": 1}, "keyids": [], "pubkeys": pubkeys})
