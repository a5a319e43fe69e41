"""The UEFI / TCG2 measured-boot event log: parse ``binary_bios_measurements``, replay PCRs.

Pure functions on bytes (the agent reads the file; the verifier decides what the PCRs mean)::

    parse_event_log(data) -> EventLog           spec_id and events, or EventLogParseError
    replay_boot_log(events, bank) -> {pcr: value}

Errors::

    AttestProtocolError
    ├── ParseError
    │   └── EventLogParseError      bytes that are not a crypto-agile log: offset, reason
    └── EventLogReplayError         a parsed log that cannot be replayed in a bank: index
"""

from __future__ import annotations

from attest_protocol.eventlog.errors import EventLogParseError, EventLogReplayError
from attest_protocol.eventlog.parse import (
    MAX_EVENT_DATA_BYTES,
    MAX_EVENTS,
    BootEvent,
    EventLog,
    EventType,
    SpecIdEvent,
    parse_event_log,
)
from attest_protocol.eventlog.replay import BOOT_PCRS, replay_boot_log

__all__ = [
    "BOOT_PCRS",
    "MAX_EVENTS",
    "MAX_EVENT_DATA_BYTES",
    "BootEvent",
    "EventLog",
    "EventLogParseError",
    "EventLogReplayError",
    "EventType",
    "SpecIdEvent",
    "parse_event_log",
    "replay_boot_log",
]
