"""JSON nested far too deep, and lone surrogates, on every JSON route: 400, nothing changes."""

from __future__ import annotations

import json

import pytest

from tests.registrar.support import API, RunningRegistrar, SoftwareIdentity
from tests.registrar.test_bad_input import AGENT, _seed

DEEP = 10_000
DEEP_BODY = b"[" * DEEP + b"]" * DEEP
DEEP_IN_FIELD = b'{"ip": ' + b"[" * DEEP + b"]" * DEEP + b"}"
SURROGATE = b'{"ip": "\\ud800"}'


@pytest.mark.parametrize(
    ("raw", "field"),
    [(DEEP_BODY, "body"), (DEEP_IN_FIELD, "body"), (SURROGATE, "ip")],
    ids=["deep body", "deep field", "lone surrogate"],
)
async def test_hostile_json_is_400(
    registrar: RunningRegistrar, identity: SoftwareIdentity, raw: bytes, field: str
) -> None:
    before = await _seed(registrar, identity)
    async with registrar.agent_client() as agent:
        for method, path in (
            ("POST", f"/{API}/agents/{AGENT}"),
            ("PUT", f"/{API}/agents/{AGENT}/activate"),
            ("PUT", f"/{API}/agents/{AGENT}"),
        ):
            response = await agent.request(method, path, content=raw)
            assert response.status_code == 400, (method, path, response.text)
            assert f"'{field}'" in response.json()["status"]
        assert (await agent.get("/version")).status_code == 200
    assert registrar.stored(AGENT) == before


async def test_a_field_nested_within_the_parser_but_past_the_limit_is_named(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    body = identity.body()
    raw = (
        b'{"extra": ' + b"[" * 200 + b"]" * 200 + b", "
        + json.dumps(body).encode()[1:]
    )  # fmt: skip
    async with registrar.agent_client() as agent:
        response = await agent.post(f"/{API}/agents/{AGENT}", content=raw)
    assert response.status_code == 400
    assert "'extra'" in response.json()["status"]
    assert "nested deeper" in response.json()["status"]


@pytest.mark.parametrize("path", ["/agents//activate", "/agents//", "/agents/"])
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_an_empty_agent_id_gets_the_envelope(
    registrar: RunningRegistrar, method: str, path: str
) -> None:
    async with registrar.agent_client() as agent:
        response = await agent.request(method, f"/{API}{path}", content=b"{}")
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()["code"] == response.status_code
