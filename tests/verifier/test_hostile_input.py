"""Hostile values in an add-agent body: 400 naming the field, nothing stored, still serving.

Each of these answered 500 before (RecursionError, int("²"), a non-ASCII base64 string, a
lone surrogate that SQLite cannot encode).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.verifier.support import API, RunningVerifier
from tests.verifier.test_api import api, body

__all__ = ["api"]  # the fixture, imported for these tests

DEEP = 10_000
NESTED_TEXT = "[" * 5_000 + "]" * 5_000
LONE_SURROGATE = "\ud800"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"cloudagent_port": "\u00b2"}, "cloudagent_port"),
        ({"verifier_port": "\u00b2"}, "verifier_port"),
        ({"ak_tpm": "\u00e9AAA"}, "ak_tpm"),
        ({"v": "\u00e9AAA"}, "v"),
        ({"runtime_policy": "\u00e9AAA"}, "runtime_policy"),
        ({"tpm_policy": NESTED_TEXT}, "tpm_policy"),
        ({"metadata": NESTED_TEXT}, "metadata"),
        ({"mb_policy": NESTED_TEXT}, "mb_policy"),
        ({"metadata": '{"a": "\\ud800"}'}, "metadata"),
        ({"revocation_key": LONE_SURROGATE}, "revocation_key"),
        ({"mtls_cert": LONE_SURROGATE}, "mtls_cert"),
        ({"supported_version": LONE_SURROGATE}, "supported_version"),
    ],
    ids=lambda value: str(value)[:24],
)
async def test_hostile_field_is_400_naming_it(
    api: RunningVerifier, changes: dict[str, Any], field: str
) -> None:
    async with api.client() as client:
        # json.dumps escapes a surrogate as \ud800, as a hostile client would send it.
        raw = json.dumps(body(**changes)).encode("ascii")
        response = await client.post(f"/{API}/agents/h1", content=raw)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == 400
        assert f"'{field}'" in response.json()["status"]
        assert (await client.get(f"/{API}/agents/h1")).status_code == 404
        assert (await client.get("/version")).status_code == 200


ROUTES = [
    ("POST", f"/{API}/agents/h1"),
    ("POST", f"/{API}/allowlists/p1"),
    ("PUT", f"/{API}/allowlists/p1"),
    ("POST", "/v2.3/mbpolicies/m1"),
    ("PUT", "/v2.3/mbpolicies/m1"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"[" * DEEP + b"]" * DEEP, "body"),
        (b'{"x": ' + b"[" * DEEP + b"]" * DEEP + b"}", "body"),
        (b'{"x": ' + b"[" * 200 + b"]" * 200 + b"}", "x"),
        (b'{"x": "\\udc00"}', "x"),
    ],
    ids=["deep body", "deep field", "past the limit", "surrogate"],
)
async def test_hostile_json_on_every_json_route(
    api: RunningVerifier, method: str, path: str, raw: bytes, field: str
) -> None:
    async with api.client() as client:
        response = await client.request(method, path, content=raw)
        assert response.status_code == 400, response.text
        assert f"'{field}'" in response.json()["status"]
        listed = (await client.get(f"/{API}/agents/")).json()["results"]
        assert listed["uuids"] == []
        names = (await client.get(f"/{API}/allowlists/")).json()["results"]
        assert names["runtimepolicy names"] == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", f"/{API}/agents/"),
        ("PUT", f"/{API}/agents//stop"),
        ("PUT", f"/{API}/agents//reactivate"),
        ("DELETE", f"/{API}/agents//"),
        ("POST", f"/{API}/allowlists//"),
    ],
)
async def test_an_empty_agent_id_gets_the_envelope(
    api: RunningVerifier, method: str, path: str
) -> None:
    async with api.client() as client:
        response = await client.request(method, path, content=b"{}")
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == response.status_code
