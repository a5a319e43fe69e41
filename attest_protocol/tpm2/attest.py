"""TPMS_ATTEST produced by TPM2_Quote (TCG TPM 2.0 Library Part 2 §10.12).

Layout (big-endian)::

    magic u32 | type u16 | qualifiedSigner TPM2B_NAME | extraData TPM2B_DATA
    | clockInfo (clock u64, resetCount u32, restartCount u32, safe u8)
    | firmwareVersion u64
    | attested: TPMS_QUOTE_INFO = pcrSelect TPML_PCR_SELECTION, pcrDigest TPM2B_DIGEST

Only the quote form is decoded; certify, creation and the other attestation types are
refused, so a signed structure of another kind can never be taken for a quote.
"""

from __future__ import annotations

from dataclasses import dataclass

from attest_protocol.tpm2.constants import (
    MAX_DIGEST_BYTES,
    TPM_GENERATED_VALUE,
    TPM_ST_ATTEST_QUOTE,
)
from attest_protocol.tpm2.marshal import Reader, Writer
from attest_protocol.tpm2.pcr import PcrSelection, read_pcr_selection

# sizeof(TPMU_NAME): a TPMT_HA (2-byte alg + 64-byte digest) is the largest Name (Part 2 §10.5.3).
MAX_NAME_BYTES = 2 + MAX_DIGEST_BYTES
# TPM2B_DATA holds at most sizeof(TPMT_HA) (Part 2 §10.4.3); it carries the verifier's nonce.
MAX_EXTRA_DATA_BYTES = 2 + MAX_DIGEST_BYTES
# TPMI_YES_NO (Part 2 §9.2): the safe flag is exactly 0 or 1.
_YES_NO = (0, 1)


@dataclass(frozen=True)
class ClockInfo:
    """TPMS_CLOCK_INFO (Part 2 §10.11.1).

    ``clock`` counts milliseconds the TPM has been powered, kept across power cycles;
    ``reset_count`` counts TPM Resets (reboots), ``restart_count`` TPM Restarts/Resumes since
    the last reset; ``safe`` says no larger clock value has ever been reported.
    """

    clock: int
    reset_count: int
    restart_count: int
    safe: bool


@dataclass(frozen=True)
class TpmsAttest:
    magic: int
    type: int
    qualified_signer: bytes
    extra_data: bytes
    clock_info: ClockInfo
    firmware_version: int
    pcr_select: PcrSelection
    pcr_digest: bytes

    def encode(self) -> bytes:
        w = Writer().u32(self.magic).u16(self.type)
        w.tpm2b(self.qualified_signer).tpm2b(self.extra_data)
        clock = self.clock_info
        w.u64(clock.clock).u32(clock.reset_count).u32(clock.restart_count).u8(int(clock.safe))
        w.u64(self.firmware_version).put(self.pcr_select.encode()).tpm2b(self.pcr_digest)
        return w.getvalue()


def parse_tpms_attest(data: bytes) -> TpmsAttest:
    """Decode a quote's TPMS_ATTEST; anything else, or any trailing byte, is a ParseError."""
    r = Reader(data, "TPMS_ATTEST")
    magic = r.u32()
    if magic != TPM_GENERATED_VALUE:
        raise r.error(f"magic {magic:#010x} is not TPM_GENERATED_VALUE", 0)
    type_at = r.offset
    kind = r.u16()
    if kind != TPM_ST_ATTEST_QUOTE:
        raise r.error(f"type {kind:#06x} is not TPM_ST_ATTEST_QUOTE", type_at)
    signer = r.tpm2b(MAX_NAME_BYTES, "qualifiedSigner")
    extra_data = r.tpm2b(MAX_EXTRA_DATA_BYTES, "extraData")
    clock_info = _read_clock_info(r)
    firmware_version = r.u64()
    pcr_select = read_pcr_selection(r)
    pcr_digest = r.tpm2b(MAX_DIGEST_BYTES, "pcrDigest")
    r.expect_end()
    return TpmsAttest(
        magic, kind, signer, extra_data, clock_info, firmware_version, pcr_select, pcr_digest
    )


def _read_clock_info(r: Reader) -> ClockInfo:
    clock = r.u64()
    reset_count = r.u32()
    restart_count = r.u32()
    safe_at = r.offset
    safe = r.u8()
    if safe not in _YES_NO:
        raise r.error(f"clockInfo.safe is {safe}, not YES or NO", safe_at)
    return ClockInfo(clock, reset_count, restart_count, safe == 1)
