"""A software TPM for the MakeCredential tests: reference KDFs, EK public areas, activation.

* ``reference_kdfa`` / ``reference_kdfe`` are ``cryptography``'s own SP800-108 and SP800-56A
  KDFs configured to the TPM's parameters, sharing no code with ``attest_protocol.kdf``.
* ``ek_public_bytes`` builds the TPM2B_PUBLIC of a TCG default EK template around a software
  key, so ``parse_tpm2b_public`` gives the ``TpmPublic`` a registrar would hold.
* ``activate`` is the TPM's half, TPM2_ActivateCredential (Part 3 §12.5), done with the EK
  private key: recover the seed, check the outer HMAC, decrypt the credential.  Its keys come
  from the reference KDFs and its CFB from ``cryptography``, not from limelet.
"""

from __future__ import annotations

import hmac as std_hmac
import importlib
import struct
from typing import Union

from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from cryptography.hazmat.primitives.kdf.kbkdf import KBKDFHMAC, CounterLocation, Mode

from attest_protocol.credential import parse_credential_blob
from attest_protocol.tpm2.constants import TpmAlg, hash_for_alg
from attest_protocol.tpm2.marshal import Reader
from attest_protocol.tpm2.public import TpmPublic

PrivateKey = Union[rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey]


def tpm2b(value: bytes) -> bytes:
    return struct.pack(">H", len(value)) + value


def reference_kdfa(
    hash_alg: hashes.HashAlgorithm, key: bytes, label: bytes, context: bytes, bits: int
) -> bytes:
    """SP800-108 counter-mode HMAC as TPM KDFa uses it (Part 1 §11.4.10.2).

    KBKDFHMAC with a 32-bit counter before the fixed input and a 32-bit length builds
    ``[i]32 || label || 0x00 || context || [L]32``, which is the TPM's input when ``label`` is
    the TPM label without its NUL and ``context`` is contextU || contextV.  KBKDFHMAC can only
    put whole octets in [L]; for other sizes the fixed input is given whole, and the leading
    spare bits are cleared as the TPM reference code does.
    """
    size = (bits + 7) // 8
    mode, counter_at = Mode.CounterMode, CounterLocation.BeforeFixed
    if bits % 8 == 0:
        return KBKDFHMAC(
            hash_alg, mode, size, rlen=4, llen=4, location=counter_at,
            label=label, context=context, fixed=None,
        ).derive(key)  # fmt: skip
    fixed = label + b"\x00" + context + struct.pack(">I", bits)
    kdf = KBKDFHMAC(
        hash_alg, mode, size, rlen=4, llen=None, location=counter_at,
        label=None, context=None, fixed=fixed,
    )  # fmt: skip
    out = bytearray(kdf.derive(key))
    out[0] &= (1 << (bits % 8)) - 1
    return bytes(out)


