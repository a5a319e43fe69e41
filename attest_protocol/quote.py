"""The Keylime quote string, the tpm2-tools PCR blob inside it, and quote verification.

An agent answers ``GET /quotes/integrity`` with ``"r" + b64(TPMS_ATTEST) + ":" +
b64(TPMT_SIGNATURE) + ":" + b64(PCR blob)`` (rust-keylime ``encode_quote_string``; Keylime
``Tpm._get_quote_parameters`` splits it).  The PCR blob is not TPM-marshalled: it is the
in-memory image of tpm2-tools' ``tpm2_pcrs`` (little-endian, C padding) that Keylime's
``__get_pcrs_from_blob`` reads::

    TPML_PCR_SELECTION   count u32, then 16 slots of: hash u16, sizeofSelect u8,
                         pcrSelect[4], 1 pad byte (slots past count all zero)
    u32                  number of TPML_DIGEST that follow
    TPML_DIGEST ...      count u32, then 8 slots of: size u16, buffer[64] (sizeof TPMU_HA)
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes

from attest_protocol.errors import (
    ParseError,
    QuoteAlgorithmError,
    QuoteClockError,
    QuoteNonceError,
    QuotePcrDigestError,
    QuoteSelectionError,
)
from attest_protocol.tpm2.attest import ClockInfo, TpmsAttest, parse_tpms_attest
from attest_protocol.tpm2.constants import MAX_DIGEST_BYTES, TpmAlg, digest_size, hash_for_alg
from attest_protocol.tpm2.marshal import Reader, Writer
from attest_protocol.tpm2.pcr import (
    MAX_PCR_BANKS,
    PCR_COUNT,
    PCR_SELECT_BYTES,
    PcrSelection,
    read_pcr_bank,
    select_bytes,
)
from attest_protocol.tpm2.public import TpmPublic
from attest_protocol.tpm2.signature import parse_tpmt_signature, verify_signature

# C layout of tpm2-tools' structures (tss2_tpm2_types.h): pcrSelect is PCR_SELECT_MAX = 4
# bytes, of which a 24-PCR selection uses 3; one byte pads TPMS_PCR_SELECTION to 8 bytes.
_SELECT_TAIL_BYTES = 2  # pcrSelect[3] and the alignment pad
_BLOB_SLOT_BYTES = 2 + 1 + PCR_SELECT_BYTES + _SELECT_TAIL_BYTES
BLOB_SELECTION_BYTES = 4 + MAX_PCR_BANKS * _BLOB_SLOT_BYTES
# A TPML_DIGEST holds 8 digests (TPM2_PCR_Read returns at most 8 per call, Part 3 §22.4).
DIGESTS_PER_TPML = 8
TPML_DIGEST_BYTES = 4 + DIGESTS_PER_TPML * (2 + MAX_DIGEST_BYTES)
# Keylime hashes one bank, so at most one TPML_DIGEST per PCR of that bank can be needed.
MAX_TPML_DIGESTS = PCR_COUNT
# 'r' marks a TPM 2.0 quote; Keylime refuses any other first character.
QUOTE_PREFIX = "r"
# A one-bank quote of 24 SHA-512 PCRs is under 3 KiB of base64; 64 KiB leaves room and bounds
# the work a hostile agent can cause.
MAX_QUOTE_TEXT_CHARS = 64 * 1024
_B64_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


@dataclass(frozen=True)
class PcrBlob:
    """A decoded PCR blob: its selection (zero or one bank) and that bank's PCR values."""

    selection: PcrSelection
    values: Mapping[int, bytes]

    @property
    def hash_alg(self) -> TpmAlg | None:
        return self.selection.hash_algs[0] if self.selection.banks else None


def encode_pcr_blob(hash_alg: TpmAlg, values: Mapping[int, bytes]) -> bytes:
    """The tpm2-tools PCR blob for one bank; PCRs go 8 to a TPML_DIGEST, ascending."""
    size = digest_size(hash_alg)
    if any(len(v) != size or not 0 <= pcr < PCR_COUNT for pcr, v in values.items()):
        raise ValueError(f"PCR values must be {size}-byte digests of PCRs 0-{PCR_COUNT - 1}")
    w = Writer(byteorder="little").u32(1)
    w.u16(hash_alg).u8(PCR_SELECT_BYTES).put(select_bytes(values))
    w.put(bytes(_SELECT_TAIL_BYTES + (MAX_PCR_BANKS - 1) * _BLOB_SLOT_BYTES))
    pcrs = sorted(values)
    chunks = [pcrs[i : i + DIGESTS_PER_TPML] for i in range(0, len(pcrs), DIGESTS_PER_TPML)]
    w.u32(len(chunks))
    for chunk in chunks:
        w.u32(len(chunk))
        for slot in range(DIGESTS_PER_TPML):
            digest = values[chunk[slot]] if slot < len(chunk) else b""
            w.u16(len(digest)).put(digest.ljust(MAX_DIGEST_BYTES, b"\0"))
    return w.getvalue()


