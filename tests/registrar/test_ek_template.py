"""EK public areas rebuilt from certificate keys (Keylime 6.x agents send only ``ekcert``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest_protocol.tpm2.constants import EccCurve, TpmAlg
from attest_protocol.tpm2.public import parse_tpm2b_public
from registrar_lite.ek_template import EK_LOW_ATTRIBUTES, EK_LOW_AUTH_POLICY, ek_public_from_key
from registrar_lite.errors import RequestError

CURVES = [(ec.SECP256R1(), EccCurve.NIST_P256, 32), (ec.SECP384R1(), EccCurve.NIST_P384, 48)]


@pytest.mark.parametrize(("curve", "curve_id", "width"), CURVES, ids=["p256", "p384"])
def test_ecc_template(curve: ec.EllipticCurve, curve_id: EccCurve, width: int) -> None:
    key = ec.generate_private_key(curve).public_key()
    pub = parse_tpm2b_public(ek_public_from_key(key).to_tpm2b())
    assert (pub.type, pub.curve_id, pub.name_alg) == (TpmAlg.ECC, curve_id, TpmAlg.SHA256)
    assert pub.object_attributes == EK_LOW_ATTRIBUTES == 0x000300B2
    assert pub.auth_policy == EK_LOW_AUTH_POLICY
    assert (pub.symmetric.alg, pub.symmetric.key_bits, pub.symmetric.mode) == (
        TpmAlg.AES,
        128,
        TpmAlg.CFB,
    )
    assert isinstance(pub.unique, tuple)
    assert all(len(c) == width for c in pub.unique)
    assert pub.public_key().public_numbers() == key.public_numbers()


def test_rsa_template() -> None:
    key = rsa.generate_private_key(65537, 2048).public_key()
    pub = parse_tpm2b_public(ek_public_from_key(key).to_tpm2b())
    assert (pub.type, pub.key_bits, pub.exponent) == (TpmAlg.RSA, 2048, 0)
    assert pub.public_key().public_numbers() == key.public_numbers()


KEYS_WITHOUT_TEMPLATE: dict[str, Callable[[], object]] = {
    "rsa3072": lambda: rsa.generate_private_key(65537, 3072).public_key(),
    "p521": lambda: ec.generate_private_key(ec.SECP521R1()).public_key(),
    "other": lambda: "not a key",
}


@pytest.mark.parametrize("kind", sorted(KEYS_WITHOUT_TEMPLATE))
def test_keys_without_template(kind: str) -> None:
    with pytest.raises(RequestError) as info:
        ek_public_from_key(KEYS_WITHOUT_TEMPLATE[kind]())
    assert info.value.field == "ekcert"