def reference_kdfe(
    hash_alg: hashes.HashAlgorithm, z: bytes, label: bytes, u: bytes, v: bytes, bits: int
) -> bytes:
    """SP800-56A concatenation KDF as TPM KDFe uses it (Part 1 §11.4.10.3).

    ConcatKDFHash computes ``H([i]32 || Z || OtherInfo)``; the TPM's OtherInfo is
    ``Use || 0x00 || PartyUInfo || PartyVInfo``.
    """
    return ConcatKDFHash(hash_alg, bits // 8, label + b"\x00" + u + v).derive(z)


# TCG EK Credential Profile, default templates L-1 (RSA 2048) and L-2 (ECC NIST P-256):
# fixedTPM, fixedParent, sensitiveDataOrigin, adminWithPolicy, restricted, decrypt ...
EK_ATTRIBUTES = 0x000300B2
# ... and the policy PolicySecret(TPM_RH_ENDORSEMENT) as a SHA-256 digest.
EK_AUTH_POLICY = bytes.fromhex("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
AES_128_CFB = struct.pack(">HHH", TpmAlg.AES, 128, TpmAlg.CFB)


# TPM_ECC_CURVE (Part 2 §6.4) by cryptography's curve name.
CURVE_IDS = {"secp256r1": 0x0003, "secp384r1": 0x0004, "secp521r1": 0x0005}


def coordinate_bytes(key: ec.EllipticCurvePrivateKey) -> int:
    return (key.curve.key_size + 7) // 8


def ek_public_bytes(key: PrivateKey, name_alg: TpmAlg = TpmAlg.SHA256) -> bytes:
    """TPM2B_PUBLIC of the default EK template, with ``key``'s public part as unique."""
    # A nameAlg other than SHA-256 gets an empty authPolicy: the parser wants a nameAlg digest.
    policy = EK_AUTH_POLICY if name_alg == TpmAlg.SHA256 else b""
    head = struct.pack(">HI", name_alg, EK_ATTRIBUTES) + tpm2b(policy) + AES_128_CFB
    null = struct.pack(">H", TpmAlg.NULL)
    if isinstance(key, rsa.RSAPrivateKey):
        modulus = key.public_key().public_numbers().n.to_bytes(key.key_size // 8, "big")
        rsa_parms = struct.pack(">HI", key.key_size, 0)  # exponent 0 means 65537
        body = struct.pack(">H", TpmAlg.RSA) + head + null + rsa_parms + tpm2b(modulus)
    else:
        point, width = key.public_key().public_numbers(), coordinate_bytes(key)
        unique = tpm2b(point.x.to_bytes(width, "big")) + tpm2b(point.y.to_bytes(width, "big"))
        ecc_parms = struct.pack(">H", CURVE_IDS[key.curve.name]) + null  # kdf NULL
        body = struct.pack(">H", TpmAlg.ECC) + head + null + ecc_parms + unique
    return tpm2b(body)


class ActivationError(Exception):
    """What the software TPM returns instead of the credential (``rc`` as TPM_RC name)."""

    def __init__(self, rc: str) -> None:
        super().__init__(rc)
        self.rc = rc


def _recover_seed(key: PrivateKey, ek: TpmPublic, secret: bytes) -> bytes:
    """The TPM's CryptSecretDecrypt for the "IDENTITY" seed."""
    hash_alg = hash_for_alg(ek.name_alg)
    if isinstance(key, rsa.RSAPrivateKey):
        oaep = padding.OAEP(padding.MGF1(hash_alg), hash_alg, b"IDENTITY\x00")
        try:
            return key.decrypt(secret, oaep)
        except ValueError:
            raise ActivationError("TPM_RC_VALUE") from None
    reader = Reader(secret, "TPMS_ECC_POINT")
    x, y = reader.tpm2b(), reader.tpm2b()
    reader.expect_end()
    try:
        point = ec.EllipticCurvePublicNumbers(
            int.from_bytes(x, "big"), int.from_bytes(y, "big"), key.curve
        ).public_key()
    except ValueError:
        raise ActivationError("TPM_RC_ECC_POINT") from None
    z = key.exchange(ec.ECDH(), point)
    ek_x = key.public_key().public_numbers().x.to_bytes(coordinate_bytes(key), "big")
    return reference_kdfe(hash_alg, z, b"IDENTITY", x, ek_x, hash_alg.digest_size * 8)


def _cfb_mode(iv: bytes) -> modes.ModeWithInitializationVector:
    """cryptography's own CFB, wherever this version keeps it (newer ones in the "decrepit"
    package, where the old name warns), to check the CFB limelet builds on single AES blocks."""
    for home in (
        "cryptography.hazmat.decrepit.ciphers.modes",
        "cryptography.hazmat.primitives.ciphers.modes",
    ):
        try:
            mode: modes.ModeWithInitializationVector = importlib.import_module(home).CFB(iv)
        except (ImportError, AttributeError):
            continue
        return mode
    raise AssertionError("this cryptography has no CFB mode")


def activate(key: PrivateKey, ek: TpmPublic, object_name: bytes, data: bytes) -> bytes:
    """TPM2_ActivateCredential (Part 3 §12.5) done in software with the EK private key."""
    blob = parse_credential_blob(data)
    hash_alg = hash_for_alg(ek.name_alg)
    seed = _recover_seed(key, ek, blob.encrypted_secret)
    reader = Reader(blob.id_object, "TPMS_ID_OBJECT")
    integrity = reader.tpm2b()
    enc_identity = reader.take(reader.remaining)
    mac = hmac.HMAC(
        reference_kdfa(hash_alg, seed, b"INTEGRITY", b"", hash_alg.digest_size * 8), hash_alg
    )
    mac.update(enc_identity + object_name)
    if not std_hmac.compare_digest(mac.finalize(), integrity):
        raise ActivationError("TPM_RC_INTEGRITY")
    sym_key = reference_kdfa(hash_alg, seed, b"STORAGE", object_name, ek.symmetric.key_bits)
    decryptor = Cipher(algorithms.AES(sym_key), _cfb_mode(bytes(16))).decryptor()
    plain = Reader(decryptor.update(enc_identity) + decryptor.finalize(), "TPM2B_DIGEST")
    credential = plain.tpm2b(hash_alg.digest_size)
    plain.expect_end()
    return credential
