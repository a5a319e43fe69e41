"""tenant_lite/signing_keys.py: the key options make what the verifier accepts."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tenant_lite.errors import UsageError
from tenant_lite.signing_keys import runtime_policy_key, verification_keyring
from verifier_lite.ima_keys import check_agent_keys

SPKI = serialization.PublicFormat.SubjectPublicKeyInfo


def test_keyring_of_pem_and_der_keys_is_accepted_by_the_verifier() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, SPKI)
    )
    rsa_der = (
        rsa.generate_private_key(65537, 2048)
        .public_key()
        .public_bytes(serialization.Encoding.DER, SPKI)
    )
    keyring = verification_keyring([(ec_pem, "a.pem"), (rsa_der, "b.der")])
    assert check_agent_keys(keyring) == keyring
    assert verification_keyring([]) == ""
    with pytest.raises(UsageError, match=r"c\.bin"):
        verification_keyring([(b"junk", "c.bin")])


def test_runtime_policy_key_is_base64_pem() -> None:
    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, SPKI)
    )
    encoded = runtime_policy_key(pem, "k.pem")
    assert base64.b64decode(encoded) == pem
    assert runtime_policy_key(None, "") == ""
    with pytest.raises(UsageError, match=r"k\.pem"):
        runtime_policy_key(b"not a key", "k.pem")
