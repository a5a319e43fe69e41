"""API version parsing/negotiation and the {code,status,results} envelope."""

from __future__ import annotations

from typing import Any

import pytest

from attest_protocol.api_version import (
    CURRENT_VERSION,
    SUPPORTED_VERSIONS,
    ApiVersion,
    negotiate,
    version_from_path,
)
from attest_protocol.envelope import Envelope, failure, parse_envelope, success
from attest_protocol.errors import ApiVersionError, ParseError

VERSION_TEXTS = [("2.1", ApiVersion(2, 1)), ("v2.6", ApiVersion(2, 6)), ("1.0", ApiVersion(1, 0))]


@pytest.mark.parametrize(("text", "version"), VERSION_TEXTS)
def test_version_round_trip(text: str, version: ApiVersion) -> None:
    assert ApiVersion.parse(text) == version
    assert str(version) == text.lstrip("v")


@pytest.mark.parametrize("text", ["", "2", "2.", ".1", "2.1.0", "02.1", "2.01", "x2.1", "2.1\n"])
def test_version_garbage(text: str) -> None:
    with pytest.raises(ParseError):
        ApiVersion.parse(text)


def test_supported_range_matches_keylime_7_14() -> None:
    assert [str(v) for v in SUPPORTED_VERSIONS] == ["2.1", "2.2", "2.3", "2.4", "2.5", "2.6"]
    assert CURRENT_VERSION == ApiVersion(2, 6)


@pytest.mark.parametrize(
    ("path", "expected"),
    [("/v2.1/agents/abc", ApiVersion(2, 1)), ("/v2.6/quotes/integrity", ApiVersion(2, 6))],
)
def test_version_from_path(path: str, expected: ApiVersion) -> None:
    assert version_from_path(path) == expected


@pytest.mark.parametrize(
    ("path", "named"),
    [("/v1.0/agents/a", "1.0"), ("/v3.0/agents", "3.0"), ("/v2.1x/agents", "2.1x")],
)
def test_unsupported_version_message_is_keylimes(path: str, named: str) -> None:
    with pytest.raises(ApiVersionError) as info:
        version_from_path(path)
    assert str(info.value) == f"API version not supported: v{named}"
    assert info.value.http_status == 400


def test_negotiate_picks_highest_common() -> None:
    theirs = [ApiVersion(2, 0), ApiVersion(2, 1), ApiVersion(2, 2)]
    assert negotiate(SUPPORTED_VERSIONS, theirs) == ApiVersion(2, 2)
    with pytest.raises(ApiVersionError):
        negotiate(SUPPORTED_VERSIONS, [ApiVersion(1, 0)])


ENVELOPES: list[tuple[Envelope, dict[str, Any]]] = [
    (success({"a": 1}), {"code": 200, "status": "Success", "results": {"a": 1}}),
    (failure(404, "agent not found"), {"code": 404, "status": "agent not found", "results": {}}),
]


@pytest.mark.parametrize(("envelope", "wire"), ENVELOPES)
def test_envelope_round_trip(envelope: Envelope, wire: dict[str, Any]) -> None:
    assert envelope.to_json() == wire
    assert parse_envelope(wire) == envelope


def test_envelope_null_results_reads_as_empty() -> None:
    assert parse_envelope({"code": 400, "status": "bad", "results": None}).results == {}


@pytest.mark.parametrize(
    "wire",
    [
        [],
        {"code": "200", "status": "x", "results": {}},
        {"code": True, "status": "x", "results": {}},
        {"code": 99, "status": "x", "results": {}},
        {"code": 200, "status": 1, "results": {}},
        {"code": 200, "status": "x", "results": [1]},
    ],
)
def test_envelope_garbage(wire: object) -> None:
    with pytest.raises(ParseError):
        parse_envelope(wire)
