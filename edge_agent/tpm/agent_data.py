"""The AK file in rust-keylime's format, so a device can swap agents and keep its AK.

rust-keylime 0.2.9 keeps its AK in ``agent_data_path`` (default ``<keylime_dir>/agent_data.json``,
keylime/src/agent_data.rs, serde's pretty JSON of ``AgentData``)::

    {"ak_hash_alg": "Sha256", "ak_sign_alg": "RsaSsa",
     "ak_public": [...], "ak_private": [...], "ek_hash": [...]}

* ``ak_hash_alg``/``ak_sign_alg``: serde's names of its ``HashAlgorithm``/``SignAlgorithm``
  variants (keylime/src/algorithms.rs);
* ``ak_public``: the marshalled TPMT_PUBLIC (tss-esapi ``Public::marshall``, no size prefix);
* ``ak_private``: the TPM2B_PRIVATE's buffer (``Private::to_vec``, no size prefix);
* ``ek_hash``: the ASCII bytes of the hex SHA-256 of the EK public key as OpenSSL's
  SubjectPublicKeyInfo PEM (keylime/src/hash_ek.rs ``hash_ek_pubkey``, ``ek_hash.as_bytes()``).

Each byte string is a JSON array of integers.  rust-keylime reuses the AK only while hash
algorithm, signing algorithm and EK hash match (``AgentData::valid``); so do we, and we also
check the key type against ``tpm_encryption_alg``.

A ``limelet_ak.json`` from an earlier limelet release (edge_agent.tpm.ak_store) is read when
no ``agent_data.json`` exists yet, written out in this format and then removed.
Blocking: call these from a worker thread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Optional

from attest_protocol.errors import AttestProtocolError
from attest_protocol.tpm2.constants import keylime_name
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.keys.files import write_private_file
from edge_agent.tpm import ak_store
from edge_agent.tpm.ak_store import StoredAk
from edge_agent.tpm.errors import AkMismatch

__all__ = ["AGENT_DATA_FILE_NAME", "ek_hash", "load", "save"]

log = logging.getLogger(__name__)

AGENT_DATA_FILE_NAME = "agent_data.json"
# Two key blobs as arrays of small integers (up to 4 characters a byte) stay far below this.
AGENT_DATA_MAX_BYTES = 64 * 1024
# serde's names for rust-keylime's enum variants, keyed by limelet's (Keylime's) names.
_HASH_NAMES = {
    "sha1": "Sha1",
    "sha256": "Sha256",
    "sha384": "Sha384",
    "sha512": "Sha512",
    "sm3_256": "Sm3_256",
}
_SIGN_NAMES = {"rsassa": "RsaSsa", "rsapss": "RsaPss", "ecdsa": "EcDsa", "ecschnorr": "EcSchnorr"}
_TPM2B_SIZE_BYTES = 2


def ek_hash(ek_public: bytes) -> str:
    """rust-keylime's EK hash of a TPM2B_PUBLIC: hex SHA-256 of its SubjectPublicKeyInfo PEM."""
    pem = parse_tpm2b_public(ek_public).public_key_pem()
    return hashlib.sha256(pem).hexdigest()


def load(path: Path, *, want: StoredAk, ek_public: bytes, legacy: Optional[Path]) -> StoredAk:
    """The AK stored at ``path`` (or carried over from ``legacy``) if it suits ``want``.

    ``want.ek_sha256`` is :func:`ek_hash` of ``ek_public``.  Raises AkMismatch, naming what
    differs, when there is no usable AK: the caller then creates one.
    """
    if not path.exists() and legacy is not None and legacy.exists():
        return _carry_over(path, legacy, want, ek_public)
    stored = _decode(ak_store.read_bounded(path, AGENT_DATA_MAX_BYTES), path)
    _check(stored, want)
    return stored


def _carry_over(path: Path, legacy: Path, want: StoredAk, ek_public: bytes) -> StoredAk:
    old_want = dataclasses.replace(want, ek_sha256=ak_store.ek_fingerprint(ek_public))
    stored = ak_store.load(legacy, want=old_want)
    stored = dataclasses.replace(stored, ek_sha256=want.ek_sha256)
    save(path, stored)
    legacy.unlink()
    log.info("carried the AK over from %s to %s", legacy, path)
    return stored


def _check(stored: StoredAk, want: StoredAk) -> None:
    for field, option in (
        ("encryption_alg", "tpm_encryption_alg"),
        ("hash_alg", "tpm_hash_alg"),
        ("signing_alg", "tpm_signing_alg"),
    ):
        have, wanted = getattr(stored, field), getattr(want, field)
        if have != wanted:
            raise AkMismatch(f"it was made for {option} {have!r}, configured is {wanted!r}")
    if stored.ek_sha256 != want.ek_sha256:
        raise AkMismatch("it was made under a different EK")


def _decode(raw: bytes, path: Path) -> StoredAk:
    try:
        doc = json.loads(raw)
        tpmt_public = _byte_array(doc["ak_public"])
        public = len(tpmt_public).to_bytes(_TPM2B_SIZE_BYTES, "big") + tpmt_public
        private = _byte_array(doc["ak_private"])
        return StoredAk(
            public=public,
            private=len(private).to_bytes(_TPM2B_SIZE_BYTES, "big") + private,
            encryption_alg=keylime_name(parse_tpm2b_public(public).type),
            hash_alg=_our_name(_HASH_NAMES, doc["ak_hash_alg"]),
            signing_alg=_our_name(_SIGN_NAMES, doc["ak_sign_alg"]),
            ek_sha256=_byte_array(doc["ek_hash"]).decode("ascii"),
        )
    except (ValueError, KeyError, TypeError, AttestProtocolError) as exc:
        # Name the problem class only: the file holds key blobs we do not print.
        raise AkMismatch(f"{path} is malformed ({type(exc).__name__})") from exc


def _byte_array(value: Any) -> bytes:
    if not isinstance(value, list):
        raise TypeError("not an array of bytes")
    return bytes(value)  # ValueError for items outside 0..255, TypeError for non-integers


def _our_name(names: dict[str, str], theirs: Any) -> str:
    for ours, serde_name in names.items():
        if serde_name == theirs:
            return ours
    raise ValueError(f"unknown algorithm {theirs!r}")


def save(path: Path, ak: StoredAk) -> None:
    """Write ``ak`` to ``path`` as rust-keylime would, atomically and with mode 0600."""
    doc = {
        "ak_hash_alg": _HASH_NAMES[ak.hash_alg],
        "ak_sign_alg": _SIGN_NAMES[ak.signing_alg],
        "ak_public": list(_tpm2b_buffer(ak.public)),
        "ak_private": list(_tpm2b_buffer(ak.private)),
        "ek_hash": list(ak.ek_sha256.encode("ascii")),
    }
    # Same durability and 0600 mode as the agent's key files (edge_agent/keys/files.py).
    write_private_file(path, json.dumps(doc, indent=2).encode("utf-8") + b"\n")


def _tpm2b_buffer(tpm2b: bytes) -> bytes:
    size = int.from_bytes(tpm2b[:_TPM2B_SIZE_BYTES], "big")
    if size != len(tpm2b) - _TPM2B_SIZE_BYTES:
        raise ValueError("TPM2B size field does not match its buffer")
    return tpm2b[_TPM2B_SIZE_BYTES:]
