"""What the payload package raises.

::

    PayloadError                    base; ``reason`` says what went wrong
    ├── PayloadDecryptError         K or the encrypted blob is unusable: wrong key length,
    │                               too short, too large, or the GCM tag does not verify
    ├── SecureDirError              the secure directory cannot be prepared or verified
    │                               (``path``); also a bad ``secure_size``
    ├── PayloadArchiveError         the zip is refused (``member`` names the entry, if any);
    │                               nothing of it is left extracted
    ├── PayloadFileError            the decrypted payload or K cannot be written (``path``)
    ├── PayloadScriptError          the payload script could not be started or ran past its
    │                               deadline (a non-zero exit is a status, not an error)
    └── PayloadPolicyError          the configuration forbids what was asked (a payload
                                    script with mTLS off and no ``enable_insecure_payload``)

Messages name files, members and limits, never key bytes or payload contents
(CVE-2023-38201).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

__all__ = [
    "PayloadArchiveError",
    "PayloadDecryptError",
    "PayloadError",
    "PayloadFileError",
    "PayloadPolicyError",
    "PayloadScriptError",
    "SecureDirError",
]


class PayloadError(Exception):
    """Base of the payload package's errors."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PayloadDecryptError(PayloadError):
    """The payload could not be decrypted and authenticated."""


class SecureDirError(PayloadError):
    """The secure directory at ``path`` is not usable."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class PayloadArchiveError(PayloadError):
    """The payload zip was refused; ``member`` is the offending entry when there is one."""

    def __init__(self, reason: str, member: Optional[str] = None) -> None:
        super().__init__(f"{member!r}: {reason}" if member is not None else reason)
        self.member = member
        self.reason = reason


class PayloadFileError(PayloadError):
    """A payload file could not be written."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class PayloadScriptError(PayloadError):
    """The payload script could not be run to its end."""


class PayloadPolicyError(PayloadError):
    """The agent's configuration forbids this (checked at start-up)."""
