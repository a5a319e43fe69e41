"""Private keys as PEM files, optionally encrypted with the configured password.

rust-keylime keeps both agent keys as PEM (``load_or_generate_key`` in keylime/src/crypto.rs):
PKCS#8, encrypted with ``server_key_password`` / ``payload_key_password`` when not empty.
Blocking: call from a worker thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cryptography.hazmat.primitives import serialization

from edge_agent.keys.errors import KeyMaterialError
from edge_agent.keys.files import read_private_file, write_private_file

if TYPE_CHECKING:
    # cryptography < 40 (Debian 12 ships 38) lacks this alias; it is only a type.
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = ["load_private_key", "store_private_key"]


def load_private_key(path: Path, password: str) -> Optional[PrivateKeyTypes]:
    """The key in ``path``, or None when the file does not exist."""
    data = read_private_file(path)
    if data is None:
        return None
    secret = password.encode("utf-8") if password else None
    try:
        return serialization.load_pem_private_key(data, password=secret)
    except TypeError as exc:
        # The file is encrypted but no password is configured, or the other way round.
        reason = "encrypted, but no password is configured" if secret is None else "not encrypted"
        raise KeyMaterialError(path, f"the key is {reason}") from exc
    except ValueError as exc:
        # Deliberately no detail from the parser: it may quote the file's bytes.
        raise KeyMaterialError(path, "not a PEM private key, or the password is wrong") from exc


def store_private_key(path: Path, key: PrivateKeyTypes, password: str) -> None:
    """Write ``key`` as PKCS#8 PEM (encrypted when ``password`` is set), atomically, 0600."""
    encryption: serialization.KeySerializationEncryption
    if password:
        encryption = serialization.BestAvailableEncryption(password.encode("utf-8"))
    else:
        encryption = serialization.NoEncryption()
    data = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )
    write_private_file(path, data)
