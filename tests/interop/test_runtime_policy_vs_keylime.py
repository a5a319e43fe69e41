"""Our runtime-policy engine and Keylime 7.14.3's own IMA code agree on the same evidence.

Each scenario of tests/unit/test_runtime_policy.py (ima-ng allowed and not, ima-sig with RSA
and EC keys, keys learned from ima-buf keyring entries, ignored keyrings, excludes, a tampered
entry, a log that does not match the quote, ...) is printed as an ASCII log and given, with the
same policy and quoted PCR 10, to ``keylime.ima.ima.process_measurement_list`` in Keylime's
virtualenv.  Verdicts must agree, and so must the kind of each failure.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from attest_protocol.ima import format_ima_line
from attest_protocol.policy import (
    ImaFailureReason,
    ImaState,
    evaluate,
    evaluate_log,
    load_runtime_policy,
)
from tests.unit.test_runtime_policy import BANK, SCENARIOS, _log, pcr_after
from tools.keylime_snippets import run_in_keylime

pytestmark = pytest.mark.interop

_PROCESS = """\
from keylime.common.algorithms import Hash
from keylime.ima import file_signatures, ima
from keylime.agentstates import AgentAttestState
result = {}
for case in payload["cases"]:
    state = AgentAttestState("agent") if case["rounds"] > 1 else None
    verdicts = []
    for lines, pcr in zip(case["logs"], case["pcrs"]):
        keyrings = state.get_ima_keyrings() if state else file_signatures.ImaKeyrings()
        tenant = file_signatures.ImaKeyring.from_string(case["policy"]["verification-keys"])
        keyrings.set_tenant_keyring(tenant)
        _, failure = ima.process_measurement_list(
            state, lines, json.loads(json.dumps(case["policy"])), pcrval=pcr,
            ima_keyrings=keyrings, hash_alg=Hash.SHA256)
        verdicts.append({"ok": not failure,
                         "events": [e.split(".")[-1] for e in failure.get_event_ids()]})
    result[case["name"]] = verdicts
"""
_SNIPPET = "import json\n" + _PROCESS

# Our reason -> the Keylime event ids (last component) that mean the same thing.  A bad
# signature on an entry whose digest is not allowed is reported by Keylime as the digest
# failure it falls back to (keylime/ima/ima.py, _validate_ima_sig).
_KEYLIME_EVENTS = {
    ImaFailureReason.NOT_IN_POLICY: {"not_in_allowlist"},
    ImaFailureReason.DIGEST_MISMATCH: {"runtime_policy_hash"},
    ImaFailureReason.BAD_SIGNATURE: {"not_in_allowlist", "runtime_policy_hash"},
    ImaFailureReason.TEMPLATE_HASH_MISMATCH: {"ima_hash"},
    ImaFailureReason.WRONG_PCR: {"ima_pcr"},
    ImaFailureReason.UNSUPPORTED_KEY: {"invalid_key"},
    ImaFailureReason.PCR_MISMATCH: {"pcr_mismatch"},
    ImaFailureReason.QUOTE_NO_PROGRESS: {"quote_progress"},
}


def _same_kinds(ours: list[ImaFailureReason], theirs: list[str]) -> bool:
    if len(ours) != len(theirs):
        return False
    remaining = Counter(theirs)
    for reason in ours:
        hit = next((e for e in _KEYLIME_EVENTS[reason] if remaining[e] > 0), None)
        if hit is None:
            return False
        remaining[hit] -= 1
    return True


def _single_round_cases() -> list[dict[str, Any]]:
    cases = []
    for s in SCENARIOS:
        quote = s.quote if s.quote is not None else pcr_after(s.entries)
        cases.append(
            {
                "name": s.name,
                "rounds": 1,
                "policy": s.policy,
                "logs": [[format_ima_line(e) for e in s.entries]],
                "pcrs": [quote.hex()],
            }
        )
    return cases


def test_single_round_verdicts_match_keylime() -> None:
    cases = _single_round_cases()
    theirs = run_in_keylime(_SNIPPET, {"cases": cases}, timeout=300)
    compared = 0
    for s in SCENARIOS:
        policy = load_runtime_policy(json.dumps(s.policy).encode())
        quote = s.quote if s.quote is not None else pcr_after(s.entries)
        ours = evaluate(policy, ImaState.initial(BANK), s.entries, quote, BANK)
        (kl,) = theirs[s.name]
        text = "".join(format_ima_line(e) + "\n" for e in s.entries)
        assert evaluate_log(policy, ImaState.initial(BANK), text, quote, BANK) == ours
        reasons = [f.reason for f in ours.failures]
        assert ours.ok == kl["ok"], (s.name, reasons, kl["events"])
        assert _same_kinds(reasons, kl["events"]), (s.name, reasons, kl["events"])
        compared += 1
    assert compared == len(SCENARIOS) > 10


# Rounds of (entries sent from, entries sent up to, entries the quote covers).
_ROUNDS = {
    "lag then catch up": [(0, 5, 3), (3, 6, 6)],
    "lag does not shrink": [(0, 5, 3), (3, 6, 4)],
    "no lag": [(0, 4, 4), (4, 8, 8)],
}


@pytest.mark.parametrize("name", sorted(_ROUNDS))
def test_incremental_rounds_match_keylime(name: str) -> None:
    entries, raw = _log(8)
    policy_json = json.loads(raw)
    rounds = _ROUNDS[name]
    case = {
        "name": name,
        "rounds": len(rounds),
        "policy": policy_json,
        "logs": [[format_ima_line(e) for e in entries[a:b]] for a, b, _ in rounds],
        "pcrs": [pcr_after(entries[:q]).hex() for _, _, q in rounds],
    }
    theirs = run_in_keylime(_SNIPPET, {"cases": [case]}, timeout=300)[name]
    policy = load_runtime_policy(raw)
    state = ImaState.initial(BANK)
    assert len(theirs) == len(rounds)
    for (a, b, q), kl in zip(rounds, theirs):
        assert state.next_entry == a
        verdict = evaluate(policy, state, entries[a:b], pcr_after(entries[:q]), BANK)
        reasons = [f.reason for f in verdict.failures]
        assert verdict.ok == kl["ok"], (reasons, kl["events"])
        assert _same_kinds(reasons, kl["events"]), (reasons, kl["events"])
        state = verdict.new_state
