"""The verifier's exception tree.

::

    AttestProtocolError (attest_protocol.errors)
    └── VerifierError                   http_status says what the client gets
        ├── RequestError (400)          a field of the request is malformed; names the field
        ├── BodyTooLargeError (413)     the body exceeds max_body_bytes
        ├── AgentNotFoundError (404)    no such agent on this verifier
        ├── PolicyNotFoundError (404)   no runtime or measured-boot policy of that name
        ├── ConflictError (409)         an agent or policy of that name already exists
        ├── AgentContactError           the agent could not be reached or answered 5xx
        │                               (retried by the polling engine, never sent to a client)
        ├── AgentProtocolError          the agent answered something that is not Keylime's API
        └── ConfigError                 a bad option at start-up (never sent to a client)

Status texts follow Keylime 7.14.3 (keylime/cloud_verifier_tornado.py) where tenants print or
match them.  Messages never echo key material or the V key (CVE-2023-38201).
"""

from __future__ import annotations

from attest_protocol.errors import AttestProtocolError


class VerifierError(AttestProtocolError):
    """Base of everything the verifier raises on purpose."""

    http_status = 500


class RequestError(VerifierError):
    """A request field is missing or malformed; ``field`` names it."""

    http_status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"Invalid field '{field}': {reason}")
        self.field = field
        self.reason = reason


class BodyTooLargeError(VerifierError):
    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body exceeds the limit of {limit} bytes")
        self.limit = limit


class AgentNotFoundError(VerifierError):
    http_status = 404

    def __init__(self, agent_id: str) -> None:
        # Keylime's text ("agent id not found"); the tenant matches on the 404 only.
        super().__init__("agent id not found")
        self.agent_id = agent_id


class PolicyNotFoundError(VerifierError):
    http_status = 404

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"{kind} {name} not found")
        self.kind = kind
        self.name = name


class ConflictError(VerifierError):
    http_status = 409

    def __init__(self, message: str) -> None:
        super().__init__(message)


class AgentContactError(VerifierError):
    """A timeout, a refused connection or a 5xx: worth a retry."""

    def __init__(self, agent_id: str, reason: str) -> None:
        super().__init__(f"agent {agent_id}: {reason}")
        self.agent_id = agent_id
        self.reason = reason


class AgentProtocolError(VerifierError):
    """A 4xx or a body that is not the Keylime envelope: retrying will not help."""

    def __init__(self, agent_id: str, reason: str) -> None:
        super().__init__(f"agent {agent_id}: {reason}")
        self.agent_id = agent_id
        self.reason = reason


class ConfigError(VerifierError):
    """A configuration problem found at start-up; ``key`` names the option."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"verifier config: {key}: {reason}")
        self.key = key
        self.reason = reason
