"""The bootstrap key K, its shares U and V, and what is derived from them.

Keylime's scheme (keylime/cmd/user_data_encrypt.py ``encrypt``, keylime/crypto.py): K and V
are 32 random octets and U = K xor V. The tenant sends U to the agent (RSA-OAEP-SHA1 to the
agent's NK public key) and V to the verifier, which releases it only while the agent attests;
the agent recombines K and decrypts the payload. ``auth_tag`` = hex HMAC-SHA384(K, agent_id)
lets the agent check that U and V belong together; ``keys/verify`` proves the agent derived K
by answering HMAC-SHA384(K, challenge).

The payload is AES-256-GCM with a 16-octet IV, shipped as base64(IV || ciphertext || tag)
(keylime/crypto.py ``encrypt``).

Pure functions on bytes; ``SplitKey`` keeps its secrets out of ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Callable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_BYTES = 32  # AES-256
# keylime/crypto.py AES_BLOCK_SIZE: the GCM IV and the tag are each 16 octets.
IV_BYTES = 16
TAG_BYTES = 16


class NkKeyError(ValueError):
    """The agent's NK public key cannot be used to encrypt U (not an RSA PEM public key)."""


@dataclass(frozen=True)
class SplitKey:
    k: bytes = field(repr=False)
    u: bytes = field(repr=False)
    v: bytes = field(repr=False)


def xor(a: bytes, b: bytes) -> bytes:
    if len(a) != len(b):
        raise ValueError("key shares must be of equal length")
    return bytes(x ^ y for x, y in zip(a, b))


def split_key(random_bytes: Callable[[int], bytes] = os.urandom) -> SplitKey:
    k = random_bytes(KEY_BYTES)
    v = random_bytes(KEY_BYTES)
    return SplitKey(k=k, u=xor(k, v), v=v)


def hmac_hex(key: bytes, text: str) -> str:
    """keylime/crypto.py ``do_hmac``: hex HMAC-SHA384 of the UTF-8 text."""
    return hmac.new(key, text.encode("utf-8"), hashlib.sha384).hexdigest()


def encrypt_payload(
    key: bytes, plaintext: bytes, random_bytes: Callable[[int], bytes] = os.urandom
) -> bytes:
    iv = random_bytes(IV_BYTES)
    # AESGCM appends the 16-octet tag to the ciphertext, which is Keylime's layout.
    sealed = AESGCM(key).encrypt(iv, plaintext, None)
    return base64.b64encode(iv + sealed)


def decrypt_payload(key: bytes, blob: bytes) -> bytes:
    raw = base64.b64decode(blob, validate=True)
    if len(raw) < IV_BYTES + TAG_BYTES:
        raise ValueError("encrypted payload is shorter than IV and tag")
    try:
        return AESGCM(key).decrypt(raw[:IV_BYTES], raw[IV_BYTES:], None)
    except InvalidTag:
        raise ValueError("encrypted payload does not authenticate under this key") from None


def encrypt_to_nk(nk_public_pem: str, secret: bytes) -> bytes:
    """RSA-OAEP with SHA-1 for digest and MGF1 (keylime/crypto.py ``rsa_encrypt``)."""
    try:
        key = serialization.load_pem_public_key(nk_public_pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise NkKeyError("the agent's public key is not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise NkKeyError("the agent's public key is not an RSA key")
    # SHA-1 is what every Keylime agent decrypts with; OAEP's security does not rest on
    # SHA-1's collision resistance.
    oaep = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303
    return key.encrypt(secret, oaep)
