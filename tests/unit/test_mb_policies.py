"""attest_protocol.mb and eventlog.describe on their own (no Keylime needed).

The verdicts themselves are compared with Keylime's in
tests/interop/test_measured_boot_vs_keylime.py; here: the described events carry what
``tpm2_eventlog`` + Keylime's enrich step give (values read from Keylime's parse of the same
log), a broken reference state is a reason and never an exception, and hostile logs and
events never crash the evaluator.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from attest_protocol.eventlog import EventLogParseError, parse_event_log
from attest_protocol.eventlog.describe import describe_events
from attest_protocol.mb import (
    POLICY_NAMES,
    RefstateError,
    UnknownMbPolicyError,
    evaluate,
    evaluate_example,
    load_refstate,
    relevant_pcrs,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eventlogs"
SB_LOG = (FIXTURES / "keylime-test-binary_bios_measurements-secureboot").read_bytes()
SB_STATE = json.loads((FIXTURES / "keylime-secureboot_reference_state.json").read_text())
UPSTREAM_STATE = json.loads((FIXTURES / "keylime-example_reference_state.json").read_text())
EVENTS = describe_events(parse_event_log(SB_LOG).events)
EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"


def _event(num: int) -> dict[str, Any]:
    return next(e for e in EVENTS if e["EventNum"] == num)


def test_described_events_carry_what_keylime_reads() -> None:
    secure_boot = _event(4)["Event"]
    assert (secure_boot["VariableName"], secure_boot["UnicodeName"]) == (EFI_GLOBAL, "SecureBoot")
    assert secure_boot["VariableData"] == {"Enabled": "Yes"}
    pk = _event(5)["Event"]["VariableData"]
    assert pk[0]["SignatureType"] == "a5c059a1-94e4-4aa7-87b5-ab155c2bf072"  # X.509
    assert pk[0]["Keys"][0]["SignatureOwner"] == "a0baa8a3-041d-48a8-bc87-c36d121b5e3d"
    assert len(_event(8)["Event"]["VariableData"][0]["Keys"]) == 371  # dbx hashes
    vendor_db = _event(34)["Event"]["VariableData"]
    assert [s["SignatureOwner"] for s in vendor_db] == ["0223eddb-9079-4388-af77-2d65b1c35d3b"]
    assert _event(19)["Event"] == "Calling EFI Application from Boot Option"
    assert _event(30)["Event"] == {"String": "MokList"}  # trailing NUL dropped
    assert _event(36)["Event"] == {"String": "(hd0,gpt1)/EFI/redhat/grub.cfg"}
    assert _event(9)["Event"] == "00000000"  # a separator, as hex
    assert _event(29)["Digests"] == [
        {
            "AlgorithmId": "sha256",
            "Digest": "27b12463e599b3147635f272e3722960e443def60fef088eba600697017529f2",
        }
    ]


def test_example_accepts_its_own_state_and_names_why_it_refuses_another() -> None:
    assert evaluate_example(load_refstate(SB_STATE), EVENTS) == ""
    reason = evaluate_example(load_refstate(UPSTREAM_STATE), EVENTS)
    assert "pk holds a key that is not in the reference state" in reason


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda d: d.pop("kernels"), "'kernels' must be a list"),
        (lambda d: d.pop("scrtm_and_bios"), "'scrtm_and_bios' is missing"),
        (lambda d: d.pop("mokxdig"), "lacks mokxdig"),
        (lambda d: d["kernels"][0].pop("initrd_plain_sha256"), "lacks initrd_plain_sha256"),
        (lambda d: d["kernels"][0].update(shim_authcode_sha256="27b1"), "is not 0x"),
        (lambda d: d["kernels"][0].update(kernel_cmdline="("), "kernel_cmdline"),
        (lambda d: d["pk"].append({"SignatureOwner": "x"}), "lacks SignatureData"),
        (lambda d: d.update(pk=7), "expected a list of signatures"),
        (lambda d: d.update(mokdig={"sha256": "0x00"}), "expected a list of digests"),
    ],
)
def test_a_state_the_policy_cannot_use_is_a_reason(edit: Any, words: str) -> None:
    state = json.loads(json.dumps(SB_STATE))
    edit(state)
    with pytest.raises(RefstateError, match=words):
        load_refstate(state)
    reason = evaluate("example", state, EVENTS, {})
    assert reason.startswith("policy evaluation failed: ") and words.strip("'") in reason


def test_policy_names_and_the_pcrs_they_read() -> None:
    assert POLICY_NAMES == ("accept-all", "reject-all", "example", "limelet-pcrs")
    assert relevant_pcrs("accept-all") == relevant_pcrs("reject-all") == frozenset()
    assert relevant_pcrs("example") == frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14})
    assert evaluate("accept-all", {"x": 1}, [], {}) == ""
    assert evaluate("reject-all", {"x": 1}, [], {}) == "reject all"
    with pytest.raises(UnknownMbPolicyError, match="no measured-boot policy named 'elchecking'"):
        relevant_pcrs("elchecking")


def test_limelet_pcrs_compares_replayed_values() -> None:
    replayed = {7: bytes.fromhex("ab" * 32)}
    assert evaluate("limelet-pcrs", {"pcrs": {"7": ["AB" * 32]}}, [], replayed) == ""
    assert "PCRs [7]" in evaluate("limelet-pcrs", {"pcrs": {"7": ["cd" * 32]}}, [], replayed)
    assert "every boot" in evaluate("limelet-pcrs", {"reject_all": True}, [], replayed)
    assert "not a measured-boot PCR" in evaluate("limelet-pcrs", {"pcrs": {"10": []}}, [], {})


JUNK: list[Any] = [None, 1, "x", [], {}, [1], {"a": 1}, {"String": 3}, True, -1]


def test_hostile_events_are_refused_not_crashed_on() -> None:
    state = load_refstate(SB_STATE)
    rng = random.Random(16)  # noqa: S311 - a fixed seed: the same cases on every run
    keys = ("PCRIndex", "EventType", "Event", "Digests", "EventNum")
    for _ in range(500):
        event = dict(rng.choice(EVENTS))
        event[rng.choice(keys)] = rng.choice(JUNK)
        if rng.random() < 0.5 and isinstance(event.get("Event"), dict):
            body = dict(event["Event"])
            body[rng.choice(["VariableName", "UnicodeName", "VariableData", "String"])] = (
                rng.choice(JUNK)
            )
            event["Event"] = body
        assert isinstance(evaluate_example(state, [*EVENTS[:3], event]), str)


def test_a_corrupted_log_parses_or_is_refused_never_crashes() -> None:
    state = load_refstate(SB_STATE)
    rng = random.Random(7)  # noqa: S311 - a fixed seed: the same cases on every run
    for _ in range(200):
        data = bytearray(SB_LOG)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        try:
            log = parse_event_log(bytes(data))
        except EventLogParseError:
            continue
        assert isinstance(evaluate_example(state, describe_events(log.events)), str)
