"""attest_protocol.bootstrap_keys: K/U/V, auth tag, payload seal/open and NK encryption.

Known answers come from cryptography's primitives used directly, independently of the module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from attest_protocol import bootstrap_keys as bk

K = bytes(range(32))
IV = b"ABCDEFGHIJKLMNOP"


def _counter_bytes() -> Callable[[int], bytes]:
    """Deterministic ``random_bytes``: 0x01..., then 0x02..., and so on."""
    calls = iter(range(1, 256))
    return lambda n: bytes([next(calls)]) * n


def _fixed_iv(n: int) -> bytes:
    assert n == bk.IV_BYTES
    return IV


@pytest.fixture(scope="module")
def nk() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def test_split_key_recombines_and_hides_secrets() -> None:
    key = bk.split_key(_counter_bytes())
    assert (key.k, key.v) == (b"\x01" * 32, b"\x02" * 32)
    assert key.u == b"\x03" * 32
    assert bk.xor(key.u, key.v) == key.k
    assert "\\x01" not in repr(key) and "\\x03" not in repr(key)


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [(b"", b"", b""), (b"\x0f", b"\xf0", b"\xff"), (b"\xaa\x55", b"\xaa\x55", b"\x00\x00")],
)
def test_xor_table(a: bytes, b: bytes, expected: bytes) -> None:
    assert bk.xor(a, b) == expected


@pytest.mark.parametrize(("a", "b"), [(b"\x00", b""), (b"", b"\x00"), (b"\x00" * 31, K)])
def test_xor_refuses_unequal_lengths(a: bytes, b: bytes) -> None:
    with pytest.raises(bk.KeyLengthError, match="equal length"):
        bk.xor(a, b)


@pytest.mark.parametrize(
    ("key", "message"),
    [(K, "agent-1"), (K, b"challenge"), (b"", ""), (b"\xff" * 64, "d432fbb3-\u00e9")],
)
def test_hmac_sha384_hex_matches_hmac_module(key: bytes, message: bytes | str) -> None:
    data = message.encode("utf-8") if isinstance(message, str) else message
    expected = hmac.new(key, data, hashlib.sha384).hexdigest()
    assert bk.hmac_sha384_hex(key, message) == expected
    assert len(expected) == 2 * bk.AUTH_TAG_BYTES


def test_auth_tag_and_its_check() -> None:
    tag = bk.auth_tag(K, "agent-1")
    assert tag == hmac.new(K, b"agent-1", hashlib.sha384).hexdigest()
    assert bk.auth_tag_matches(K, "agent-1", bytes.fromhex(tag))


@pytest.mark.parametrize(
    ("k", "agent_id", "tag"),
    [
        (bytes(32), "agent-1", "right K for agent-1"),
        (K, "agent-2", "right K for agent-1"),
        (K, "agent-1", "hex text, not raw"),
        (K, "agent-1", "empty"),
    ],
)
def test_auth_tag_mismatch(k: bytes, agent_id: str, tag: str) -> None:
    good = bk.auth_tag(K, "agent-1")
    raw = {
        "right K for agent-1": bytes.fromhex(good),
        "hex text, not raw": good.encode(),
        "empty": b"",
    }[tag]
    assert not bk.auth_tag_matches(k, agent_id, raw)


@pytest.mark.parametrize("plaintext", [b"", b"x", b"hello payload", bytes(70_000)])
def test_seal_is_keylime_layout_and_opens(plaintext: bytes) -> None:
    blob = bk.seal_payload(K, plaintext, _fixed_iv)
    assert blob == IV + AESGCM(K).encrypt(IV, plaintext, None)
    assert len(blob) == bk.IV_BYTES + len(plaintext) + bk.TAG_BYTES
    assert bk.open_payload(K, blob) == plaintext
    sealed = bk.encrypt_payload(K, plaintext, _fixed_iv)
    assert sealed == base64.b64encode(blob)
    assert bk.decrypt_payload(K, sealed) == plaintext


def _flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 1]) + blob[index + 1 :]


GOOD = IV + AESGCM(K).encrypt(IV, b"the payload", None)

BAD_OPEN: list[tuple[str, bytes, bytes, type[bk.BootstrapCryptoError], str]] = [
    ("iv-bit", K, _flip(GOOD, 0), bk.PayloadAuthError, "does not authenticate"),
    ("ciphertext-bit", K, _flip(GOOD, 18), bk.PayloadAuthError, "does not authenticate"),
    ("tag-bit", K, _flip(GOOD, len(GOOD) - 1), bk.PayloadAuthError, "does not authenticate"),
    ("truncated", K, GOOD[:-1], bk.PayloadAuthError, "does not authenticate"),
    ("wrong-key", bytes(32), GOOD, bk.PayloadAuthError, "does not authenticate"),
    ("empty", K, b"", bk.PayloadFormatError, "shorter than IV and tag"),
    ("iv-and-short-tag", K, GOOD[:31], bk.PayloadFormatError, "shorter than IV and tag"),
    ("short-key", K[:16], GOOD, bk.KeyLengthError, "K must be 32 bytes, got 16"),
    ("long-key", K + b"k", GOOD, bk.KeyLengthError, "K must be 32 bytes, got 33"),
]


@pytest.mark.parametrize(
    ("k", "blob", "error", "match"),
    [case[1:] for case in BAD_OPEN],
    ids=[case[0] for case in BAD_OPEN],
)
def test_open_refuses(
    k: bytes, blob: bytes, error: type[bk.BootstrapCryptoError], match: str
) -> None:
    with pytest.raises(error, match=match) as caught:
        bk.open_payload(k, blob)
    assert isinstance(caught.value, ValueError)
    assert caught.value.reason == str(caught.value)
    assert K.hex() not in str(caught.value)


@pytest.mark.parametrize("sealed", [b"not base64!", b"QUJ", "é".encode()])
def test_decrypt_payload_refuses_bad_base64(sealed: bytes) -> None:
    with pytest.raises(bk.PayloadFormatError, match="base64"):
        bk.decrypt_payload(K, sealed)


def test_seal_refuses_bad_key() -> None:
    with pytest.raises(bk.KeyLengthError, match="K must be 32 bytes"):
        bk.seal_payload(K[:31], b"x")


@pytest.mark.parametrize("as_text", [True, False])
def test_share_round_trip_through_nk(nk: rsa.RSAPrivateKey, as_text: bool) -> None:
    pem = _pem(nk)
    encrypted = bk.encrypt_to_nk(pem.decode() if as_text else pem, K)
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    assert nk.decrypt(encrypted, oaep) == K
    assert bk.decrypt_share(nk, encrypted) == K


@pytest.mark.parametrize(
    ("encrypted", "match"),
    [
        ("short share", "is not 32 bytes"),
        ("garbage", "does not decrypt"),
        ("empty", "does not decrypt"),
    ],
)
def test_decrypt_share_refuses(nk: rsa.RSAPrivateKey, encrypted: str, match: str) -> None:
    blob = {
        "short share": bk.encrypt_to_nk(_pem(nk), K[:16]),
        "garbage": b"\x00" * 256,
        "empty": b"",
    }[encrypted]
    with pytest.raises(bk.KeyShareError, match=match):
        bk.decrypt_share(nk, blob)


@pytest.mark.parametrize(
    ("pem", "match"),
    [
        ("not a pem", "not a PEM public key"),
        ("", "not a PEM public key"),
        ("ec", "not an RSA key"),
        ("non-ascii é", "not a PEM public key"),
    ],
)
def test_encrypt_to_nk_refuses(pem: str, match: str) -> None:
    if pem == "ec":
        pem = _pem(ec.generate_private_key(ec.SECP256R1())).decode()
    with pytest.raises(bk.NkKeyError, match=match):
        bk.encrypt_to_nk(pem, K)
