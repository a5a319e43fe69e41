"""Boot logs, reference states and their mutations for the measured-boot differential test.

A log is edited as its parsed events (attest_protocol.eventlog) and written back as a
crypto-agile log, so an event's data can change while its digests stay (a log that lies about
what was measured) or an event can go.  The "quote" of a case is the replay of the log the TPM
measured: the edited log itself, or the original for a log edited after the fact.
"""

from __future__ import annotations

import copy
import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

from attest_protocol.eventlog import (
    BOOT_PCRS,
    BootEvent,
    EventType,
    parse_event_log,
    replay_boot_log,
)
from attest_protocol.eventlog.describe import guid_text
from attest_protocol.tpm2.constants import TpmAlg

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eventlogs"
SB_LOG = FIXTURES / "keylime-test-binary_bios_measurements-secureboot"
PLAIN_LOG = FIXTURES / "keylime-test-binary_bios_measurements"
BOGUS_LOG = FIXTURES / "keylime-test-binary_bios_measurements-bogus"
EXAMPLE_REFSTATE = FIXTURES / "keylime-example_reference_state.json"


@dataclass(frozen=True)
class Case:
    name: str
    log: Optional[bytes]
    refstate: str
    quote: dict[int, str]  # PCR -> hex, SHA-256 bank
    policy: str = "example"


def events_of(log: bytes) -> list[BootEvent]:
    return list(parse_event_log(log).events)


def write_log(original: bytes, events: list[BootEvent]) -> bytes:
    """The original's Spec ID event, then ``events[1:]`` as TCG_PCR_EVENT2."""
    first_end = events_of(original)[1].offset
    out = bytearray(original[:first_end])
    for ev in events[1:]:
        out += struct.pack("<III", ev.pcr, ev.event_type, len(ev.digests))
        for alg, digest in ev.digests.items():
            out += struct.pack("<H", alg) + digest
        out += struct.pack("<I", len(ev.data)) + ev.data
    return bytes(out)


def quote_of(log: bytes) -> dict[int, str]:
    """What a TPM that measured ``log`` quotes for the measured-boot PCRs."""
    replayed = replay_boot_log(events_of(log), TpmAlg.SHA256)
    return {pcr: replayed.get(pcr, bytes(32)).hex() for pcr in sorted(BOOT_PCRS)}


def _variable(name: str, guid: bytes, value: bytes) -> bytes:
    return guid + struct.pack("<QQ", len(name), len(value)) + name.encode("utf-16-le") + value


def _var_name(ev: BootEvent) -> str:
    chars = int.from_bytes(ev.data[16:24], "little")
    return ev.data[32 : 32 + 2 * chars].decode("utf-16-le", errors="replace")


def _is(ev: BootEvent, kind: int, name: str = "") -> bool:
    return ev.event_type == kind and (not name or _var_name(ev) == name)


def _text(ev: BootEvent) -> str:
    return ev.data.decode("utf-8", errors="replace")


def edit(log: bytes, change: Callable[[list[BootEvent]], list[BootEvent]]) -> bytes:
    return write_log(log, change(events_of(log)))


def set_secureboot(value: int) -> Callable[[list[BootEvent]], list[BootEvent]]:
    def change(events: list[BootEvent]) -> list[BootEvent]:
        out = []
        for ev in events:
            if _is(ev, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, "SecureBoot"):
                ev = replace(ev, data=ev.data[:-1] + bytes([value]))
            out.append(ev)
        return out

    return change


def drop(pred: Callable[[BootEvent], bool], last: bool = False) -> Callable[..., list[BootEvent]]:
    """Remove the first (or last) event for which ``pred`` holds."""

    def change(events: list[BootEvent]) -> list[BootEvent]:
        hits = [i for i, ev in enumerate(events) if pred(ev)]
        assert hits, "mutation found no event to remove"
        at = hits[-1] if last else hits[0]
        return events[:at] + events[at + 1 :]

    return change


def grub_cmd(ev: BootEvent) -> bool:
    return ev.pcr == 8 and _is(ev, EventType.EV_IPL) and _text(ev).startswith("grub_cmd")


def cmdline(ev: BootEvent) -> bool:
    return ev.pcr == 8 and _is(ev, EventType.EV_IPL) and _text(ev).startswith("kernel_cmdline")


def boot_app(ev: BootEvent) -> bool:
    return ev.event_type == EventType.EV_EFI_BOOT_SERVICES_APPLICATION


def rewrite(pred: Callable[[BootEvent], bool], new: Callable[[BootEvent], BootEvent]) -> Any:
    def change(events: list[BootEvent]) -> list[BootEvent]:
        return [new(ev) if pred(ev) else ev for ev in events]

    return change


def changed_digest(ev: BootEvent) -> BootEvent:
    return replace(
        ev, digests={alg: hashlib.new(_ALG[alg], b"evil").digest() for alg in ev.digests}
    )


_ALG = {int(TpmAlg.SHA1): "sha1", int(TpmAlg.SHA256): "sha256"}


def append_cmdline_text(ev: BootEvent) -> BootEvent:
    return replace(ev, data=ev.data.rstrip(b"\0") + b" init=/bin/sh\0")


def without_first_dbx_hash(ev: BootEvent) -> BootEvent:
    """dbx with its first SHA-256 entry removed (the list's sizes fixed up)."""
    value = ev.data[32 + 2 * 3 :]
    head, entries = value[:28], value[28:]
    sig_size = int.from_bytes(head[24:28], "little")
    rest = entries[sig_size:]
    head = head[:16] + struct.pack("<I", 28 + len(rest)) + head[20:]
    return replace(ev, data=_variable("dbx", ev.data[:16], head + rest))


def is_dbx(ev: BootEvent) -> bool:
    return _is(ev, EventType.EV_EFI_VARIABLE_DRIVER_CONFIG, "dbx")


def appended(pcr: int, kind: int, data: bytes) -> Callable[[list[BootEvent]], list[BootEvent]]:
    def change(events: list[BootEvent]) -> list[BootEvent]:
        digests = {alg: hashlib.new(_ALG[alg], data).digest() for alg in events[-1].digests}
        extra = BootEvent(len(events), pcr, kind, digests, data, 0)
        return [*events, extra]

    return change


def duplicated(pred: Callable[[BootEvent], bool]) -> Callable[[list[BootEvent]], list[BootEvent]]:
    """The first event for which ``pred`` holds, measured a second time at the end."""

    def change(events: list[BootEvent]) -> list[BootEvent]:
        return [*events, next(ev for ev in events if pred(ev))]

    return change


def is_gpt(ev: BootEvent) -> bool:
    return ev.event_type == EventType.EV_EFI_GPT_EVENT


# Events of the plain (Secure Boot off) laptop log that the example policy has no rule for:
# a second EV_NO_ACTION, S-CRTM contents, POST codes, non-host info, vendor PCR 1 variables,
# a vendor boot application; and its dbx, which is several lists where the policy wants one.
PLAIN_UNRULED_EVENTS = frozenset({1, 2, 10, 11, 16, 21, 22, 23, 24, 25, 26})


def without_indices(indices: frozenset[int]) -> Callable[[list[BootEvent]], list[BootEvent]]:
    return lambda events: [ev for ev in events if ev.index not in indices]


def refstate_edit(text: str, change: Callable[[dict[str, Any]], None]) -> str:
    doc = copy.deepcopy(json.loads(text))
    change(doc)
    return json.dumps(doc)


def first_dbx_guid(log: bytes) -> str:
    ev = next(e for e in events_of(log) if is_dbx(e))
    return guid_text(ev.data[:16])
