"""Keylime's event id for each IMA failure (attest_protocol.policy.keylime_event_id).

The ids themselves are checked against Keylime 7.14.3 running the same evidence in
tests/interop/test_runtime_policy_vs_keylime.py; this covers the mapping's own rules.
"""

from __future__ import annotations

import json

import pytest

from attest_protocol.policy import (
    KEYLIME_IMA_EVENT_IDS,
    ImaFailure,
    ImaFailureReason,
    ImaState,
    evaluate,
    keylime_event_id,
    load_runtime_policy,
)
from tests.unit.test_runtime_policy import BANK, SCENARIOS, pcr_after

R = ImaFailureReason


def test_every_reason_but_bad_signature_has_its_own_id() -> None:
    assert set(KEYLIME_IMA_EVENT_IDS) == set(R) - {R.BAD_SIGNATURE}
    assert all(i.startswith("ima.") for i in KEYLIME_IMA_EVENT_IDS.values())


@pytest.mark.parametrize(
    ("fallback", "expected"),
    [
        (R.NOT_IN_POLICY, "ima.validation.ima-ng.not_in_allowlist"),
        (R.DIGEST_MISMATCH, "ima.validation.ima-ng.runtime_policy_hash"),
        (None, "ima.validator.ima-sig.invalid_signature"),
    ],
)
def test_bad_signature_reports_what_it_falls_back_to(
    fallback: ImaFailureReason | None, expected: str
) -> None:
    failure = ImaFailure(3, "/usr/bin/x", R.BAD_SIGNATURE, "", "ima-sig", fallback)
    assert failure.keylime_event_id == keylime_event_id(failure) == expected


def test_entry_failures_carry_their_template_and_log_failures_none() -> None:
    checked = 0
    for s in SCENARIOS:
        policy = load_runtime_policy(json.dumps(s.policy).encode())
        quote = s.quote if s.quote is not None else pcr_after(s.entries)
        verdict = evaluate(policy, ImaState.initial(BANK), s.entries, quote, BANK)
        for f in verdict.failures:
            if f.entry is None:
                assert f.template == ""
            else:
                assert f.template == s.entries[f.entry - 1].template_name
            assert (f.fallback is not None) == (f.reason is R.BAD_SIGNATURE)
            checked += 1
    assert checked > 10
