"""PCR selections: TPML_PCR_SELECTION (Part 2 §10.9.7) and Keylime's PCR mask strings.

A TPMS_PCR_SELECTION (Part 2 §10.6.2) is ``hash u16 | sizeofSelect u8 | pcrSelect[sizeofSelect]``
where bit ``i % 8`` of byte ``i // 8`` selects PCR ``i``.  Keylime talks about the same set as
an integer mask in hex, ``"0x10401"`` selecting PCRs 0, 10 and 16 (the ``mask`` query parameter
of ``/quotes/integrity``).  Keylime supports the 24 PCRs of the TCG PC Client Platform TPM
Profile, so every selection here is three bytes wide.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from attest_protocol.errors import ParseError
from attest_protocol.tpm2.constants import HASH_ALGS, TpmAlg
from attest_protocol.tpm2.marshal import Reader, Writer

# PC Client Platform TPM Profile: 24 PCRs, hence PCR_SELECT_MIN = 3 bytes of bitmap.
PCR_COUNT = 24
PCR_SELECT_BYTES = 3
# Capacity of TPML_PCR_SELECTION in the TSS headers (TPM2_NUM_PCR_BANKS); no TPM has more banks.
MAX_PCR_BANKS = 16
# "0x" and at most eight hex digits: a 32-bit value, of which only bits 0-23 may be set.
MASK_PREFIX = "0x"
MAX_MASK_HEX_DIGITS = 8
_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


@dataclass(frozen=True)
class PcrSelection:
    """PCR banks in TPML_PCR_SELECTION order, each a hash algorithm and a set of PCR indices.

    Order matters: the TPM digests PCR values bank by bank in this order (Part 3 TPM2_Quote).
    A bank may select no PCRs; it is kept, because the TPM reports it as given.
    """

    banks: tuple[tuple[TpmAlg, frozenset[int]], ...]

    def __post_init__(self) -> None:
        algs = [alg for alg, _ in self.banks]
        if len(algs) > MAX_PCR_BANKS or len(set(algs)) != len(algs):
            raise ValueError("a PCR selection holds at most 16 banks, each once")
        for alg, pcrs in self.banks:
            if alg not in HASH_ALGS:
                raise ValueError(f"PCR bank {alg!r} is not a hash algorithm")
            if any(not 0 <= pcr < PCR_COUNT for pcr in pcrs):
                raise ValueError(f"PCR indices must be 0-{PCR_COUNT - 1}")

    @classmethod
    def from_mask(cls, mask: int, hash_alg: TpmAlg) -> PcrSelection:
        """One bank selecting the PCRs whose bits are set in ``mask``."""
        if not 0 <= mask < 1 << PCR_COUNT:
            raise ValueError(f"mask {mask:#x} selects PCRs outside 0-{PCR_COUNT - 1}")
        return cls(((hash_alg, _pcrs_of(mask)),))

    @classmethod
    def single(cls, hash_alg: TpmAlg, pcrs: Iterable[int]) -> PcrSelection:
        return cls(((hash_alg, frozenset(pcrs)),))

    @property
    def hash_algs(self) -> tuple[TpmAlg, ...]:
        return tuple(alg for alg, _ in self.banks)

    def pcrs(self, hash_alg: TpmAlg) -> frozenset[int]:
        """The PCRs selected in ``hash_alg``'s bank; empty if the bank is not selected."""
        for alg, pcrs in self.banks:
            if alg == hash_alg:
                return pcrs
        return frozenset()

    def mask(self, hash_alg: TpmAlg) -> int:
        return sum(1 << pcr for pcr in self.pcrs(hash_alg))

    def ordered(self) -> list[tuple[TpmAlg, int]]:
        """(bank, PCR) pairs in the order the TPM hashes them: banks in order, PCRs ascending."""
        return [(alg, pcr) for alg, pcrs in self.banks for pcr in sorted(pcrs)]

    def encode(self) -> bytes:
        w = Writer().u32(len(self.banks))
        for alg, pcrs in self.banks:
            w.u16(alg).u8(PCR_SELECT_BYTES).put(select_bytes(pcrs))
        return w.getvalue()


def select_bytes(pcrs: Iterable[int]) -> bytes:
    """The pcrSelect bitmap for ``pcrs`` (byte i//8, bit i%8)."""
    return sum(1 << pcr for pcr in pcrs).to_bytes(PCR_SELECT_BYTES, "little")


def _pcrs_of(mask: int) -> frozenset[int]:
    return frozenset(pcr for pcr in range(PCR_COUNT) if mask >> pcr & 1)


def read_pcr_selection(r: Reader) -> PcrSelection:
    """Read a big-endian TPML_PCR_SELECTION at the reader's cursor."""
    count_at = r.offset
    count = r.u32()
    if count > MAX_PCR_BANKS:
        raise r.error(f"{count} PCR banks exceed the maximum {MAX_PCR_BANKS}", count_at)
    banks: list[tuple[TpmAlg, frozenset[int]]] = []
    for _ in range(count):
        banks.append(read_pcr_bank(r, seen={alg for alg, _ in banks}))
    return PcrSelection(tuple(banks))


def read_pcr_bank(r: Reader, seen: set[TpmAlg]) -> tuple[TpmAlg, frozenset[int]]:
    """One TPMS_PCR_SELECTION in the reader's byte order (the tpm2-tools blob is little-endian)."""
    alg_at = r.offset
    alg = r.u16()
    if alg not in HASH_ALGS:
        raise r.error(f"PCR bank {alg:#06x} is not a supported hash", alg_at)
    if alg in seen:
        raise r.error(f"PCR bank {alg:#06x} selected twice", alg_at)
    size_at = r.offset
    size = r.u8()
    if size != PCR_SELECT_BYTES:
        raise r.error(f"sizeofSelect {size}, expected {PCR_SELECT_BYTES}", size_at)
    bitmap = r.take(PCR_SELECT_BYTES)
    return TpmAlg(alg), _pcrs_of(int.from_bytes(bitmap, "little"))


def parse_pcr_selection(data: bytes) -> PcrSelection:
    r = Reader(data, "TPML_PCR_SELECTION")
    selection = read_pcr_selection(r)
    r.expect_end()
    return selection


def parse_mask(text: str) -> int:
    """Parse Keylime's PCR mask ``"0x..."``: lower-case prefix, hex digits, bits 0-23 only."""
    structure = "PCR mask"
    if not text.startswith(MASK_PREFIX):
        raise ParseError(structure, 0, "mask must start with '0x'")
    digits = text[len(MASK_PREFIX) :]
    if not digits:
        raise ParseError(structure, len(MASK_PREFIX), "no hex digits after '0x'")
    if len(digits) > MAX_MASK_HEX_DIGITS:
        raise ParseError(structure, len(MASK_PREFIX), f"more than {MAX_MASK_HEX_DIGITS} digits")
    for index, char in enumerate(digits, start=len(MASK_PREFIX)):
        # int(..., 16) would also take "_" and surrounding spaces; only hex digits are allowed.
        if char not in _HEX_DIGITS:
            raise ParseError(structure, index, f"{char!r} is not a hex digit")
    mask = int(digits, 16)
    if mask >> PCR_COUNT:
        raise ParseError(structure, 0, f"selects PCRs above {PCR_COUNT - 1}")
    return mask
