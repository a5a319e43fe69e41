"""One-shot verification: ``POST /v2.x/verify/evidence``, evidence in, verdict out.

Keylime 7.14.3 (keylime/web/verifier/evidence_controller.py, which hands API 2 requests to
keylime/cloud_verifier_tornado.py ``VerifyEvidenceHandler``; the checks are
keylime/cloud_verifier_common.py ``process_verify_attestation``) takes::

    {"type": "tpm", "data": {"quote", "nonce", "hash_alg", "tpm_ek", "tpm_ak",
                             "tpm_policy", "runtime_policy", "mb_policy",
                             "ima_measurement_list", "mb_log"}}

and answers ``{"valid": bool, "claims": data-or-{}, "failures": [{"type": event id,
"context": {...}}]}``: 200 for a verdict either way, 400 "Bad Request" with the same shape
when a required member is missing (event ``default.missing_param``) or no policy is given
(``default.missing_policy``).  The quote is checked as in polling - signature under
``tpm_ak`` (base64 TPM2B_PUBLIC), nonce, PCRs against ``tpm_policy``, the boot log, IMA
from its first entry - except, as Keylime skips them, the clock and PCR 16 (no NK key is
bound in a one-shot quote).  Nothing is stored.

Where Keylime answers 500 (a policy it cannot read) we answer 400 naming the member;
the ``tee`` type is refused with 400 (limelet verifies TPM evidence only).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Optional

from attest_protocol.errors import AttestProtocolError
from attest_protocol.policy import RuntimePolicy, load_runtime_policy
from attest_protocol.tpm2.constants import alg_for_hash_name
from verifier_lite.checks import CheckInput, Evidence, check_evidence
from verifier_lite.errors import RequestError
from verifier_lite.failures import FailureEvent
from verifier_lite.measured_boot import MbPolicy, load_mb_policy
from verifier_lite.signed_policy import unwrap
from verifier_lite.tpm_policy import parse_tpm_policy

REQUIRED = ("quote", "nonce", "hash_alg", "tpm_ek", "tpm_ak")
POLICIES = ("tpm_policy", "runtime_policy", "mb_policy")
# keylime/ima/ima.py EMPTY_RUNTIME_POLICY: whenever PCR 10 is quoted, Keylime judges the IMA
# log (an absent one is an empty one) against the runtime policy, or with none against this
# (tpm_main.py check_pcrs), so every file fails as not allowed; without PCR 10 no IMA check.
EMPTY_RUNTIME_POLICY = json.dumps(
    {
        "meta": {"version": 1, "generator": 0},
        "release": 0,
        "digests": {},
        "excludes": [],
        "keyrings": {},
        "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": None},
        "ima-buf": {},
        "verification-keys": "",
    }
)
# The signing and encryption algorithms play no part in a one-shot check (Keylime does not
# compare them); these stand in so the shared checks accept whatever the quote used.
_ANY_ALG = "any"


@dataclass(frozen=True)
class Verdict:
    """The HTTP status and the ``results`` Keylime's handler sends."""

    code: int
    results: dict[str, Any]


def _member(data: Mapping[str, Any], name: str) -> str:
    value = data.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RequestError(f"data.{name}", "must be a string")
    return value


def _refusal(name: str, message: str) -> Verdict:
    failure = {"type": f"default.{name}", "context": {"message": message}}
    return Verdict(400, {"valid": False, "claims": {}, "failures": [failure]})


def _missing(data: Mapping[str, Any]) -> Optional[Verdict]:
    for name in REQUIRED:
        if not _member(data, name):
            return _refusal("missing_param", f'missing parameter "{name}"')
    if not any(_member(data, name) for name in POLICIES):
        message = "at least one policy (tpm_policy, runtime_policy, or mb_policy) must be provided"
        return _refusal("missing_policy", message)
    return None


MISSING_IMA_PCR = "pcr_validation.missing_pcr_10"


