"""A request as the handlers see it, and strict readers for its query and JSON body.

Pure: no I/O.  edge_agent.server.handler fills :class:`Request`; handlers call
the readers, which raise :class:`~edge_agent.server.errors.BadRequest` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Optional

from edge_agent.server.errors import BadRequest

__all__ = [
    "MAX_QUERY_CHARS",
    "Request",
    "b64_field",
    "json_object",
    "optional_str",
    "parse_query",
    "required_str",
]

# The longest legitimate query is the verifier's integrity quote: a 20-character nonce, a mask,
# partial and ima_ml_entry, about 100 characters.  Anything far longer is refused unparsed.
MAX_QUERY_CHARS = 2048


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


def parse_query(raw: bytes) -> dict[str, str]:
    """``a=1&b=2`` as a dict; a repeated or undecodable parameter is a BadRequest."""
    if len(raw) > MAX_QUERY_CHARS:
        raise BadRequest(f"Query string longer than {MAX_QUERY_CHARS} characters")
    try:
        text = raw.decode("ascii")
        pairs = urllib.parse.parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, errors="strict"
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("Query string is not valid") from exc
    query: dict[str, str] = {}
    for name, value in pairs:
        if name in query:
            raise BadRequest(f"Query parameter {name!r} given more than once")
        query[name] = value
    return query


def json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object (not a list, string or number).

    JSON nested deeper than the interpreter's recursion limit (``[[[...]]]`` 10,000 deep
    fits in a small body) makes ``json.loads`` raise RecursionError; no Keylime body is
    nested more than a few levels, so that is bad input too.
    """
    try:
        value = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("Request body is not valid JSON") from exc
    except RecursionError as exc:
        raise BadRequest("Request body is JSON nested too deeply") from exc
    if not isinstance(value, dict):
        raise BadRequest("Request body is not a JSON object")
    return value


def required_str(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise BadRequest(f"Missing field {name!r}")
    if not isinstance(value, str):
        raise BadRequest(f"Field {name!r} is not a string")
    return value


def optional_str(obj: Mapping[str, Any], name: str) -> Optional[str]:
    if obj.get(name) is None:
        return None
    return required_str(obj, name)


def b64_field(text: str, name: str) -> bytes:
    """Standard base64 (with padding), strictly: other characters are an error."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise BadRequest(f"Invalid base64 encoding in {name}") from exc
