"""Signed runtime policies: the acceptance rules of Keylime 7.14.3's verifier.

A runtime policy may arrive as a DSSE envelope (attest_protocol/dsse.py).  Keylime
(keylime/ima/ima.py ``verify_runtime_policy``, keylime/signing.py ``get_runtime_policy_keys``
and ``verify_dsse_envelope``) decides, for ``POST /agents/{id}`` and ``/allowlists/{name}``:

* the key is the request's ``runtime_policy_key`` (base64 of a PEM EC public key), which is
  then remembered under ``signing_keys/<sha256 of the PEM>.pub``; without one, a remembered
  key whose file name is a signature's keyid (the ``ecdsa`` backend's keyid is exactly that);
* with ``require_allow_list_signatures``: no key is 401 "...but no key was given!" - also
  for an unsigned policy, which never has a key - and a signature that does not verify
  under the key is 401 "...failed DSSE signature verification!";
* without it, an envelope is accepted unverified, as Keylime does; its payload is the policy.

Keylime's status codes and texts are kept, since tenants print them.  Where Keylime answers
500 (a key that is not a PEM EC key), we answer 400 naming the field.  The envelope is
stored as sent (``GET /allowlists/{name}`` shows it) and unwrapped when it is loaded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from attest_protocol import dsse
from verifier_lite.errors import RequestError, VerifierError

log = logging.getLogger("limelet.verifier")

# keylime/signing.py: pubkey_dir = /var/lib/keylime/signing_keys/ (ours is under data_dir).
SIGNING_KEYS_DIR = "signing_keys"
NO_KEY = "Runtime policy signature verification required but no key was given!"
BAD_SIGNATURE = "Runtime policy failed DSSE signature verification!"
MAX_KEY_BYTES = 16 * 1024


class PolicySignatureError(VerifierError):
    """The policy's signature is missing or does not verify (Keylime's 401 and its text)."""

    http_status = 401

    def __init__(self, message: str) -> None:
        super().__init__(message)


def document(text: bytes) -> Any:
    """The policy text as JSON (callers have checked that it decodes)."""
    return json.loads(text)


def unwrap(text: bytes) -> bytes:
    """The runtime policy inside ``text``: an envelope's payload, else ``text`` itself
    (keylime/ima/ima.py ``deserialize_runtime_policy``)."""
    try:
        parsed = json.loads(text)
    except ValueError:
        return text  # the policy loader names the problem
    if not dsse.is_envelope(parsed):
        return text
    try:
        return dsse.parse_envelope(parsed).payload
    except dsse.DsseError as exc:
        raise RequestError("runtime_policy", f"DSSE envelope: {exc.reason}") from None


def _request_key(key_b64: str) -> bytes:
    try:
        pem = base64.b64decode(key_b64, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError("runtime_policy_key", "must be base64") from None
    if not 0 < len(pem) <= MAX_KEY_BYTES:
        raise RequestError("runtime_policy_key", f"must be 1-{MAX_KEY_BYTES} bytes")
    return pem


@dataclass(frozen=True)
class PolicySignatures:
    """``require_allow_list_signatures`` and the directory of remembered keys."""

    require: bool
    keys_dir: Optional[Path]

    def check(self, text: bytes, key_b64: Optional[str]) -> None:
        """Raise unless Keylime would accept ``text`` (JSON already checked)."""
        parsed = document(text)
        envelope = dsse.is_envelope(parsed)
        key = self._key(parsed, key_b64) if envelope else None
        if not self.require:
            return
        if key is None:
            raise PolicySignatureError(NO_KEY)
        try:
            verifying_key = dsse.ec_key_from_pem(key)
        except dsse.DsseError as exc:
            raise RequestError("runtime_policy_key", exc.reason) from None
        try:
            dsse.verify(dsse.parse_envelope(parsed), [("user_provided_key", verifying_key)])
        except dsse.DsseError as exc:
            log.warning("runtime policy refused: %s", exc.reason)
            raise PolicySignatureError(BAD_SIGNATURE) from None

    def check_default_policy(self) -> None:
        """An agent added with no policy gets Keylime's empty one, which is unsigned
        (keylime/cloud_verifier_tornado.py ``AgentsHandler.post``)."""
        if self.require:
            raise PolicySignatureError(NO_KEY)

    def _key(self, parsed: dict[str, Any], key_b64: Optional[str]) -> Optional[bytes]:
        if key_b64:
            pem = _request_key(key_b64)
            self._remember(pem)
            return pem
        return self._remembered(parsed.get("signatures"))

    def _remember(self, pem: bytes) -> None:
        if self.keys_dir is None:
            return
        self.keys_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.keys_dir / f"{hashlib.sha256(pem).hexdigest()}.pub"
        if not path.exists():
            path.write_bytes(pem)

    def _remembered(self, signatures: Any) -> Optional[bytes]:
        """Keylime's lookup by keyid; the last match wins, as in its loop."""
        if self.keys_dir is None or not isinstance(signatures, list):
            return None
        found = None
        for signature in signatures:
            keyid = signature.get("keyid") if isinstance(signature, dict) else None
            # A keyid is a file name only when it is a SHA-256 hex (no path tricks).
            if isinstance(keyid, str) and len(keyid) == 64 and _is_hex(keyid):
                path = self.keys_dir / f"{keyid}.pub"
                if path.is_file():
                    found = path.read_bytes()
        return found


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def from_config(require: bool, data_dir: str) -> PolicySignatures:
    return PolicySignatures(require, Path(data_dir) / SIGNING_KEYS_DIR)