def parse_pcr_blob(blob: bytes) -> PcrBlob:
    """Decode and fully check a PCR blob; values must match the selection one to one."""
    r = Reader(blob, "PCR blob", byteorder="little")
    selection = _read_blob_selection(r)
    count_at = r.offset
    count = r.u32()
    if count > MAX_TPML_DIGESTS or count * TPML_DIGEST_BYTES != r.remaining:
        raise r.error(f"{count} TPML_DIGEST do not fit the {r.remaining} bytes left", count_at)
    digests: list[bytes] = []
    size = digest_size(selection.hash_algs[0]) if selection.banks else 0
    for _ in range(count):
        digests.extend(_read_tpml_digest(r, size))
    pcrs = sorted(selection.pcrs(selection.hash_algs[0])) if selection.banks else []
    if len(digests) != len(pcrs):
        raise r.error(f"{len(digests)} PCR values for {len(pcrs)} selected PCRs", count_at)
    return PcrBlob(selection, dict(zip(pcrs, digests)))


def _read_blob_selection(r: Reader) -> PcrSelection:
    count = r.u32()
    # Keylime hashes a single bank (tpm_util.__hash_pcr_banks); more would be misread.
    if count > 1:
        raise r.error(f"{count} PCR banks; Keylime quotes carry at most one", 0)
    banks = []
    for _ in range(count):
        banks.append(read_pcr_bank(r, seen=set()))
        _expect_zeros(r, _SELECT_TAIL_BYTES, "pcrSelect[3] and padding")
    _expect_zeros(r, (MAX_PCR_BANKS - count) * _BLOB_SLOT_BYTES, "unused selection slots")
    return PcrSelection(tuple(banks))


def _read_tpml_digest(r: Reader, size: int) -> list[bytes]:
    """One fixed-size TPML_DIGEST (the caller checked the blob holds whole ones), read from
    a single slice: a verifier parses one blob per quote, so this runs for every attestation."""
    start = r.offset
    chunk = r.take(TPML_DIGEST_BYTES)
    count = int.from_bytes(chunk[:4], "little")
    if count > DIGESTS_PER_TPML:
        raise r.error(f"TPML_DIGEST count {count} exceeds {DIGESTS_PER_TPML}", start)
    values = []
    at = 4
    for slot in range(DIGESTS_PER_TPML):
        expected = size if slot < count else 0
        if int.from_bytes(chunk[at : at + 2], "little") != expected:
            raise r.error(f"digest slot {slot} size is not {expected}", start + at)
        digest_end, slot_end = at + 2 + expected, at + 2 + MAX_DIGEST_BYTES
        if slot < count:
            values.append(chunk[at + 2 : digest_end])
        if chunk.count(0, digest_end, slot_end) != slot_end - digest_end:
            raise r.error("digest buffer padding is not zero", start + digest_end)
        at = slot_end
    return values


def _expect_zeros(r: Reader, n: int, what: str) -> None:
    start = r.offset
    if any(r.take(n)):
        raise r.error(f"{what} is not zero", start)


@dataclass(frozen=True)
class KeylimeQuote:
    """The three raw parts of a Keylime TPM 2.0 quote string."""

    attest: bytes
    signature: bytes
    pcr_blob: bytes

    def encode(self) -> str:
        parts = (self.attest, self.signature, self.pcr_blob)
        return QUOTE_PREFIX + ":".join(base64.b64encode(p).decode("ascii") for p in parts)

    @classmethod
    def parse(cls, text: str) -> KeylimeQuote:
        """Split and decode ``r<b64>:<b64>:<b64>``; exactly three canonical base64 fields."""
        if len(text) > MAX_QUOTE_TEXT_CHARS:
            raise ParseError("Keylime quote", MAX_QUOTE_TEXT_CHARS, "quote text too long")
        if not text.startswith(QUOTE_PREFIX):
            raise ParseError("Keylime quote", 0, "quote does not start with 'r' (TPM 2.0)")
        fields = text[len(QUOTE_PREFIX) :].split(":")
        if len(fields) != 3:
            raise ParseError("Keylime quote", 0, f"{len(fields)} fields, expected 3")
        decoded, offset = [], len(QUOTE_PREFIX)
        for name, field in zip(("TPMS_ATTEST", "TPMT_SIGNATURE", "PCR blob"), fields):
            decoded.append(_strict_b64(field, offset, name))
            offset += len(field) + 1
        return cls(*decoded)


def _strict_b64(field: str, offset: int, name: str) -> bytes:
    try:
        # validate=True refuses any character outside the alphabet, so a field that decodes
        # needs no scan; one that does not is scanned to name the first bad character.
        raw = base64.b64decode(field, validate=True)
    except (binascii.Error, ValueError) as exc:
        for index, char in enumerate(field):
            if char not in _B64_ALPHABET:
                at = offset + index
                raise ParseError("Keylime quote", at, f"{name}: {char!r} is not base64") from None
        raise ParseError("Keylime quote", offset, f"{name}: malformed base64") from exc
    # Re-encoding rejects misplaced '=' and non-zero pad bits, so one quote has one spelling.
    if not raw or base64.b64encode(raw).decode("ascii") != field:
        raise ParseError("Keylime quote", offset, f"{name}: empty or non-canonical base64")
    return raw


