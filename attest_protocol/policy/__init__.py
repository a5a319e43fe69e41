"""Keylime runtime policies: load one, evaluate IMA entries against it incrementally.

Pure: bytes and parsed entries in, frozen values out; the verifier owns storage and I/O::

    load_runtime_policy(json_bytes) -> RuntimePolicy
    evaluate(policy, state, new_entries, quoted_pcr10, hash_alg) -> ImaVerdict
    evaluate_log(policy, state, log_text, quoted_pcr10, hash_alg) -> ImaVerdict   (faster)
        ImaVerdict(ok, new_state: ImaState, failures: tuple[ImaFailure, ...], ...)
    ImaFailure.keylime_event_id             Keylime's full event id, e.g. ima.pcr_mismatch
    ImaState.initial(hash_alg)              before the first entry of a boot

Semantics follow Keylime 7.14 (keylime/ima/ima.py); see docs/runtime-policy.md.

Errors (policy loading; evaluation reports failures as values, it does not raise)::

    AttestProtocolError
    └── RuntimePolicyError                  where, reason
        ├── RuntimePolicyFormatError        not JSON, too large, missing/mistyped member
        ├── RuntimePolicyVersionError       meta.version is not 1
        ├── RuntimePolicyRegexError         an excludes entry does not compile: pattern
        └── RuntimePolicyKeyError           a verification key that cannot be loaded
"""

from __future__ import annotations

from attest_protocol.policy.engine import BOOT_AGGREGATE_PATH, MAX_REPORTED_FAILURES, evaluate
from attest_protocol.policy.errors import (
    RuntimePolicyError,
    RuntimePolicyFormatError,
    RuntimePolicyKeyError,
    RuntimePolicyRegexError,
    RuntimePolicyVersionError,
)
from attest_protocol.policy.fastpath import evaluate_log
from attest_protocol.policy.keys import LearnedKey, PublicKey, keyid_v2, verify_signature
from attest_protocol.policy.model import (
    MAX_RUNTIME_POLICY_BYTES,
    RUNTIME_POLICY_VERSION,
    RuntimePolicy,
    load_runtime_policy,
)
from attest_protocol.policy.verdict import (
    KEYLIME_IMA_EVENT_IDS,
    ImaFailure,
    ImaFailureReason,
    ImaState,
    ImaVerdict,
    keylime_event_id,
)

__all__ = [
    "BOOT_AGGREGATE_PATH",
    "KEYLIME_IMA_EVENT_IDS",
    "MAX_REPORTED_FAILURES",
    "MAX_RUNTIME_POLICY_BYTES",
    "RUNTIME_POLICY_VERSION",
    "ImaFailure",
    "ImaFailureReason",
    "ImaState",
    "ImaVerdict",
    "LearnedKey",
    "PublicKey",
    "RuntimePolicy",
    "RuntimePolicyError",
    "RuntimePolicyFormatError",
    "RuntimePolicyKeyError",
    "RuntimePolicyRegexError",
    "RuntimePolicyVersionError",
    "evaluate",
    "evaluate_log",
    "keyid_v2",
    "keylime_event_id",
    "load_runtime_policy",
    "verify_signature",
]
