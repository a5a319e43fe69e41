"""Errors raised by the IMA log parser and PCR 10 replay (tree drawn in the package docstring)."""

from __future__ import annotations

from attest_protocol.errors import AttestProtocolError, ParseError

# Error messages quote at most this much of an offending line; the full line stays on the
# exception's ``line`` attribute for the caller to log.
MESSAGE_LINE_EXCERPT_CHARS = 120


class ImaParseError(ParseError):
    """Line ``lineno`` (1-based) of an IMA ASCII log is not a valid measurement entry.

    ``column`` is the 0-based character position of the field that failed, ``line`` the whole
    line as given.  Nothing is ever skipped: the verifier decides what a bad line means.
    """

    def __init__(self, lineno: int, line: str, reason: str, column: int = 0) -> None:
        super().__init__(f"IMA log line {lineno}", column, reason)
        self.lineno = lineno
        self.line = line
        self.column = column

    def __str__(self) -> str:
        excerpt = self.line[:MESSAGE_LINE_EXCERPT_CHARS]
        more = "..." if len(self.line) > MESSAGE_LINE_EXCERPT_CHARS else ""
        return f"{super().__str__()}: {excerpt!r}{more}"


class ImaVerificationError(AttestProtocolError):
    """An IMA entry parsed but does not hold; ``lineno`` names the entry."""

    def __init__(self, lineno: int, message: str) -> None:
        super().__init__(f"IMA log line {lineno}: {message}")
        self.lineno = lineno


class ImaTemplateHashError(ImaVerificationError):
    """The template hash in the log is not the hash of the entry's serialised template data."""

    def __init__(self, lineno: int, logged: bytes, computed: bytes) -> None:
        super().__init__(
            lineno,
            f"template hash {logged.hex()} does not match the template data ({computed.hex()})",
        )
        self.logged = logged
        self.computed = computed


class ImaPcrIndexError(ImaVerificationError):
    """An entry names a PCR other than the one being replayed; it is never silently left out."""

    def __init__(self, lineno: int, pcr: int, expected: int) -> None:
        super().__init__(lineno, f"entry is for PCR {pcr}, replaying PCR {expected}")
        self.pcr = pcr
        self.expected = expected
