"""The NK: the agent's RSA-2048 payload key, created once and kept in the data dir.

The tenant and verifier encrypt the U and V key halves to it (Keylime's ``pubkey`` in the
agent's ``GET /keys/pubkey`` answer), so it must survive restarts.  As rust-keylime does
(keylime-agent/src/main.rs, ``payload_key``), an existing key that is not RSA-2048 stops the
agent instead of being replaced: that file belongs to someone.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from edge_agent.keys.errors import KeyMaterialError
from edge_agent.keys.pem import load_private_key, store_private_key

__all__ = ["NK_KEY_SIZE_BITS", "load_or_create_nk", "nk_public_pem"]

log = logging.getLogger(__name__)

NK_KEY_SIZE_BITS = 2048
NK_PUBLIC_EXPONENT = 65537


def load_or_create_nk(path: Path, password: str = "") -> rsa.RSAPrivateKey:
    """The NK from ``path``, created (and written 0600) when the file does not exist."""
    key = load_private_key(path, password)
    if key is None:
        log.info("Creating the payload key (NK, RSA-%d) in %s", NK_KEY_SIZE_BITS, path)
        created = rsa.generate_private_key(NK_PUBLIC_EXPONENT, NK_KEY_SIZE_BITS)
        store_private_key(path, created, password)
        return created
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size != NK_KEY_SIZE_BITS:
        raise KeyMaterialError(path, f"the payload key must be RSA-{NK_KEY_SIZE_BITS}")
    log.info("Loaded the payload key (NK) from %s", path)
    return key


def nk_public_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The NK's public half as SubjectPublicKeyInfo PEM, the form Keylime exchanges."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