@dataclass(frozen=True)
class VerifiedQuote:
    """A quote that verified: its TPMS_ATTEST, the PCR values of its bank, and that bank."""

    attest: TpmsAttest
    pcrs: dict[int, bytes]
    hash_alg: TpmAlg


def verify_quote(
    quote: KeylimeQuote,
    ak: TpmPublic,
    nonce: bytes,
    *,
    hash_alg: TpmAlg | None = None,
    previous_clock: ClockInfo | None = None,
) -> VerifiedQuote:
    """Check a quote against the AK, the nonce and, if given, the previous quote's clock.

    Raises ParseError for malformed parts, else one QuoteVerificationError subclass per
    failed check.  Unlike Keylime, the blob's selection must equal the quoted selection.
    """
    attest = parse_tpms_attest(quote.attest)
    sig = parse_tpmt_signature(quote.signature)
    blob = parse_pcr_blob(quote.pcr_blob)
    if hash_alg is not None and sig.hash_alg != hash_alg:
        raise QuoteAlgorithmError(f"quote signed with {sig.hash_alg.name}, not {hash_alg.name}")
    verify_signature(ak, sig, quote.attest)
    if not hmac.compare_digest(attest.extra_data, nonce):
        raise QuoteNonceError("extraData is not the nonce of this request")
    if attest.pcr_select != blob.selection:
        raise QuoteSelectionError("PCR blob selection differs from the quoted selection")
    # The TPM hashes the PCRs with the signing scheme's hash (Part 3 §18.4); Keylime also reads
    # the bank of that hash (tpm_util.__hash_pcr_banks), so the two must agree.
    if blob.hash_alg is not None and blob.hash_alg != sig.hash_alg:
        raise QuoteAlgorithmError(f"PCR bank {blob.hash_alg.name} is not {sig.hash_alg.name}")
    digest = hashes.Hash(hash_for_alg(sig.hash_alg))
    for _, pcr in attest.pcr_select.ordered():
        digest.update(blob.values[pcr])
    if not hmac.compare_digest(digest.finalize(), attest.pcr_digest):
        raise QuotePcrDigestError("digest of the PCR values is not the quoted pcrDigest")
    if previous_clock is not None:
        check_clock(previous_clock, attest.clock_info)
    return VerifiedQuote(attest, dict(blob.values), sig.hash_alg)


def check_clock(
    previous: ClockInfo | None,
    current: ClockInfo,
    *,
    keylime_rules: bool = False,
) -> None:
    """Raise QuoteClockError if ``current`` cannot follow ``previous`` on the same TPM.

    Semantics from Part 2 §10.11.1 (TPMS_CLOCK_INFO) and the reference code in Part 4
    (Time.c TimeStartup, NV_CLOCK_UPDATE_INTERVAL):

    * resetCount only grows, except through TPM2_Clear, which also wipes the keys an agent
      uses; a decrease is a rollback or a replay.
    * A larger resetCount is a reboot (TPM Reset).  It sets restartCount back to 0, and
      Clock may lag the last reported value after a power loss (Clock is written to NV only
      every NV_CLOCK_UPDATE_INTERVAL), so after a reboot both are accepted as they come.
    * Within one reset restartCount only grows (hibernate/resume), and Clock never moves back
      (TPM2_ClockSet may only advance it); an equal Clock is two quotes in one millisecond.

    ``keylime_rules`` applies Keylime 7.14.3's verifier policy instead (keylime/tpm/tpm_main.py
    ``Tpm.check_quote_timing``): ``safe`` must be YES, even with no ``previous``; neither
    count may decrease, not even restartCount across a reset; and unless *both* counts
    changed, Clock must strictly increase.  With ``previous`` None only ``safe`` is checked.
    """
    if keylime_rules and not current.safe:
        raise QuoteClockError("clock safe flag is NO: a larger clock may have been reported")
    if previous is None:
        return
    if current.reset_count < previous.reset_count:
        raise QuoteClockError("resetCount went backwards")
    if keylime_rules:
        _check_clock_keylime(previous, current)
        return
    if current.reset_count > previous.reset_count:
        return
    if current.restart_count < previous.restart_count:
        raise QuoteClockError("restartCount went backwards without a TPM reset")
    if current.clock < previous.clock:
        raise QuoteClockError("clock went backwards without a TPM reset")


def _check_clock_keylime(previous: ClockInfo, current: ClockInfo) -> None:
    if current.restart_count < previous.restart_count:
        raise QuoteClockError("restartCount went backwards")
    both_changed = (
        current.reset_count != previous.reset_count
        and current.restart_count != previous.restart_count
    )
    if not both_changed and current.clock <= previous.clock:
        raise QuoteClockError("clock did not increase since the previous quote")
