"""Private keys as PEM files, optionally encrypted with the configured password.

rust-keylime keeps both agent keys as PEM (``load_or_generate_key`` in keylime/src/crypto.rs):
PKCS#8, encrypted with ``server_key_password`` / ``payload_key_password`` when not empty.
Blocking: call from a worker thread.

Loading skips cryptography's RSA consistency check (``unsafe_skip_rsa_key_validation``,
cryptography >= 39): it costs ~55 ms per RSA-2048 key, a tenth of the agent's start-up, and
guards against keys crafted by someone else.  These files are the agent's own, written 0600
by ``store_private_key`` in its data directory; rust-keylime loads them with OpenSSL's
``PKey::private_key_from_pem``, which does not run ``RSA_check_key`` either.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import cryptography
from cryptography.hazmat.primitives import serialization

from edge_agent.keys.errors import KeyMaterialError
from edge_agent.keys.files import read_private_file, write_private_file

if TYPE_CHECKING:
    # cryptography < 40 (Debian 12 ships 38) lacks this alias; it is only a type.
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

__all__ = ["load_private_key", "store_private_key"]

# cryptography 39 added the switch; older versions (Debian 12: 38) always check.
_SKIPS_RSA_CHECK = int(cryptography.__version__.split(".")[0]) >= 39
_LOAD_OPTIONS: dict[str, bool] = (
    {"unsafe_skip_rsa_key_validation": True} if _SKIPS_RSA_CHECK else {}
)


def load_private_key(path: Path, password: str) -> Optional[PrivateKeyTypes]:
    """The key in ``path``, or None when the file does not exist."""
    data = read_private_file(path)
    if data is None:
        return None
    secret = password.encode("utf-8") if password else None
    try:
        return serialization.load_pem_private_key(data, password=secret, **_LOAD_OPTIONS)
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
