"""TPM 2.0 algorithm identifiers, curves, attribute bits, and Keylime's algorithm names.

Values are from TCG TPM 2.0 Library Part 2: TPM_ALG_ID §6.3, TPM_ECC_CURVE §6.4,
TPM_ST §6.9, TPM_GENERATED §6.2, TPMA_OBJECT §8.3.  Keylime names algorithms in lower case
(``keylime/common/algorithms.py``: "sha256", "rsassa", "ecc", ...) in its REST bodies and
configuration; the tables at the bottom translate those names.
"""

from __future__ import annotations

import enum

from cryptography.hazmat.primitives import hashes

from attest_protocol.errors import AlgorithmError


class TpmAlg(enum.IntEnum):
    """TPM_ALG_ID (Part 2 §6.3), the subset limelet meets."""

    RSA = 0x0001
    SHA1 = 0x0004
    HMAC = 0x0005
    AES = 0x0006
    MGF1 = 0x0007
    KEYEDHASH = 0x0008
    XOR = 0x000A
    SHA256 = 0x000B
    SHA384 = 0x000C
    SHA512 = 0x000D
    NULL = 0x0010
    SM3_256 = 0x0012
    SM4 = 0x0013
    RSASSA = 0x0014
    RSAES = 0x0015
    RSAPSS = 0x0016
    OAEP = 0x0017
    ECDSA = 0x0018
    ECDH = 0x0019
    ECDAA = 0x001A
    SM2 = 0x001B
    ECSCHNORR = 0x001C
    ECMQV = 0x001D
    KDF1_SP800_56A = 0x0020
    KDF2 = 0x0021
    KDF1_SP800_108 = 0x0022
    ECC = 0x0023
    SYMCIPHER = 0x0025
    CAMELLIA = 0x0026
    CTR = 0x0040
    OFB = 0x0041
    CBC = 0x0042
    CFB = 0x0043
    ECB = 0x0044


class EccCurve(enum.IntEnum):
    """TPM_ECC_CURVE (Part 2 §6.4): the NIST curves Keylime and rust-keylime support."""

    NIST_P256 = 0x0003
    NIST_P384 = 0x0004
    NIST_P521 = 0x0005


class TpmaObject(enum.IntFlag):
    """TPMA_OBJECT bits (Part 2 §8.3.2); bits not named here are reserved."""

    FIXED_TPM = 1 << 1
    ST_CLEAR = 1 << 2
    FIXED_PARENT = 1 << 4
    SENSITIVE_DATA_ORIGIN = 1 << 5
    USER_WITH_AUTH = 1 << 6
    ADMIN_WITH_POLICY = 1 << 7
    NO_DA = 1 << 10
    ENCRYPTED_DUPLICATION = 1 << 11
    RESTRICTED = 1 << 16
    DECRYPT = 1 << 17
    SIGN_ENCRYPT = 1 << 18
    X509_SIGN = 1 << 19


# TPM_GENERATED_VALUE, "\xffTCG": the TPM puts it first in every structure it signs so that
# no external data can be made to look like TPM-produced attestation (Part 2 §6.2).
TPM_GENERATED_VALUE = 0xFF544347
# TPM_ST_ATTEST_QUOTE: TPMS_ATTEST.type for TPM2_Quote output (Part 2 §6.9).
TPM_ST_ATTEST_QUOTE = 0x8018
# The largest digest any supported bank produces (SHA-512), i.e. sizeof(TPMU_HA) (Part 2 §10.3.1).
MAX_DIGEST_BYTES = 64

_HASHES: dict[TpmAlg, type[hashes.HashAlgorithm]] = {
    TpmAlg.SHA1: hashes.SHA1,
    TpmAlg.SHA256: hashes.SHA256,
    TpmAlg.SHA384: hashes.SHA384,
    TpmAlg.SHA512: hashes.SHA512,
}
HASH_ALGS: frozenset[TpmAlg] = frozenset(_HASHES)

# Keylime's algorithm names (keylime/common/algorithms.py: Hash, Sign, Encrypt).
HASH_NAMES: dict[str, TpmAlg] = {
    "sha1": TpmAlg.SHA1,
    "sha256": TpmAlg.SHA256,
    "sha384": TpmAlg.SHA384,
    "sha512": TpmAlg.SHA512,
}
SIGN_NAMES: dict[str, TpmAlg] = {
    "rsassa": TpmAlg.RSASSA,
    "rsapss": TpmAlg.RSAPSS,
    "ecdsa": TpmAlg.ECDSA,
    "ecschnorr": TpmAlg.ECSCHNORR,
}
ENCRYPT_NAMES: dict[str, TpmAlg] = {"rsa": TpmAlg.RSA, "ecc": TpmAlg.ECC}
_KEYLIME_NAMES: dict[TpmAlg, str] = {
    alg: name for table in (HASH_NAMES, SIGN_NAMES, ENCRYPT_NAMES) for name, alg in table.items()
}


def is_hash_alg(alg: int) -> bool:
    return alg in _HASHES


def hash_for_alg(alg: int) -> hashes.HashAlgorithm:
    """A fresh ``cryptography`` hash object for a TPM hash algorithm id."""
    try:
        return _HASHES[TpmAlg(alg)]()
    except (KeyError, ValueError):
        raise AlgorithmError(f"algorithm {alg:#06x} is not a supported hash") from None


def digest_size(alg: int) -> int:
    return hash_for_alg(alg).digest_size


def _lookup(table: dict[str, TpmAlg], kind: str, name: str) -> TpmAlg:
    # Exact lower-case match, as Keylime compares these strings.
    try:
        return table[name]
    except KeyError:
        raise AlgorithmError(f"unknown {kind} algorithm name {name!r}") from None


def alg_for_hash_name(name: str) -> TpmAlg:
    return _lookup(HASH_NAMES, "hash", name)


def alg_for_sign_name(name: str) -> TpmAlg:
    return _lookup(SIGN_NAMES, "signing", name)


def alg_for_encrypt_name(name: str) -> TpmAlg:
    return _lookup(ENCRYPT_NAMES, "encryption", name)


def keylime_name(alg: int) -> str:
    """Keylime's name for ``alg`` ("sha256", "rsassa", "ecc", ...)."""
    try:
        return _KEYLIME_NAMES[TpmAlg(alg)]
    except (KeyError, ValueError):
        raise AlgorithmError(f"algorithm {alg:#06x} has no Keylime name") from None
