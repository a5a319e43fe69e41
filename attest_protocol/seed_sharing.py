"""Giving a seed to the TPM that holds a decryption key: the encrypted secret of MakeCredential.

A party outside the TPM shares a seed that only the TPM holding the key's private part can
recover (the reference implementation's CryptSecretEncrypt; TPM2_ActivateCredential,
TPM2_Import and salted sessions undo it):

* RSA key (TCG TPM 2.0 Part 1, Annex B.10): the seed is nameAlg-digest-size random octets; the
  encrypted secret is their RSA-OAEP encryption, hash = nameAlg, OAEP label = ``label`` + NUL.
* ECC key (Part 1, Annex C.6, one-pass Diffie-Hellman): an ephemeral key pair (d, Q_e);
  ``seed = KDFe(nameAlg, x(d * Q_key), label, x(Q_e), x(Q_key), digest bits)``; the encrypted
  secret is Q_e as a marshalled TPMS_ECC_POINT.

``label`` says what the seed is for: "IDENTITY" (credentials), "DUPLICATE", "SECRET".
``random_bytes`` draws the RSA seed or the ephemeral ECC scalar; OAEP padding draws its own
randomness inside ``cryptography``.  Errors are CredentialError, MakeCredential being the one
user so far.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from attest_protocol.errors import CredentialError
from attest_protocol.kdf import kdfe
from attest_protocol.tpm2.constants import EccCurve, TpmAlg, hash_for_alg
from attest_protocol.tpm2.marshal import Writer
from attest_protocol.tpm2.public import TpmPublic

# Group order n of each EK curve (FIPS 186-4 §D.1.2), for drawing the ephemeral ECDH scalar
# d in [1, n-1] by the "extra random bits" method (FIPS 186-4 §B.4.1).
_CURVE_ORDERS: dict[EccCurve, int] = {
    EccCurve.NIST_P256: int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16),
    EccCurve.NIST_P384: int(
        "FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        "C7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973",
        16,
    ),
    EccCurve.NIST_P521: int(
        "1FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"
        "A51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
        16,
    ),
}
_SCALAR_EXTRA_BYTES = 8  # 64 extra bits make the bias of the modular reduction negligible


@dataclass(frozen=True)
class SharedSeed:
    """The seed, and the contents of the TPM2B_ENCRYPTED_SECRET that carries it to the TPM."""

    seed: bytes
    encrypted_secret: bytes


def share_seed(
    key_area: TpmPublic, label: str, *, random_bytes: Callable[[int], bytes] = os.urandom
) -> SharedSeed:
    """Share a fresh seed with the TPM holding ``key_area``'s private key (see module doc).

    ``key_area.name_alg`` must be a supported hash (AlgorithmError otherwise); an unsupported
    type or curve, or an RSA key too small for OAEP, raises CredentialError.
    """
    if key_area.type == TpmAlg.RSA:
        return _share_rsa(key_area, label, random_bytes)
    if key_area.type == TpmAlg.ECC:
        return _share_ecc(key_area, label, random_bytes)
    raise CredentialError(f"cannot share a seed with a key of type {int(key_area.type):#06x}")


def _share_rsa(key_area: TpmPublic, label: str, random_bytes: Callable[[int], bytes]) -> SharedSeed:
    """A random nameAlg-digest-size seed, RSA-OAEP encrypted to the key (Part 1 Annex B.10)."""
    hash_alg = hash_for_alg(key_area.name_alg)
    key = key_area.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise CredentialError("public area says RSA but holds no RSA key")
    seed = _random(random_bytes, hash_alg.digest_size)
    # OAEP fits a message of at most k - 2*hLen - 2 octets (RFC 8017 §7.1.1).
    if key.key_size // 8 - 2 * hash_alg.digest_size - 2 < len(seed):
        raise CredentialError("RSA modulus is too small for OAEP with the nameAlg")
    oaep = padding.OAEP(
        mgf=padding.MGF1(hash_alg),
        algorithm=hash_alg,
        label=_label_octets(label),
    )
    return SharedSeed(seed, key.encrypt(seed, oaep))


def _share_ecc(key_area: TpmPublic, label: str, random_bytes: Callable[[int], bytes]) -> SharedSeed:
    """One-pass ECDH with an ephemeral key, seed from KDFe (Part 1 Annex C.6, KDFe §11.4.10.3).

    The encrypted secret is the ephemeral public point as TPMS_ECC_POINT.
    """
    hash_alg = hash_for_alg(key_area.name_alg)
    key = key_area.public_key()
    if key_area.curve_id not in _CURVE_ORDERS or not isinstance(key, ec.EllipticCurvePublicKey):
        raise CredentialError(f"curve {key_area.curve_id!r} is not supported")
    curve, order = key.curve, _CURVE_ORDERS[key_area.curve_id]
    width = (curve.key_size + 7) // 8
    draw = _random(random_bytes, (order.bit_length() + 7) // 8 + _SCALAR_EXTRA_BYTES)
    ephemeral = ec.derive_private_key(1 + int.from_bytes(draw, "big") % (order - 1), curve)
    point = ephemeral.public_key().public_numbers()
    z = ephemeral.exchange(ec.ECDH(), key)  # x-coordinate of d * Q_key, full width
    party_u = point.x.to_bytes(width, "big")
    party_v = key.public_numbers().x.to_bytes(width, "big")
    seed = kdfe(hash_alg, z, label, party_u, party_v, hash_alg.digest_size * 8)
    secret = Writer().tpm2b(party_u).tpm2b(point.y.to_bytes(width, "big")).getvalue()
    return SharedSeed(seed, secret)


def _label_octets(label: str) -> bytes:
    # The OAEP label is the same NUL-terminated octet string KDFe takes as "Use" (Part 1 B.10).
    return label.encode("ascii") + b"\x00"


def _random(random_bytes: Callable[[int], bytes], size: int) -> bytes:
    value = random_bytes(size)
    if len(value) != size:
        raise ValueError(f"random_bytes({size}) returned {len(value)} bytes")
    return value