def _runtime_policy(text: str) -> RuntimePolicy:
    text = text or EMPTY_RUNTIME_POLICY
    try:
        return load_runtime_policy(unwrap(text.encode("utf-8")))
    except (AttestProtocolError, ValueError) as exc:
        raise RequestError("data.runtime_policy", str(exc)[:200]) from None


def _mb_policy(text: str) -> Optional[MbPolicy]:
    try:
        return load_mb_policy(text or None)
    except ValueError as exc:
        raise RequestError("data.mb_policy", str(exc)[:200]) from None


def _tpm_policy(text: str) -> dict[int, tuple[str, ...]]:
    try:
        return parse_tpm_policy(text)
    except ValueError as exc:
        raise RequestError("data.tpm_policy", str(exc)[:200]) from None


def _inputs(data: Mapping[str, Any]) -> tuple[CheckInput, Evidence]:
    nonce = _member(data, "nonce")
    check = CheckInput(
        ak_tpm_b64=_member(data, "tpm_ak"),
        nonce=nonce.encode("utf-8"),
        accept_hash_algs=(_member(data, "hash_alg"),),
        accept_enc_algs=(_ANY_ALG,),
        accept_sign_algs=(_ANY_ALG,),
        tpm_policy=_tpm_policy(_member(data, "tpm_policy")),
        public_key_pem=None,  # PCR 16 is not checked (skip_data_pcr_check)
        previous_clock=None,
        runtime_policy=_runtime_policy(_member(data, "runtime_policy")),
        ima_state=None,
        boottime=0,
        mb_policy=_mb_policy(_member(data, "mb_policy")),
        skip_clock=True,
    )
    evidence = Evidence(
        quote=_member(data, "quote"),
        hash_alg=_member(data, "hash_alg"),
        enc_alg=_ANY_ALG,
        sign_alg=_ANY_ALG,
        pubkey=None,
        boottime=0,
        ima_measurement_list=_member(data, "ima_measurement_list"),
        ima_measurement_list_entry=0,
        mb_measurement_list=_member(data, "mb_log") or None,
    )
    return check, evidence


def _failure_view(failure: FailureEvent) -> dict[str, Any]:
    return {"type": failure.event_id, "context": json.loads(failure.context)}


def _unrecognized_hash(hash_alg: str) -> Verdict:
    """keylime/cloud_verifier_common.py: an unknown hash is a verdict, not a bad request."""
    message = f"TPM Quote is using an unrecognized hash algorithm: {hash_alg[:32]}"
    failure = {
        "type": "qoute_validation.invalid_hash_alg",
        "context": {"message": message, "data": hash_alg[:32]},
    }
    return Verdict(200, {"valid": False, "claims": {}, "failures": [failure]})


def verify_tpm_evidence(data: Mapping[str, Any]) -> Verdict:
    """The verdict on one ``data`` object of type ``tpm``."""
    refused = _missing(data)
    if refused is not None:
        return refused
    try:
        alg_for_hash_name(_member(data, "hash_alg"))
    except AttestProtocolError:
        return _unrecognized_hash(_member(data, "hash_alg"))
    check, evidence = _inputs(data)
    result = check_evidence(check, evidence)
    # Ours reports a runtime policy without PCR 10 in the quote; Keylime then skips IMA.
    kept = [f for f in result.failures if f.event_id != MISSING_IMA_PCR]
    if kept:
        failures = [_failure_view(f) for f in kept]
        return Verdict(200, {"valid": False, "claims": {}, "failures": failures})
    return Verdict(200, {"valid": True, "claims": dict(data), "failures": []})


def verify_request(body: Mapping[str, Any]) -> Verdict:
    """A whole request body; RequestError (400) for what Keylime also refuses with 400."""
    kind = body.get("type")
    if not kind:
        raise RequestError("type", "missing parameter 'type'")
    data = body.get("data")
    if not data:
        raise RequestError("data", "missing parameter 'data'")
    if kind != "tpm":
        raise RequestError("type", "invalid evidence type (only 'tpm' is verified)")
    if not isinstance(data, dict):
        raise RequestError("data", "must be an object")
    return verify_tpm_evidence(data)
