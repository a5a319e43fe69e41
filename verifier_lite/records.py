"""What the verifier stores per agent and per policy, and the REST views of them.

Field names are those of Keylime's ``verifiermain`` table and ``process_get_status``
(keylime/db/verifier_db.py, keylime/cloud_verifier_common.py, 7.14.3) so the tenant reads our
answers unchanged.  Lists are tuples; ``tpm_policy`` and ``meta_data`` stay the JSON strings
the tenant sent, as Keylime stores and returns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from verifier_lite.states import FAIL_STATES, PASS_STATES, State


@dataclass(frozen=True)
class AgentRecord:
    agent_id: str
    v: Optional[str]  # base64 V; kept after delivery, as Keylime keeps it (re-sent on reactivate)
    ip: str
    port: int
    operational_state: int
    public_key: str
    tpm_policy: str
    meta_data: str
    ima_sign_verification_keys: str
    revocation_key: str
    accept_tpm_hash_algs: tuple[str, ...]
    accept_tpm_encryption_algs: tuple[str, ...]
    accept_tpm_signing_algs: tuple[str, ...]
    hash_alg: str
    enc_alg: str
    sign_alg: str
    boottime: int
    supported_version: str
    mtls_cert: Optional[str]
    ak_tpm: str  # base64 TPM2B_PUBLIC, as the tenant sends it
    verifier_id: str
    verifier_ip: str
    verifier_port: int
    severity_level: Optional[int]
    last_event_id: Optional[str]
    attestation_count: int
    last_received_quote: int
    last_successful_attestation: int
    runtime_policy_name: str
    mb_policy_name: str

    @property
    def state(self) -> State:
        return State(self.operational_state)


@dataclass(frozen=True)
class RuntimePolicyRecord:
    name: str
    runtime_policy: str  # the JSON text; "" means the empty (accept-all) policy
    tpm_policy: Optional[str]
    has_policy: bool  # False for Keylime's EMPTY_RUNTIME_POLICY stand-in


@dataclass(frozen=True)
class MbPolicyRecord:
    name: str
    mb_policy: Optional[str]  # JSON text; None means no measured-boot policy


# ``last_successful_attestation`` is stored in whole seconds, so an age read from it can be
# up to this much larger than the true one; the freshness test allows for it.
TIMESTAMP_RESOLUTION_SECONDS = 1


def attestation_status(agent: AgentRecord, *, now: float, max_interval: float) -> str:
    """PASS only while the last good quote is younger than ``max_interval``.

    Keylime (cloud_verifier_common.process_get_status, pull mode) derives PASS from the
    operational state alone, so an agent whose polling had silently stopped kept showing PASS
    (the CVE-2022-3500 class).  Here a polling state is PASS only while fresh; a stale one is
    PENDING, and the failed states are FAIL whatever their age.
    """
    if agent.state in FAIL_STATES:
        return "FAIL"
    if agent.state in PASS_STATES and agent.last_successful_attestation > 0:
        age = now - agent.last_successful_attestation
        if age <= max_interval + TIMESTAMP_RESOLUTION_SECONDS:
            return "PASS"
    return "PENDING"


def status_view(
    agent: AgentRecord,
    *,
    has_runtime_policy: bool,
    has_mb_policy: bool,
    quote_interval: float,
    max_interval: float,
    now: float,
) -> dict[str, Any]:
    """``GET /agents/{id}`` results: the keys of Keylime's ``process_get_status``."""
    return {
        "operational_state": agent.operational_state,
        "v": agent.v,
        "ip": agent.ip or None,  # push agents have none (Keylime shows null)
        "port": agent.port or None,
        "tpm_policy": agent.tpm_policy,
        "meta_data": agent.meta_data,
        "has_mb_refstate": int(has_mb_policy),
        "has_runtime_policy": int(has_runtime_policy),
        "accept_tpm_hash_algs": list(agent.accept_tpm_hash_algs),
        "accept_tpm_encryption_algs": list(agent.accept_tpm_encryption_algs),
        "accept_tpm_signing_algs": list(agent.accept_tpm_signing_algs),
        "hash_alg": agent.hash_alg,
        "enc_alg": agent.enc_alg,
        "sign_alg": agent.sign_alg,
        "verifier_id": agent.verifier_id,
        "verifier_ip": agent.verifier_ip,
        "verifier_port": agent.verifier_port,
        "severity_level": agent.severity_level,
        "last_event_id": agent.last_event_id,
        "attestation_count": agent.attestation_count,
        "last_received_quote": agent.last_received_quote,
        "last_successful_attestation": agent.last_successful_attestation,
        "attestation_status": attestation_status(agent, now=now, max_interval=max_interval),
        "attestation_period": f"{int(quote_interval)}s",
        "maximum_attestation_interval": f"{int(max_interval)}s",
    }
