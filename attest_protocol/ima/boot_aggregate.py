"""IMA's ``boot_aggregate``: the digest of the boot PCRs that IMA records as its first entry.

The kernel (security/integrity/ima/ima_crypto.c ``ima_calc_boot_aggregate``) hashes PCRs
0-7, and on TPM 2.0 also 8-9, in one bank.  Keylime (keylime/mba/elparsing/
tpm2_tools_elparser.py ``__add_boot_aggregate``) derives the candidates from the UEFI event
log's replayed PCRs: for each bank of the log that hashlib knows, the hash over PCRs 0-7 and
over PCRs 0-9, skipping a candidate when the log leaves one of its PCRs unextended
(tpm2_eventlog then prints no value for it).  The IMA entry named ``boot_aggregate`` passes
when its digest is one of these or is listed under ``digests["boot_aggregate"]`` in the
runtime policy (keylime/ima/ima.py ``_process_measurement_list``).

Pure: a parsed log in, the candidate digests out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from attest_protocol.errors import AttestProtocolError
from attest_protocol.eventlog import EventLogReplayError, parse_event_log, replay_boot_log
from attest_protocol.eventlog.parse import BootEvent
from attest_protocol.tpm2.constants import TpmAlg

# Banks Keylime can aggregate (hashlib names of tpm2_eventlog's bank names).
_HASHLIB_BANKS = {
    TpmAlg.SHA1: "sha1",
    TpmAlg.SHA256: "sha256",
    TpmAlg.SHA384: "sha384",
    TpmAlg.SHA512: "sha512",
}
# The kernel's two forms: PCRs 0-7 (TPM 1.2, older kernels) and 0-9 (TPM 2.0).
AGGREGATE_PCR_COUNTS = (8, 10)


def boot_aggregates(events: Iterable[BootEvent], banks: Iterable[int]) -> tuple[bytes, ...]:
    """Every candidate boot_aggregate of the log, in each of ``banks`` (TPM_ALG ids)."""
    events = tuple(events)
    out: list[bytes] = []
    for alg_id in banks:
        try:
            alg = TpmAlg(alg_id)
        except ValueError:
            continue
        name = _HASHLIB_BANKS.get(alg)
        if name is None:
            continue
        try:
            replayed = replay_boot_log(events, alg)
        except EventLogReplayError:
            continue  # a log that does not replay yields no candidate in that bank
        for count in AGGREGATE_PCR_COUNTS:
            if all(pcr in replayed for pcr in range(count)):
                ctx = hashlib.new(name)
                for pcr in range(count):
                    ctx.update(replayed[pcr])
                out.append(ctx.digest())
    return tuple(out)


def boot_aggregates_of_log(data: bytes) -> tuple[bytes, ...]:
    """The candidates of a binary event log; none when it does not parse (the measured-boot
    check reports that log; here it only means no candidate)."""
    try:
        log = parse_event_log(data)
    except AttestProtocolError:
        return ()
    return boot_aggregates(log.events, log.spec_id.digest_sizes)
