"""The ``{code, status, results}`` JSON envelope every Keylime REST response carries.

See the "General responses" section of the Keylime REST API (v2.1): ``code`` repeats the HTTP
status, ``status`` is a short text, ``results`` holds the data (an object; ``{}`` when none).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from attest_protocol.errors import ParseError

# Keylime answers "Success" on every 2xx; the text is part of what tenants print.
SUCCESS_STATUS = "Success"


@dataclass(frozen=True)
class Envelope:
    code: int
    status: str
    results: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "status": self.status, "results": dict(self.results)}

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300


def success(results: Mapping[str, Any] | None = None, code: int = 200) -> Envelope:
    return Envelope(code, SUCCESS_STATUS, results or {})


def failure(code: int, status: str) -> Envelope:
    return Envelope(code, status, {})


def parse_envelope(obj: object) -> Envelope:
    """Validate a decoded JSON body as an envelope.

    Real Keylime sometimes sends ``results: null`` (or omits it) on errors; that reads as ``{}``.
    """
    if not isinstance(obj, Mapping):
        raise ParseError("envelope", 0, "response body is not a JSON object")
    code = obj.get("code")
    status = obj.get("status")
    results = obj.get("results")
    if not isinstance(code, int) or isinstance(code, bool) or not 100 <= code <= 599:
        raise ParseError("envelope", 0, "field 'code' is not an HTTP status number")
    if not isinstance(status, str):
        raise ParseError("envelope", 0, "field 'status' is not a string")
    if results is None:
        results = {}
    if not isinstance(results, Mapping):
        raise ParseError("envelope", 0, "field 'results' is not an object")
    return Envelope(code, status, results)
