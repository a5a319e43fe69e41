"""An EK public area rebuilt from the EK certificate, for agents that send only ``ekcert``.

Keylime 6.x agents (and Keylime's own ``keylime/tpm/tpm2_objects.py``,
``ek_low_tpm2b_public_from_pubkey``) do this: the certificate holds only the public key, and
the rest of the TPM2B_PUBLIC is the TCG default EK template of the "low range" (TCG EK
Credential Profile 2.x, §B.3.3 template L-1 for RSA 2048, §B.3.4 L-2 for ECC NIST P-256):
nameAlg SHA-256, the attributes below, PolicyA = TPM2_PolicySecret(TPM_RH_ENDORSEMENT),
AES-128-CFB, no scheme.  Like Keylime, a P-384 key gets the same low-range fields (a TPM that
made its P-384 EK from the high-range template H-4 will then fail activation, which is the
safe outcome).

Only the key sizes the templates define are accepted: RSA 2048, ECC P-256 and P-384.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest_protocol.tpm2.constants import EccCurve, TpmAlg, TpmaObject
from attest_protocol.tpm2.public import SCHEME_NULL, SymDef, TpmPublic
from registrar_lite.errors import RequestError

# TCG EK Credential Profile, template L-1/L-2 objectAttributes (0x000300B2).
EK_LOW_ATTRIBUTES = (
    TpmaObject.FIXED_TPM
    | TpmaObject.FIXED_PARENT
    | TpmaObject.SENSITIVE_DATA_ORIGIN
    | TpmaObject.ADMIN_WITH_POLICY
    | TpmaObject.RESTRICTED
    | TpmaObject.DECRYPT
)
# PolicyA (SHA-256): the policy digest of TPM2_PolicySecret(TPM_RH_ENDORSEMENT).
EK_LOW_AUTH_POLICY = bytes.fromhex(
    "837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa"
)
EK_LOW_SYMMETRIC = SymDef(TpmAlg.AES, 128, TpmAlg.CFB)
EK_RSA_BITS = 2048
_CURVES = {"secp256r1": EccCurve.NIST_P256, "secp384r1": EccCurve.NIST_P384}

_FIELD = "ekcert"


def ek_public_from_key(key: object) -> TpmPublic:
    """The low-range default-template EK public area holding ``key``; RequestError otherwise."""
    if isinstance(key, rsa.RSAPublicKey):
        return _rsa(key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _ecc(key)
    raise RequestError(_FIELD, "public key is neither RSA nor ECC")


def _rsa(key: rsa.RSAPublicKey) -> TpmPublic:
    if key.key_size != EK_RSA_BITS:
        raise RequestError(_FIELD, f"RSA-{key.key_size} EK has no TCG default template")
    numbers = key.public_numbers()
    # TPMS_RSA_PARMS.exponent 0 means the default 65537 (TPM 2.0 Part 2 §12.2.3.5).
    exponent = 0 if numbers.e == 65537 else numbers.e
    return TpmPublic(
        TpmAlg.RSA,
        TpmAlg.SHA256,
        int(EK_LOW_ATTRIBUTES),
        EK_LOW_AUTH_POLICY,
        EK_LOW_SYMMETRIC,
        SCHEME_NULL,
        key_bits=EK_RSA_BITS,
        exponent=exponent,
        unique=numbers.n.to_bytes(EK_RSA_BITS // 8, "big"),
    )


def _ecc(key: ec.EllipticCurvePublicKey) -> TpmPublic:
    curve = _CURVES.get(key.curve.name)
    if curve is None:
        raise RequestError(_FIELD, f"ECC curve {key.curve.name} has no TCG default template")
    numbers = key.public_numbers()
    # A TPM marshals coordinates at full curve width (Part 2 §11.2.5.2, TPMS_ECC_POINT).
    width = (key.curve.key_size + 7) // 8
    return TpmPublic(
        TpmAlg.ECC,
        TpmAlg.SHA256,
        int(EK_LOW_ATTRIBUTES),
        EK_LOW_AUTH_POLICY,
        EK_LOW_SYMMETRIC,
        SCHEME_NULL,
        curve_id=curve,
        kdf=SCHEME_NULL,
        unique=(numbers.x.to_bytes(width, "big"), numbers.y.to_bytes(width, "big")),
    )
