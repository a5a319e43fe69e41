"""TPM2B_PUBLIC / TPMT_PUBLIC for RSA and ECC keys (TCG TPM 2.0 Library Part 2 §12.2).

Layout of TPMT_PUBLIC (big-endian, Part 2 §12.2.4)::

    type u16 | nameAlg u16 | objectAttributes u32 | authPolicy TPM2B_DIGEST
    | parameters: TPMS_RSA_PARMS (§12.2.3.5) or TPMS_ECC_PARMS (§12.2.3.6)
    | unique: TPM2B_PUBLIC_KEY_RSA, or TPMS_ECC_POINT = TPM2B x || TPM2B y

The parser is strict: the TPM2B size must cover exactly the TPMT_PUBLIC, every algorithm id
must be one its selector allows, and ``unique`` must hold a valid public key.  The Name
(Part 1 §16) hashes the exact bytes received, which ``raw`` keeps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest_protocol.errors import AttestationKeyError, ParseError
from attest_protocol.tpm2.constants import (
    HASH_ALGS,
    MAX_DIGEST_BYTES,
    EccCurve,
    TpmAlg,
    TpmaObject,
    digest_size,
    hash_for_alg,
)
from attest_protocol.tpm2.marshal import Reader, Writer
from attest_protocol.tpm2.parms import (
    ECC_SCHEMES,
    KDF_SCHEMES,
    RSA_SCHEMES,
    SCHEME_NULL,
    SYM_NULL,
    Scheme,
    SymDef,
    read_alg,
    read_scheme,
    read_symmetric,
    write_scheme,
    write_symmetric,
)

# SymDef, Scheme and their NULL values are part of this module's interface.
__all__ = [
    "AK_REQUIRED_ATTRIBUTES",
    "SCHEME_NULL",
    "SYM_NULL",
    "AttestationKeyError",
    "PublicKey",
    "Scheme",
    "SymDef",
    "TpmPublic",
    "check_attestation_key",
    "parse_tpm2b_public",
]

PublicKey = Union[rsa.RSAPublicKey, ec.EllipticCurvePublicKey]

# TPMI_RSA_KEY_BITS: the RSA sizes a TPM may implement (TCG Algorithm Registry); PC Client
# TPMs must support 2048, newer parts add 3072 and 4096.
RSA_KEY_BITS = frozenset({1024, 2048, 3072, 4096})
# Part 2 §12.2.3.5: an exponent of zero in TPMS_RSA_PARMS means the default 2^16 + 1.
RSA_DEFAULT_EXPONENT = 65537
_CURVES: dict[EccCurve, ec.EllipticCurve] = {
    EccCurve.NIST_P256: ec.SECP256R1(),
    EccCurve.NIST_P384: ec.SECP384R1(),
    EccCurve.NIST_P521: ec.SECP521R1(),
}
# The chain of trust EK -> AK -> quote holds only if the AK was made inside this TPM and never
# leaves it (fixedTPM, fixedParent, sensitiveDataOrigin) and is a restricted signing key, which
# signs only digests the TPM produced itself (Part 1 "Restricted Signing Key"); CVE-2021-3406
# was Keylime trusting an AK without such checks.  Keylime's AK_EXPECTED_ATTRS (tpm2_objects.py,
# after tpm2_createak) also has userWithAuth, which is about authorisation, not provenance, so
# it is not required here.  decrypt must be clear: a TPM refuses to create a restricted key that
# both signs and decrypts (Part 3 TPM2_Create, TPM_RC_ATTRIBUTES).
AK_REQUIRED_ATTRIBUTES = (
    TpmaObject.FIXED_TPM
    | TpmaObject.FIXED_PARENT
    | TpmaObject.SENSITIVE_DATA_ORIGIN
    | TpmaObject.RESTRICTED
    | TpmaObject.SIGN_ENCRYPT
)


@dataclass(frozen=True)
class TpmPublic:
    """A TPMT_PUBLIC of type RSA or ECC.

    RSA keys fill ``key_bits``, ``exponent`` (0 means 65537) and ``unique`` = modulus bytes;
    ECC keys fill ``curve_id``, ``kdf`` and ``unique`` = ``(x, y)``.  ``raw`` is the marshalled
    TPMT_PUBLIC; left empty it is built from the fields, given it must match them.
    """

    type: TpmAlg
    name_alg: TpmAlg
    object_attributes: int
    auth_policy: bytes
    symmetric: SymDef
    scheme: Scheme
    key_bits: int = 0
    exponent: int = 0
    curve_id: EccCurve | None = None
    kdf: Scheme | None = None
    unique: Union[bytes, tuple[bytes, bytes]] = b""
    raw: bytes = b""

    def __post_init__(self) -> None:
        built = _marshal_tpmt_public(self)
        if not self.raw:
            object.__setattr__(self, "raw", built)
        elif self.raw != built:
            raise ValueError("raw does not match the fields of TpmPublic")

    @property
    def is_rsa(self) -> bool:
        return self.type == TpmAlg.RSA

    @property
    def is_ecc(self) -> bool:
        return self.type == TpmAlg.ECC

    def to_tpm2b(self) -> bytes:
        return Writer().tpm2b(self.raw).getvalue()

    def name(self) -> bytes:
        """nameAlg (UINT16) || H_nameAlg(TPMT_PUBLIC) (Part 1 §16 "Names")."""
        digest = hashes.Hash(hash_for_alg(self.name_alg))
        digest.update(self.raw)
        return int(self.name_alg).to_bytes(2, "big") + digest.finalize()

    def public_key(self) -> PublicKey:
        """The key as a ``cryptography`` object, built once per TpmPublic: a verifier checks
        every quote of an agent with the one AK it parsed at the start of polling."""
        key: Optional[PublicKey] = self.__dict__.get("_public_key")
        if key is None:
            try:
                key = _key_from_fields(self)
            except ValueError as exc:
                offset = len(self.raw) - len(_marshal_unique(self))
                raise ParseError("TPMT_PUBLIC", offset, "unique is not a valid public key") from exc
            object.__setattr__(self, "_public_key", key)  # a cache, not a field: eq ignores it
        return key

    def public_key_pem(self) -> bytes:
        return self.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def check_attestation_key(pub: TpmPublic) -> None:
    """Raise ``AttestationKeyError`` unless ``pub`` is a TPM-bound restricted signing key."""
    missing = [f.name for f in TpmaObject if f & AK_REQUIRED_ATTRIBUTES & ~pub.object_attributes]
    if missing:
        raise AttestationKeyError(f"object attributes lack {', '.join(map(str, missing))}")
    if pub.object_attributes & TpmaObject.DECRYPT:
        raise AttestationKeyError("decrypt is set on a restricted signing key")


# --- decoding -------------------------------------------------------------------------------


def parse_tpm2b_public(data: bytes) -> TpmPublic:
    """Decode a TPM2B_PUBLIC whose size field covers exactly the rest of ``data``."""
    r = Reader(data, "TPM2B_PUBLIC")
    size = r.u16()
    if size != r.remaining:
        raise r.error(f"size field says {size} bytes but {r.remaining} follow", 0)
    if size == 0:
        raise r.error("empty public area")
    pub = _read_tpmt_public(r)
    r.expect_end()
    return pub


def _read_tpmt_public(r: Reader) -> TpmPublic:
    kind = read_alg(r, frozenset({TpmAlg.RSA, TpmAlg.ECC}), "type")
    name_alg = read_alg(r, HASH_ALGS, "nameAlg")
    attributes = r.u32()
    policy_at = r.offset
    auth_policy = r.tpm2b(MAX_DIGEST_BYTES, "authPolicy")
    if auth_policy and len(auth_policy) != digest_size(name_alg):
        # TPM2_Create refuses any other size (Part 3 §12.1, TPM_RC_SIZE on authPolicy).
        raise r.error("authPolicy is neither empty nor a nameAlg digest", policy_at)
    symmetric = read_symmetric(r)
    head = (kind, name_alg, attributes, auth_policy, symmetric)
    pub = _read_rsa(r, *head) if kind == TpmAlg.RSA else _read_ecc(r, *head)
    # The fields re-marshal to exactly the bytes read (every field is kept), so the Name
    # computed over ``raw`` is the Name the TPM computed.
    unique_at = r.offset - len(_marshal_unique(pub))
    try:
        _key_from_fields(pub)
    except ValueError:
        raise r.error("unique is not a valid public key", unique_at) from None
    return pub


def _read_rsa(
    r: Reader, kind: TpmAlg, name_alg: TpmAlg, attrs: int, policy: bytes, sym: SymDef
) -> TpmPublic:
    scheme = read_scheme(r, RSA_SCHEMES, "scheme")
    bits_at = r.offset
    key_bits = r.u16()
    if key_bits not in RSA_KEY_BITS:
        raise r.error(f"RSA keyBits {key_bits} is not a supported size", bits_at)
    exponent = r.u32()
    modulus_at = r.offset
    modulus = r.tpm2b(key_bits // 8, "unique (RSA modulus)")
    if len(modulus) != key_bits // 8:
        raise r.error(f"RSA modulus is {len(modulus)} bytes, keyBits says {key_bits}", modulus_at)
    return TpmPublic(
        kind,
        name_alg,
        attrs,
        policy,
        sym,
        scheme,
        key_bits=key_bits,
        exponent=exponent,
        unique=modulus,
    )


def _read_ecc(
    r: Reader, kind: TpmAlg, name_alg: TpmAlg, attrs: int, policy: bytes, sym: SymDef
) -> TpmPublic:
    scheme = read_scheme(r, ECC_SCHEMES, "scheme")
    curve_at = r.offset
    curve_value = r.u16()
    if curve_value not in _CURVES:
        raise r.error(f"curveID {curve_value:#06x} is not a supported curve", curve_at)
    curve = EccCurve(curve_value)
    kdf = read_scheme(r, KDF_SCHEMES, "kdf")
    # Coordinates are normally full width; Keylime's own encoder strips leading zeros, so any
    # length up to the curve's width is read and the point check below decides.
    width = _coordinate_bytes(curve)
    x = r.tpm2b(width, "unique.x")
    y = r.tpm2b(width, "unique.y")
    return TpmPublic(
        kind, name_alg, attrs, policy, sym, scheme, curve_id=curve, kdf=kdf, unique=(x, y)
    )


def _coordinate_bytes(curve: EccCurve) -> int:
    return (_CURVES[curve].key_size + 7) // 8


# --- encoding and keys ----------------------------------------------------------------------


def _marshal_tpmt_public(pub: TpmPublic) -> bytes:
    w = Writer().u16(pub.type).u16(pub.name_alg).u32(pub.object_attributes)
    w.tpm2b(pub.auth_policy)
    write_symmetric(w, pub.symmetric)
    write_scheme(w, pub.scheme)
    if pub.type == TpmAlg.RSA:
        w.u16(pub.key_bits).u32(pub.exponent)
    elif pub.type == TpmAlg.ECC:
        if pub.curve_id is None or pub.kdf is None:
            raise ValueError("an ECC public area needs curve_id and kdf")
        w.u16(pub.curve_id)
        write_scheme(w, pub.kdf)
    else:
        raise ValueError(f"unsupported public area type {pub.type!r}")
    return w.put(_marshal_unique(pub)).getvalue()


def _marshal_unique(pub: TpmPublic) -> bytes:
    if pub.type == TpmAlg.RSA:
        if not isinstance(pub.unique, bytes):
            raise ValueError("an RSA public area's unique is the modulus bytes")
        return Writer().tpm2b(pub.unique).getvalue()
    if not isinstance(pub.unique, tuple):
        raise ValueError("an ECC public area's unique is an (x, y) pair")
    x, y = pub.unique
    return Writer().tpm2b(x).tpm2b(y).getvalue()


def _key_from_fields(pub: TpmPublic) -> PublicKey:
    """The public key in ``unique``; ``ValueError`` when it is not a valid key."""
    if pub.type == TpmAlg.RSA and isinstance(pub.unique, bytes):
        exponent = pub.exponent or RSA_DEFAULT_EXPONENT
        modulus = int.from_bytes(pub.unique, "big")
        # cryptography accepts any n; a TPM's modulus is odd and exactly keyBits long.
        if modulus.bit_length() != pub.key_bits or not modulus & 1:
            raise ValueError("modulus is not an odd number of exactly keyBits bits")
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()
    if pub.type == TpmAlg.ECC and isinstance(pub.unique, tuple) and pub.curve_id is not None:
        x, y = (int.from_bytes(c, "big") for c in pub.unique)
        return ec.EllipticCurvePublicNumbers(x, y, _CURVES[pub.curve_id]).public_key()
    raise ValueError("fields do not describe an RSA or ECC key")
