"""The AK, kept on disk between runs.

Like rust-keylime's ``agent_data.json`` (keylime/src/agent_data.rs), the file holds the AK's
wrapped private part and its public part — both as the TPM returned them from TPM2_Create, so
only this TPM, under this EK, can load them — with the algorithms it was made for and a hash of
the EK's public area.  On start the agent reloads the AK if all of these still match, so the
registrar sees the same AK; otherwise it makes a new one and replaces the file.

The file is written atomically (temp file in the same dir, fsync, rename) with mode 0600.
Blocking: call these from a worker thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from edge_agent.keys.files import write_private_file
from edge_agent.tpm.errors import AkMismatch

__all__ = [
    "AK_FILE_MODE",
    "AK_FILE_VERSION",
    "StoredAk",
    "ek_fingerprint",
    "load",
    "read_bounded",
    "save",
]

AK_FILE_VERSION = 1
AK_FILE_MODE = 0o600
# Refuse absurd files before parsing them: two TPM2B blobs and a few names fit in 8 KiB.
AK_FILE_MAX_BYTES = 64 * 1024


@dataclass(frozen=True)
class StoredAk:
    """What is persisted.  ``public``/``private`` are TPM2B_PUBLIC / TPM2B_PRIVATE bytes."""

    public: bytes
    private: bytes
    encryption_alg: str
    hash_alg: str
    signing_alg: str
    ek_sha256: str


def ek_fingerprint(ek_public: bytes) -> str:
    """SHA-256 (hex) of the EK's marshalled TPM2B_PUBLIC: identifies the EK the AK is under."""
    return hashlib.sha256(ek_public).hexdigest()


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of an AK file; AkMismatch if it is missing, unreadable or over ``max_bytes``."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(max_bytes + 1)
    except FileNotFoundError:
        raise AkMismatch(f"{path} does not exist") from None
    except OSError as exc:
        raise AkMismatch(f"cannot read {path}: {exc.strerror}") from exc
    if len(raw) > max_bytes:
        raise AkMismatch(f"{path} is larger than {max_bytes} bytes")
    return raw


def load(path: Path, *, want: StoredAk) -> StoredAk:
    """Read ``path``; raise AkMismatch unless its algorithms and EK equal ``want``'s.

    ``want.public``/``want.private`` are ignored.  A missing, unreadable or malformed file is
    an AkMismatch too: the caller's answer to all of these is to create a new AK.
    """
    stored = _decode(read_bounded(path, AK_FILE_MAX_BYTES), path)
    for field in ("encryption_alg", "hash_alg", "signing_alg"):
        have, wanted = getattr(stored, field), getattr(want, field)
        if have != wanted:
            raise AkMismatch(f"it was made for {field} {have!r}, configured is {wanted!r}")
    if stored.ek_sha256 != want.ek_sha256:
        raise AkMismatch("it was made under a different EK")
    return stored


def _decode(raw: bytes, path: Path) -> StoredAk:
    try:
        doc = json.loads(raw)
        if doc["version"] != AK_FILE_VERSION:
            raise AkMismatch(f"{path} has version {doc['version']!r}, not {AK_FILE_VERSION}")
        return StoredAk(
            public=base64.b64decode(doc["public"], validate=True),
            private=base64.b64decode(doc["private"], validate=True),
            encryption_alg=str(doc["encryption_alg"]),
            hash_alg=str(doc["hash_alg"]),
            signing_alg=str(doc["signing_alg"]),
            ek_sha256=str(doc["ek_sha256"]),
        )
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        # Name the problem class only: the file holds key blobs we do not print.
        raise AkMismatch(f"{path} is malformed ({type(exc).__name__})") from exc


def save(path: Path, ak: StoredAk) -> None:
    """Write ``ak`` to ``path`` atomically with mode 0600, creating the directory if needed."""
    doc = {
        "version": AK_FILE_VERSION,
        "encryption_alg": ak.encryption_alg,
        "hash_alg": ak.hash_alg,
        "signing_alg": ak.signing_alg,
        "ek_sha256": ak.ek_sha256,
        "public": base64.b64encode(ak.public).decode("ascii"),
        "private": base64.b64encode(ak.private).decode("ascii"),
    }
    data = json.dumps(doc, indent=2).encode("utf-8") + b"\n"
    # Same durability and 0600 mode as the agent's key files (edge_agent/keys/files.py).
    write_private_file(path, data)
