"""Turning raw option values into typed ones, and the value checks of the options we use.

TOML gives typed values and environment variables give strings; like the ``config`` crate
rust-keylime uses, an integer or boolean option also accepts its text ("9002", "true"), and a
string option also accepts a number (``version = 2.4``).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from typing import Union

from attest_protocol.api_version import SUPPORTED_VERSIONS, ApiVersion
from attest_protocol.errors import ParseError
from edge_agent.config.errors import OptionValueError

__all__ = [
    "OptionValue",
    "check_host",
    "check_port",
    "coerce",
    "parse_api_versions",
    "shown",
    "split_list",
]

log = logging.getLogger(__name__)

OptionValue = Union[str, int, bool]

# The spellings the config crate accepts for booleans (case-insensitive).
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
# An unsigned decimal number as text.
_DECIMAL_RE = re.compile(r"\+?[0-9]{1,19}")
# A DNS hostname (RFC 1123 labels), the other form the *_ip options accept (hostname_parser.rs).
_HOSTNAME_RE = re.compile(
    r"(?=.{1,253}\.?$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
PORT_MIN = 1
PORT_MAX = 65535
API_VERSIONS_ALL = "default"
API_VERSIONS_LATEST = "latest"


def shown(value: object, secret: bool) -> str:
    """How a value may appear in a message: secrets never do."""
    return "<hidden>" if secret else repr(value)


def coerce(option: str, kind: str, raw: object, source: str, secret: bool) -> OptionValue:
    """``raw`` as the option's type (``kind`` is the annotation: "str", "int" or "bool")."""
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
            return raw.strip().lower() in _TRUE
        raise OptionValueError(option, shown(raw, secret), "not true or false", source)
    if kind == "int":
        if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 0:
            return raw
        if isinstance(raw, str) and _DECIMAL_RE.fullmatch(raw.strip()):
            return int(raw.strip())
        raise OptionValueError(option, shown(raw, secret), "not a whole number >= 0", source)
    if isinstance(raw, str):
        return raw
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return str(raw)
    raise OptionValueError(option, shown(raw, secret), "not a string", source)


def check_port(option: str, value: int, source: str) -> None:
    if not PORT_MIN <= value <= PORT_MAX:
        reason = f"not a TCP port ({PORT_MIN} to {PORT_MAX})"
        raise OptionValueError(option, repr(value), reason, source)


def check_host(option: str, value: str, source: str) -> None:
    """An IPv4/IPv6 address or a DNS name, as rust-keylime's ip and hostname parsers allow."""
    text = value.strip("[]")
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOSTNAME_RE.fullmatch(text):
            reason = "not an IP address or hostname"
            raise OptionValueError(option, repr(value), reason, source) from None


def parse_api_versions(text: str, *, warn: bool = True) -> tuple[ApiVersion, ...]:
    """``api_versions``: "default" (all we serve), "latest", or a list such as "2.1, 2.2".

    As in rust-keylime (config_translate_keywords), entries we do not serve are skipped with
    a warning (``warn=False`` when the loader has already warned), and a list with none left
    means all supported versions.  Sorted oldest first.
    """
    level = logging.WARNING if warn else logging.DEBUG
    keyword = text.strip().lower()
    if keyword == API_VERSIONS_ALL:
        return SUPPORTED_VERSIONS
    if keyword == API_VERSIONS_LATEST:
        return (SUPPORTED_VERSIONS[-1],)
    chosen: set[ApiVersion] = set()
    for item in split_list(text):
        try:
            version = ApiVersion.parse(item)
        except ParseError:
            version = None
        if version is None or version not in SUPPORTED_VERSIONS:
            log.log(level, "Skipping API version %r from option api_versions: not supported", item)
            continue
        chosen.add(version)
    if not chosen:
        log.log(level, "No supported version in option api_versions; enabling all supported")
        return SUPPORTED_VERSIONS
    return tuple(sorted(chosen))


def split_list(text: str) -> list[str]:
    """rust-keylime's list syntax: "a, b", "[a, b]", with optional quotes around items."""
    body = text.strip()
    if body.startswith("[") and body.endswith("]"):
        body = body[1:-1]
    items = (item.strip().strip("'\"").strip() for item in re.split(r"[,\s]+", body))
    return [item for item in items if item]
