"""The REST server's errors: each carries the HTTP status and the status text it answers with.

::

    AgentApiError            http_status, status (the envelope's text; never key material)
    ├── BadRequest           400: malformed query, JSON, base64, or a value out of range
    ├── BodyTooLarge         413: a request body over MAX_BODY_BYTES
    ├── ServiceUnavailable   503: the TPM connection is being reopened; ask again later
    └── MethodNotAllowed     405: a known path with another method; ``allow`` lists the right one

Unknown paths answer 400 like rust-keylime's default services (BadRequest with its texts).
"""

from __future__ import annotations

__all__ = ["AgentApiError", "BadRequest", "BodyTooLarge", "MethodNotAllowed", "ServiceUnavailable"]


class AgentApiError(Exception):
    http_status = 500

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class BadRequest(AgentApiError):
    http_status = 400


class BodyTooLarge(AgentApiError):
    http_status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(f"Request body larger than {limit} bytes")
        self.limit = limit


class MethodNotAllowed(AgentApiError):
    http_status = 405

    def __init__(self, status: str, allow: tuple[str, ...]) -> None:
        super().__init__(status)
        self.allow = allow


class ServiceUnavailable(AgentApiError):
    http_status = 503
