"""Request checks both services make the same way: the agent id and the JSON body.

Framework-free: each service passes its own ``RequestError(field, reason)`` (a 400 that names
the field), so errors stay in that service's tree.
"""

from __future__ import annotations

import re
from typing import Any, Callable

from attest_protocol.bounded_json import JsonFieldError, load_object

# Keylime validators.valid_agent_id allows letters, digits, '-', '_', '.'; we also bound it.
# CVE-2022-23949: ids end up in logs, file names and SQL; ASCII letters, digits and ._- only,
# no newline or escape codes, no Unicode look-alikes.  fullmatch, so "$" cannot admit "\n".
AGENT_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")

RequestErrorFactory = Callable[[str, str], Exception]


def parse_json_object(data: bytes, request_error: RequestErrorFactory) -> dict[str, Any]:
    """Decode a JSON object body; any Content-Type (or none) is accepted, as Keylime does.
    Depth and Unicode are checked (attest_protocol/bounded_json.py), naming the field."""
    try:
        return load_object(data)
    except JsonFieldError as exc:
        raise request_error(exc.field, exc.reason) from None
