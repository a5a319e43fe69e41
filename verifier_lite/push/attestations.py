"""One agent's push attestations and their JSON:API views.

Keylime 7.14.3 keeps ``attestations`` rows (keylime/models/verifier/attestation.py): an
index per agent, a stage (awaiting_evidence -> evaluating_evidence -> verification_complete),
an evaluation (pending, pass, fail) with a failure_reason, and the times a challenge was
issued, expires and was answered.  ``PushHistory`` holds them (flow.py stores it through
persist.py) with what the next attestation builds on: the last passed attestation's IMA
state (the next starting_offset), and the TPM clock of the last authenticated quote (which
must never go back).

Retention follows Keylime's: a pass replaces an earlier pass, except the first one after a
boot; failures stay.  ``MAX_KEPT`` bounds the rest so a failing agent cannot grow it forever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Optional

from attest_protocol.policy import ImaState
from attest_protocol.tpm2.attest import ClockInfo

MAX_KEPT = 100


def iso(when: Optional[float]) -> Optional[str]:
    if when is None:
        return None
    return datetime.fromtimestamp(when, timezone.utc).isoformat()


@dataclass
class Attestation:
    agent_id: str
    index: int
    boot_time: str
    boottime: int
    capabilities: list[dict[str, Any]]
    evidence_requested: list[dict[str, Any]]
    capabilities_received_at: float
    challenges_expire_at: float
    stage: str = "awaiting_evidence"
    evaluation: str = "pending"
    failure_reason: Optional[str] = None
    evidence_received_at: Optional[float] = None
    verification_completed_at: Optional[float] = None
    first_after_boot: bool = False

    def path(self, version: str = "v3.0") -> str:
        return f"/{version}/agents/{self.agent_id}/attestations/{self.index}"

    def resource(self) -> dict[str, Any]:
        attributes: dict[str, Any] = {
            "stage": self.stage,
            "evaluation": self.evaluation,
            "failure_reason": self.failure_reason,
            "evidence_requested": self.evidence_requested,
            "system_info": {"boot_time": self.boot_time},
            "capabilities_received_at": iso(self.capabilities_received_at),
            "challenges_expire_at": iso(self.challenges_expire_at),
            "evidence_received_at": iso(self.evidence_received_at),
            "verification_completed_at": iso(self.verification_completed_at),
        }
        return {
            "type": "attestation",
            "id": str(self.index),
            "attributes": attributes,
            "links": {"self": self.path()},
        }


@dataclass(frozen=True)
class Passed:
    """What the last passed attestation leaves for the next one."""

    boot_time: str
    ima_state: Optional[ImaState]


@dataclass
class PushHistory:
    attestations: list[Attestation] = field(default_factory=list)
    next_index: int = 0
    passed: Optional[Passed] = None
    clock: Optional[ClockInfo] = None  # of the last quote whose signature verified
    clock_boottime: int = 0

    def latest(self) -> Optional[Attestation]:
        return self.attestations[-1] if self.attestations else None

    def get(self, index: int) -> Optional[Attestation]:
        return next((a for a in self.attestations if a.index == index), None)

    def add(self, attestation: Attestation) -> None:
        self.attestations.append(attestation)
        self.next_index = attestation.index + 1

    def ima_offset(self, boot_time: str) -> tuple[int, Optional[ImaState]]:
        """Where the IMA log is asked from: after the last pass of this boot, else 0."""
        if self.passed is None or self.passed.boot_time != boot_time:
            return 0, None
        state = self.passed.ima_state
        return (state.next_entry if state is not None else 0), state

    def record_pass(self, attestation: Attestation, ima_state: Optional[ImaState]) -> None:
        previous = self.passed
        attestation.first_after_boot = (
            previous is None or previous.boot_time != attestation.boot_time
        )
        self.passed = Passed(attestation.boot_time, ima_state)
        self.attestations = [
            a
            for a in self.attestations
            if a is attestation or a.evaluation != "pass" or a.first_after_boot
        ]
        del self.attestations[: max(0, len(self.attestations) - MAX_KEPT)]
