"""The crypto of Keylime's bootstrap key K, its shares U and V, and the payload K unlocks.

Keylime's scheme (keylime/cmd/user_data_encrypt.py ``encrypt``, keylime/crypto.py; the agent's
side is rust-keylime keylime-agent/src/keys_handler.rs and keylime/src/crypto.rs):

* K and V are 32 random octets and U = K xor V (``crypto.strbitxor``).
* The tenant sends U to the agent and the verifier sends V, each RSA-OAEP encrypted to the
  agent's NK with SHA-1 as digest and MGF1 hash and no label (``crypto.rsa_encrypt``).
* ``auth_tag`` = hex HMAC-SHA384(K, agent id) (``crypto.do_hmac``) lets the agent check that a
  U and a V belong together; ``GET /keys/verify`` answers hex HMAC-SHA384(K, challenge).
* The payload is AES-256-GCM with a 16-octet IV (one AES block, ``crypto.AES_BLOCK_SIZE``, not
  the 12 octets SP 800-38D recommends), no associated data, laid out ``iv || ciphertext || tag``
  and shipped base64 encoded (``crypto.encrypt`` / ``crypto.decrypt``).

The tenant, the verifier and the agent all call this module; the agent's U/V state machine
(which U goes with which V, what happens after K is known) stays in edge_agent.

Pure functions on bytes (randomness is a parameter); ``SplitKey`` keeps its secrets out of
``repr``.  Errors, each a ``ValueError`` with a ``reason`` that never holds key material
(CVE-2023-38201)::

    BootstrapCryptoError      base
    ├── KeyLengthError        K or a share is not KEY_BYTES long, or shares differ in length
    ├── PayloadFormatError    the sealed payload is not base64 or is shorter than IV and tag
    ├── PayloadAuthError      the GCM tag does not verify (wrong K, or a changed blob)
    ├── NkKeyError            the agent's NK public key is not an RSA public key in PEM
    └── KeyShareError         an encrypted share does not decrypt to a KEY_BYTES key
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass, field
from typing import Callable, Union

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from attest_protocol.errors import AttestProtocolError

__all__ = [
    "AUTH_TAG_BYTES",
    "IV_BYTES",
    "KEY_BYTES",
    "TAG_BYTES",
    "BootstrapCryptoError",
    "KeyLengthError",
    "KeyShareError",
    "NkKeyError",
    "PayloadAuthError",
    "PayloadFormatError",
    "SplitKey",
    "auth_tag",
    "auth_tag_matches",
    "decrypt_payload",
    "decrypt_share",
    "encrypt_payload",
    "encrypt_to_nk",
    "hmac_sha384_hex",
    "open_payload",
    "seal_payload",
    "split_key",
    "xor",
]

# K is an AES-256 key (keylime/crypto.py generate_random_key(32)); rust-keylime's
# SymmKey::try_from refuses shares of any other length.
KEY_BYTES = 32
# keylime/crypto.py AES_BLOCK_SIZE: the GCM IV and the tag are each 16 octets.
IV_BYTES = 16
TAG_BYTES = 16
# HMAC-SHA384 (keylime/crypto.py do_hmac) is 48 octets, 96 hex digits.
AUTH_TAG_BYTES = 48

# Keylime's wire format: SHA-1 is what every Keylime agent decrypts with, and OAEP's security
# does not rest on SHA-1's collision resistance.
_NK_OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA1()), algorithm=hashes.SHA1(), label=None)  # noqa: S303


class BootstrapCryptoError(AttestProtocolError, ValueError):
    """Base of this module's errors; ``reason`` never includes key or payload bytes."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyLengthError(BootstrapCryptoError):
    """K or a share has the wrong length."""


class PayloadFormatError(BootstrapCryptoError):
    """The sealed payload cannot be a Keylime ``iv || ciphertext || tag`` blob."""


class PayloadAuthError(BootstrapCryptoError):
    """The payload does not authenticate under K."""


class NkKeyError(BootstrapCryptoError):
    """The agent's NK public key cannot be used to encrypt a share."""


class KeyShareError(BootstrapCryptoError):
    """An encrypted share cannot be used."""


@dataclass(frozen=True)
class SplitKey:
    """K and its shares; U = K xor V."""

    k: bytes = field(repr=False)
    u: bytes = field(repr=False)
    v: bytes = field(repr=False)


def xor(a: bytes, b: bytes) -> bytes:
    """``a xor b`` octet by octet (keylime/crypto.py ``strbitxor``); equal lengths only."""
    if len(a) != len(b):
        raise KeyLengthError("key shares must be of equal length")
    return bytes(x ^ y for x, y in zip(a, b))


