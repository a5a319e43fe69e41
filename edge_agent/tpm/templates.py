"""Key templates and NV indexes for the EK and the AK.

EK: the TCG EK Credential Profile for TPM Family 2.0 (v2.5, §B.3.3 templates L-1 RSA-2048 and
L-2 ECC NIST P-256) with the certificate at the profile's NV index (§2.2.1.4 low range
0x01c00002 / 0x01c0000a; §2.2.1.5 high range, where swtpm_setup puts its ECC P-384 cert at
0x01c00016).  tpm2-pytss' ``create_ek_template`` builds the template, honouring a template or
nonce a manufacturer stored in NV next to the certificate.

AK: what rust-keylime asks tss-esapi for (keylime/src/tpm.rs ``create_ak`` ->
``ak::create_ak_2``): a restricted signing key, nameAlg and scheme hash = ``tpm_hash_alg``,
RSA-2048/RSASSA or ECC P-256/ECDSA, no symmetric part, created as a child of the EK.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tpm2_pytss import TPM2B_PUBLIC, TPMA_OBJECT
from tpm2_pytss.utils import create_ek_template

from attest_protocol.tpm2.constants import EccCurve, TpmAlg
from attest_protocol.tpm2.public import TpmPublic

__all__ = [
    "AK_ATTRIBUTES",
    "EK_CERT_NV_INDEX_ECC_P256",
    "EK_CERT_NV_INDEX_ECC_P384",
    "EK_CERT_NV_INDEX_RSA_2048",
    "ak_template",
    "ek_cert_nv_index",
    "ek_template",
]

# TCG EK Credential Profile §2.2.1.4 (low range) and §2.2.1.5 (high range).
EK_CERT_NV_INDEX_RSA_2048 = 0x01C00002
EK_CERT_NV_INDEX_ECC_P256 = 0x01C0000A
EK_CERT_NV_INDEX_ECC_P384 = 0x01C00016

# Names tpm2-pytss' ek_template table knows the low-range templates by.
_EK_TEMPLATE_NAMES = {"rsa": "EK-RSA2048", "ecc": "EK-ECC256"}

# The AK's attributes (TCG TPM 2.0 Part 2 §8.3): it lives only in this TPM (fixedTPM,
# fixedParent, sensitiveDataOrigin), is used with a password (userWithAuth, empty), and signs
# only digests the TPM made itself (restricted|sign) — never decrypts (CVE-2021-3406).
AK_ATTRIBUTES = (
    TPMA_OBJECT.FIXEDTPM
    | TPMA_OBJECT.FIXEDPARENT
    | TPMA_OBJECT.SENSITIVEDATAORIGIN
    | TPMA_OBJECT.USERWITHAUTH
    | TPMA_OBJECT.RESTRICTED
    | TPMA_OBJECT.SIGN_ENCRYPT
)

# tpm2-tools style algorithm strings that TPM2B_PUBLIC.parse understands, per key type.
_AK_KEY = {"rsa": "rsa2048", "ecc": "ecc256"}

NvReader = Callable[[int], bytes]


def ek_template(encryption_alg: str, nv_read: NvReader) -> Any:
    """The EK template (a tpm2-pytss TPM2B_PUBLIC) for "rsa" or "ecc".

    ``nv_read(index)`` returns an NV index's contents or raises
    ``tpm2_pytss.utils.NoSuchIndex``; the profile lets a manufacturer override the default
    template or its unique field through indexes next to the certificate.
    """
    _cert, template = create_ek_template(_EK_TEMPLATE_NAMES[encryption_alg], nv_read)
    return template


def ak_template(encryption_alg: str, signing_alg: str, hash_alg: str) -> Any:
    """The AK template (a tpm2-pytss TPM2B_PUBLIC); algorithms are Keylime's names."""
    alg = f"{_AK_KEY[encryption_alg]}:{signing_alg}-{hash_alg}:null"
    return TPM2B_PUBLIC.parse(alg, objectAttributes=AK_ATTRIBUTES, nameAlg=hash_alg)


def ek_cert_nv_index(ek: TpmPublic) -> tuple[int, str]:
    """The NV index of the certificate for ``ek``'s key type, and a name for messages."""
    if ek.type == TpmAlg.RSA:
        return EK_CERT_NV_INDEX_RSA_2048, f"RSA-{ek.key_bits}"
    if ek.curve_id == EccCurve.NIST_P384:
        return EK_CERT_NV_INDEX_ECC_P384, "ECC NIST P-384"
    return EK_CERT_NV_INDEX_ECC_P256, "ECC NIST P-256"
