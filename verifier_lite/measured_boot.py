"""Measured boot as Keylime's verifier judges it: log replay against the quote, then a policy.

The agent sends ``mb_measurement_list`` (base64 of ``binary_bios_measurements``).  With a
non-empty reference state (``mb_policy`` / ``mb_refstate``) Keylime's ``Tpm.check_pcrs``
(keylime/tpm/tpm_main.py) and ``bootlog_evaluate`` (keylime/mba/elchecking/elchecker.py) do,
and so do we:

1. parse the log; one that does not parse, or lacks the quote's bank, fails
   (``measured_boot.parser.*``) and nothing else of measured boot is checked;
2. every quoted PCR of MEASUREDBOOT_PCRS (0-9, 11-15) that the policy reads (all of them
   for a policy that names none) must equal the log's replayed value, else
   ``measured_boot.invalid_pcr_<n>``; without a log, ``pcr_validation.unused_pcr_<n>``;
3. a PCR the policy reads but the quote lacks: ``measured_boot.missing_pcrs``; otherwise the
   policy (``[verifier] measured_boot_policy_name``: accept-all, reject-all, example,
   limelet-pcrs; attest_protocol.mb) judges the log: ``measured_boot.policy_<name>``.

A reference state that is empty (``{}``, ``[]``, ``null``) or absent means no measured-boot
check at all, as in Keylime.  Keylime's ``measured_boot_evaluate = once`` evaluates the
policy only on the first quote; we evaluate it on every quote, which gives the same verdict
as the boot log of one boot cannot change.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from attest_protocol.errors import AttestProtocolError
from attest_protocol.eventlog import BOOT_PCRS, parse_event_log, replay_boot_log
from attest_protocol.eventlog.describe import describe_events
from attest_protocol.mb import (
    ACCEPT_ALL,
    RefstateError,
    check_policy_name,
    evaluate,
    relevant_pcrs,
)
from attest_protocol.mb.policies import limelet_reference
from attest_protocol.tpm2.constants import TpmAlg
from verifier_lite.failures import Component, FailureEvent, event

# keylime/config.py MEASUREDBOOT_PCRS: one definition, shared with the tenant's mask.
MB_PCRS = BOOT_PCRS
# PCRs other checks claim, which count as "in the quote" for missing_pcrs (IMA, data PCR).
_OTHER_CHECKED_PCRS = frozenset({10, 16})


@dataclass(frozen=True)
class MbPolicy:
    """A non-empty reference state and the policy (by name) that judges logs against it."""

    refstate: Any
    policy_name: str = ACCEPT_ALL


def load_mb_policy(text: Optional[str], policy_name: str = ACCEPT_ALL) -> Optional[MbPolicy]:
    """None when nothing is checked; ValueError when the text is not JSON, or is limelet's
    reference-PCR form with a mistake in it.

    Any other JSON is stored as Keylime stores it (``policy_is_valid`` only asks for JSON): a
    reference state that does not suit the configured policy fails each evaluation, naming
    why, as in Keylime."""
    check_policy_name(policy_name)
    if text is None or not text.strip():
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if isinstance(doc, dict) and doc and set(doc) <= {"pcrs", "reject_all"}:
        try:
            limelet_reference(doc)
        except RefstateError as exc:
            raise ValueError(str(exc)) from None
    return MbPolicy(doc, policy_name) if doc else None


def pcrs_to_check(policy_name: str) -> frozenset[int]:
    """keylime/tpm/tpm_main.py ``mb_pcrs_to_check``: MEASUREDBOOT_PCRS cut to what the
    policy reads, unless it reads none."""
    relevant = relevant_pcrs(policy_name)
    return MB_PCRS & relevant if relevant else MB_PCRS


def _parse(log_b64: str, hash_alg: TpmAlg) -> tuple[list[Any], dict[int, bytes]] | FailureEvent:
    try:
        log = parse_event_log(base64.b64decode(log_b64, validate=True))
    except (AttestProtocolError, binascii.Error) as exc:
        context = {"context": "boot event log does not parse", "data": str(exc)[:200]}
        return event(Component.MEASURED_BOOT, "parser.tpm2_eventlog.error", context, True)
    try:
        replayed = replay_boot_log(log.events, hash_alg)
    except AttestProtocolError as exc:
        context = {"got": f"no PCR values in bank {hash_alg.name.lower()}: {exc}"[:200]}
        return event(Component.MEASURED_BOOT, "parser.invalid_pcrs_hashes", context, True)
    return describe_events(log.events), replayed


def check_boot_log(
    policy: MbPolicy, log_b64: Optional[str], quoted: Mapping[int, bytes], hash_alg: TpmAlg
) -> list[FailureEvent]:
    checked = sorted(pcrs_to_check(policy.policy_name) & set(quoted))
    events: list[Any] = []
    replayed: dict[int, bytes] = {}
    failures: list[FailureEvent] = []
    in_quote = set(_OTHER_CHECKED_PCRS & set(quoted))
    if not log_b64:
        for pcr in checked:
            message = f"Measured Boot PCR {pcr} in policy, but no measurement list provided"
            failures.append(event(Component.PCR_VALIDATION, f"unused_pcr_{pcr}", message, True))
    else:
        parsed = _parse(log_b64, hash_alg)
        if isinstance(parsed, FailureEvent):
            return [parsed]
        events, replayed = parsed
        failures.extend(_replay_failures(checked, quoted, replayed))
        in_quote.update(checked)
    return failures + _policy_failures(policy, events, replayed, in_quote)


def _replay_failures(
    checked: list[int], quoted: Mapping[int, bytes], replayed: Mapping[int, bytes]
) -> list[FailureEvent]:
    out = []
    for pcr in checked:
        # Keylime compares the numbers (leading zeros stripped); a PCR the log never
        # extends counts as 0.
        from_log = int.from_bytes(replayed.get(pcr, b""), "big")
        if from_log != int.from_bytes(quoted[pcr], "big"):
            context = {
                "context": "SHA256 boot event log PCR value does not match",
                "got": quoted[pcr].hex(),
                "expected": f"{from_log:x}",
            }
            out.append(event(Component.MEASURED_BOOT, f"invalid_pcr_{pcr}", context, True))
    return out


def _policy_failures(
    policy: MbPolicy, events: list[Any], replayed: Mapping[int, bytes], in_quote: set[int]
) -> list[FailureEvent]:
    name = policy.policy_name
    missing = sorted(relevant_pcrs(name) - in_quote)
    if missing:
        context = {"context": "PCRs are missing in quote", "data": missing}
        return [event(Component.MEASURED_BOOT, "missing_pcrs", context, True)]
    reason = evaluate(name, policy.refstate, events, replayed)
    if not reason:
        return []
    context = {"context": "Boot attestation failed", "policy": name, "reason": reason[:1000]}
    return [event(Component.MEASURED_BOOT, f"policy_{name}", context, True)]
