"""Errors of the push routes, rendered as JSON:API ``errors`` documents.

Keylime's v3 controllers answer ``{"errors": [{"status": ..., "code": ..., "detail": ...}]}``
(keylime/web/base/controller.py ``respond`` with errors); the push agent only reads the status
and ``Retry-After``.  PushError sits under VerifierError, the verifier's one exception tree.
"""

from __future__ import annotations

import json
from typing import Optional

from quart import Response

from verifier_lite.errors import VerifierError

JSON_API = "application/vnd.api+json"


class PushError(VerifierError):
    """A push request refused with ``http_status``; ``code`` is Keylime's short name."""

    def __init__(
        self, status: int, code: str, detail: str, *, retry_after: Optional[int] = None
    ) -> None:
        super().__init__(detail)
        self.http_status = status
        self.code = code
        self.detail = detail
        self.retry_after = retry_after


def bad_request(detail: str) -> PushError:
    return PushError(400, "invalid_request", detail)


def error_response(exc: PushError) -> Response:
    body = {"errors": [{"status": str(exc.http_status), "code": exc.code, "detail": exc.detail}]}
    response = Response(json.dumps(body), status=exc.http_status, content_type=JSON_API)
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response
