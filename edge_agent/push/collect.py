"""Gathering what the verifier asked for from the TPM and the two measurement logs.

The IMA entries come from the incremental reader (edge_agent.ima): the offer's entry count is
a read from the last count seen, so each attestation reads only what was appended since.
The boot time is read once at start (``btime``, proc(5)) and kept: the verifier restarts the
IMA replay at 0 when it grows and refuses one that goes back (Keylime
keylime/verification/tpm_engine.py ``_determine_ima_offset``), so a wall clock stepped by NTP
must not look like a reboot.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any, Optional, Protocol

from attest_protocol.errors import ParseError
from attest_protocol.eventlog import parse_event_log
from attest_protocol.quote import KeylimeQuote
from edge_agent.ima import ImaLogReader, ImaReaderError, MeasuredBootLogError, MeasuredBootLogReader
from edge_agent.push.errors import EvidenceUnavailable
from edge_agent.push.evidence import (
    ImaRequest,
    Offer,
    QuoteRequest,
    Requested,
    UefiRequest,
    ima_evidence,
    quote_evidence,
    uefi_evidence,
)
from edge_agent.tpm import AkInfo, TpmError

__all__ = ["Collector", "boot_time_iso"]

log = logging.getLogger(__name__)
PROC_STAT = "/proc/stat"


class Quoter(Protocol):
    """The part of edge_agent.tpm.Tpm the evidence needs."""

    async def quote(
        self, nonce: bytes, mask: int, hash_alg: Optional[str] = None
    ) -> KeylimeQuote: ...


def boot_time_iso(path: str = PROC_STAT) -> str:
    """The boot time as ISO 8601 UTC with "Z" (as rust-keylime sends it); epoch 0 if unknown."""
    seconds = 0
    try:
        with open(path, encoding="ascii") as stat:
            for line in stat:
                name, _, value = line.partition(" ")
                if name == "btime" and value.strip().isdigit():
                    seconds = int(value)
    except (OSError, UnicodeDecodeError):
        log.warning("Cannot read btime from %s; reporting boot time 0", path)
    when = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


class Collector:
    """Builds the offer and the evidence; keeps the IMA count seen last."""

    def __init__(
        self,
        tpm: Quoter,
        ak: AkInfo,
        ima: Optional[ImaLogReader],
        boot_log: MeasuredBootLogReader,
        *,
        server_identifier: str,
        uefi_version: str,
        boot_time: str,
    ) -> None:
        self._tpm, self._ak, self._ima, self._boot_log = tpm, ak, ima, boot_log
        self._server_identifier = server_identifier
        self._uefi_version = uefi_version
        self._boot_time = boot_time
        self._ima_seen = 0
        self._uefi_entries: Optional[int] = None
        self._uefi_counted = False

    async def offer(self) -> Offer:
        return Offer(
            ak=self._ak,
            server_identifier=self._server_identifier,
            boot_time=self._boot_time,
            ima_entries=await self._ima_count(),
            uefi_entries=await self._uefi_count(),
            uefi_version=self._uefi_version,
        )

    async def _ima_count(self) -> Optional[int]:
        if self._ima is None:
            return None
        try:
            part = await self._ima.read_from(self._ima_seen)
        except ImaReaderError as exc:
            raise EvidenceUnavailable(f"reading the IMA log: {exc}") from exc
        self._ima_seen = part.count
        return part.count

    async def _uefi_count(self) -> Optional[int]:
        # The boot log does not change after boot: count its events once.
        if not self._uefi_counted:
            data = await self._read_boot_log()
            self._uefi_counted = True
            if data is not None:
                try:
                    self._uefi_entries = len(parse_event_log(data).events)
                except ParseError as exc:
                    log.warning("The boot log does not parse (%s); offering 0 events", exc)
                    self._uefi_entries = 0
        return self._uefi_entries

    async def _read_boot_log(self) -> Optional[bytes]:
        try:
            return await self._boot_log.read()
        except MeasuredBootLogError as exc:
            raise EvidenceUnavailable(f"reading the boot log: {exc}") from exc

    async def collect(self, requested: tuple[Requested, ...]) -> list[dict[str, Any]]:
        """One evidence item per request, in the verifier's order."""
        return [await self._one(item) for item in requested]

    async def _one(self, item: Requested) -> dict[str, Any]:
        if isinstance(item, QuoteRequest):
            return await self._quote(item)
        if isinstance(item, ImaRequest):
            return await self._ima_part(item)
        return await self._uefi(item)

    async def _uefi(self, item: UefiRequest) -> dict[str, Any]:
        data = await self._read_boot_log()
        if data is None:
            raise EvidenceUnavailable("the verifier asked for the boot log, and there is none")
        return uefi_evidence(data)

    async def _quote(self, item: QuoteRequest) -> dict[str, Any]:
        # The AK signs with the one scheme it was created with (rust-keylime refuses too).
        chosen = (item.signature_scheme, item.hash_algorithm)
        if chosen != (self._ak.signing_alg, self._ak.hash_alg):
            raise EvidenceUnavailable(f"the AK cannot sign {chosen[0]}/{chosen[1]}")
        mask = sum(1 << pcr for pcr in item.pcrs)
        try:
            quote = await self._tpm.quote(item.challenge, mask, item.hash_algorithm)
        except (TpmError, ValueError) as exc:
            raise EvidenceUnavailable(f"quoting PCRs {list(item.pcrs)}: {exc}") from exc
        return quote_evidence(quote)

    async def _ima_part(self, item: ImaRequest) -> dict[str, Any]:
        if self._ima is None:
            raise EvidenceUnavailable("the verifier asked for the IMA log, and there is none")
        try:
            part = await self._ima.read_from(item.starting_offset)
        except ImaReaderError as exc:
            raise EvidenceUnavailable(f"reading the IMA log: {exc}") from exc
        if part.start != item.starting_offset:
            # Fewer entries than the verifier has seen: the log is not the one it replayed.
            asked = item.starting_offset
            raise EvidenceUnavailable(f"the IMA log has {part.count} entries; asked from {asked}")
        self._ima_seen = part.count
        log.info("Sending IMA entries from %d (%d in the log)", part.start, part.count)
        return ima_evidence(part, item.entry_count)
