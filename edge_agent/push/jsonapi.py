"""Reading JSON:API documents from the verifier: checked access, clear errors.

API 3.0 wraps every body as ``{"data": {"type", "id"?, "attributes"}}`` (Keylime
keylime/web/base/controller.py); anything else in a 2xx answer is a BadVerifierResponse.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from edge_agent.push.errors import BadVerifierResponse

__all__ = ["attributes", "b64", "b64decode", "document", "field", "resource"]


def resource(doc: Any) -> dict[str, Any]:
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, dict):
        raise BadVerifierResponse("the verifier's answer has no JSON:API data object")
    return data


def attributes(doc: Any) -> dict[str, Any]:
    attrs = resource(doc).get("attributes")
    if not isinstance(attrs, dict):
        raise BadVerifierResponse("the verifier's answer has no data.attributes object")
    return attrs


def field(obj: Any, name: str, kind: type | tuple[type, ...]) -> Any:
    value = obj.get(name) if isinstance(obj, dict) else None
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        raise BadVerifierResponse(f"the verifier's answer has no valid {name!r}")
    return value


def b64decode(text: str, name: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadVerifierResponse(f"{name!r} is not standard base64") from exc


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def document(kind: str, attrs: dict[str, Any], ident: str | None = None) -> dict[str, Any]:
    data: dict[str, Any] = {"type": kind}
    if ident is not None:
        data["id"] = ident
    data["attributes"] = attrs
    return {"data": data}
