"""The crypto-agile TCG event log: parse, replay, and refuse malformed input with an offset.

Logs are built here from the PC Client PFP layout (§10.2, §10.4.5.1) with struct, and the
expected PCR values are extended with hashlib, apart from the code under test.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from attest_protocol.eventlog import (
    BootEvent,
    EventLogParseError,
    EventLogReplayError,
    EventType,
    parse_event_log,
    replay_boot_log,
)
from attest_protocol.eventlog import parse as parse_module
from attest_protocol.tpm2.constants import TpmAlg

SHA1, SHA256 = int(TpmAlg.SHA1), int(TpmAlg.SHA256)
BANKS = [(SHA1, 20), (SHA256, 32)]
HEADER_BYTES = 32  # pcrIndex, eventType, SHA-1 digest, eventSize of the first event
ALG_TABLE_AT = HEADER_BYTES + 16 + 4 + 4 + 4  # signature, class, versions+uintn, count
LOCALITY_3 = b"StartupLocality\0\x03"


def spec_id_event(algs: list[tuple[int, int]], vendor: bytes = b"", sig: bytes = b"") -> bytes:
    body = (sig or b"Spec ID Event03\0") + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(algs))
    body += b"".join(struct.pack("<HH", alg, size) for alg, size in algs)
    body += bytes([len(vendor)]) + vendor
    return struct.pack("<II", 0, 3) + bytes(20) + struct.pack("<I", len(body)) + body


def event2(pcr: int, event_type: int, digests: list[tuple[int, bytes]], data: bytes) -> bytes:
    out = struct.pack("<III", pcr, event_type, len(digests))
    out += b"".join(struct.pack("<H", alg) + digest for alg, digest in digests)
    return out + struct.pack("<I", len(data)) + data


def measured(pcr: int, event_type: int, data: bytes) -> bytes:
    sha1 = hashlib.sha1(data, usedforsecurity=False).digest()  # the log's SHA-1 bank
    digests = [(SHA1, sha1), (SHA256, hashlib.sha256(data).digest())]
    return event2(pcr, event_type, digests, data)


def uefi_variable(name: str, value: bytes) -> bytes:
    """UEFI_VARIABLE_DATA (PFP §10.2.6): GUID, name and data lengths, UTF-16 name, data."""
    guid = bytes.fromhex("61dfe48bca93d211aa0d00e098032b8c")  # EFI_GLOBAL_VARIABLE
    return guid + struct.pack("<QQ", len(name), len(value)) + name.encode("utf-16-le") + value


def image_load(device_path: bytes) -> bytes:
    """UEFI_IMAGE_LOAD_EVENT (PFP §10.2.4): address, length, link address, device path."""
    return struct.pack("<QQQQ", 0x7E000000, 0x1000, 0, len(device_path)) + device_path


NO_DIGESTS = [(SHA1, bytes(20)), (SHA256, bytes(32))]
# (pcr, event type, data): one synthetic boot
BOOT = [
    (0, EventType.EV_S_CRTM_VERSION, "1.0".encode("utf-16-le")),
    (0, EventType.EV_EFI_PLATFORM_FIRMWARE_BLOB, b"\x00\x00\x82\xff" + bytes(12)),
    (7, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, uefi_variable("SecureBoot", b"\x01")),
    *((pcr, EventType.EV_SEPARATOR, bytes(4)) for pcr in range(8)),
    (4, EventType.EV_EFI_BOOT_SERVICES_APPLICATION, image_load(b"\x7f\xff\x04\x00")),
    (5, EventType.EV_EFI_ACTION, b"Exit Boot Services Invocation"),
    (8, EventType.EV_IPL, b"grub_cmd: linux /vmlinuz"),
    (9, EventType.EV_IPL, b"/boot/initrd.img"),
]


def build_log(locality: bool = True) -> bytes:
    parts = [spec_id_event(BANKS, vendor=b"limelet")]
    if locality:
        parts.append(event2(0, EventType.EV_NO_ACTION, NO_DIGESTS, LOCALITY_3))
    parts += [measured(pcr, etype, data) for pcr, etype, data in BOOT]
    return b"".join(parts)


def hand_replay(name: str, locality: bool = True) -> dict[int, bytes]:
    size = hashlib.new(name).digest_size
    pcrs: dict[int, bytes] = {0: bytes(size - 1) + b"\x03"} if locality else {}
    for pcr, _, data in BOOT:
        current = pcrs.get(pcr, bytes(size))
        pcrs[pcr] = hashlib.new(name, current + hashlib.new(name, data).digest()).digest()
    return pcrs


def test_synthetic_log_parses() -> None:
    log = parse_event_log(build_log())
    assert dict(log.spec_id.digest_sizes) == {SHA1: 20, SHA256: 32}
    assert log.spec_id.spec_version == (2, 0, 0)
    assert log.spec_id.vendor_info == b"limelet"
    assert len(log.events) == 2 + len(BOOT)
    assert log.events[1].startup_locality == 3
    for event, (pcr, etype, data) in zip(log.events[2:], BOOT):
        assert (event.pcr, event.event_type, event.data) == (pcr, etype, data)
        assert event.digests[TpmAlg.SHA256] == hashlib.sha256(data).digest()
        assert event.startup_locality is None
    assert [e.index for e in log.events] == list(range(len(log.events)))
    assert log.events[1].offset == len(spec_id_event(BANKS, vendor=b"limelet"))


@pytest.mark.parametrize(("alg", "name"), [(TpmAlg.SHA1, "sha1"), (TpmAlg.SHA256, "sha256")])
@pytest.mark.parametrize("locality", [True, False])
def test_replay_equals_hand_computed_pcrs(alg: TpmAlg, name: str, locality: bool) -> None:
    events = parse_event_log(build_log(locality)).events
    assert replay_boot_log(events, alg) == hand_replay(name, locality)


def test_truncated_at_every_offset() -> None:
    data = build_log()
    events = parse_event_log(data).events
    boundaries = {event.offset: event.index for event in events[1:]}
    checked = 0
    for end in range(len(data)):
        if end in boundaries:
            assert len(parse_event_log(data[:end]).events) == boundaries[end]
        else:
            with pytest.raises(EventLogParseError) as info:
                parse_event_log(data[:end])
            assert 0 <= info.value.offset <= end
        checked += 1
    assert checked == len(data)


SPEC = spec_id_event(BANKS)
GOOD_EVENT = measured(0, EventType.EV_POST_CODE, b"post")
S = len(SPEC)
SHA384_ONLY = [(int(TpmAlg.SHA384), bytes(48))]
TOO_LARGE = GOOD_EVENT[:-8] + struct.pack("<I", 1 << 24)  # eventSize of 16 MiB, no data
ONE_MORE_BYTE = SPEC[:28] + struct.pack("<I", len(SPEC) - 31) + SPEC[32:] + b"\0"
BAD_LOGS = [
    # (id, log bytes, offset of the error, fragment of the reason)
    ("sha256 size 20", spec_id_event([(SHA1, 20), (SHA256, 20)]), ALG_TABLE_AT + 4, "not 32"),
    ("algorithm listed twice", spec_id_event([(SHA1, 20), (SHA1, 20)]), ALG_TABLE_AT + 4, "twice"),
    ("unknown alg size 0", spec_id_event([(0x0012, 0)]), ALG_TABLE_AT, "out of range"),
    ("no algorithms", spec_id_event([]), ALG_TABLE_AT - 4, "0 algorithms"),
    ("bad signature", spec_id_event(BANKS, sig=b"Spec ID Event02\0"), HEADER_BYTES, "signature"),
    ("first event not NO_ACTION", GOOD_EVENT, 0, "Spec ID"),
    ("nonzero Spec ID digest", SPEC[:8] + b"\x01" + SPEC[9:], 8, "not zero"),
    ("trailing Spec ID bytes", ONE_MORE_BYTE, S, "trailing"),
    ("digest alg not in Spec ID", SPEC + event2(0, 1, SHA384_ONLY, b""), S + 12, "not in the"),
    ("digest repeated", SPEC + event2(0, 1, [(SHA1, bytes(20))] * 2, b""), S + 34, "repeated"),
    ("more digests than banks", SPEC + event2(0, 1, NO_DIGESTS * 2, b""), S + 8, "4 digests"),
    ("pcr index 24", SPEC + measured(24, 1, b""), S, "PCR index 24"),
    ("event too large", SPEC + TOO_LARGE, S + len(GOOD_EVENT) - 8, "exceeds"),
    ("bad locality", SPEC + event2(0, 3, NO_DIGESTS, LOCALITY_3[:-1] + b"\2"), S + 72, "Locality"),
    ("short locality", SPEC + event2(0, 3, NO_DIGESTS, LOCALITY_3[:-1]), S + 72, "Locality"),
]


@pytest.mark.parametrize(
    ("data", "offset", "reason"), [c[1:] for c in BAD_LOGS], ids=[c[0] for c in BAD_LOGS]
)
def test_malformed_log_is_rejected_with_offset(data: bytes, offset: int, reason: str) -> None:
    with pytest.raises(EventLogParseError) as info:
        parse_event_log(data)
    assert info.value.offset == offset
    assert reason in info.value.reason


def test_event_count_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parse_module, "MAX_EVENTS", 3)
    assert len(parse_event_log(SPEC + GOOD_EVENT * 2).events) == 3
    with pytest.raises(EventLogParseError, match="more than 3 events") as info:
        parse_event_log(SPEC + GOOD_EVENT * 3)
    assert info.value.offset == len(SPEC) + 2 * len(GOOD_EVENT)


def test_unknown_algorithm_is_carried_with_its_stated_size() -> None:
    sm3 = 0x0012
    log = parse_event_log(spec_id_event([(sm3, 32)]) + event2(1, 1, [(sm3, b"\x07" * 32)], b"x"))
    assert log.events[1].digests[sm3] == b"\x07" * 32


def replay_error(events: list[BootEvent], alg: TpmAlg = TpmAlg.SHA256) -> EventLogReplayError:
    with pytest.raises(EventLogReplayError) as info:
        replay_boot_log(events, alg)
    return info.value


def test_replay_refuses_what_it_cannot_replay() -> None:
    good = parse_event_log(build_log()).events
    assert replay_error(list(good), TpmAlg.SHA384).index == 2
    pcr10 = parse_event_log(SPEC + measured(10, 1, b"x")).events
    assert "PCR 10" in replay_error(list(pcr10)).reason
    twice = parse_event_log(build_log() + event2(0, 3, NO_DIGESTS, LOCALITY_3)).events
    assert replay_error(list(twice)).index == len(twice) - 1


def test_hcrtm_event_starts_pcr0_at_locality_4() -> None:
    hcrtm = measured(0, EventType.EV_EFI_HCRTM_EVENT, b"HCRTM")
    events = parse_event_log(SPEC + hcrtm + GOOD_EVENT).events
    expected = bytes(31) + b"\x04"
    for data in (b"HCRTM", b"post"):
        expected = hashlib.sha256(expected + hashlib.sha256(data).digest()).digest()
    assert replay_boot_log(events, TpmAlg.SHA256) == {0: expected}


def test_second_startup_locality_is_refused_even_before_pcr0_is_extended() -> None:
    locality = event2(0, 3, NO_DIGESTS, LOCALITY_3)
    events = parse_event_log(SPEC + locality + locality).events
    assert replay_error(list(events)).index == 2


def tpm2_eventlog_pcrs(path: Path) -> dict[str, dict[int, bytes]]:
    """The ``pcrs:`` section of tpm2-tools' tpm2_eventlog output (what Keylime compares)."""
    exe = shutil.which("tpm2_eventlog")
    if exe is None:
        pytest.skip("tpm2_eventlog (tpm2-tools) is not installed")
    out = subprocess.run([exe, str(path)], capture_output=True, text=True, check=True).stdout
    pcrs: dict[str, dict[int, bytes]] = {}
    bank = ""
    for line in out.split("pcrs:", 1)[1].splitlines():
        if m := re.fullmatch(r"  (sha\d+):", line):
            bank = m.group(1)
            pcrs[bank] = {}
        elif m := re.fullmatch(r"    (\d+)\s*: 0x([0-9a-fA-F]+)", line):
            pcrs[bank][int(m.group(1))] = bytes.fromhex(m.group(2))
    return pcrs


@pytest.mark.interop
def test_replay_agrees_with_tpm2_eventlog(tmp_path: Path) -> None:
    # Without a StartupLocality event: tpm2-tools 5.4, which Keylime 7.14 runs on this image,
    # extends EV_NO_ACTION digests into PCR 0 and ignores the locality; later tpm2-tools and
    # the TPM itself do not (docs/ima-and-boot-log.md).
    path = tmp_path / "binary_bios_measurements"
    path.write_bytes(build_log(locality=False))
    theirs = tpm2_eventlog_pcrs(path)
    events = parse_event_log(path.read_bytes()).events
    assert theirs["sha1"] == replay_boot_log(events, TpmAlg.SHA1)
    assert theirs["sha256"] == replay_boot_log(events, TpmAlg.SHA256)
