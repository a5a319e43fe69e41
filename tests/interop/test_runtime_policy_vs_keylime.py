"""Our runtime-policy engine and Keylime 7.14.3's own IMA code agree on the same evidence.

Each scenario of tests/unit/test_runtime_policy.py (ima-ng allowed and not, ima-sig with RSA
and EC keys, keys learned from ima-buf keyring entries, ignored keyrings, excludes, a tampered
entry, a log that does not match the quote, ...) is printed as an ASCII log and given, with the
same policy and quoted PCR 10, to ``keylime.ima.ima.process_measurement_list`` in Keylime's
virtualenv.  Verdicts must agree, and so must the full event id of each failure
(``ImaFailure.keylime_event_id`` against Keylime's ``Failure.get_event_ids()``).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest

from attest_protocol.ima import format_ima_line
from attest_protocol.policy import (
    ImaFailure,
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
                         "events": failure.get_event_ids()})
    result[case["name"]] = verdicts
"""
_SNIPPET = "import json\n" + _PROCESS


def _same_ids(ours: tuple[ImaFailure, ...], theirs: list[str]) -> bool:
    """The same full event ids, as many times each (Keylime lists them in log order too, but
    log-level events come last in both, so compare as multisets)."""
    return Counter(f.keylime_event_id for f in ours) == Counter(theirs)


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
    seen: Counter[str] = Counter()
    for s in SCENARIOS:
        policy = load_runtime_policy(json.dumps(s.policy).encode())
        quote = s.quote if s.quote is not None else pcr_after(s.entries)
        ours = evaluate(policy, ImaState.initial(BANK), s.entries, quote, BANK)
        (kl,) = theirs[s.name]
        text = "".join(format_ima_line(e) + "\n" for e in s.entries)
        assert evaluate_log(policy, ImaState.initial(BANK), text, quote, BANK) == ours
        ids = [f.keylime_event_id for f in ours.failures]
        assert ours.ok == kl["ok"], (s.name, ids, kl["events"])
        assert _same_ids(ours.failures, kl["events"]), (s.name, ids, kl["events"])
        seen.update(kl["events"])
        compared += 1
    assert compared == len(SCENARIOS) > 10
    # The scenarios reach these ids on Keylime's side, so the comparison above covered them.
    assert {
        "ima.validation.ima-ng.not_in_allowlist",
        "ima.validation.ima-ng.runtime_policy_hash",
        "ima.validation.ima_hash",
        "ima.validation.ima_pcr",
        "ima.invalid_key",
        "ima.pcr_mismatch",
    } <= set(seen), sorted(seen)


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
    seen: Counter[str] = Counter()
    assert len(theirs) == len(rounds)
    for (a, b, q), kl in zip(rounds, theirs):
        assert state.next_entry == a
        verdict = evaluate(policy, state, entries[a:b], pcr_after(entries[:q]), BANK)
        ids = [f.keylime_event_id for f in verdict.failures]
        assert verdict.ok == kl["ok"], (ids, kl["events"])
        assert _same_ids(verdict.failures, kl["events"]), (ids, kl["events"])
        seen.update(kl["events"])
        state = verdict.new_state
    if name == "lag does not shrink":
        assert seen == Counter({"ima.quote_progress": 1})
