"""The registrar's exception tree.

::

    AttestProtocolError (attest_protocol.errors)
    └── RegistrarError                  http_status says what the client gets
        ├── RequestError (400)          a field of the request is malformed; names the field
        ├── BodyTooLargeError (413)     the body exceeds MAX_BODY_BYTES
        ├── UntrustedIdentityError (400) EK certificate / EK / AK checks failed
        ├── IdentityChangedError (403)  re-registration with another EK, EK cert or AK
        ├── AgentNotFoundError (404)    no such agent, or not activated (GET)
        ├── ActivationError (400)       wrong auth_tag; the pending record is gone
        ├── AdminListenerError (403)    admin route reached without mTLS on the TLS listener
        └── ConfigError                 a bad option at start-up (never sent to a client)

Status texts follow Keylime 7.14.3 (keylime/web/registrar/agents_controller.py) where
tenants and agents print or match them.  No message carries the challenge or the expected
auth tag (CVE-2023-38201); agent ids appear only after they passed ``AGENT_ID_RE``.
"""

from __future__ import annotations

from attest_protocol.errors import AttestProtocolError


class RegistrarError(AttestProtocolError):
    """Base of everything the registrar raises on purpose."""

    http_status = 500


class RequestError(RegistrarError):
    """A request field is missing or malformed; ``field`` names it."""

    http_status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"Invalid field '{field}': {reason}")
        self.field = field
        self.reason = reason


class BodyTooLargeError(RegistrarError):
    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body exceeds the limit of {limit} bytes")
        self.limit = limit


class UntrustedIdentityError(RegistrarError):
    """The EK certificate, EK or AK do not pass the checks; ``field`` names the culprit."""

    http_status = 400

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"Could not register agent with invalid data: '{field}' {reason}")
        self.field = field
        self.reason = reason


class IdentityChangedError(RegistrarError):
    http_status = 403

    def __init__(self, fields: tuple[str, ...]) -> None:
        # Keylime's status text, so tooling that greps for it keeps working.
        super().__init__(
            "Agent re-registration with different TPM identity is forbidden for security reasons"
        )
        self.fields = fields


class AgentNotFoundError(RegistrarError):
    http_status = 404

    def __init__(self, agent_id: str, *, inactive: bool = False) -> None:
        what = "has not been activated" if inactive else "not found"
        super().__init__(f"Agent with ID '{agent_id}' {what}")
        self.agent_id = agent_id
        self.inactive = inactive


class ActivationError(RegistrarError):
    http_status = 400

    def __init__(self, agent_id: str, *, deleted: bool) -> None:
        # Unlike Keylime, neither the expected nor the received tag is echoed.
        outcome = (
            "The agent has been deleted from the database and will need to be restarted to "
            "reattempt registration"
            if deleted
            else "The active registration is unchanged"
        )
        super().__init__(
            f"Auth tag for agent '{agent_id}' does not match expected value. {outcome}"
        )
        self.agent_id = agent_id
        self.deleted = deleted


class StoreUnavailableError(RegistrarError):
    """The database cannot be written (read-only file, full disk, I/O error): try later.

    Its message is safe to show, unlike other 5xx details (app.py answers it as it is)."""

    http_status = 503

    def __init__(self) -> None:
        super().__init__(
            "Registrar database cannot be written now (read-only or full); try again later"
        )


class AdminListenerError(RegistrarError):
    http_status = 403

    def __init__(self) -> None:
        super().__init__("This action requires mutual TLS on the registrar's TLS port")


class ConfigError(RegistrarError):
    """A configuration problem found at start-up; ``key`` names the option."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"registrar config: {key}: {reason}")
        self.key = key
        self.reason = reason
