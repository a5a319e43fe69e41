"""attest_protocol/dsse.py: envelopes parse strictly, verify only under the right key."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest_protocol import dsse

PAYLOAD = b'{"digests": {}}'


def sign(key: ec.EllipticCurvePrivateKey, payload: bytes = PAYLOAD) -> dict[str, Any]:
    message = dsse.pae(dsse.KEYLIME_PAYLOAD_TYPE, payload)
    sig = key.sign(message, ec.ECDSA(hashes.SHA256()))
    return {
        "payload": base64.b64encode(payload).decode(),
        "payloadType": dsse.KEYLIME_PAYLOAD_TYPE,
        "signatures": [{"keyid": dsse.ecdsa_keyid(key.public_key()), "sig": sig.hex()}],
    }


def pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_pae_is_the_dsse_v1_encoding() -> None:
    assert dsse.pae("t", b"ab") == b"DSSEv1 1 t 2 ab"


def test_a_signature_verifies_under_its_key_only() -> None:
    key, other = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    envelope = dsse.load_envelope(json.dumps(sign(key)))
    verified = dsse.verify(envelope, [("mine", dsse.ec_key_from_pem(pem(key)))])
    assert verified.payload == PAYLOAD and verified.signers == ("mine",)
    with pytest.raises(dsse.DsseError, match="No valid signature"):
        dsse.verify(envelope, [("other", dsse.ec_key_from_pem(pem(other)))])


def test_a_changed_payload_does_not_verify() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    doc = sign(key)
    doc["payload"] = base64.b64encode(b'{"digests": {"x": []}}').decode()
    with pytest.raises(dsse.DsseError):
        dsse.verify(dsse.parse_envelope(doc), [("k", key.public_key())])


def test_keylime_lenient_encodings_are_read() -> None:
    assert dsse.lenient_b64decode("6869") == b"hi"  # hex first, as Keylime's b64dec
    assert dsse.lenient_b64decode(base64.b64encode(b"\xfb\xff").decode()) == b"\xfb\xff"
    assert dsse.lenient_b64decode(base64.urlsafe_b64encode(b"\xfb\xff").decode()) == b"\xfb\xff"
    with pytest.raises(dsse.DsseError):
        dsse.lenient_b64decode("not base64!")


@pytest.mark.parametrize(
    ("doc", "reason"),
    [
        ([], "JSON object"),
        ({"payload": "YQ==", "signatures": [{"sig": "00"}]}, "payloadType"),
        ({"payload": "", "payloadType": "t", "signatures": [{"sig": "00"}]}, "payload"),
        ({"payload": "YQ==", "payloadType": "t", "signatures": []}, "signatures"),
        ({"payload": "YQ==", "payloadType": "t", "signatures": [{"sig": 1}]}, "sig"),
        ({"payload": "YQ==", "payloadType": "t", "signatures": ["x"]}, "sig"),
        ({"payload": "YQ==", "payloadType": "t", "signatures": [{"sig": "%%"}]}, "hex or base64"),
        ({"payload": "%%", "payloadType": "t", "signatures": [{"sig": "00"}]}, "payload"),
        ({"payload": "YQ==", "payloadType": "t", "signatures": [{"sig": "00"}] * 17}, "1-16"),
    ],
)
def test_malformed_envelopes_are_named(doc: Any, reason: str) -> None:
    with pytest.raises(dsse.DsseError, match=reason) as caught:
        dsse.parse_envelope(doc)
    assert caught.value.http_status == 400


def test_keys_must_be_ec_pem() -> None:
    with pytest.raises(dsse.DsseError, match="not a PEM"):
        dsse.ec_key_from_pem(b"garbage")
    rsa_pem = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(dsse.DsseError, match="not an EC key"):
        dsse.ec_key_from_pem(rsa_pem)


def test_not_json_is_named() -> None:
    with pytest.raises(dsse.DsseError, match="not JSON"):
        dsse.load_envelope(b"\xff{")
