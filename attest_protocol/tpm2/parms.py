"""Algorithm-parameter pieces of a public area (TCG TPM 2.0 Library Part 2 §11.1-11.2, §12.2.3).

``TPMT_SYM_DEF_OBJECT`` is ``algorithm u16`` then, unless NULL, ``keyBits u16, mode u16``.
A scheme (``TPMT_RSA_SCHEME``, ``TPMT_ECC_SCHEME``, ``TPMT_KDF_SCHEME``) is ``scheme u16`` then,
unless its details are TPMS_EMPTY, ``hashAlg u16``.  Each field is a selector that allows only
some algorithm ids; the sets below are those selectors.
"""

from __future__ import annotations

from typing import NamedTuple

from attest_protocol.tpm2.constants import HASH_ALGS, TpmAlg
from attest_protocol.tpm2.marshal import Reader, Writer

# TPMI_AES_KEY_BITS / TPMI_SM4_KEY_BITS / TPMI_CAMELLIA_KEY_BITS (Part 2 §11.1.5).
SYM_KEY_BITS = frozenset({128, 192, 256})
# TPMI_ALG_SYM_OBJECT and TPMI_ALG_SYM_MODE (Part 2 §9.27, §9.28), NULL handled apart.
SYM_ALGS = frozenset({TpmAlg.AES, TpmAlg.SM4, TpmAlg.CAMELLIA})
SYM_MODES = frozenset({TpmAlg.CTR, TpmAlg.OFB, TpmAlg.CBC, TpmAlg.CFB, TpmAlg.ECB, TpmAlg.NULL})
# TPMI_ALG_RSA_SCHEME (Part 2 §11.2.4.1) and TPMI_ALG_ECC_SCHEME (§11.2.5.4).  ECDAA is left
# out on purpose: its details add a commit count and nothing in Keylime uses it.
RSA_SCHEMES = frozenset({TpmAlg.RSASSA, TpmAlg.RSAPSS, TpmAlg.RSAES, TpmAlg.OAEP, TpmAlg.NULL})
ECC_SCHEMES = frozenset(
    {TpmAlg.ECDSA, TpmAlg.ECDH, TpmAlg.ECSCHNORR, TpmAlg.SM2, TpmAlg.ECMQV, TpmAlg.NULL}
)
# TPMI_ALG_KDF (Part 2 §9.32).
KDF_SCHEMES = frozenset(
    {TpmAlg.MGF1, TpmAlg.KDF1_SP800_56A, TpmAlg.KDF2, TpmAlg.KDF1_SP800_108, TpmAlg.NULL}
)
# Schemes whose details are TPMS_EMPTY rather than a hash (Part 2 §11.2.3.2, TPMS_ENC_SCHEME_RSAES).
_SCHEMES_WITHOUT_HASH = frozenset({TpmAlg.NULL, TpmAlg.RSAES})


class SymDef(NamedTuple):
    """TPMT_SYM_DEF_OBJECT; ``key_bits``/``mode`` are 0/NULL when ``alg`` is NULL."""

    alg: TpmAlg
    key_bits: int
    mode: TpmAlg


class Scheme(NamedTuple):
    """A TPMT_*_SCHEME or TPMT_KDF_SCHEME; ``hash_alg`` is NULL for the NULL and RSAES schemes."""

    alg: TpmAlg
    hash_alg: TpmAlg


SYM_NULL = SymDef(TpmAlg.NULL, 0, TpmAlg.NULL)
SCHEME_NULL = Scheme(TpmAlg.NULL, TpmAlg.NULL)


def read_alg(r: Reader, allowed: frozenset[TpmAlg], field: str) -> TpmAlg:
    """A TPM_ALG_ID that must be in ``allowed``; the error names ``field`` and its offset."""
    start = r.offset
    value = r.u16()
    if value not in allowed:
        raise r.error(f"{field} {value:#06x} is not an accepted algorithm here", start)
    return TpmAlg(value)


def read_symmetric(r: Reader) -> SymDef:
    alg = read_alg(r, SYM_ALGS | {TpmAlg.NULL}, "symmetric.algorithm")
    if alg == TpmAlg.NULL:
        return SYM_NULL
    bits_at = r.offset
    key_bits = r.u16()
    if key_bits not in SYM_KEY_BITS:
        raise r.error(f"symmetric.keyBits {key_bits} is not a block-cipher key size", bits_at)
    return SymDef(alg, key_bits, read_alg(r, SYM_MODES, "symmetric.mode"))


def read_scheme(r: Reader, allowed: frozenset[TpmAlg], field: str) -> Scheme:
    alg = read_alg(r, allowed, field)
    if alg in _SCHEMES_WITHOUT_HASH:
        return SCHEME_NULL if alg == TpmAlg.NULL else Scheme(alg, TpmAlg.NULL)
    return Scheme(alg, read_alg(r, HASH_ALGS, f"{field}.hashAlg"))


def write_symmetric(w: Writer, sym: SymDef) -> None:
    w.u16(sym.alg)
    if sym.alg != TpmAlg.NULL:
        w.u16(sym.key_bits).u16(sym.mode)


def write_scheme(w: Writer, scheme: Scheme) -> None:
    w.u16(scheme.alg)
    if scheme.alg not in _SCHEMES_WITHOUT_HASH:
        w.u16(scheme.hash_alg)
