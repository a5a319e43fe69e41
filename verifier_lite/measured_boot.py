"""Measured boot: replay the agent's UEFI event log into the quoted PCRs, then a policy.

The agent sends ``mb_measurement_list`` (base64 of ``binary_bios_measurements``);
attest_protocol.eventlog parses and replays it.  With a measured-boot policy set, every boot
PCR (0-9) in the quote must equal the replayed value - Keylime's
``measured_boot.invalid_pcr_<n>`` (keylime/tpm/tpm_main.py ``check_pcrs``) - so the log is
proven to be the one the TPM measured.  Then the policy:

* none, ``null``, ``""`` or ``{}``: accept-all (Keylime's ``accept-all``), no replay;
* ``{"pcrs": {"<n>": ["<hex>", ...]}}``: a reference state - PCR n of the replayed log must
  be one of the listed values (``measured_boot.policy_pcr_<n>``);
* ``{"reject_all": true}``: every boot fails (``measured_boot.reject_all``).

Keylime's own reference-state language (keylime/mba/elchecking, ``create_mb_refstate``) is not
evaluated: such a policy is refused when it is uploaded, never silently accepted.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from attest_protocol.errors import AttestProtocolError
from attest_protocol.eventlog import parse_event_log, replay_boot_log
from attest_protocol.tpm2.constants import TpmAlg
from verifier_lite.failures import Component, FailureEvent, event

# PCRs the firmware and boot loader measure and the verifier compares with the log.
MB_PCRS = frozenset(range(10))
_KEYS = frozenset({"pcrs", "reject_all"})


@dataclass(frozen=True)
class MbPolicy:
    reference: Mapping[int, frozenset[str]]
    reject_all: bool = False


def load_mb_policy(text: Optional[str]) -> Optional[MbPolicy]:
    """None means accept-all; ValueError says what is wrong with anything else."""
    if text is None or not text.strip():
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if doc is None or doc == {}:
        return None
    if not isinstance(doc, dict) or not set(doc) <= _KEYS:
        raise ValueError("expected {} or an object with 'pcrs' and/or 'reject_all'")
    reject = doc.get("reject_all", False)
    pcrs = doc.get("pcrs", {})
    if not isinstance(reject, bool) or not isinstance(pcrs, dict):
        raise ValueError("'reject_all' must be a boolean and 'pcrs' an object")
    reference: dict[int, frozenset[str]] = {}
    for key, values in pcrs.items():
        if not (key.isdigit() and int(key) in MB_PCRS):
            raise ValueError(f"'pcrs' key {key[:8]!r} is not a boot PCR (0-9)")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"'pcrs' {key}: expected a list of hex strings")
        reference[int(key)] = frozenset(v.lower() for v in values)
    return MbPolicy(reference, reject)


def check_boot_log(
    policy: MbPolicy, log_b64: Optional[str], quoted: Mapping[int, bytes], hash_alg: TpmAlg
) -> list[FailureEvent]:
    boot_pcrs = sorted(MB_PCRS & set(quoted))
    if not log_b64:
        message = "Measured Boot PCR in policy, but no measurement list provided"
        first = boot_pcrs[0] if boot_pcrs else 0
        return [event(Component.PCR_VALIDATION, f"unused_pcr_{first}", message, True)]
    try:
        log = parse_event_log(base64.b64decode(log_b64, validate=True))
        replayed = replay_boot_log(log.events, hash_alg)
    except (AttestProtocolError, binascii.Error) as exc:
        context = {"message": "boot event log does not parse or replay", "error": str(exc)[:200]}
        return [event(Component.MEASURED_BOOT, "invalid_boot_log", context, True)]
    failures = []
    size = len(next(iter(quoted.values()))) if quoted else 0
    for pcr in boot_pcrs:
        from_log = replayed.get(pcr, bytes(size)).hex()
        if from_log != quoted[pcr].hex():
            context = {
                "context": "boot event log PCR value does not match",
                "got": quoted[pcr].hex(),
                "expected": from_log,
            }
            failures.append(event(Component.MEASURED_BOOT, f"invalid_pcr_{pcr}", context, True))
    if failures:
        return failures
    if policy.reject_all:
        return [event(Component.MEASURED_BOOT, "reject_all", "the policy rejects every boot", True)]
    for pcr, allowed in sorted(policy.reference.items()):
        value = replayed.get(pcr, bytes(size)).hex()
        if value not in allowed:
            context = {"context": "PCR value not in the reference state", "got": value}
            failures.append(event(Component.MEASURED_BOOT, f"policy_pcr_{pcr}", context, True))
    return failures