def split_key(random_bytes: Callable[[int], bytes] = os.urandom) -> SplitKey:
    """A fresh K with V drawn at random and U = K xor V."""
    k = random_bytes(KEY_BYTES)
    v = random_bytes(KEY_BYTES)
    return SplitKey(k=k, u=xor(k, v), v=v)


def hmac_sha384_hex(key: bytes, message: Union[bytes, str]) -> str:
    """keylime/crypto.py ``do_hmac``: hex HMAC-SHA384; text is taken as UTF-8."""
    data = message.encode("utf-8") if isinstance(message, str) else message
    return hmac.new(key, data, hashlib.sha384).hexdigest()


def auth_tag(k: bytes, agent_id: str) -> str:
    """The ``auth_tag`` of ``POST /keys/ukey``: hex HMAC-SHA384(K, agent id)."""
    return hmac_sha384_hex(k, agent_id)


def auth_tag_matches(k: bytes, agent_id: str, tag: bytes) -> bool:
    """Whether ``tag`` (the raw 48 octets, not hex) is K's auth tag, in constant time."""
    expected = hmac.new(k, agent_id.encode("utf-8"), hashlib.sha384).digest()
    return hmac.compare_digest(expected, tag)


def seal_payload(
    k: bytes, plaintext: bytes, random_bytes: Callable[[int], bytes] = os.urandom
) -> bytes:
    """AES-256-GCM under K in Keylime's layout ``iv || ciphertext || tag`` (not base64)."""
    _check_key(k)
    iv = random_bytes(IV_BYTES)
    # AESGCM appends the 16-octet tag to the ciphertext, which is Keylime's layout.
    return iv + AESGCM(k).encrypt(iv, plaintext, None)


def open_payload(k: bytes, blob: bytes) -> bytes:
    """The plaintext of a ``iv || ciphertext || tag`` blob under K.

    A wrong K, a flipped bit, a truncated or forged blob are indistinguishable, by design:
    each is a PayloadAuthError.
    """
    _check_key(k)
    if len(blob) < IV_BYTES + TAG_BYTES:
        raise PayloadFormatError(
            f"payload of {len(blob)} bytes is shorter than IV and tag "
            f"({IV_BYTES + TAG_BYTES} bytes)"
        )
    try:
        # AESGCM takes ciphertext||tag, which is exactly what follows the IV.
        return AESGCM(k).decrypt(blob[:IV_BYTES], blob[IV_BYTES:], None)
    except InvalidTag as exc:
        raise PayloadAuthError("payload does not authenticate under K") from exc


def encrypt_payload(
    k: bytes, plaintext: bytes, random_bytes: Callable[[int], bytes] = os.urandom
) -> bytes:
    """keylime/crypto.py ``encrypt``: base64 of :func:`seal_payload`."""
    return base64.b64encode(seal_payload(k, plaintext, random_bytes))


def decrypt_payload(k: bytes, sealed_b64: bytes) -> bytes:
    """keylime/crypto.py ``decrypt``: :func:`open_payload` of the base64-decoded blob."""
    try:
        blob = base64.b64decode(sealed_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadFormatError("payload is not valid base64") from exc
    return open_payload(k, blob)


def nk_public_key(nk_public_pem: Union[str, bytes]) -> rsa.RSAPublicKey:
    """The agent's NK as a key shares can be encrypted to; NkKeyError when it is not one."""
    try:
        pem = nk_public_pem.encode("ascii") if isinstance(nk_public_pem, str) else nk_public_pem
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnicodeEncodeError, TypeError) as exc:
        raise NkKeyError("the agent's public key is not a PEM public key") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise NkKeyError("the agent's public key is not an RSA key")
    return key


def encrypt_to_nk(nk_public_pem: Union[str, bytes], secret: bytes) -> bytes:
    """RSA-OAEP-SHA1 to the agent's NK (keylime/crypto.py ``rsa_encrypt``)."""
    return nk_public_key(nk_public_pem).encrypt(secret, _NK_OAEP)


def decrypt_share(nk: rsa.RSAPrivateKey, encrypted: bytes) -> bytes:
    """Decrypt one share with the NK (RSA-OAEP-SHA1); it must be a KEY_BYTES key."""
    try:
        share = nk.decrypt(encrypted, _NK_OAEP)
    except ValueError as exc:
        raise KeyShareError("encrypted_key does not decrypt with the agent's NK") from exc
    if len(share) != KEY_BYTES:
        raise KeyShareError(f"decrypted key is not {KEY_BYTES} bytes")
    return share


def _check_key(k: bytes) -> None:
    if len(k) != KEY_BYTES:
        raise KeyLengthError(f"K must be {KEY_BYTES} bytes, got {len(k)}")
