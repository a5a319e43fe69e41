"""KDFa/KDFe, the 0xBADCC0DE credential blob, and MakeCredential against a software TPM.

Expected KDF outputs come from ``cryptography``'s SP800-108 and SP800-56A KDFs set to the
TPM's parameters (``tests.unit.soft_tpm``); MakeCredential output is opened by a software
TPM2_ActivateCredential built from those and the EK private key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from attest_protocol import seed_sharing
from attest_protocol.credential import (
    MAX_ENCRYPTED_SECRET_SIZE,
    MAX_ID_OBJECT_SIZE,
    CredentialBlob,
    encode_credential_blob,
    make_credential,
    parse_credential_blob,
)
from attest_protocol.errors import CredentialError, ParseError
from attest_protocol.kdf import MAX_KDF_BITS, kdfa, kdfe
from attest_protocol.tpm2.constants import TpmAlg, TpmaObject, hash_for_alg
from attest_protocol.tpm2.public import SYM_NULL, SymDef, TpmPublic, parse_tpm2b_public
from tests.unit.soft_tpm import (
    EK_ATTRIBUTES,
    ActivationError,
    PrivateKey,
    activate,
    coordinate_bytes,
    ek_public_bytes,
    reference_kdfa,
    reference_kdfe,
    tpm2b,
)

# --- KDFa / KDFe known answers ----------------------------------------------------------------

KEY = bytes(range(32))
NAME = bytes.fromhex("000b") + bytes(range(100, 132))

KDFA_CASES = [
    # (hash, label, context U, context V, bits)
    (hashes.SHA256(), "STORAGE", NAME, b"", 128),
    (hashes.SHA256(), "INTEGRITY", b"", b"", 256),
    (hashes.SHA256(), "ATH", b"\x01" * 32, b"\x02" * 32, 1032),  # five HMAC blocks
    (hash_for_alg(TpmAlg.SHA1), "STORAGE", NAME, b"", 256),
    (hashes.SHA384(), "INTEGRITY", b"", b"", 384),
    (hashes.SHA512(), "STORAGE", NAME, b"", 192),
    (hashes.SHA256(), "", b"ctx", b"", 64),  # an empty label is a lone 0x00
    (hashes.SHA256(), "ODD", b"u", b"v", 129),  # not whole octets: spare bits cleared
    (hashes.SHA256(), "ODD", b"u", b"v", 7),
]


@pytest.mark.parametrize(("hash_alg", "label", "u", "v", "bits"), KDFA_CASES)
def test_kdfa_matches_sp800_108(
    hash_alg: hashes.HashAlgorithm, label: str, u: bytes, v: bytes, bits: int
) -> None:
    expected = reference_kdfa(hash_alg, KEY, label.encode(), u + v, bits)
    assert kdfa(hash_alg, KEY, label, u, v, bits) == expected
    assert len(expected) == (bits + 7) // 8


KDFE_CASES = [
    (hashes.SHA256(), "IDENTITY", b"\x0a" * 32, b"\x0b" * 32, 256),
    (hashes.SHA256(), "IDENTITY", b"\x0a" * 32, b"\x0b" * 32, 520),  # three hash blocks
    (hashes.SHA384(), "IDENTITY", b"\x0c" * 48, b"\x0d" * 48, 384),
    (hash_for_alg(TpmAlg.SHA1), "SECRET", b"", b"", 160),
    (hashes.SHA512(), "DUPLICATE", b"\x0e" * 66, b"\x0f" * 66, 512),
]


@pytest.mark.parametrize(("hash_alg", "label", "u", "v", "bits"), KDFE_CASES)
def test_kdfe_matches_sp800_56a(
    hash_alg: hashes.HashAlgorithm, label: str, u: bytes, v: bytes, bits: int
) -> None:
    z = bytes(range(200, 232))
    expected = reference_kdfe(hash_alg, z, label.encode(), u, v, bits)
    assert kdfe(hash_alg, z, label, u, v, bits) == expected


def test_kdf_label_terminator_is_added_once() -> None:
    sha = hashes.SHA256()
    storage = kdfa(sha, KEY, "STORAGE", NAME, b"", 128)
    assert kdfa(sha, KEY, "STORAGE\x00", NAME, b"", 128) == storage
    identity = kdfe(sha, KEY, "IDENTITY", b"", b"", 256)
    assert kdfe(sha, KEY, "IDENTITY\x00", b"", b"", 256) == identity


@pytest.mark.parametrize(
    ("label", "bits"), [("STORAGE", 0), ("STORAGE", -8), ("STORAGE", MAX_KDF_BITS + 1), ("É", 8)]
)
def test_kdf_rejects_bad_arguments(label: str, bits: int) -> None:
    for kdf in (kdfa, kdfe):
        with pytest.raises(ValueError, match=r"bits|ASCII"):
            kdf(hashes.SHA256(), KEY, label, b"", b"", bits)


# --- the 0xBADCC0DE blob ------------------------------------------------------------------------


HEADER = bytes.fromhex("badcc0de00000001")
ID_OBJECT = tpm2b(b"\x11" * 32) + b"\x22" * 34
SECRET = b"\x33" * 256
VALID = HEADER + tpm2b(ID_OBJECT) + tpm2b(SECRET)
AFTER_ID = len(HEADER) + 2 + len(ID_OBJECT)

ROUND_TRIP_CASES = [
    ("rsa-2048", CredentialBlob(ID_OBJECT, SECRET), VALID),
    (
        "ecc-p256",
        CredentialBlob(ID_OBJECT, b"\x44" * 68),
        HEADER + tpm2b(ID_OBJECT) + tpm2b(b"\x44" * 68),
    ),
    (
        "smallest",
        CredentialBlob(tpm2b(b"\x01") + b"\x02\x03", b"\x04"),
        HEADER + bytes.fromhex("0005 0001 01 0203 0001 04"),
    ),
    (
        "largest",
        CredentialBlob(tpm2b(b"\x05" * 64) + b"\x06" * 66, b"\x07" * 512),
        HEADER + tpm2b(tpm2b(b"\x05" * 64) + b"\x06" * 66) + tpm2b(b"\x07" * 512),
    ),
]


@pytest.mark.parametrize(
    ("blob", "encoded"), [c[1:] for c in ROUND_TRIP_CASES], ids=[c[0] for c in ROUND_TRIP_CASES]
)
def test_blob_encode_and_parse(blob: CredentialBlob, encoded: bytes) -> None:
    assert encode_credential_blob(blob) == encoded
    assert parse_credential_blob(encoded) == blob


def _id_blob(id_object: bytes) -> bytes:
    return HEADER + tpm2b(id_object) + tpm2b(SECRET)


BAD_BLOBS = [
    # (name, data, offset, words in the reason)
    ("empty", b"", 0, "need 4 bytes"),
    ("magic only", HEADER[:4], 4, "need 4 bytes"),
    ("wrong magic", bytes.fromhex("badcc0df") + VALID[4:], 0, "magic"),
    ("version 0", HEADER[:4] + bytes(4) + VALID[8:], 4, "version 0"),
    ("version 2", HEADER[:7] + b"\x02" + VALID[8:], 4, "version 2"),
    ("header only", HEADER, 8, "need 2 bytes"),
    ("empty id object", HEADER + b"\x00\x00" + tpm2b(SECRET), 8, "TPM2B_ID_OBJECT is empty"),
    ("oversized id object", HEADER + tpm2b(b"\x00" * (MAX_ID_OBJECT_SIZE + 1)), 8, "exceeds"),
    ("truncated id object", VALID[:20], 10, "need 68 bytes"),
    ("empty integrity", _id_blob(b"\x00\x00" + b"\x22" * 34), 10, "integrityHMAC is empty"),
    ("oversized integrity", _id_blob(tpm2b(b"\x11" * 65) + b"\x22" * 2), 10, "exceeds"),
    ("integrity overruns", _id_blob(b"\x00\x20" + b"\x11" * 10), 12, "need 32 bytes"),
    ("no encIdentity", _id_blob(tpm2b(b"\x11" * 32) + b"\x22"), 44, "no encIdentity"),
    ("no secret", VALID[:AFTER_ID], AFTER_ID, "need 2 bytes"),
    ("empty secret", VALID[:AFTER_ID] + b"\x00\x00", AFTER_ID, "is empty"),
    ("oversized secret", VALID[:AFTER_ID] + b"\x02\x01" + bytes(513), AFTER_ID, "exceeds"),
    ("truncated secret", VALID[:-1], AFTER_ID + 2, "need 256 bytes"),
    ("trailing byte", VALID + b"\x00", len(VALID), "trailing"),
    ("garbage", bytes(range(256)), 0, "magic"),
    ("all ones", b"\xff" * 600, 0, "magic"),
    ("header then garbage", HEADER + b"\xff" * 40, 8, "exceeds"),
]


@pytest.mark.parametrize(
    ("data", "offset", "reason"), [c[1:] for c in BAD_BLOBS], ids=[c[0] for c in BAD_BLOBS]
)
def test_blob_parse_rejects(data: bytes, offset: int, reason: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_credential_blob(data)
    assert info.value.structure == "credential blob"
    assert info.value.offset == offset
    assert reason in info.value.reason


@pytest.mark.parametrize(
    ("id_object", "secret"),
    [
        (b"", SECRET),
        (ID_OBJECT, b""),
        (b"\x00" * (MAX_ID_OBJECT_SIZE + 1), SECRET),
        (ID_OBJECT, b"\x00" * (MAX_ENCRYPTED_SECRET_SIZE + 1)),
    ],
)
def test_blob_construction_checks_sizes(id_object: bytes, secret: bytes) -> None:
    with pytest.raises(ValueError, match="bytes"):
        CredentialBlob(id_object, secret)


# --- MakeCredential against a software TPM ----------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ecc_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(params=["rsa", "ecc"])
def ek_pair(
    request: pytest.FixtureRequest, rsa_key: rsa.RSAPrivateKey, ecc_key: ec.EllipticCurvePrivateKey
) -> tuple[PrivateKey, TpmPublic]:
    key: PrivateKey = rsa_key if request.param == "rsa" else ecc_key
    return key, parse_tpm2b_public(ek_public_bytes(key))


AK_NAME = bytes.fromhex("000b") + bytes(range(32))
OTHER_NAME = bytes.fromhex("000b") + bytes(range(1, 33))
CHALLENGE = b"keylime challenge, 32 bytes long"


@pytest.mark.parametrize("credential", [b"\x00", CHALLENGE[:16], CHALLENGE])
def test_make_credential_activates(
    ek_pair: tuple[PrivateKey, TpmPublic], credential: bytes
) -> None:
    key, ek = ek_pair
    data = make_credential(ek, AK_NAME, credential)
    assert activate(key, ek, AK_NAME, data) == credential
    blob = parse_credential_blob(data)
    # integrityHMAC (TPM2B, SHA-256) then encIdentity (the encrypted TPM2B_DIGEST).
    assert len(blob.id_object) == 2 + 32 + 2 + len(credential)
    assert len(blob.encrypted_secret) == (256 if ek.is_rsa else 2 + 32 + 2 + 32)


@pytest.mark.parametrize("name_alg", [TpmAlg.SHA1, TpmAlg.SHA384, TpmAlg.SHA512])
def test_make_credential_follows_ek_name_alg(
    rsa_key: rsa.RSAPrivateKey, ecc_key: ec.EllipticCurvePrivateKey, name_alg: TpmAlg
) -> None:
    for key in (rsa_key, ecc_key):
        ek = parse_tpm2b_public(ek_public_bytes(key, name_alg))
        credential = bytes(hash_for_alg(name_alg).digest_size)  # the largest allowed
        data = make_credential(ek, AK_NAME, credential)
        assert activate(key, ek, AK_NAME, data) == credential


@pytest.mark.parametrize("key_bits", [192, 256])
def test_make_credential_follows_ek_aes_key_size(
    ek_pair: tuple[PrivateKey, TpmPublic], key_bits: int
) -> None:
    key, ek = ek_pair
    ek = dataclasses.replace(ek, symmetric=SymDef(TpmAlg.AES, key_bits, TpmAlg.CFB), raw=b"")
    assert activate(key, ek, AK_NAME, make_credential(ek, AK_NAME, CHALLENGE)) == CHALLENGE


@pytest.mark.parametrize(
    ("curve", "name_alg"),
    [(ec.SECP384R1(), TpmAlg.SHA384), (ec.SECP521R1(), TpmAlg.SHA512)],
    ids=["p384-sha384", "p521-sha512"],
)
def test_make_credential_on_larger_curves(curve: ec.EllipticCurve, name_alg: TpmAlg) -> None:
    key = ec.generate_private_key(curve)
    ek = parse_tpm2b_public(ek_public_bytes(key, name_alg))
    ek = dataclasses.replace(ek, symmetric=SymDef(TpmAlg.AES, 256, TpmAlg.CFB), raw=b"")
    data = make_credential(ek, AK_NAME, CHALLENGE)
    assert activate(key, ek, AK_NAME, data) == CHALLENGE
    # The ephemeral TPMS_ECC_POINT carries full-width coordinates (66 octets on P-521).
    assert len(parse_credential_blob(data).encrypted_secret) == 2 * (2 + coordinate_bytes(key))


# Offsets in a SHA-256 blob: header 8, TPM2B_ID_OBJECT size 2, integrityHMAC size 2, HMAC 32.
HMAC_AT = 8 + 2 + 2
ENC_IDENTITY_AT = HMAC_AT + 32
# (name, byte to flip, what the TPM answers for an RSA EK, for an ECC EK).  Flipping a bit of
# the ephemeral point's y moves it off the curve; a flipped OAEP ciphertext fails to decode.
TAMPERS: list[tuple[str, Callable[[bytes], int], str, str]] = [
    ("integrity HMAC", lambda d: HMAC_AT, "TPM_RC_INTEGRITY", "TPM_RC_INTEGRITY"),
    ("encIdentity size", lambda d: ENC_IDENTITY_AT, "TPM_RC_INTEGRITY", "TPM_RC_INTEGRITY"),
    ("encIdentity data", lambda d: ENC_IDENTITY_AT + 5, "TPM_RC_INTEGRITY", "TPM_RC_INTEGRITY"),
    ("encrypted secret", lambda d: len(d) - 5, "TPM_RC_VALUE", "TPM_RC_ECC_POINT"),
]


@pytest.mark.parametrize(
    ("where", "rsa_rc", "ecc_rc"), [t[1:] for t in TAMPERS], ids=[t[0] for t in TAMPERS]
)
def test_tampered_blob_fails(
    ek_pair: tuple[PrivateKey, TpmPublic], where: Callable[[bytes], int], rsa_rc: str, ecc_rc: str
) -> None:
    key, ek = ek_pair
    data = make_credential(ek, AK_NAME, CHALLENGE)
    assert activate(key, ek, AK_NAME, data) == CHALLENGE
    offset = where(data)
    tampered = data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :]
    with pytest.raises(ActivationError) as info:
        activate(key, ek, AK_NAME, tampered)
    assert info.value.rc == (rsa_rc if ek.is_rsa else ecc_rc)


def test_credential_for_another_object_fails(ek_pair: tuple[PrivateKey, TpmPublic]) -> None:
    key, ek = ek_pair
    with pytest.raises(ActivationError, match="TPM_RC_INTEGRITY"):
        activate(key, ek, AK_NAME, make_credential(ek, OTHER_NAME, CHALLENGE))


def test_ecc_ephemeral_key_comes_from_random_bytes(ecc_key: ec.EllipticCurvePrivateKey) -> None:
    ek = parse_tpm2b_public(ek_public_bytes(ecc_key))
    first = make_credential(ek, AK_NAME, CHALLENGE, random_bytes=bytes)
    assert first == make_credential(ek, AK_NAME, CHALLENGE, random_bytes=bytes)
    # All-zero randomness draws the scalar 1, so the ephemeral point is the generator G.
    g = ec.derive_private_key(1, ec.SECP256R1()).public_key().public_numbers()
    expected = tpm2b(g.x.to_bytes(32, "big")) + tpm2b(g.y.to_bytes(32, "big"))
    assert parse_credential_blob(first).encrypted_secret == expected


def test_curve_orders_are_group_orders() -> None:
    curves = {0x0003: ec.SECP256R1(), 0x0004: ec.SECP384R1(), 0x0005: ec.SECP521R1()}
    for curve_id, order in seed_sharing._CURVE_ORDERS.items():
        curve = curves[curve_id]
        g = ec.derive_private_key(1, curve).public_key().public_numbers()
        minus_g = ec.derive_private_key(order - 1, curve).public_key().public_numbers()
        assert (minus_g.x, minus_g.y) == (g.x, -g.y % _field_prime(curve_id))


def _field_prime(curve_id: int) -> int:
    return {
        0x0003: 2**256 - 2**224 + 2**192 + 2**96 - 1,
        0x0004: 2**384 - 2**128 - 2**96 + 2**32 - 1,
        0x0005: 2**521 - 1,
    }[curve_id]


# (name, fields of the EK to change, words in the error)
BAD_EKS: list[tuple[str, dict[str, Any], str]] = [
    ("not restricted", {"object_attributes": EK_ATTRIBUTES & ~TpmaObject.RESTRICTED}, "restricted"),
    ("not decrypt", {"object_attributes": EK_ATTRIBUTES & ~TpmaObject.DECRYPT}, "decryption"),
    ("no symmetric", {"symmetric": SYM_NULL}, "AES-CFB"),
    ("AES-CBC", {"symmetric": SymDef(TpmAlg.AES, 128, TpmAlg.CBC)}, "AES-CFB"),
    ("SM4-CFB", {"symmetric": SymDef(TpmAlg.SM4, 128, TpmAlg.CFB)}, "AES-CFB"),
]


@pytest.mark.parametrize(
    ("changes", "words"), [c[1:] for c in BAD_EKS], ids=[c[0] for c in BAD_EKS]
)
def test_make_credential_rejects_ek(
    ek_pair: tuple[PrivateKey, TpmPublic], changes: dict[str, Any], words: str
) -> None:
    ek = dataclasses.replace(ek_pair[1], **changes, raw=b"")
    with pytest.raises(CredentialError, match=words):
        make_credential(ek, AK_NAME, CHALLENGE)


# (name, object name, credential, words in the error)
BAD_ARGUMENTS = [
    ("empty credential", AK_NAME, b"", "is 0 bytes"),
    ("credential over digest", AK_NAME, CHALLENGE + b"!", "is 33 bytes"),
    ("empty name", b"", CHALLENGE, "too short"),
    ("name of unknown hash", b"\x00\x12" + bytes(32), CHALLENGE, "unsupported hash"),
    ("name too long", AK_NAME + b"\x00", CHALLENGE, "is 35 bytes"),
    ("handle, not a name", bytes.fromhex("40000001"), CHALLENGE, "unsupported hash"),
]


@pytest.mark.parametrize(
    ("name", "credential", "words"),
    [c[1:] for c in BAD_ARGUMENTS],
    ids=[c[0] for c in BAD_ARGUMENTS],
)
def test_make_credential_rejects_arguments(
    ek_pair: tuple[PrivateKey, TpmPublic], name: bytes, credential: bytes, words: str
) -> None:
    with pytest.raises(CredentialError, match=words):
        make_credential(ek_pair[1], name, credential)


def test_short_randomness_is_a_caller_bug(ek_pair: tuple[PrivateKey, TpmPublic]) -> None:
    with pytest.raises(ValueError, match="random_bytes"):
        make_credential(ek_pair[1], AK_NAME, CHALLENGE, random_bytes=lambda n: bytes(n - 1))


def test_rsa_ek_too_small_for_oaep() -> None:
    # OAEP with SHA-512 needs 2 * 64 + 2 octets of padding around the 64-octet seed.
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - on purpose
    ek = parse_tpm2b_public(ek_public_bytes(key, TpmAlg.SHA512))
    with pytest.raises(CredentialError, match="too small for OAEP"):
        make_credential(ek, AK_NAME, CHALLENGE)
