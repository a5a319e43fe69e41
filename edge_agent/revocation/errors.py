"""What the revocation package raises.

::

    RevocationError                 base; ``reason`` says what went wrong
    ├── RevocationFormatError       the body is not the {"msg": str, "signature": b64}
    │                               object Keylime sends, or msg is not a JSON object
    ├── NoRevocationCertError       no revocation certificate yet (the payload that brings
    │                               it has not arrived): the server logs and ignores
    ├── RevocationCertError         the certificate file is unreadable or holds no RSA key
    └── RevocationSignatureError    the signature does not verify: forged or altered

Messages never quote the notification body (it is attacker-controlled until verified).
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "NoRevocationCertError",
    "RevocationCertError",
    "RevocationError",
    "RevocationFormatError",
    "RevocationSignatureError",
]


class RevocationError(Exception):
    """Base of the revocation package's errors."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class RevocationFormatError(RevocationError):
    """The notification is not shaped as Keylime's."""


class NoRevocationCertError(RevocationError):
    """There is no certificate to check the notification with yet."""


class RevocationCertError(RevocationError):
    """The revocation certificate at ``path`` cannot be used."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class RevocationSignatureError(RevocationError):
    """The signature over ``msg`` does not verify with the revocation certificate."""
