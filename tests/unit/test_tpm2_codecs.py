"""TPM 2.0 structure codecs: one table per structure drives both the encoder and the decoder.

Public areas marked "swtpm" were produced by swtpm 0.7.1 with tpm2-tools 5.4
(``tpm2_createek -G rsa``, ``tpm2_createak -G rsa|ecc -g sha256 -s rsassa|ecdsa``); their
Names are the ones tpm2-tools printed.  The other rows are spelled out field by field from
TCG TPM 2.0 Library Part 2.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest_protocol.errors import AlgorithmError, ParseError
from attest_protocol.tpm2.attest import ClockInfo, TpmsAttest, parse_tpms_attest
from attest_protocol.tpm2.constants import (
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    EccCurve,
    TpmAlg,
    alg_for_encrypt_name,
    alg_for_hash_name,
    alg_for_sign_name,
    digest_size,
    hash_for_alg,
    keylime_name,
)
from attest_protocol.tpm2.marshal import Reader, Writer
from attest_protocol.tpm2.pcr import PcrSelection, parse_mask, parse_pcr_selection
from attest_protocol.tpm2.public import (
    SCHEME_NULL,
    SYM_NULL,
    AttestationKeyError,
    Scheme,
    SymDef,
    TpmPublic,
    check_attestation_key,
    parse_tpm2b_public,
)
from attest_protocol.tpm2.signature import TpmtSignature, parse_tpmt_signature

SHA1, SHA256, SHA384 = TpmAlg.SHA1, TpmAlg.SHA256, TpmAlg.SHA384


def h(text: str) -> bytes:
    return bytes.fromhex(text)


def raises_at(parse: Callable[[bytes], object], data: bytes) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(data)
    return info.value


def mutate(data: bytes, offset: int, replacement: str) -> bytes:
    new = h(replacement)
    return data[:offset] + new + data[offset + len(new) :]


# --- marshal ---------------------------------------------------------------------------------

MARSHAL_TABLE: list[tuple[str, str, Any, str]] = [
    ("u8", "u8", 0xAB, "ab"),
    ("u16", "u16", 0x1234, "1234"),
    ("u32", "u32", TPM_GENERATED_VALUE, "ff544347"),
    ("u64", "u64", 0x0102030405060708, "0102030405060708"),
    ("tpm2b", "tpm2b", b"\x01\x02\x03", "0003 010203"),
    ("empty tpm2b", "tpm2b", b"", "0000"),
]


@pytest.mark.parametrize(("name", "method", "value", "encoded"), MARSHAL_TABLE)
def test_writer_encodes(name: str, method: str, value: Any, encoded: str) -> None:
    assert getattr(Writer(), method)(value).getvalue() == h(encoded)


@pytest.mark.parametrize(("name", "method", "value", "encoded"), MARSHAL_TABLE)
def test_reader_decodes(name: str, method: str, value: Any, encoded: str) -> None:
    reader = Reader(h(encoded), "T")
    assert getattr(reader, method)() == value
    assert reader.remaining == 0
    reader.expect_end()


@pytest.mark.parametrize(("name", "method", "value", "encoded"), MARSHAL_TABLE)
def test_reader_truncated(name: str, method: str, value: Any, encoded: str) -> None:
    data = h(encoded)
    for cut in range(len(data)):
        err = raises_at(lambda d: getattr(Reader(d, "T"), method)(), data[:cut])
        assert err.structure == "T"
        # A TPM2B whose size arrived fails where its body should start.
        assert err.offset == (2 if method == "tpm2b" and cut >= 2 else 0)


def test_little_endian_mirror() -> None:
    data = Writer(byteorder="little").u16(0x0B).u32(1).getvalue()
    assert data == h("0b00 01000000")
    reader = Reader(data, "T", byteorder="little")
    assert (reader.u16(), reader.u32()) == (0x0B, 1)


def test_reader_tracks_offset_and_rejects_trailing_bytes() -> None:
    reader = Reader(h("0001 aa bb"), "T")
    assert reader.tpm2b() == b"\xaa"
    assert (reader.offset, reader.remaining) == (3, 1)
    assert raises_at(lambda _: reader.expect_end(), b"").offset == 3


def test_tpm2b_over_its_maximum_names_the_size_field() -> None:
    reader = Reader(h("00 0005 0102030405"), "T")
    reader.u8()
    with pytest.raises(ParseError) as info:
        reader.tpm2b(4, "field")
    assert (info.value.offset, "field" in info.value.reason) == (1, True)


@pytest.mark.parametrize(("method", "value"), [("u8", 256), ("u16", -1), ("tpm2b", b"x" * 65536)])
def test_writer_refuses_values_that_do_not_fit(method: str, value: Any) -> None:
    with pytest.raises(ValueError, match="fit"):
        getattr(Writer(), method)(value)


# --- constants -------------------------------------------------------------------------------

HASH_TABLE = [
    ("sha1", TpmAlg.SHA1, 0x0004, 20),
    ("sha256", TpmAlg.SHA256, 0x000B, 32),
    ("sha384", TpmAlg.SHA384, 0x000C, 48),
    ("sha512", TpmAlg.SHA512, 0x000D, 64),
]


@pytest.mark.parametrize(("name", "alg", "value", "size"), HASH_TABLE)
def test_hash_algorithms(name: str, alg: TpmAlg, value: int, size: int) -> None:
    assert (alg_for_hash_name(name), int(alg)) == (alg, value)
    assert (hash_for_alg(value).name, digest_size(alg), keylime_name(alg)) == (name, size, name)


@pytest.mark.parametrize(
    ("lookup", "name", "alg"),
    [
        (alg_for_sign_name, "rsassa", TpmAlg.RSASSA),
        (alg_for_sign_name, "rsapss", TpmAlg.RSAPSS),
        (alg_for_sign_name, "ecdsa", TpmAlg.ECDSA),
        (alg_for_sign_name, "ecschnorr", TpmAlg.ECSCHNORR),
        (alg_for_encrypt_name, "rsa", TpmAlg.RSA),
        (alg_for_encrypt_name, "ecc", TpmAlg.ECC),
    ],
)
def test_keylime_algorithm_names(lookup: Callable[[str], TpmAlg], name: str, alg: TpmAlg) -> None:
    assert (lookup(name), keylime_name(alg)) == (alg, name)


@pytest.mark.parametrize(
    "call",
    [
        lambda: alg_for_hash_name("md5"),
        lambda: alg_for_hash_name("SHA256"),
        lambda: hash_for_alg(TpmAlg.RSA),
        lambda: hash_for_alg(0x7777),
        lambda: keylime_name(TpmAlg.CFB),
    ],
)
def test_unknown_algorithms_raise_algorithm_error(call: Callable[[], object]) -> None:
    with pytest.raises(AlgorithmError):
        call()


# --- PCR selection ---------------------------------------------------------------------------

SELECTION_TABLE = [
    ("PCRs 0 10 16", PcrSelection.from_mask(0x10401, SHA256), "00000001 000b 03 010401"),
    ("no banks", PcrSelection(()), "00000000"),
    ("empty bank", PcrSelection.single(SHA1, []), "00000001 0004 03 000000"),
    (
        "two banks",
        PcrSelection(((SHA1, frozenset({23})), (SHA256, frozenset({0, 7, 8})))),
        "00000002 0004 03 000080 000b 03 810100",
    ),
]


@pytest.mark.parametrize(("name", "selection", "encoded"), SELECTION_TABLE)
def test_pcr_selection_encodes(name: str, selection: PcrSelection, encoded: str) -> None:
    assert selection.encode() == h(encoded)


@pytest.mark.parametrize(("name", "selection", "encoded"), SELECTION_TABLE)
def test_pcr_selection_decodes(name: str, selection: PcrSelection, encoded: str) -> None:
    assert parse_pcr_selection(h(encoded)) == selection


@pytest.mark.parametrize(
    ("name", "encoded", "offset"),
    [
        ("count truncated", "000000", 0),
        ("17 banks", "00000011", 0),
        ("SM3 bank", "00000001 0012 03 000000", 4),
        ("sizeofSelect 4", "00000001 000b 04 00000000", 6),
        ("bitmap truncated", "00000001 000b 03 0000", 7),
        ("bank twice", "00000002 000b 03 000000 000b 03 000000", 10),
        ("trailing byte", "00000000 00", 4),
    ],
)
def test_pcr_selection_garbage(name: str, encoded: str, offset: int) -> None:
    err = raises_at(parse_pcr_selection, h(encoded))
    assert (err.structure, err.offset) == ("TPML_PCR_SELECTION", offset)


def test_pcr_selection_accessors() -> None:
    selection = PcrSelection(((SHA1, frozenset({23})), (SHA256, frozenset({8, 0}))))
    assert selection.pcrs(SHA256) == {0, 8}
    assert selection.pcrs(SHA384) == frozenset()
    assert (selection.mask(SHA1), selection.hash_algs) == (1 << 23, (SHA1, SHA256))
    assert selection.ordered() == [(SHA1, 23), (SHA256, 0), (SHA256, 8)]


@pytest.mark.parametrize(
    "build",
    [
        lambda: PcrSelection.from_mask(1 << 24, SHA256),
        lambda: PcrSelection.single(TpmAlg.RSA, [0]),
        lambda: PcrSelection(((SHA1, frozenset({1})), (SHA1, frozenset({2})))),
    ],
)
def test_pcr_selection_rejects_impossible_values(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()


@pytest.mark.parametrize(
    ("text", "mask"),
    [("0x10401", 0x10401), ("0x0", 0), ("0xFFFFFF", 0xFFFFFF), ("0x00ffffff", 0xFFFFFF)],
)
def test_parse_mask(text: str, mask: int) -> None:
    assert parse_mask(text) == mask


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("10401", 0),
        ("0X1", 0),
        (" 0x1", 0),
        ("0x", 2),
        ("0x1_0", 3),
        ("0x1 ", 3),
        ("0xg", 2),
        ("0x1000000", 0),
        ("0x000000001", 2),
    ],
)
def test_parse_mask_rejects(text: str, offset: int) -> None:
    err = raises_at(lambda _: parse_mask(text), b"")
    assert (err.structure, err.offset) == ("PCR mask", offset)


# --- TPM2B_PUBLIC ----------------------------------------------------------------------------

# swtpm RSA AK: tpm2_createak -G rsa -g sha256 -s rsassa (attributes 0x50072).
AK_RSA_MODULUS = h(
    "b2e1494221c4acbfc474ff71d4fa398b31a822383771acce"
    "cba2801b964fc40c84404f37a5d827991dbdbe98a24ce80b07d8e64a2b89bf86343a0ec9d9083cf3d96a107844e527e7"
    "6da8d51d7c09ed945bb09223c96eb22f47f40992ccea3123519b4daa15d6546ee587d0a5ca77b89fbe14f91b6eeb4377"
    "f767a3bdd21391d44e2f181a3d1cfff9d9b929d0255785bac3d9bd5d3772a2e32ec1edcc06d9ebd9e8f37ba590cd5adc"
    "2ea4ac97ed89ebddea8ef3216da48d570188aecad9682334006cd4f61121cf4d348ba2f38ab69044aed50b56517e3549"
    "49507c94313b0779a3467f1c2cc5ac0fef143c01247e8b31ac9f13eba84d5c10908470e1735bb39d"
)
AK_RSA_NAME = h("000bba019553d49ac9463889838cd8259454c0b452e1dab28d4e53fbde9a20f39849")
AK_RSA = TpmPublic(
    TpmAlg.RSA,
    SHA256,
    0x00050072,
    b"",
    SYM_NULL,
    Scheme(TpmAlg.RSASSA, SHA256),
    key_bits=2048,
    exponent=0,
    unique=AK_RSA_MODULUS,
)
AK_RSA_BYTES = h("0118 0001 000b 00050072 0000 0010 0014 000b 0800 00000000 0100") + AK_RSA_MODULUS

# swtpm ECC AK: tpm2_createak -G ecc -g sha256 -s ecdsa.
AK_ECC_XY = (
    h("352221ba67871e3983d9d610820987c2483ed1de541f26238362187198b58714"),
    h("bc73f9d39b9e21683238a2cd65f987fa82095899e58529d111552da08c6187d2"),
)
AK_ECC_NAME = h("000b12626ecd77ccc1bb1e59471d40c8579aa749bac56a01a4e541e9c031971fd302")
AK_ECC = TpmPublic(
    TpmAlg.ECC,
    SHA256,
    0x00050072,
    b"",
    SYM_NULL,
    Scheme(TpmAlg.ECDSA, SHA256),
    curve_id=EccCurve.NIST_P256,
    kdf=SCHEME_NULL,
    unique=AK_ECC_XY,
)
AK_ECC_BYTES = h(
    "0058 0023 000b 00050072 0000 0010 0018 000b 0003 0010"
    f"0020 {AK_ECC_XY[0].hex()} 0020 {AK_ECC_XY[1].hex()}"
)

# swtpm RSA EK from the TCG EK Credential Profile low-range template: PolicyA, AES-128-CFB.
EK_POLICY = h("837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa")
EK_MODULUS = h(
    "9317cb68e76169606ef6bbd23a5d45a92b1d0e1930b75a33933f318f11aca04dabc54bf7"
    "8f612cb06010505a6aecd3cc87330fd3b8e2195370115d6f9967998d7029655872f93de55c640d416e717dd7459e3286"
    "106d6a40ac78182b00bb807bd5eabb9451cfa096afbc43f60033699ee1f85ed37552044d19aa47840d7e8500c3b4de6f"
    "21486a17a988249ad805480b84c848a128587a0dada94d1e964284f6f6a1c17bfdcade64ef51132e4f7a1f1c795b5f6a"
    "5f10e178b8b88667de5e5e25cd4649da6ecea240400c6f9bde16c2cc171cd94bc059507f1b67f371bc6d6e45d7241c58"
    "811a8c1850afa3cebcfcb080ffaddb74b8b95774afd58dab0d025b85"
)
EK_RSA = TpmPublic(
    TpmAlg.RSA,
    SHA256,
    0x000300B2,
    EK_POLICY,
    SymDef(TpmAlg.AES, 128, TpmAlg.CFB),
    SCHEME_NULL,
    key_bits=2048,
    unique=EK_MODULUS,
)
EK_RSA_BYTES = (
    h(f"013a 0001 000b 000300b2 0020 {EK_POLICY.hex()} 0006 0080 0043 0010 0800 00000000 0100")
    + EK_MODULUS
)

# Spelled out: a P-384 decrypt key with AES-256-CFB, a KDF with a hash, and SHA-384 nameAlg.
_P384 = ec.derive_private_key(12345, ec.SECP384R1()).public_key().public_numbers()
P384_XY = (_P384.x.to_bytes(48, "big"), _P384.y.to_bytes(48, "big"))
ECC_P384 = TpmPublic(
    TpmAlg.ECC,
    SHA384,
    0x00030072,
    b"",
    SymDef(TpmAlg.AES, 256, TpmAlg.CFB),
    SCHEME_NULL,
    curve_id=EccCurve.NIST_P384,
    kdf=Scheme(TpmAlg.KDF1_SP800_108, SHA384),
    unique=P384_XY,
)
ECC_P384_BYTES = h(
    "007c 0023 000c 00030072 0000 0006 0100 0043 0010 0004 0022 000c"
    f"0030 {P384_XY[0].hex()} 0030 {P384_XY[1].hex()}"
)

# Spelled out: RSAES has no hash in its scheme details; exponent 3 is stored as is.
RSAES = TpmPublic(
    TpmAlg.RSA,
    SHA1,
    0x00020072,
    b"",
    SYM_NULL,
    Scheme(TpmAlg.RSAES, TpmAlg.NULL),
    key_bits=2048,
    exponent=3,
    unique=AK_RSA_MODULUS,
)
RSAES_BYTES = h("0116 0001 0004 00020072 0000 0010 0015 0800 00000003 0100") + AK_RSA_MODULUS

PUBLIC_TABLE = [
    ("swtpm RSA AK", AK_RSA, AK_RSA_BYTES),
    ("swtpm ECC AK", AK_ECC, AK_ECC_BYTES),
    ("swtpm RSA EK", EK_RSA, EK_RSA_BYTES),
    ("P-384 with KDF", ECC_P384, ECC_P384_BYTES),
    ("RSAES exponent 3", RSAES, RSAES_BYTES),
]


@pytest.mark.parametrize(("name", "public", "encoded"), PUBLIC_TABLE)
def test_public_encodes(name: str, public: TpmPublic, encoded: bytes) -> None:
    assert public.to_tpm2b() == encoded
    assert public.raw == encoded[2:]


@pytest.mark.parametrize(("name", "public", "encoded"), PUBLIC_TABLE)
def test_public_decodes(name: str, public: TpmPublic, encoded: bytes) -> None:
    assert parse_tpm2b_public(encoded) == public


@pytest.mark.parametrize(
    ("public", "name"), [(AK_RSA, AK_RSA_NAME), (AK_ECC, AK_ECC_NAME)], ids=["rsa", "ecc"]
)
def test_public_name_matches_tpm2_tools(public: TpmPublic, name: bytes) -> None:
    assert public.name() == name


def test_public_key_rsa() -> None:
    key = AK_RSA.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    numbers = key.public_numbers()
    assert (numbers.e, numbers.n) == (65537, int.from_bytes(AK_RSA_MODULUS, "big"))
    exponent_3 = RSAES.public_key()
    assert isinstance(exponent_3, rsa.RSAPublicKey)
    assert exponent_3.public_numbers().e == 3


def test_public_key_ecc_and_pem() -> None:
    key = serialization.load_pem_public_key(AK_ECC.public_key_pem())
    assert isinstance(key, ec.EllipticCurvePublicKey)
    numbers = key.public_numbers()
    assert (numbers.x, numbers.y) == tuple(int.from_bytes(c, "big") for c in AK_ECC_XY)
    assert numbers.curve.name == "secp256r1"


def test_raw_must_match_fields() -> None:
    with pytest.raises(ValueError, match="raw"):
        TpmPublic(TpmAlg.RSA, SHA256, 0, b"", SYM_NULL, SCHEME_NULL, 2048, 0, raw=b"\x00")


@pytest.mark.parametrize(("name", "public", "encoded"), PUBLIC_TABLE)
def test_public_size_field_must_cover_the_rest(
    name: str, public: TpmPublic, encoded: bytes
) -> None:
    for cut in range(len(encoded)):
        assert raises_at(parse_tpm2b_public, encoded[:cut]).offset == 0
    assert raises_at(parse_tpm2b_public, encoded + b"\x00").offset == 0


@pytest.mark.parametrize(("name", "public", "encoded"), PUBLIC_TABLE)
def test_public_truncated_inside(name: str, public: TpmPublic, encoded: bytes) -> None:
    body = encoded[2:]
    for cut in range(len(body)):
        resized = len(body[:cut]).to_bytes(2, "big") + body[:cut]
        err = raises_at(parse_tpm2b_public, resized)
        assert (err.structure, 0 <= err.offset <= cut + 2) == ("TPM2B_PUBLIC", True)


@pytest.mark.parametrize(("name", "public", "encoded"), PUBLIC_TABLE)
def test_public_trailing_byte_inside(name: str, public: TpmPublic, encoded: bytes) -> None:
    body = encoded[2:] + b"\x00"
    err = raises_at(parse_tpm2b_public, len(body).to_bytes(2, "big") + body)
    assert err.offset == len(encoded)


# Offsets in the RSA AK: type 2, nameAlg 4, attributes 6, authPolicy 10, symmetric 12,
# scheme 14, scheme hash 16, keyBits 18, exponent 20, modulus 24.  In the ECC AK: curveID 18,
# kdf 20, x 22 (its bytes from 24), y 56.
@pytest.mark.parametrize(
    ("name", "base", "at", "replacement", "offset"),
    [
        ("type KEYEDHASH", AK_RSA_BYTES, 2, "0008", 2),
        ("nameAlg NULL", AK_RSA_BYTES, 4, "0010", 4),
        ("authPolicy over 64 bytes", AK_RSA_BYTES, 10, "0041", 10),
        ("symmetric XOR", AK_RSA_BYTES, 12, "000a", 12),
        ("ECDSA scheme on RSA", AK_RSA_BYTES, 14, "0018", 14),
        ("scheme hash RSA", AK_RSA_BYTES, 16, "0001", 16),
        ("keyBits 2047", AK_RSA_BYTES, 18, "07ff", 18),
        ("modulus longer than keyBits", AK_RSA_BYTES, 24, "0101", 24),
        ("modulus shorter than keyBits", AK_RSA_BYTES, 24, "00ff", 24),
        ("even modulus", AK_RSA_BYTES, len(AK_RSA_BYTES) - 1, "9c", 24),
        ("ECDAA scheme", AK_ECC_BYTES, 14, "001a", 14),
        ("curve P-192", AK_ECC_BYTES, 18, "0001", 18),
        ("kdf ECDSA", AK_ECC_BYTES, 20, "0018", 20),
        ("x wider than the curve", AK_ECC_BYTES, 22, "0021", 22),
        ("point not on the curve", AK_ECC_BYTES, 30, "00", 22),
        ("empty public area", h("0000"), 0, "", 2),
    ],
)
def test_public_garbage(name: str, base: bytes, at: int, replacement: str, offset: int) -> None:
    err = raises_at(parse_tpm2b_public, mutate(base, at, replacement))
    assert (err.structure, err.offset) == ("TPM2B_PUBLIC", offset)


def test_authpolicy_must_be_a_name_alg_digest() -> None:
    odd = h("000e 0001 000b 00050072 0004 01020304")
    assert raises_at(parse_tpm2b_public, odd).offset == 10


@pytest.mark.parametrize(
    ("attributes", "problem"),
    [
        (0x00050072, None),
        (0x00070072, "decrypt"),
        (0x00040072, "RESTRICTED"),
        (0x00050070, "FIXED_TPM"),
        (0x00050062, "FIXED_PARENT"),
        (0x00050052, "SENSITIVE_DATA_ORIGIN"),
        (0x00010072, "SIGN_ENCRYPT"),
        (0x000300B2, "SIGN_ENCRYPT"),
    ],
)
def test_check_attestation_key(attributes: int, problem: str | None) -> None:
    public = dataclasses.replace(AK_ECC, object_attributes=attributes, raw=b"")
    if problem is None:
        check_attestation_key(public)
        assert public.object_attributes == attributes
        return
    with pytest.raises(AttestationKeyError, match=problem):
        check_attestation_key(public)


# --- TPMS_ATTEST -----------------------------------------------------------------------------

SIGNER = h("000b" + "11" * 32)
SPELLED_ATTEST = TpmsAttest(
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    SIGNER,
    h("deadbeef"),
    ClockInfo(clock=3600, reset_count=1, restart_count=2, safe=True),
    0x2019102300163636,
    PcrSelection.from_mask(0x10401, SHA256),
    b"\xab" * 32,
)
SPELLED_ATTEST_BYTES = h(
    f"ff544347 8018 0022 {SIGNER.hex()} 0004 deadbeef"
    "0000000000000e10 00000001 00000002 01 2019102300163636"
    f"00000001 000b 03 010401 0020 {'ab' * 32}"
)
# swtpm: tpm2_quote -l sha256:0,1,2,10,16 -q 00112233445566778899 with the RSA AK above.
SWTPM_ATTEST = TpmsAttest(
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
    h("000b030761bec843d6b75b44c66f7e3cc42ae02847171536df5b4d869d28ab1cccef"),
    h("00112233445566778899"),
    ClockInfo(clock=3755, reset_count=1, restart_count=0, safe=True),
    0x2019102300163636,
    PcrSelection.single(SHA256, [0, 1, 2, 10, 16]),
    h("21b54013f12d6337eb9f1e80a2325bc4318c0d1841d158d64af3d47fa9072b90"),
)
SWTPM_ATTEST_BYTES = h(
    "ff54434780180022000b030761bec843d6b75b44c66f7e3cc42ae02847171536df5b4d869d28ab1cccef000a00112233"
    "4455667788990000000000000eab000000010000000001201910230016363600000001000b03070401002021b54013f1"
    "2d6337eb9f1e80a2325bc4318c0d1841d158d64af3d47fa9072b90"
)
ATTEST_TABLE = [
    ("spelled out", SPELLED_ATTEST, SPELLED_ATTEST_BYTES),
    ("swtpm quote", SWTPM_ATTEST, SWTPM_ATTEST_BYTES),
]


@pytest.mark.parametrize(("name", "attest", "encoded"), ATTEST_TABLE)
def test_attest_encodes(name: str, attest: TpmsAttest, encoded: bytes) -> None:
    assert attest.encode() == encoded


@pytest.mark.parametrize(("name", "attest", "encoded"), ATTEST_TABLE)
def test_attest_decodes(name: str, attest: TpmsAttest, encoded: bytes) -> None:
    assert parse_tpms_attest(encoded) == attest


# Offsets in SPELLED_ATTEST_BYTES: type 4, qualifiedSigner 6, extraData 42, clockInfo 48
# (safe at 64), firmwareVersion 65, pcrSelect 73, pcrDigest 83.
@pytest.mark.parametrize(
    ("name", "at", "replacement", "offset"),
    [
        ("bad magic", 0, "ff544348", 0),
        ("certify, not quote", 4, "8017", 4),
        ("qualifiedSigner over 66 bytes", 6, "0043", 6),
        ("extraData over 66 bytes", 42, "0043", 42),
        ("safe is 2", 64, "02", 64),
        ("pcr bank unknown", 77, "0099", 77),
        ("pcrDigest over 64 bytes", 83, "0041", 83),
        ("pcrDigest longer than the data", 83, "0021", 85),
    ],
)
def test_attest_garbage(name: str, at: int, replacement: str, offset: int) -> None:
    err = raises_at(parse_tpms_attest, mutate(SPELLED_ATTEST_BYTES, at, replacement))
    assert (err.structure, err.offset) == ("TPMS_ATTEST", offset)


# --- TPMT_SIGNATURE --------------------------------------------------------------------------

SIGNATURE_TABLE = [
    (
        "RSASSA SHA-256",
        TpmtSignature(TpmAlg.RSASSA, SHA256, signature=b"\x5a" * 256),
        h("0014 000b 0100" + "5a" * 256),
    ),
    (
        "RSAPSS SHA-384",
        TpmtSignature(TpmAlg.RSAPSS, SHA384, signature=b"\x01" * 384),
        h("0016 000c 0180" + "01" * 384),
    ),
    (
        "ECDSA SHA-256",
        TpmtSignature(TpmAlg.ECDSA, SHA256, r=b"\x01" * 32, s=b"\x02" * 32),
        h(f"0018 000b 0020 {'01' * 32} 0020 {'02' * 32}"),
    ),
    (
        "ECDSA short r",
        TpmtSignature(TpmAlg.ECDSA, SHA1, r=b"\x7f", s=b"\x02" * 66),
        h(f"0018 0004 0001 7f 0042 {'02' * 66}"),
    ),
]


@pytest.mark.parametrize(("name", "signature", "encoded"), SIGNATURE_TABLE)
def test_signature_encodes(name: str, signature: TpmtSignature, encoded: bytes) -> None:
    assert signature.encode() == encoded


@pytest.mark.parametrize(("name", "signature", "encoded"), SIGNATURE_TABLE)
def test_signature_decodes(name: str, signature: TpmtSignature, encoded: bytes) -> None:
    assert parse_tpmt_signature(encoded) == signature


@pytest.mark.parametrize(
    ("name", "encoded", "offset"),
    [
        ("HMAC", "0005 000b 0000", 0),
        ("NULL", "0010", 0),
        ("ECSCHNORR", "001c 000b 0000 0000", 0),
        ("hash SM3", "0014 0012 0000", 2),
        ("hash NULL", "0018 0010 0000 0000", 2),
        ("RSA signature over 512 bytes", "0014 000b 0201", 4),
        ("r over 66 bytes", "0018 000b 0043", 4),
        ("s missing", "0018 000b 0001 01", 7),
    ],
)
def test_signature_garbage(name: str, encoded: str, offset: int) -> None:
    err = raises_at(parse_tpmt_signature, h(encoded))
    assert (err.structure, err.offset) == ("TPMT_SIGNATURE", offset)


def test_signature_encoder_refuses_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="scheme"):
        TpmtSignature(TpmAlg.HMAC, SHA256).encode()


# --- every parser: truncation and trailing bytes ---------------------------------------------

PARSERS: list[tuple[str, Callable[[bytes], object], bytes]] = [
    *((f"attest {n}", parse_tpms_attest, b) for n, _, b in ATTEST_TABLE),
    *((f"signature {n}", parse_tpmt_signature, b) for n, _, b in SIGNATURE_TABLE),
    *((f"selection {n}", parse_pcr_selection, h(b)) for n, _, b in SELECTION_TABLE),
]


@pytest.mark.parametrize(("name", "parse", "encoded"), PARSERS)
def test_every_truncation_is_a_parse_error(
    name: str, parse: Callable[[bytes], object], encoded: bytes
) -> None:
    for cut in range(len(encoded)):
        err = raises_at(parse, encoded[:cut])
        assert 0 <= err.offset <= cut


@pytest.mark.parametrize(("name", "parse", "encoded"), PARSERS)
def test_trailing_byte_is_a_parse_error(
    name: str, parse: Callable[[bytes], object], encoded: bytes
) -> None:
    assert raises_at(parse, encoded + b"\x00").offset == len(encoded)
