"""The U/V/K bootstrap key exchange of the Keylime agent API, as a small state machine.

The tenant sends U (``POST /keys/ukey``: the half, the auth tag, optionally the encrypted
payload) and the verifier sends V (``POST /keys/vkey``) once the agent's first quote passed;
both halves are RSA-OAEP (SHA-1, Keylime ``crypto.rsa_encrypt``) encrypted to the NK.
K = U xor V is accepted only when HMAC-SHA384(K, agent id) equals U's auth tag; every
received U is tried with every received V, as rust-keylime's ``try_combine_keys``
(keylime-agent/src/keys_handler.rs) does.  ``GET /keys/verify`` then proves K to the tenant.

States (data, not code paths)::

    COLLECTING --(a U and a V whose K matches a tag)--> DERIVED
    DERIVED    --ukey--> refused (KeyAlreadyDerived, HTTP 400)
    DERIVED    --vkey--> ignored (answered 200; nothing stored)

Unlike rust-keylime, which clears its lists and lets a later U/V pair replace K under a
payload that is already running, K is fixed once derived (CVE-2021-43310: a re-sent U must
not reset the bootstrap).  A ukey is refused with 400 so the tenant sees it; a vkey is
ignored because the verifier re-sends V whenever it (re)loads the agent and a 400 there
would fail the attestation.  Enrolling again with new keys needs an agent restart.

The class is pure state; :func:`decrypt_half` is the one crypto call on the NK.  Errors::

    BootstrapKeyError        http_status 400
    ├── KeyHalfError         an encrypted half that does not decrypt to a 32-byte key
    ├── KeyAlreadyDerived    a U after K was derived
    └── KeyNotDerived        /keys/verify before K is known
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass
from typing import Optional

from cryptography.hazmat.primitives.asymmetric import rsa

from attest_protocol import bootstrap_keys as crypto
from attest_protocol.bootstrap_keys import AUTH_TAG_BYTES, hmac_sha384_hex

__all__ = [
    "AUTH_TAG_BYTES",
    "MAX_STORED_HALVES",
    "SYMMETRIC_KEY_BYTES",
    "BootstrapKeyError",
    "BootstrapKeys",
    "DerivedKey",
    "KeyAlreadyDerived",
    "KeyHalfError",
    "KeyNotDerived",
    "UHalf",
    "VHalf",
    "decrypt_half",
    "hmac_sha384_hex",
]

log = logging.getLogger(__name__)

SYMMETRIC_KEY_BYTES = crypto.KEY_BYTES
# Halves waiting for their partner, per kind.  One tenant and one verifier send one each; a
# few retries fit.  Bounded so that a client cannot grow the lists (and the U x V pairs tried
# on each arrival) without limit: the oldest half is dropped first.
MAX_STORED_HALVES = 8


class BootstrapKeyError(Exception):
    """Base of the bootstrap key errors; ``http_status`` is what the API answers."""

    http_status = 400


class KeyHalfError(BootstrapKeyError):
    """An encrypted half that cannot be used; ``reason`` never includes key material."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class KeyAlreadyDerived(BootstrapKeyError):
    def __init__(self) -> None:
        super().__init__("Bootstrap key already derived; restart the agent to enrol again")


class KeyNotDerived(BootstrapKeyError):
    def __init__(self) -> None:
        # rust-keylime's text for the same 400 (keys_handler.rs, verify).
        super().__init__("Bootstrap key not yet available.")


@dataclass(frozen=True)
class UHalf:
    key: bytes
    auth_tag: bytes
    payload: Optional[bytes] = None

    def __repr__(self) -> str:  # never print key halves
        return f"UHalf(payload={self.payload is not None})"


@dataclass(frozen=True)
class VHalf:
    key: bytes

    def __repr__(self) -> str:
        return "VHalf()"


@dataclass(frozen=True)
class DerivedKey:
    """K and the encrypted payload that came with the U that matched (if any)."""

    key: bytes
    payload: Optional[bytes]

    def __repr__(self) -> str:
        return f"DerivedKey(payload={self.payload is not None})"


def decrypt_half(nk: rsa.RSAPrivateKey, encrypted: bytes) -> bytes:
    """Decrypt one half with the NK (RSA-OAEP, MGF1 and hash SHA-1, no label)."""
    try:
        return crypto.decrypt_share(nk, encrypted)
    except crypto.KeyShareError as exc:
        raise KeyHalfError(exc.reason) from exc


class BootstrapKeys:
    """Collects halves until one U/V pair yields a K that matches the U's auth tag."""

    def __init__(self, agent_id: str, *, max_halves: int = MAX_STORED_HALVES) -> None:
        self._agent_id = agent_id
        self._u: collections.deque[UHalf] = collections.deque(maxlen=max_halves)
        self._v: collections.deque[VHalf] = collections.deque(maxlen=max_halves)
        self._k: Optional[bytes] = None

    @property
    def derived(self) -> bool:
        return self._k is not None

    def add_u(self, half: UHalf) -> Optional[DerivedKey]:
        """Store U; return the derived key when this U completes a matching pair."""
        if self._k is not None:
            raise KeyAlreadyDerived()
        self._u.append(half)
        return self._combine()

    def add_v(self, half: VHalf) -> Optional[DerivedKey]:
        """Store V; ignored (None) once K is derived, see the module docstring."""
        if self._k is not None:
            log.info("Ignoring a V key half: the bootstrap key is already derived")
            return None
        self._v.append(half)
        return self._combine()

    def challenge_hmac(self, challenge: bytes) -> str:
        """HMAC-SHA384(K, challenge) in hex, the answer of ``GET /keys/verify``."""
        if self._k is None:
            raise KeyNotDerived()
        return hmac_sha384_hex(self._k, challenge)

    def _combine(self) -> Optional[DerivedKey]:
        for u in self._u:
            for v in self._v:
                k = crypto.xor(u.key, v.key)
                if crypto.auth_tag_matches(k, self._agent_id, u.auth_tag):
                    log.info("Derived the bootstrap key K from a U/V pair")
                    self._k = k
                    self._u.clear()
                    self._v.clear()
                    return DerivedKey(k, u.payload)
        if self._u and self._v:
            log.warning("No U/V pair gives a key that matches an auth tag")
        return None
