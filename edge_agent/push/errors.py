"""The push agent's exception tree.

::

    PushError                       base
    ├── VerifierUnreachable         no HTTP answer: connect, TLS (bad certificate), timeout
    ├── VerifierRefused             an answer with a status the step does not accept
    ├── BadVerifierResponse         a 2xx answer whose body is not what API 3.0 says
    └── EvidenceUnavailable         the TPM or a log could not give what was requested

VerifierUnreachable is retried with bounded backoff; the others end the attestation, and the
agent tries again after ``attestation_interval_seconds`` (rust-keylime
keylime-push-model-agent/src/state_machine.rs, the ``Failed`` attestation path).
"""

from __future__ import annotations

from typing import Optional

__all__ = [
    "BadVerifierResponse",
    "EvidenceUnavailable",
    "PushError",
    "VerifierRefused",
    "VerifierUnreachable",
]


class PushError(Exception):
    """A push-model exchange with the verifier did not succeed."""


class VerifierUnreachable(PushError):
    pass


class VerifierRefused(PushError):
    """The verifier answered ``status``; ``retry_after`` is its Retry-After in seconds."""

    def __init__(self, what: str, status: int, retry_after: Optional[float], detail: str) -> None:
        super().__init__(f"{what}: the verifier answered {status} {detail}".rstrip())
        self.status = status
        self.retry_after = retry_after


class BadVerifierResponse(PushError):
    pass


class EvidenceUnavailable(PushError):
    pass
