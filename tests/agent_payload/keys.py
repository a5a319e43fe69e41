"""A RevocationNotifier-like key and certificate, and notifications signed as Keylime signs."""

from __future__ import annotations

import base64
import datetime
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID


def make_cert(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "RevocationNotifier")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def keylime_sign(key: rsa.RSAPrivateKey, msg: bytes) -> str:
    """keylime/crypto.py rsa_sign: PSS, MGF1-SHA256, maximum salt, SHA-256, base64."""
    signature = key.sign(
        msg,
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH),
        hashes.SHA256(),
    )
    return base64.b64encode(signature).decode()


def notification(key: rsa.RSAPrivateKey, **fields: Any) -> tuple[bytes, str]:
    """(body, msg) shaped as cloud_verifier_common.prepare_error + tornado_requests send it."""
    event = {
        "type": "revocation",
        "ip": "127.0.0.1",
        "agent_id": "d432fbb3-d2f1-4a97-9ef7-75bd81c00000",
        "port": 9002,
        "tpm_policy": '{"mask": "0x0"}',
        "meta_data": '{"cert_serial": 2}',
        "event_time": "Sun Nov 29 10:00:00 2026",
        **fields,
    }
    msg = json.dumps(event)
    body = json.dumps({"msg": msg, "signature": keylime_sign(key, msg.encode())})
    return body.encode(), msg


def resign(body: bytes, **changes: object) -> bytes:
    """``body`` with ``changes`` applied, its signature left as it was."""
    document = json.loads(body)
    document.update(changes)
    return json.dumps(document).encode()
