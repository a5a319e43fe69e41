"""Replay a parsed firmware event log into the PCR values it claims, in one bank.

Each event other than EV_NO_ACTION extends its PCR: PCR := H(PCR || digest) (TPM 2.0 Library
Part 1, §17.2).  EV_NO_ACTION events are never extended (PFP §10.4.1); the one that matters is
TCG_EfiStartupLocalityEvent (PFP §10.4.5.3): a TPM started from locality L (3, or 4 for an
H-CRTM) begins PCR 0 at zeros with L in its last byte, and the event records L so the log can be
replayed.  tpm2-tools' tpm2_eventlog (lib/tpm2_eventlog.c), whose PCR values Keylime compares
with the quote (keylime/mba/elparsing/tpm2_tools_elparser.py), replays the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes

from attest_protocol.eventlog.errors import EventLogReplayError
from attest_protocol.eventlog.parse import BootEvent, EventType
from attest_protocol.tpm2.constants import TpmAlg, digest_size, hash_for_alg

# PCRs firmware and boot loaders measure into.  PCR 10 belongs to IMA (its own log) and PCRs
# 16-23 to debug and dynamic launch, so an event for any of them is an error, not skipped.
# The same set as keylime/config.py MEASUREDBOOT_PCRS, which the tenant adds to the quote mask.
BOOT_PCRS: frozenset[int] = frozenset(range(10)) | frozenset(range(11, 16))
# An H-CRTM sequence (TPM2_HashStart .. TPM2_HashEnd) runs at locality 4.
HCRTM_LOCALITY = 4


def replay_boot_log(events: Iterable[BootEvent], hash_alg: TpmAlg) -> dict[int, bytes]:
    """PCR index -> value for every PCR the log extends (and PCR 0 if a locality is set)."""
    size = digest_size(hash_alg)
    values: dict[int, bytes] = {}
    pcr0_measured = locality_seen = False
    for event in events:
        start = _pcr0_start(event, size)
        if start is not None:
            is_locality = event.startup_locality is not None
            if pcr0_measured or (is_locality and locality_seen):
                raise EventLogReplayError(event.index, "PCR 0 start value set twice or late")
            values[0] = start
            locality_seen = locality_seen or is_locality
        if event.event_type == EventType.EV_NO_ACTION:
            continue
        values[event.pcr] = _extend(event, hash_alg, values.get(event.pcr, bytes(size)))
        pcr0_measured = pcr0_measured or event.pcr == 0
    return values


def _pcr0_start(event: BootEvent, size: int) -> bytes | None:
    """PCR 0's value before its first extend, if ``event`` fixes it.

    A StartupLocality event gives the locality of TPM2_Startup; an EV_EFI_HCRTM_EVENT (PFP
    §10.4.1) records an H-CRTM sequence, which the TPM runs at locality 4 (tpm2-tools cites
    TPM 2.0 Library Part 1 §34.3 for the same rule).
    """
    if event.pcr != 0:
        return None
    if event.event_type == EventType.EV_EFI_HCRTM_EVENT:
        return bytes(size - 1) + bytes([HCRTM_LOCALITY])
    locality = event.startup_locality
    return None if locality is None else bytes(size - 1) + bytes([locality])


def _extend(event: BootEvent, hash_alg: TpmAlg, current: bytes) -> bytes:
    if event.pcr not in BOOT_PCRS:
        raise EventLogReplayError(event.index, f"event extends PCR {event.pcr}")
    digest = event.digests.get(hash_alg)
    if digest is None:
        raise EventLogReplayError(event.index, f"no {hash_alg.name} digest in the event")
    ctx = hashes.Hash(hash_for_alg(hash_alg))
    ctx.update(current)
    ctx.update(digest)
    return ctx.finalize()
