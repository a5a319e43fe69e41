"""Errors raised while loading a runtime policy (tree drawn in the package docstring)."""

from __future__ import annotations

from attest_protocol.errors import AttestProtocolError


class RuntimePolicyError(AttestProtocolError):
    """A runtime policy that cannot be used; ``where`` names the offending member.

    ``where`` is a JSON-pointer-like path (``"excludes[3]"``, ``"digests./usr/bin/ls[0]"``);
    the message never quotes key material.
    """

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(f"runtime policy {where}: {reason}")
        self.where = where
        self.reason = reason


class RuntimePolicyFormatError(RuntimePolicyError):
    """Not JSON, too large, a missing member or a member of the wrong type or value."""


class RuntimePolicyVersionError(RuntimePolicyError):
    """``meta.version`` is not the one version Keylime 7.14 understands."""


class RuntimePolicyRegexError(RuntimePolicyError):
    """An ``excludes`` entry is not a valid Python regular expression; ``pattern`` is it."""

    def __init__(self, where: str, pattern: str, reason: str) -> None:
        super().__init__(where, f"bad regular expression {pattern!r}: {reason}")
        self.pattern = pattern


class RuntimePolicyKeyError(RuntimePolicyError):
    """A ``verification-keys`` entry that is not an RSA or EC public key."""
