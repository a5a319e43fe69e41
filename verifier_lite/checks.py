"""Pure checks of one ``quotes/integrity`` answer: the quote, PCR 16, tpm_policy, IMA.

Each failed check becomes a :class:`~verifier_lite.failures.FailureEvent` with Keylime's
event id (keylime/cloud_verifier_common.py ``process_quote_response``, keylime/tpm/tpm_main.py
``check_quote``/``check_pcrs``/``_check_data_pcr``).  No I/O: the polling engine hands in the
decoded answer and what it remembers, and stores what comes back.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from attest_protocol.bootstrap_keys import NkKeyError, nk_public_key
from attest_protocol.errors import AttestProtocolError, ParseError, QuoteClockError
from attest_protocol.ima import ImaParseError
from attest_protocol.ima.boot_aggregate import boot_aggregates_of_log
from attest_protocol.keylime_facts import DATA_PCR, IMA_PCR, enc_alg_accepted, expected_data_pcr
from attest_protocol.policy import (
    ImaFailure,
    ImaState,
    RuntimePolicy,
    evaluate_log,
)
from attest_protocol.quote import KeylimeQuote, VerifiedQuote, check_clock, verify_quote
from attest_protocol.tpm2.attest import ClockInfo
from attest_protocol.tpm2.constants import alg_for_hash_name
from attest_protocol.tpm2.public import TpmPublic, parse_tpm2b_public
from verifier_lite.failures import Component, FailureEvent, event
from verifier_lite.measured_boot import MbPolicy, check_boot_log


@dataclass(frozen=True)
class Evidence:
    """The ``results`` of ``GET /quotes/integrity`` (rust-keylime ``KeylimeQuote``)."""

    quote: str
    hash_alg: str
    enc_alg: str
    sign_alg: str
    pubkey: Optional[str]
    boottime: int
    ima_measurement_list: Optional[str]
    ima_measurement_list_entry: int
    mb_measurement_list: Optional[str]


def _opt_str(results: Mapping[str, Any], key: str) -> Optional[str]:
    value = results.get(key)
    if value is not None and not isinstance(value, str):
        raise ParseError("quote response", 0, f"'{key}' is not a string")
    return value


def parse_evidence(results: Mapping[str, Any]) -> Evidence:
    """Validate the types of the agent's answer; ParseError names the bad member."""
    strings = {k: _opt_str(results, k) for k in ("quote", "hash_alg", "enc_alg", "sign_alg")}
    for key, value in strings.items():
        if value is None:
            raise ParseError("quote response", 0, f"'{key}' is missing")
    numbers = {}
    for key in ("boottime", "ima_measurement_list_entry"):
        value = results.get(key, 0)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise ParseError("quote response", 0, f"'{key}' is not a non-negative integer")
        numbers[key] = value
    return Evidence(
        quote=str(strings["quote"]),
        hash_alg=str(strings["hash_alg"]),
        enc_alg=str(strings["enc_alg"]),
        sign_alg=str(strings["sign_alg"]),
        pubkey=_opt_str(results, "pubkey"),
        boottime=numbers["boottime"],
        ima_measurement_list=_opt_str(results, "ima_measurement_list"),
        ima_measurement_list_entry=numbers["ima_measurement_list_entry"],
        mb_measurement_list=_opt_str(results, "mb_measurement_list"),
    )


@dataclass(frozen=True)
class CheckInput:
    ak_tpm_b64: str
    nonce: bytes
    accept_hash_algs: tuple[str, ...]
    accept_enc_algs: tuple[str, ...]
    accept_sign_algs: tuple[str, ...]
    tpm_policy: Mapping[int, tuple[str, ...]]  # PCR -> accepted hex values (lower case)
    public_key_pem: Optional[str]  # known NK public key; PCR 16 is checked when set
    previous_clock: Optional[ClockInfo]
    runtime_policy: Optional[RuntimePolicy]
    ima_state: Optional[ImaState]
    boottime: int
    mb_policy: Optional[MbPolicy] = None  # None: accept-all, the boot log is not replayed
    skip_clock: bool = False  # one-shot verification (verifier_lite/evidence.py)
    ak: Optional[TpmPublic] = None  # ak_tpm_b64 parsed once per agent (poller.py); None: parse


