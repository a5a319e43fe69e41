"""Keylime REST API versions: parsing, the versions limelet serves, and negotiation.

Keylime prefixes every route with ``/v<major>.<minor>`` (keylime/keylime
``keylime/api_version.py``).  Real Keylime 7.14 speaks 2.1 through 2.6 on the agent API; a
peer that asks for a version we do not serve gets HTTP 400 with the status text
``API version not supported: vX`` (see :class:`~attest_protocol.errors.ApiVersionError`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from attest_protocol.errors import ApiVersionError, ParseError

_VERSION_RE = re.compile(r"(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})")
# A route prefix: "/v2.1/agents/..." -> "2.1".  Anchored so "/v2.1x" is not a version.
_PREFIX_RE = re.compile(r"^/v([0-9]+\.[0-9]+)(?=/|$)")


@dataclass(frozen=True, order=True)
class ApiVersion:
    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> ApiVersion:
        """Parse ``"2.1"`` (a leading ``v`` is accepted, as Keylime's tenant sends both)."""
        body = text[1:] if text.startswith("v") else text
        match = _VERSION_RE.fullmatch(body)
        if match is None:
            raise ParseError("api version", 0, f"not of the form MAJOR.MINOR: {text[:32]!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"


SUPPORTED_VERSIONS: tuple[ApiVersion, ...] = tuple(ApiVersion(2, m) for m in range(1, 7))
CURRENT_VERSION: ApiVersion = SUPPORTED_VERSIONS[-1]


def version_from_path(path: str, served: Iterable[ApiVersion] = SUPPORTED_VERSIONS) -> ApiVersion:
    """Return the version named by a route's ``/vX.Y`` prefix, or raise ApiVersionError."""
    match = _PREFIX_RE.match(path)
    if match is None:
        raise ApiVersionError(path.split("/")[1][1:] if path.count("/") > 1 else "")
    try:
        version = ApiVersion.parse(match.group(1))
    except ParseError as exc:
        raise ApiVersionError(match.group(1)) from exc
    if version not in set(served):
        raise ApiVersionError(str(version))
    return version


def negotiate(ours: Iterable[ApiVersion], theirs: Iterable[ApiVersion]) -> ApiVersion:
    """The highest version both sides serve; ApiVersionError when there is none."""
    common = set(ours) & set(theirs)
    if not common:
        raise ApiVersionError("none in common")
    return max(common)
