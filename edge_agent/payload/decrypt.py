"""Decrypt the tenant's payload with K: AES-256-GCM in Keylime's ``iv || ciphertext || tag``.

Keylime's tenant encrypts with a 16-byte IV (keylime/crypto.py ``encrypt``; rust-keylime's
``decrypt_aead`` in keylime/src/crypto.rs reads the same layout), not the 12 bytes SP 800-38D
recommends, and no associated data.  K is always 32 bytes: the tenant draws it with
``generate_random_key(32)`` and U and V are its XOR halves.

Pure: bytes in, bytes out.  Decrypting the largest accepted blob takes milliseconds, so the
server may call it directly; a caller worried about latency can use ``trio.to_thread``.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from edge_agent.payload.errors import PayloadDecryptError

__all__ = [
    "GCM_IV_BYTES",
    "GCM_TAG_BYTES",
    "K_BYTES",
    "MAX_PAYLOAD_BLOB_BYTES",
    "decrypt_payload",
]

# AES-256 key: K = U xor V, 32 bytes each (keylime/tenant.py, user_data_encrypt).
K_BYTES = 32
# Keylime's IV is one AES block (crypto.py AES_BLOCK_SIZE), the tag a full 16-byte GCM tag.
GCM_IV_BYTES = 16
GCM_TAG_BYTES = 16
# The tenant refuses payloads over max_payload_size (default 1 MiB of base64, tenant.conf);
# the default tmpfs is 1 MiB too.  Eight times that leaves room for larger configurations
# while keeping one request from holding unbounded memory.
MAX_PAYLOAD_BLOB_BYTES = 8 * 1024 * 1024


def decrypt_payload(k: bytes, blob: bytes) -> bytes:
    """The plaintext of ``blob`` (the base64-decoded payload) under K.

    Raises PayloadDecryptError for a key that is not 32 bytes, a blob shorter than IV + tag
    or larger than MAX_PAYLOAD_BLOB_BYTES, and for any blob whose tag does not verify
    (a wrong K, a flipped bit, a truncated or forged blob are indistinguishable, by design).
    """
    if len(k) != K_BYTES:
        raise PayloadDecryptError(f"K must be {K_BYTES} bytes, got {len(k)}")
    if len(blob) < GCM_IV_BYTES + GCM_TAG_BYTES:
        raise PayloadDecryptError(
            f"payload of {len(blob)} bytes is shorter than IV and tag "
            f"({GCM_IV_BYTES + GCM_TAG_BYTES} bytes)"
        )
    if len(blob) > MAX_PAYLOAD_BLOB_BYTES:
        raise PayloadDecryptError(
            f"payload of {len(blob)} bytes exceeds {MAX_PAYLOAD_BLOB_BYTES} bytes"
        )
    iv, sealed = blob[:GCM_IV_BYTES], blob[GCM_IV_BYTES:]
    try:
        # AESGCM takes ciphertext||tag, which is exactly what follows the IV.
        return AESGCM(k).decrypt(iv, sealed, None)
    except InvalidTag as exc:
        raise PayloadDecryptError("payload does not authenticate under K") from exc
