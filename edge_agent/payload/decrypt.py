"""Decrypt the tenant's payload with K: AES-256-GCM in Keylime's ``iv || ciphertext || tag``.

The cipher and its layout are attest_protocol.bootstrap_keys' (shared with the tenant); what
stays here is the agent's own limit on the blob and its error type.

Pure: bytes in, bytes out.  Decrypting the largest accepted blob takes milliseconds, so the
server may call it directly; a caller worried about latency can use ``trio.to_thread``.
"""

from __future__ import annotations

from attest_protocol.bootstrap_keys import (
    IV_BYTES,
    KEY_BYTES,
    TAG_BYTES,
    BootstrapCryptoError,
    open_payload,
)
from edge_agent.payload.errors import PayloadDecryptError

__all__ = [
    "GCM_IV_BYTES",
    "GCM_TAG_BYTES",
    "K_BYTES",
    "MAX_PAYLOAD_BLOB_BYTES",
    "decrypt_payload",
]

K_BYTES = KEY_BYTES
GCM_IV_BYTES = IV_BYTES
GCM_TAG_BYTES = TAG_BYTES
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
    if len(blob) > MAX_PAYLOAD_BLOB_BYTES:
        raise PayloadDecryptError(
            f"payload of {len(blob)} bytes exceeds {MAX_PAYLOAD_BLOB_BYTES} bytes"
        )
    try:
        return open_payload(k, blob)
    except BootstrapCryptoError as exc:
        raise PayloadDecryptError(exc.reason) from exc
