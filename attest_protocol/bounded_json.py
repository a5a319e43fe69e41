"""JSON text from a client, decoded with a nesting limit and checked to be real Unicode.

Two things ``json.loads`` lets through that later break a service: nesting deep enough to
exhaust the interpreter's recursion limit (``RecursionError``, seen as a 500 on every JSON
route when sent 10,000 deep), and ``\\ud800``-style escapes that decode to lone surrogates,
which no UTF-8 store or response can encode.  :func:`loads_bounded` turns both into
``ValueError`` with a reason, so callers answer 400 naming the field.  Pure: no I/O.
"""

from __future__ import annotations

import json
from typing import Any, Union

# Keylime's bodies and policies nest a handful of levels; 64 is far beyond any of them and
# far below the interpreter's recursion limit.
MAX_JSON_DEPTH = 64


def check_value(value: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Depth and string check without recursion (the value may be as deep as the parser let it)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            check_text(item)
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        if isinstance(item, dict):
            for key, child in item.items():
                check_text(key)
                stack.append((child, depth + 1))
        else:
            stack.extend((child, depth + 1) for child in item)


def check_text(text: str) -> None:
    """ValueError when ``text`` holds a lone surrogate (it has no UTF-8 encoding)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (not valid Unicode)") from None


def loads_bounded(text: Union[str, bytes], max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that raises ValueError for bad JSON, deep nesting or lone surrogates."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError:
        raise ValueError("is not UTF-8") from None
    check_value(value, max_depth)
    return value


class JsonFieldError(ValueError):
    """``field`` of a request body (or ``"body"`` itself) is not acceptable: ``reason``."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def load_object(data: bytes) -> dict[str, Any]:
    """A request body that must be a JSON object; JsonFieldError names the top-level key
    whose value is too deep or holds a lone surrogate (``"body"`` for anything else)."""
    try:
        value = json.loads(data.decode("utf-8"))
    except RecursionError:
        raise JsonFieldError("body", f"is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError):
        raise JsonFieldError("body", "is not valid JSON") from None
    if not isinstance(value, dict):
        raise JsonFieldError("body", "is not a JSON object")
    for key, item in value.items():
        try:
            check_text(key)
        except ValueError as exc:
            raise JsonFieldError("body", f"a key {exc}") from None  # the key cannot be echoed
        try:
            check_value(item, MAX_JSON_DEPTH - 1)
        except ValueError as exc:
            raise JsonFieldError(key, str(exc)) from None
    return value
