"""verifier_lite/failures.py: Keylime's severity_labels / severity_policy options."""

from __future__ import annotations

import pytest

from verifier_lite.config import VerifierConfig
from verifier_lite.errors import ConfigError
from verifier_lite.failures import (
    DEFAULT_SEVERITY_LEVEL,
    FailureEvent,
    SeverityConfigError,
    load_severity_policy,
)


def test_defaults_are_keylimes_everything_emergency() -> None:
    policy = VerifierConfig().severity
    relabelled = policy.relabel(FailureEvent("ima.validation.ima-ng.not_in_allowlist", "{}", True))
    assert (relabelled.severity_label, relabelled.severity_level) == (
        "emergency",
        DEFAULT_SEVERITY_LEVEL,
    )
    assert policy.stops_polling((relabelled,))


def test_first_full_match_wins_and_irrecoverable_is_highest() -> None:
    policy = load_severity_policy(
        '["low", "mid", "high"]',
        '[{"event_id": "ima", "severity_label": "mid"},'
        ' {"event_id": "ima\\\\..*", "severity_label": "low"}]',
    )
    assert policy.label("ima") == "mid"
    assert policy.label("ima.x") == "low"
    assert policy.label("imax") == "high"  # no rule: the highest label
    low = policy.relabel(FailureEvent("ima.x", "{}", True))
    assert not policy.stops_polling((low,))
    assert policy.relabel(FailureEvent("ima.x", "{}", False)).severity_label == "high"


def test_empty_options_mean_the_defaults() -> None:
    policy = load_severity_policy("[]", "[]")
    assert policy.label("anything") == "emergency"


@pytest.mark.parametrize(
    ("labels", "rules", "option"),
    [
        ("not json", "[]", "severity_labels"),
        ('{"a": 1}', "[]", "severity_labels"),
        ('["a", "a"]', "[]", "severity_labels"),
        ('["a", 3]', "[]", "severity_labels"),
        ("[]", "[1]", "severity_policy"),
        ("[]", '[{"event_id": "("' + ', "severity_label": "info"}]', "severity_policy"),
        ("[]", '[{"event_id": ".*"}]', "severity_policy"),
    ],
)
def test_bad_options_are_named(labels: str, rules: str, option: str) -> None:
    with pytest.raises(SeverityConfigError) as caught:
        load_severity_policy(labels, rules)
    assert caught.value.option == option
    with pytest.raises(ConfigError, match=option):
        VerifierConfig(severity_labels=labels, severity_policy=rules)
