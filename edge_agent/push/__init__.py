"""Push mode (Keylime REST API 3.0): the agent attests to the verifier, which never calls it.

``transport``  HTTPS to ``verifier_url``, server certificate checked against the CA
``jsonapi``    checked reading and writing of JSON:API documents
``session``    the session opened by TPM proof of possession (TPM2_Certify), the bearer token
``evidence``   capabilities offered, evidence requested, evidence collected (pure)
``collect``    the quote, IMA entries from the requested offset and the boot log
``loop``       the cycle: session, POST capabilities, PATCH evidence, wait; retries
``service``    the task the daemon starts instead of the API server
``errors``     the exception tree (PushError and below)

docs/push-mode.md describes the exchange; ../shared/reference/push-model/PROTOCOL.md is the
wire reference.
"""

from __future__ import annotations

from edge_agent.push.errors import (
    BadVerifierResponse,
    EvidenceUnavailable,
    PushError,
    VerifierRefused,
    VerifierUnreachable,
)

__all__ = [
    "BadVerifierResponse",
    "EvidenceUnavailable",
    "PushError",
    "VerifierRefused",
    "VerifierUnreachable",
]
