"""Revocation: strict verification of Keylime's signed message, the certificate, the actions."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from edge_agent.revocation import (
    NoRevocationCertError,
    RevocationCertError,
    RevocationFormatError,
    RevocationSignatureError,
    load_revocation_cert,
    revocation_cert_path,
    verify_notification,
)
from edge_agent.revocation.verify import MAX_NOTIFICATION_BYTES
from tests.agent_payload.keys import keylime_sign, make_cert, notification, resign

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
CERT = make_cert(KEY)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def test_keylime_signed_notification_verifies() -> None:
    body, msg = notification(KEY)
    message = verify_notification(body, CERT)
    assert message.msg == msg
    assert message.type == "revocation"
    assert message.agent_id == "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"
    assert message.content["port"] == 9002


def test_no_cert_yet_is_its_own_error() -> None:
    body, _ = notification(KEY)
    with pytest.raises(NoRevocationCertError):
        verify_notification(body, None)


def test_signature_by_another_key_is_refused() -> None:
    body, _ = notification(OTHER_KEY)
    with pytest.raises(RevocationSignatureError):
        verify_notification(body, CERT)


def test_altered_msg_is_refused() -> None:
    body, msg = notification(KEY)
    with pytest.raises(RevocationSignatureError):
        verify_notification(resign(body, msg=msg.replace("9002", "9003")), CERT)


def test_whitespace_change_in_msg_is_refused() -> None:
    # The signature covers the exact bytes of msg, not its JSON meaning.
    body, msg = notification(KEY)
    compact = json.dumps(json.loads(msg), separators=(",", ":"))
    with pytest.raises(RevocationSignatureError):
        verify_notification(resign(body, msg=compact), CERT)


def test_pkcs1v15_signature_is_refused() -> None:
    _, msg = notification(KEY)
    raw = KEY.sign(msg.encode(), padding.PKCS1v15(), hashes.SHA256())
    body = json.dumps({"msg": msg, "signature": base64.b64encode(raw).decode()}).encode()
    with pytest.raises(RevocationSignatureError):
        verify_notification(body, CERT)


def test_unsigned_notification_is_refused() -> None:
    body, _ = notification(KEY)
    with pytest.raises(RevocationSignatureError, match="unsigned"):
        verify_notification(resign(body, signature=""), CERT)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"not json", id="not-json"),
        pytest.param(b"[]", id="array"),
        pytest.param(b'{"msg": "{}"}', id="no-signature"),
        pytest.param(b'{"signature": "AAAA"}', id="no-msg"),
        pytest.param(b'{"msg": "{}", "signature": "AAAA", "extra": 1}', id="extra-field"),
        pytest.param(b'{"msg": {}, "signature": "AAAA"}', id="msg-not-string"),
        pytest.param(b'{"msg": "{}", "signature": 5}', id="signature-not-string"),
        pytest.param(b'{"msg": "{}", "signature": "not base64!"}', id="signature-not-b64"),
        pytest.param(b'{"msg": "{}", "signature": "\\u00e9"}', id="signature-not-ascii"),
        pytest.param(b" " * (MAX_NOTIFICATION_BYTES + 1), id="too-large"),
    ],
)
def test_malformed_body_is_refused(body: bytes) -> None:
    with pytest.raises(RevocationFormatError):
        verify_notification(body, CERT)


@pytest.mark.parametrize("msg", ["[1, 2]", "not json"])
def test_signed_msg_must_be_a_json_object(msg: str) -> None:
    body = json.dumps({"msg": msg, "signature": keylime_sign(KEY, msg.encode())}).encode()
    with pytest.raises(RevocationFormatError):
        verify_notification(body, CERT)


def test_non_rsa_or_garbage_certificate_is_refused() -> None:
    body, _ = notification(KEY)
    with pytest.raises(RevocationCertError, match="not an RSA key"):
        verify_notification(body, make_cert(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(RevocationCertError, match="not a PEM certificate"):
        verify_notification(body, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")


# -- the certificate file --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("default", "/kl/secure/unzipped/RevocationNotifier-cert.crt"),
        ("", "/kl/secure/unzipped/RevocationNotifier-cert.crt"),
        ("certs/rev.crt", "/kl/certs/rev.crt"),
        ("/etc/keylime/rev.crt", "/etc/keylime/rev.crt"),
    ],
)
def test_cert_path_resolution(option: str, expected: str) -> None:
    assert revocation_cert_path(Path("/kl/secure"), option) == Path(expected)


def test_cert_loads_after_the_payload_brings_it(tmp_path: Path) -> None:
    secure = tmp_path / "secure"
    assert load_revocation_cert(secure, "default") is None
    (secure / "unzipped").mkdir(parents=True)
    (secure / "unzipped" / "RevocationNotifier-cert.crt").write_bytes(CERT)
    assert load_revocation_cert(secure, "default") == CERT


def test_unusable_cert_file_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "bad.crt").write_bytes(b"garbage")
    with pytest.raises(RevocationCertError) as info:
        load_revocation_cert(tmp_path / "secure", "bad.crt")
    assert info.value.path == tmp_path / "bad.crt"
