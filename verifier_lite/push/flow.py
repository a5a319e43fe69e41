"""The attestation flow of a push agent: negotiate, take evidence, judge, record.

Keylime 7.14.3 keylime/web/verifier/attestation_controller.py ``create``/``update`` and
keylime/verification/base/engine_driver.py.  Every refusal happens before anything is stored,
so a refused request leaves the history and the agent's row as they were.  Judging uses the
pull engine's ``check_evidence`` (verifier_lite/checks.py) and every state change goes
through ``AgentStates.apply`` (verifier_lite/transitions.py): a pass is QUOTE_OK, a failure
QUOTE_INVALID, which sends the same revocation notifications as for a pull agent (Keylime
sends none in push mode).  A failure is sticky: later passes are recorded but the agent stays
FAIL until reactivated, as Keylime without ``auto_recover_attestation_failures``.
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from attest_protocol.policy import load_runtime_policy
from verifier_lite.checks import CheckInput, CheckResult, check_evidence
from verifier_lite.failures import most_severe
from verifier_lite.measured_boot import load_mb_policy
from verifier_lite.push.attestations import Attestation, PushHistory
from verifier_lite.push.enrol import is_push_agent
from verifier_lite.push.errors import PushError, bad_request
from verifier_lite.push.evidence import check_challenge, to_evidence
from verifier_lite.push.negotiation import Offer, choose_ima, choose_quote, parse_offer, wanted
from verifier_lite.push.persist import HISTORY, history_from_text, history_to_text
from verifier_lite.records import AgentRecord
from verifier_lite.service import Verifier
from verifier_lite.states import POLLING, Event, State
from verifier_lite.tpm_policy import parse_tpm_policy

log = logging.getLogger("limelet.verifier")

CHALLENGE_LIFETIME_SECONDS = 1800.0  # Keylime [verifier] challenge_lifetime default
CLOSED = frozenset({State.TENANT_FAILED, State.TERMINATED})


def boot_epoch(boot_time: str) -> int:
    try:
        return int(datetime.fromisoformat(boot_time.replace("Z", "+00:00")).timestamp())
    except ValueError:
        raise bad_request("system_info.boot_time is not an ISO 8601 time") from None


class PushFlow:
    def __init__(self, verifier: Verifier, clock: Callable[[], float]) -> None:
        self.verifier = verifier
        self.clock = clock
        self.histories: dict[str, PushHistory] = {}
        self.challenge_lifetime = CHALLENGE_LIFETIME_SECONDS

    async def history(self, agent_id: str) -> PushHistory:
        """The agent's history, read from the store after a restart; an empty one (not
        stored) when it has none yet."""
        history = self.histories.get(agent_id)
        if history is None:
            text = await self.verifier.store.get_push_document(HISTORY, agent_id)
            if text is None:
                return PushHistory()
            history = self.histories[agent_id] = history_from_text(text)
        return history

    async def save(self, agent_id: str, history: PushHistory) -> None:
        self.histories[agent_id] = history
        doc = history_to_text(history)
        await self.verifier.store.put_push_document(HISTORY, agent_id, agent_id, doc)

    async def forget(self, agent_id: str) -> None:
        self.histories.pop(agent_id, None)
        await self.verifier.store.delete_push_documents(HISTORY, agent_id)

    async def push_agent(self, agent_id: str) -> AgentRecord:
        agent = await self.verifier.store.get_agent(agent_id)
        if agent is None or agent.verifier_id != self.verifier.config.uuid:
            raise PushError(404, "not_found", f"agent {agent_id} is not enrolled")
        if not is_push_agent(agent) or agent.state in CLOSED:
            raise PushError(403, "agent_attestations_disabled", "attestations are not accepted")
        return agent

    async def negotiate(self, agent_id: str, attributes: dict[str, Any]) -> Attestation:
        agent = await self.push_agent(agent_id)
        history = await self.history(agent_id)
        self._not_premature(history)
        offer = parse_offer(attributes)
        requested = await self._requested(agent, offer, history)
        now = self.clock()
        attestation = Attestation(
            agent_id=agent_id,
            index=history.next_index,
            boot_time=offer.boot_time,
            boottime=boot_epoch(offer.boot_time),
            capabilities=[dict(i) for i in offer.items.values()],
            evidence_requested=requested,
            capabilities_received_at=now,
            challenges_expire_at=now + self.challenge_lifetime,
        )
        history.add(attestation)
        await self.save(agent_id, history)
        return attestation

    def _not_premature(self, history: PushHistory) -> None:
        latest = history.latest()
        if latest is None or latest.evidence_received_at is None:
            return
        due = latest.evidence_received_at + self.verifier.config.quote_interval
        wait = due - self.clock()
        if wait > 0:
            raise PushError(429, "premature_attestation", "too early", retry_after=math.ceil(wait))

    async def _requested(
        self, agent: AgentRecord, offer: Offer, history: PushHistory
    ) -> list[dict[str, Any]]:
        runtime = await self.verifier.store.get_runtime_policy(agent.runtime_policy_name)
        mb = await self.verifier.store.get_mb_policy(agent.mb_policy_name)
        want = wanted(
            agent.tpm_policy,
            runtime=runtime is not None and runtime.has_policy,
            mb=mb is not None and mb.mb_policy is not None,
        )
        if not want.pcrs or "tpm_quote" not in offer.items:
            raise PushError(422, "invalid_capabilities", "a tpm_quote is required")
        chosen = choose_quote(
            offer.items["tpm_quote"],
            agent.ak_tpm,
            want,
            agent.accept_tpm_hash_algs,
            agent.accept_tpm_signing_algs,
        )
        out = [_item("certification", "tpm_quote", chosen)]
        if want.ima:
            if "ima_log" not in offer.items:
                raise PushError(422, "invalid_capabilities", "an ima_log is required")
            offset, _ = history.ima_offset(offer.boot_time)
            out.append(_item("log", "ima_log", choose_ima(offer.items["ima_log"], offset)))
        if want.uefi:
            if "uefi_log" not in offer.items:
                raise PushError(422, "invalid_capabilities", "a uefi_log is required")
            out.append(_item("log", "uefi_log", {"format": "application/octet-stream"}))
        return out

    async def submit(self, agent_id: str, index: int, attributes: dict[str, Any]) -> Attestation:
        agent = await self.push_agent(agent_id)
        history = await self.history(agent_id)
        attestation = history.get(index)
        if attestation is None:
            raise PushError(404, "not_found", f"no attestation {index}")
        if attestation is not history.latest():
            raise PushError(403, "old_attestation", "a newer attestation exists")
        if attestation.evidence_received_at is not None:
            raise PushError(403, "evidence_immutable", "evidence was already received")
        if self.clock() >= attestation.challenges_expire_at:
            raise PushError(403, "challenges_expired", "the challenge has expired")
        enc_alg = attestation.evidence_requested[0]["chosen_parameters"]["certification_key"].get(
            "key_algorithm", ""
        )
        evidence, _ = to_evidence(
            attributes,
            attestation.evidence_requested,
            enc_alg="ecc" if enc_alg == "ecc" else "rsa",
            boottime=attestation.boottime,
        )
        chosen = attestation.evidence_requested[0]["chosen_parameters"]
        check_challenge(evidence.quote, base64.b64decode(chosen["challenge"]))
        attestation.evidence_received_at = self.clock()
        attestation.stage = "evaluating_evidence"
        result = check_evidence(await self._check_input(agent, attestation, history), evidence)
        await self._record(
            agent, attestation, history, result, evidence.hash_alg, evidence.sign_alg
        )
        await self.save(agent_id, history)
        return attestation

    async def _check_input(
        self, agent: AgentRecord, attestation: Attestation, history: PushHistory
    ) -> CheckInput:
        chosen = attestation.evidence_requested[0]["chosen_parameters"]
        runtime = await self.verifier.store.get_runtime_policy(agent.runtime_policy_name)
        mb = await self.verifier.store.get_mb_policy(agent.mb_policy_name)
        runtime_policy = None
        if runtime is not None and runtime.has_policy:
            runtime_policy = load_runtime_policy(runtime.runtime_policy.encode("utf-8"))
        _, ima_state = history.ima_offset(attestation.boot_time)
        return CheckInput(
            ak_tpm_b64=agent.ak_tpm,
            nonce=base64.b64decode(chosen["challenge"]),
            accept_hash_algs=agent.accept_tpm_hash_algs,
            accept_enc_algs=agent.accept_tpm_encryption_algs,
            accept_sign_algs=agent.accept_tpm_signing_algs,
            tpm_policy=parse_tpm_policy(agent.tpm_policy),
            public_key_pem=None,  # no NK in push mode: PCR 16 is not checked (as Keylime)
            previous_clock=history.clock,
            runtime_policy=runtime_policy,
            ima_state=ima_state,
            boottime=history.clock_boottime,
            mb_policy=None if mb is None else load_mb_policy(mb.mb_policy),
        )

    async def _record(
        self,
        agent: AgentRecord,
        attestation: Attestation,
        history: PushHistory,
        result: CheckResult,
        hash_alg: str,
        sign_alg: str,
    ) -> None:
        now = self.clock()
        attestation.stage = "verification_complete"
        attestation.verification_completed_at = now
        if result.clock is not None:
            history.clock, history.clock_boottime = result.clock, attestation.boottime
        stamp = {"last_received_quote": int(now)}
        if result.ok:
            attestation.evaluation = "pass"
            history.record_pass(attestation, result.ima_state)
            changes = {
                **stamp,
                "last_successful_attestation": int(now),
                "attestation_count": agent.attestation_count + 1,
                "hash_alg": hash_alg,
                "sign_alg": sign_alg,
                "boottime": attestation.boottime,
            }
            await self._apply(agent, Event.QUOTE_OK, None, changes)
            return
        failure = most_severe(result.failures)
        attestation.evaluation = "fail"
        attestation.failure_reason = failure.event_id
        await self._apply(agent, Event.QUOTE_INVALID, failure, stamp)

    async def _apply(
        self, agent: AgentRecord, ev: Event, failure: Any, changes: dict[str, Any]
    ) -> None:
        if agent.state in POLLING:
            await self.verifier.engine.states.apply(agent, ev, failure=failure, **changes)
        else:
            # Sticky FAIL: the attempt is recorded but the state stays until reactivation.
            changes.pop("attestation_count", None)
            await self.verifier.store.update_agent(agent.agent_id, **changes)


def _item(cls: str, kind: str, chosen: dict[str, Any]) -> dict[str, Any]:
    return {"evidence_class": cls, "evidence_type": kind, "chosen_parameters": chosen}
