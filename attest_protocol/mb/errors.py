"""Errors of the measured-boot policy evaluator (tree drawn in the package docstring)."""

from __future__ import annotations

from attest_protocol.errors import AttestProtocolError


class MbPolicyError(AttestProtocolError):
    """A measured-boot policy or reference state that cannot be evaluated."""


class RefstateError(MbPolicyError):
    """The reference state is not what the named policy needs; the message names the member."""


class UnknownMbPolicyError(MbPolicyError):
    """No measured-boot policy has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"there is no measured-boot policy named {name[:64]!r}")
        self.name = name
