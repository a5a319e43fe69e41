"""decrypt_payload against blobs made with cryptography's AESGCM in Keylime's layout."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge_agent.payload import PayloadDecryptError, decrypt_payload
from edge_agent.payload.decrypt import GCM_IV_BYTES, GCM_TAG_BYTES, MAX_PAYLOAD_BLOB_BYTES

K = bytes(range(32))
IV = b"ABCDEFGHIJKLMNOP"  # 16 bytes, as Keylime's tenant uses


def seal(k: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """Keylime's crypto.encrypt layout before base64: iv || ciphertext || tag."""
    return iv + AESGCM(k).encrypt(iv, plaintext, None)


@pytest.mark.parametrize("plaintext", [b"", b"x", b"hello payload", os.urandom(70_000)])
def test_round_trip(plaintext: bytes) -> None:
    assert decrypt_payload(K, seal(K, IV, plaintext)) == plaintext


def test_known_vector_layout() -> None:
    blob = seal(K, IV, b"Keylime")
    assert len(blob) == GCM_IV_BYTES + len(b"Keylime") + GCM_TAG_BYTES
    assert blob[:GCM_IV_BYTES] == IV
    assert decrypt_payload(K, blob) == b"Keylime"


def flip(blob: bytes, index: int) -> bytes:
    return blob[:index] + bytes([blob[index] ^ 0x01]) + blob[index + 1 :]


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda b: flip(b, 0), id="iv-bit"),
        pytest.param(lambda b: flip(b, GCM_IV_BYTES + 2), id="ciphertext-bit"),
        pytest.param(lambda b: flip(b, len(b) - 1), id="tag-bit"),
        pytest.param(lambda b: b[:-1], id="truncated-tag"),
        pytest.param(lambda b: b + b"\x00", id="appended-byte"),
        pytest.param(lambda b: b[:GCM_IV_BYTES] + b[GCM_IV_BYTES + 1 :], id="dropped-byte"),
    ],
)
def test_forged_or_garbled_blob_is_refused(mangle: object) -> None:
    assert callable(mangle)
    blob = mangle(seal(K, IV, b"the payload"))
    with pytest.raises(PayloadDecryptError, match="does not authenticate"):
        decrypt_payload(K, blob)


def test_wrong_key_is_refused() -> None:
    with pytest.raises(PayloadDecryptError, match="does not authenticate"):
        decrypt_payload(bytes(32), seal(K, IV, b"the payload"))


@pytest.mark.parametrize("size", [0, 1, GCM_IV_BYTES, GCM_IV_BYTES + GCM_TAG_BYTES - 1])
def test_short_blob_is_refused(size: int) -> None:
    with pytest.raises(PayloadDecryptError, match="shorter than IV and tag"):
        decrypt_payload(K, b"\x00" * size)


@pytest.mark.parametrize("key_len", [0, 16, 24, 31, 33])
def test_key_length_must_be_32(key_len: int) -> None:
    with pytest.raises(PayloadDecryptError, match="K must be 32 bytes") as info:
        decrypt_payload(b"k" * key_len, seal(K, IV, b"p"))
    assert "kkk" not in str(info.value)  # never echoes key bytes


def test_oversized_blob_is_refused_before_decrypting() -> None:
    with pytest.raises(PayloadDecryptError, match="exceeds"):
        decrypt_payload(K, b"\x00" * (MAX_PAYLOAD_BLOB_BYTES + 1))
