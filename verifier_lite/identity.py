"""``GET /verify/identity``: does a quote come from this agent's AK and bind its NK key?

Keylime's VerifyIdentityHandler (cloud_verifier_common ``process_verify_identity_quote``):
the quote must verify under the agent's AK with the given nonce and hash algorithm, and PCR
16 must hold the agent's public key as last seen by the verifier.  The answer is 200 either
way: ``{"valid": 1}`` or ``{"valid": 0, "reason": "<event contexts>"}``.
"""

from __future__ import annotations

from typing import Any

from verifier_lite.checks import CheckInput, Evidence, check_evidence
from verifier_lite.records import AgentRecord


def verify_identity(agent: AgentRecord, quote: str, nonce: str, hash_alg: str) -> dict[str, Any]:
    check = CheckInput(
        ak_tpm_b64=agent.ak_tpm,
        nonce=nonce.encode("utf-8"),
        accept_hash_algs=agent.accept_tpm_hash_algs,
        # The identity quote carries no encryption or signing algorithm names to check.
        accept_enc_algs=("",),
        accept_sign_algs=("",),
        tpm_policy={},
        public_key_pem=agent.public_key or None,
        previous_clock=None,
        runtime_policy=None,
        ima_state=None,
        boottime=agent.boottime,
    )
    evidence = Evidence(quote, hash_alg, "", "", None, agent.boottime, None, 0, None)
    result = check_evidence(check, evidence)
    if result.ok:
        return {"valid": 1}
    return {"valid": 0, "reason": "; ".join(f.context for f in result.failures)}
