"""Parse a crypto-agile TCG event log (Linux ``binary_bios_measurements``).

Layout from the TCG PC Client Platform Firmware Profile (PFP) 1.05, §10.2 "Event Log Format"
and §10.4.5.1 "Specification ID Version Event"; all integers little-endian:

* the first event is a TCG_PCR_EVENT (the SHA-1 log format): pcrIndex u32, eventType u32,
  digest[20], eventSize u32, event.  It must be EV_NO_ACTION on PCR 0 with a zero digest and
  hold TCG_EfiSpecIDEvent: signature "Spec ID Event03\\0", platformClass u32, specVersionMinor,
  specVersionMajor, specErrata, uintnSize (u8 each), numberOfAlgorithms u32, that many
  (algorithmId u16, digestSize u16), vendorInfoSize u8, vendorInfo;
* every later event is a TCG_PCR_EVENT2: pcrIndex u32, eventType u32, TPML_DIGEST_VALUES
  (count u32, then count pairs of hashAlg u16 and a digest whose size the Spec ID event gives),
  eventSize u32, event.

Pre-2.0 SHA-1-only logs (no Spec ID Event03) are not supported and rejected.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping

from attest_protocol.errors import ParseError
from attest_protocol.eventlog.errors import EventLogParseError
from attest_protocol.tpm2.constants import MAX_DIGEST_BYTES, TpmAlg, digest_size, is_hash_alg
from attest_protocol.tpm2.marshal import Reader

# Limits: a real log holds a few hundred events; the largest event data are UEFI variables
# such as db/dbx (tens to a few hundred KiB).  These bounds keep a hostile log cheap.
MAX_EVENTS = 16384
MAX_EVENT_DATA_BYTES = 1024 * 1024
# A TPM has a handful of PCR banks; the Spec ID event lists one entry per algorithm.
MAX_SPEC_ALGORITHMS = 16
MAX_PCR_INDEX = 23
SHA1_LOG_DIGEST_BYTES = 20
SPEC_ID_SIGNATURE = b"Spec ID Event03\0"
SPEC_ID_VERSION_MAJOR = 2
# uintnSize: 1 for UINT32, 2 for UINT64 (PFP §10.4.5.1).
SPEC_ID_UINTN_SIZES = (1, 2)
# TCG_EfiStartupLocalityEvent (PFP §10.4.5.3): 16-byte signature then the locality byte.
STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\0"
STARTUP_LOCALITY_EVENT_BYTES = len(STARTUP_LOCALITY_SIGNATURE) + 1
# Localities from which a TPM2_Startup can come (3), the default (0), or H-CRTM (4).
STARTUP_LOCALITIES = (0, 3, 4)


class EventType(enum.IntEnum):
    """Event types (PFP §10.4.1) met in firmware logs; other values are kept as plain ints."""

    EV_PREBOOT_CERT = 0x0
    EV_POST_CODE = 0x1
    EV_NO_ACTION = 0x3
    EV_SEPARATOR = 0x4
    EV_ACTION = 0x5
    EV_EVENT_TAG = 0x6
    EV_S_CRTM_CONTENTS = 0x7
    EV_S_CRTM_VERSION = 0x8
    EV_CPU_MICROCODE = 0x9
    EV_PLATFORM_CONFIG_FLAGS = 0xA
    EV_TABLE_OF_DEVICES = 0xB
    EV_COMPACT_HASH = 0xC
    EV_IPL = 0xD
    EV_IPL_PARTITION_DATA = 0xE
    EV_NONHOST_CODE = 0xF
    EV_NONHOST_CONFIG = 0x10
    EV_NONHOST_INFO = 0x11
    EV_OMIT_BOOT_DEVICE_EVENTS = 0x12
    EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
    EV_EFI_VARIABLE_BOOT = 0x80000002
    EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
    EV_EFI_BOOT_SERVICES_DRIVER = 0x80000004
    EV_EFI_RUNTIME_SERVICES_DRIVER = 0x80000005
    EV_EFI_GPT_EVENT = 0x80000006
    EV_EFI_ACTION = 0x80000007
    EV_EFI_PLATFORM_FIRMWARE_BLOB = 0x80000008
    EV_EFI_HANDOFF_TABLES = 0x80000009
    EV_EFI_HCRTM_EVENT = 0x80000010
    EV_EFI_VARIABLE_AUTHORITY = 0x800000E0


@dataclasses.dataclass(frozen=True)
class SpecIdEvent:
    """TCG_EfiSpecIDEvent: above all, the digest size of each algorithm the log carries."""

    platform_class: int
    spec_version: tuple[int, int, int]  # (major, minor, errata)
    uintn_size: int
    digest_sizes: Mapping[int, int]
    vendor_info: bytes


@dataclasses.dataclass(frozen=True)
class BootEvent:
    """One event; ``index`` counts from 0 (the Spec ID event), ``offset`` is its first byte."""

    index: int
    pcr: int
    event_type: int
    digests: Mapping[int, bytes]
    data: bytes
    offset: int

    @property
    def startup_locality(self) -> int | None:
        """The locality of a StartupLocality EV_NO_ACTION event (validated on parse), or None."""
        if self.event_type != EventType.EV_NO_ACTION:
            return None
        if not self.data.startswith(STARTUP_LOCALITY_SIGNATURE):
            return None
        return self.data[-1]


@dataclasses.dataclass(frozen=True)
class EventLog:
    spec_id: SpecIdEvent
    events: tuple[BootEvent, ...]  # events[0] is the Spec ID event itself


def parse_event_log(data: bytes) -> EventLog:
    """The whole log; any byte that is not part of a valid event raises EventLogParseError."""
    reader = Reader(data, "TCG event log", byteorder="little")
    try:
        first, spec_id = _first_event(reader)
        events = [first]
        while reader.remaining:
            if len(events) >= MAX_EVENTS:
                raise reader.error(f"more than {MAX_EVENTS} events")
            events.append(_event2(reader, spec_id, len(events)))
    except ParseError as exc:
        raise EventLogParseError(exc.offset, exc.reason) from exc
    return EventLog(spec_id, tuple(events))


def _header(reader: Reader) -> tuple[int, int]:
    pcr = reader.u32()
    if pcr > MAX_PCR_INDEX:
        raise reader.error(f"PCR index {pcr} above {MAX_PCR_INDEX}", reader.offset - 4)
    return pcr, reader.u32()


def _event_data(reader: Reader) -> bytes:
    size = reader.u32()
    if size > MAX_EVENT_DATA_BYTES:
        raise reader.error(f"event size {size} exceeds {MAX_EVENT_DATA_BYTES}", reader.offset - 4)
    return reader.take(size)


def _first_event(reader: Reader) -> tuple[BootEvent, SpecIdEvent]:
    pcr, event_type = _header(reader)
    if (pcr, event_type) != (0, EventType.EV_NO_ACTION):
        raise reader.error("first event is not EV_NO_ACTION on PCR 0 (no Spec ID event)", 0)
    digest = reader.take(SHA1_LOG_DIGEST_BYTES)
    if any(digest):
        raise reader.error("Spec ID event digest is not zero", 8)
    data_offset = reader.offset + 4
    data = _event_data(reader)
    try:
        spec_id = _spec_id(Reader(data, "Spec ID event", byteorder="little"))
    except ParseError as exc:
        raise reader.error(exc.reason, data_offset + exc.offset) from exc
    first = BootEvent(0, pcr, event_type, {TpmAlg.SHA1: digest}, data, 0)
    return first, spec_id


def _spec_id(reader: Reader) -> SpecIdEvent:
    if reader.take(len(SPEC_ID_SIGNATURE)) != SPEC_ID_SIGNATURE:
        raise reader.error("signature is not 'Spec ID Event03'", 0)
    platform_class = reader.u32()
    minor, major, errata, uintn_size = (reader.u8() for _ in range(4))
    if major != SPEC_ID_VERSION_MAJOR or uintn_size not in SPEC_ID_UINTN_SIZES:
        raise reader.error(f"unsupported spec version {major}.{minor} or uintnSize {uintn_size}")
    count = reader.u32()
    if not 1 <= count <= MAX_SPEC_ALGORITHMS:
        raise reader.error(
            f"{count} algorithms, expected 1..{MAX_SPEC_ALGORITHMS}", reader.offset - 4
        )
    sizes: dict[int, int] = {}
    for _ in range(count):
        start = reader.offset
        alg, size = reader.u16(), reader.u16()
        _check_alg_size(reader, alg, size, sizes, start)
        sizes[alg] = size
    vendor_info = reader.take(reader.u8())
    reader.expect_end()
    return SpecIdEvent(platform_class, (major, minor, errata), uintn_size, sizes, vendor_info)


def _check_alg_size(reader: Reader, alg: int, size: int, seen: Mapping[int, int], at: int) -> None:
    if alg in seen:
        raise reader.error(f"algorithm {alg:#06x} listed twice", at)
    # Sizes of hashes we know must be right; an unknown algorithm (e.g. SM3) is carried
    # through with the size the log states, as long as it is a plausible digest size.
    expected = digest_size(alg) if is_hash_alg(alg) else None
    if expected is not None and size != expected:
        raise reader.error(f"algorithm {alg:#06x} has digest size {size}, not {expected}", at)
    if not 1 <= size <= MAX_DIGEST_BYTES:
        raise reader.error(f"algorithm {alg:#06x} digest size {size} out of range", at)


def _event2(reader: Reader, spec_id: SpecIdEvent, index: int) -> BootEvent:
    offset = reader.offset
    pcr, event_type = _header(reader)
    count = reader.u32()
    if count > len(spec_id.digest_sizes):
        raise reader.error(
            f"{count} digests, the Spec ID event lists fewer algorithms", reader.offset - 4
        )
    digests: dict[int, bytes] = {}
    for _ in range(count):
        alg = reader.u16()
        size = spec_id.digest_sizes.get(alg)
        if size is None or alg in digests:
            raise reader.error(
                f"algorithm {alg:#06x} not in the Spec ID event or repeated", reader.offset - 2
            )
        digests[alg] = reader.take(size)
    data_offset = reader.offset + 4
    data = _event_data(reader)
    event = BootEvent(index, pcr, event_type, digests, data, offset)
    if event.startup_locality is not None:
        _check_startup_locality(reader, data, data_offset)
    return event


def _check_startup_locality(reader: Reader, data: bytes, at: int) -> None:
    if len(data) != STARTUP_LOCALITY_EVENT_BYTES or data[-1] not in STARTUP_LOCALITIES:
        raise reader.error("malformed StartupLocality event", at)
