"""Severity labels: ours and Keylime 7.14.3's keylime/failure.py give each event the same
label and level, and the same most severe event, under the same configuration."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tools.keylime_snippets import run_in_keylime
from verifier_lite.failures import FailureEvent, load_severity_policy, most_severe

pytestmark = pytest.mark.interop

_SNIPPET = """\
from keylime import failure
result = {}
for i, conf in enumerate(payload["configs"]):
    failure.set_severity_config(conf["labels"], conf["policy"])
    f = failure.Failure(failure.Component.DEFAULT)
    labels = []
    for event_id, recoverable in payload["events"]:
        ev = failure.Event(failure.Component.DEFAULT, None, "x", "ctx", recoverable)
        ev.event_id = event_id
        ev.severity_label = failure._severity_match(event_id)
        f._add(ev)
        labels.append([ev.severity_label.name, ev.severity_label.severity])
    result[str(i)] = {"labels": labels, "worst": f.highest_severity_event.event_id,
                      "stops": (not f.recoverable)
                               or f.highest_severity == failure.MAX_SEVERITY_LABEL}
"""

LABELS = ["info", "notice", "warning", "error", "critical", "alert", "emergency"]
CONFIGS: list[dict[str, Any]] = [
    {"labels": LABELS, "policy": [{"event_id": ".*", "severity_label": "emergency"}]},
    {
        "labels": LABELS,
        "policy": [
            {"event_id": "ima\\..*", "severity_label": "warning"},
            {"event_id": "pcr_validation\\.invalid_pcr_1.", "severity_label": "error"},
            {"event_id": "measured_boot.*", "severity_label": "no-such-label"},
        ],
    },
    {"labels": ["low", "high"], "policy": [{"event_id": "ima.*", "severity_label": "low"}]},
    {"labels": LABELS, "policy": [{"event_id": "ima", "severity_label": "info"}]},
]
EVENTS = [
    ["ima.validation.ima-ng.not_in_allowlist", True],
    ["ima.validation.ima-sig.invalid_signature", True],
    ["pcr_validation.invalid_pcr_16", True],
    ["pcr_validation.invalid_pcr_7", True],
    ["measured_boot.invalid_pcr_0", True],
    ["qoute_validation.quote_validation", True],
    ["ima.parser.entry", False],
]


@pytest.mark.parametrize("events", [EVENTS[:2], EVENTS[:4], EVENTS[2:6], EVENTS])
def test_labels_match_keylime(events: list[list[Any]]) -> None:
    theirs = run_in_keylime(_SNIPPET, {"configs": CONFIGS, "events": events})
    for i, conf in enumerate(CONFIGS):
        policy = load_severity_policy(json.dumps(conf["labels"]), json.dumps(conf["policy"]))
        ours = policy.classify(tuple(FailureEvent(e, "{}", r) for e, r in events))
        assert [[f.severity_label, f.severity_level] for f in ours] == theirs[str(i)]["labels"]
        assert most_severe(ours).event_id == theirs[str(i)]["worst"]
        assert policy.stops_polling(ours) == theirs[str(i)]["stops"]
