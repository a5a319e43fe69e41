"""Byte cursor and builder for TPM 2.0 marshalling.

TPM structures are marshalled big-endian with no padding (TCG TPM 2.0 Library Part 2, §5 and
the marshalling rules of Part 4).  A ``TPM2B_*`` is a 16-bit byte count followed by that many
bytes (Part 2 §10.4).  The one little-endian layout we meet is the tpm2-tools PCR file that
Keylime reads (see ``attest_protocol.quote``); ``byteorder="little"`` serves that.

Every read that would run past the end raises ``ParseError`` naming the structure and the
offset where the read started, so a caller never sees ``IndexError`` or ``struct.error``.
"""

from __future__ import annotations

from typing import Literal

from attest_protocol.errors import ParseError

ByteOrder = Literal["big", "little"]

# A TPM2B size field is a UINT16 (Part 2 §10.4.1), so no TPM2B can hold more than this.
TPM2B_MAX_BYTES = 0xFFFF


class Reader:
    """A cursor over ``data`` that decodes one named structure.

    ``offset`` is the position of the next unread byte, counted from the start of ``data``;
    error offsets use the same origin so they point into the buffer the caller passed.
    """

    def __init__(self, data: bytes, structure: str, *, byteorder: ByteOrder = "big") -> None:
        self._data = bytes(data)
        self._offset = 0
        self.structure = structure
        self.byteorder: ByteOrder = byteorder

    @property
    def offset(self) -> int:
        return self._offset

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def error(self, reason: str, offset: int | None = None) -> ParseError:
        """A ``ParseError`` for this structure at ``offset`` (default: the cursor)."""
        return ParseError(self.structure, self._offset if offset is None else offset, reason)

    def take(self, n: int) -> bytes:
        if n < 0:
            raise self.error(f"negative length {n}")
        if n > self.remaining:
            raise self.error(f"need {n} bytes, only {self.remaining} left")
        start = self._offset
        self._offset += n
        return self._data[start : self._offset]

    def _uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), self.byteorder)

    def u8(self) -> int:
        return self._uint(1)

    def u16(self) -> int:
        return self._uint(2)

    def u32(self) -> int:
        return self._uint(4)

    def u64(self) -> int:
        return self._uint(8)

    def tpm2b(self, max_size: int | None = None, what: str = "TPM2B") -> bytes:
        """A ``TPM2B``: UINT16 size then the bytes; ``max_size`` is the structure's bound."""
        start = self._offset
        size = self.u16()
        if max_size is not None and size > max_size:
            raise self.error(f"{what} size {size} exceeds its maximum {max_size}", start)
        return self.take(size)

    def expect_end(self) -> None:
        if self.remaining:
            raise self.error(f"{self.remaining} trailing bytes after the structure")


class Writer:
    """Builds marshalled bytes; the mirror of ``Reader``.

    Values that do not fit their field raise ``ValueError``: that is a bug in the caller's
    data, not bad input from a peer.
    """

    def __init__(self, *, byteorder: ByteOrder = "big") -> None:
        self._parts: list[bytes] = []
        self.byteorder: ByteOrder = byteorder

    def _uint(self, value: int, size: int) -> Writer:
        if not 0 <= value < 1 << (8 * size):
            raise ValueError(f"{value} does not fit in {size} bytes")
        self._parts.append(value.to_bytes(size, self.byteorder))
        return self

    def u8(self, value: int) -> Writer:
        return self._uint(value, 1)

    def u16(self, value: int) -> Writer:
        return self._uint(value, 2)

    def u32(self, value: int) -> Writer:
        return self._uint(value, 4)

    def u64(self, value: int) -> Writer:
        return self._uint(value, 8)

    def put(self, data: bytes) -> Writer:
        self._parts.append(bytes(data))
        return self

    def tpm2b(self, data: bytes) -> Writer:
        if len(data) > TPM2B_MAX_BYTES:
            raise ValueError(f"{len(data)} bytes do not fit in a TPM2B")
        return self.u16(len(data)).put(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts)