@dataclass(frozen=True)
class CheckResult:
    failures: tuple[FailureEvent, ...]
    clock: Optional[ClockInfo]
    ima_state: Optional[ImaState]
    public_key_pem: Optional[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def _algorithm_failure(inp: CheckInput, ev: Evidence) -> Optional[FailureEvent]:
    checks = (
        ("invalid_hash_alg", ev.hash_alg, inp.accept_hash_algs, "hash"),
        ("invalid_enc_alg", ev.enc_alg, inp.accept_enc_algs, "encryption"),
        ("invalid_sign_alg", ev.sign_alg, inp.accept_sign_algs, "signing"),
    )
    for name, value, accepted, what in checks:
        if not enc_alg_accepted(value, accepted):
            message = f"TPM Quote is using an unaccepted {what} algorithm: {value[:32]}"
            return event(Component.QUOTE_VALIDATION, name, {"message": message}, False)
    return None


def _verify(inp: CheckInput, ev: Evidence) -> tuple[Optional[VerifiedQuote], Optional[str]]:
    try:
        hash_alg = alg_for_hash_name(ev.hash_alg)
        ak = inp.ak or parse_tpm2b_public(base64.b64decode(inp.ak_tpm_b64, validate=True))
        verified = verify_quote(
            KeylimeQuote.parse(ev.quote),
            ak,
            inp.nonce,
            hash_alg=hash_alg,
        )
    except (AttestProtocolError, binascii.Error) as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return verified, None


def parse_ak(ak_tpm_b64: str) -> Optional[TpmPublic]:
    """The agent's AK, parsed once for all its quotes; None when unreadable (each quote then
    fails with the parse error, as before)."""
    try:
        return parse_tpm2b_public(base64.b64decode(ak_tpm_b64, validate=True))
    except (AttestProtocolError, binascii.Error):
        return None


def _clock_failure(inp: CheckInput, ev: Evidence, clock: ClockInfo) -> Optional[FailureEvent]:
    """Keylime's ``check_quote_timing`` rules (keylime/tpm/tpm_main.py), run after the quote
    verified, as Keylime's ``check_quote`` does: ``safe`` must be YES, and within one boot the
    clock must strictly increase.  Unlike Keylime, a new ``boottime`` (the agent rebooted)
    drops the previous clock rather than compare counts across the reboot."""
    previous = inp.previous_clock if ev.boottime == inp.boottime else None
    try:
        check_clock(previous, clock, keylime_rules=True)
    except QuoteClockError as exc:
        context = {
            "message": "Validation of clockinfo from quote",
            "data": f"{type(exc).__name__}: {exc}",
        }
        return event(Component.QUOTE_VALIDATION, "quote_validation", context, False)
    return None


def check_evidence(inp: CheckInput, ev: Evidence) -> CheckResult:
    """Run every check Keylime runs on a pull-mode quote; never raises for bad evidence."""
    bad_alg = _algorithm_failure(inp, ev)
    if bad_alg is not None:
        return CheckResult((bad_alg,), inp.previous_clock, inp.ima_state, inp.public_key_pem)
    verified, error = _verify(inp, ev)
    if verified is None:
        context = {"message": "Quote data validation", "error": error}
        failure = event(Component.QUOTE_VALIDATION, "quote_validation", context, False)
        return CheckResult((failure,), inp.previous_clock, inp.ima_state, inp.public_key_pem)
    bad_clock = None if inp.skip_clock else _clock_failure(inp, ev, verified.attest.clock_info)
    if bad_clock is not None:
        return CheckResult((bad_clock,), inp.previous_clock, inp.ima_state, inp.public_key_pem)
    pubkey = ev.pubkey if ev.pubkey is not None else inp.public_key_pem
    failures = list(_pcr_failures(inp, verified, pubkey))
    failures.extend(_nk_failures(ev.pubkey))
    if inp.mb_policy is not None:
        failures.extend(
            check_boot_log(inp.mb_policy, ev.mb_measurement_list, verified.pcrs, verified.hash_alg)
        )
    ima_state, ima_failures = _ima(inp, ev, verified)
    failures.extend(ima_failures)
    return CheckResult(tuple(failures), verified.attest.clock_info, ima_state, pubkey)


def _nk_failures(pubkey: Optional[str]) -> list[FailureEvent]:
    """The agent's NK must be an RSA key V can be encrypted to (Keylime rsa_import_pubkey):
    one that is not is bad evidence from that agent, not a fault of the verifier."""
    if pubkey is None:
        return []
    try:
        nk_public_key(pubkey)
    except NkKeyError as exc:
        return [event(Component.QUOTE_VALIDATION, "invalid_pubkey", exc.reason, False)]
    return []


def _pcr_failures(
    inp: CheckInput, quote: VerifiedQuote, pubkey: Optional[str]
) -> list[FailureEvent]:
    out: list[FailureEvent] = []
    pcrs = {n: v.hex() for n, v in quote.pcrs.items()}
    if pubkey is not None:
        expected = expected_data_pcr(quote.hash_alg, pubkey).hex()
        if DATA_PCR not in pcrs:
            message = f"Data PCR {DATA_PCR} is missing in quote, but is required"
            out.append(event(Component.PCR_VALIDATION, f"missing_pcr_{DATA_PCR}", message, True))
        elif pcrs[DATA_PCR] != expected:
            bound = {"got": pcrs[DATA_PCR], "expected": expected}
            out.append(event(Component.PCR_VALIDATION, f"invalid_pcr_{DATA_PCR}", bound, True))
    for pcr, allowed in sorted(inp.tpm_policy.items()):
        if pcr in pcrs and pcrs[pcr] not in allowed:
            context: dict[str, Any] = {
                "context": "PCR value is not in allowlist",
                "got": pcrs[pcr],
                "expected": list(allowed),
            }
            out.append(event(Component.PCR_VALIDATION, f"invalid_pcr_{pcr}", context, True))
    missing = sorted(set(inp.tpm_policy) - set(pcrs))
    if missing:
        missing_context: dict[str, Any] = {"context": "PCRs are missing in quote", "data": missing}
        out.append(event(Component.PCR_VALIDATION, "missing_pcrs", missing_context, True))
    return out


def _ima(
    inp: CheckInput, ev: Evidence, quote: VerifiedQuote
) -> tuple[Optional[ImaState], list[FailureEvent]]:
    if inp.runtime_policy is None:
        return inp.ima_state, []
    if IMA_PCR not in quote.pcrs:
        message = "IMA PCR in policy, but not in the quote"
        return None, [event(Component.PCR_VALIDATION, f"missing_pcr_{IMA_PCR}", message, True)]
    if ev.ima_measurement_list is None:
        message = "IMA PCR in policy, but no measurement list provided"
        return None, [event(Component.PCR_VALIDATION, f"unused_pcr_{IMA_PCR}", message, True)]
    state = inp.ima_state
    # Entry 0, another boot, or another bank: start over from a reset PCR 10 (Keylime
    # reset_ima_attestation on ima_measurement_list_entry == 0 or a boottime change).
    if (
        state is None
        or ev.ima_measurement_list_entry == 0
        or ev.boottime != inp.boottime
        or state.hash_alg != quote.hash_alg
    ):
        state = ImaState.initial(quote.hash_alg)
    if ev.ima_measurement_list_entry != state.next_entry:
        context = {
            "message": "Agent did not respond with requested next IMA measurement list entry",
            "got": ev.ima_measurement_list_entry,
            "expected": state.next_entry,
        }
        return None, [event(Component.QUOTE_VALIDATION, "invalid_ima_entry_nb", context, False)]
    try:
        verdict = evaluate_log(
            inp.runtime_policy,
            state,
            ev.ima_measurement_list,
            quote.pcrs[IMA_PCR],
            quote.hash_alg,
            boot_aggregates=_log_boot_aggregates(ev.mb_measurement_list),
        )
    except ImaParseError as exc:
        context = {"message": "IMA measurement list does not parse", "error": str(exc)[:200]}
        # Keylime files an unparsable line as ima.parser.entry (keylime/ima/ima.py).
        return None, [event(Component.IMA, "parser.entry", context, True)]
    return verdict.new_state, [_ima_event(f) for f in verdict.failures]


def _log_boot_aggregates(mb_measurement_list: Optional[str]) -> tuple[bytes, ...]:
    """The boot_aggregate values the agent's UEFI event log allows, as Keylime adds them to
    the policy's ``digests["boot_aggregate"]`` (attest_protocol/ima/boot_aggregate.py)."""
    if not mb_measurement_list:
        return ()
    try:
        data = base64.b64decode(mb_measurement_list, validate=True)
    except (binascii.Error, ValueError):
        return ()
    return boot_aggregates_of_log(data)


def _ima_event(failure: ImaFailure) -> FailureEvent:
    """Keylime's full event id (``ima.validation.ima-ng.not_in_allowlist``, ...)."""
    context = {
        "entry": failure.entry,
        "path": failure.path[:256],
        "template": failure.template,
        "detail": failure.detail[:256],
    }
    return FailureEvent(failure.keylime_event_id, json.dumps(context), True)
