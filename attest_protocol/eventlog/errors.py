"""Errors raised by the UEFI event log parser and replay (tree drawn in the package docstring)."""

from __future__ import annotations

from attest_protocol.errors import AttestProtocolError, ParseError


class EventLogParseError(ParseError):
    """The bytes are not a crypto-agile TCG event log; ``offset`` is where decoding failed."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__("TCG event log", offset, reason)


class EventLogReplayError(AttestProtocolError):
    """The log parsed but cannot be replayed in the requested bank; ``index`` names the event."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"TCG event log event {index}: {reason}")
        self.index = index
        self.reason = reason
