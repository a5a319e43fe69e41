"""The U/V/K exchange over the API: derive K, prove it, refuse a second U, bounded input."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import httpx
import pytest

from edge_agent.config import AgentConfig
from tests.agent_api.support import (
    ClientPki,
    KeyHalves,
    RunningAgent,
    encrypt_half,
    new_halves,
    running_agent,
)

pytestmark = pytest.mark.swtpm

V = "/v2.6"
CHALLENGE = "aB3dE5gH7jK9mN1pQ3sT"


def ukey_body(agent: RunningAgent, halves: KeyHalves) -> dict[str, str]:
    pem = agent.started.nk_public_pem.decode()
    tag = halves.auth_tag(agent.started.agent_id)
    return {"encrypted_key": encrypt_half(pem, halves.u), "auth_tag": tag}


def vkey_body(agent: RunningAgent, halves: KeyHalves) -> dict[str, str]:
    return {"encrypted_key": encrypt_half(agent.started.nk_public_pem.decode(), halves.v)}


async def verify(client: httpx.AsyncClient) -> httpx.Response:
    return await client.get(f"{V}/keys/verify?challenge={CHALLENGE}")


async def test_u_then_v_derives_k_and_verify_proves_it(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    halves = new_halves()
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        before = await verify(client)
        u = await client.post(f"{V}/keys/ukey", json=ukey_body(agent, halves))
        v = await client.post(f"{V}/keys/vkey", json=vkey_body(agent, halves))
        after = await verify(client)
    assert (before.status_code, before.json()["status"]) == (
        400,
        "Bootstrap key not yet available.",
    )
    assert (u.status_code, v.status_code) == (200, 200)
    assert u.json() == {"code": 200, "status": "Success", "results": {}}
    expected = hmac.new(halves.k, CHALLENGE.encode(), hashlib.sha384).hexdigest()
    assert after.json()["results"] == {"hmac": expected}


async def test_only_the_matching_pair_is_used(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    good, stray = new_halves(), new_halves()
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        await client.post(f"{V}/keys/vkey", json=vkey_body(agent, stray))
        await client.post(f"{V}/keys/ukey", json=ukey_body(agent, good))
        unmatched = await verify(client)  # U(good) x V(stray) fails the auth tag
        await client.post(f"{V}/keys/vkey", json=vkey_body(agent, good))
        matched = await verify(client)
    assert unmatched.status_code == 400
    expected = hmac.new(good.k, CHALLENGE.encode(), hashlib.sha384).hexdigest()
    assert matched.json()["results"]["hmac"] == expected


async def test_pairs_not_matching_the_tag_never_give_k(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    first, second = new_halves(), new_halves()
    crossed = KeyHalves(first.u, second.v)
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        await client.post(f"{V}/keys/ukey", json=ukey_body(agent, first))
        await client.post(f"{V}/keys/vkey", json=vkey_body(agent, crossed))
        response = await verify(client)
    assert (response.status_code, response.json()["status"]) == (
        400,
        "Bootstrap key not yet available.",
    )


async def test_second_ukey_after_k_is_refused_and_k_stays(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    """CVE-2021-43310: a later U/V pair must not swap K under a running payload."""
    first, second = new_halves(), new_halves()
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        await client.post(f"{V}/keys/ukey", json=ukey_body(agent, first))
        await client.post(f"{V}/keys/vkey", json=vkey_body(agent, first))
        second_u = await client.post(f"{V}/keys/ukey", json=ukey_body(agent, second))
        second_v = await client.post(f"{V}/keys/vkey", json=vkey_body(agent, second))
        response = await verify(client)
    assert second_u.status_code == 400
    assert "already derived" in second_u.json()["status"]
    assert second_v.status_code == 200  # the verifier re-sends V on every (re)load: ignored
    expected = hmac.new(first.k, CHALLENGE.encode(), hashlib.sha384).hexdigest()
    assert response.json()["results"]["hmac"] == expected


@pytest.mark.parametrize(
    "challenge",
    ["", "not-alnum", "a" * 257, "%C3%A9t%C3%A9"],
    ids=["empty", "dash", "long", "unicode"],
)
async def test_verify_refuses_bad_challenges(
    config: AgentConfig, tmp_path: Path, pki: ClientPki, challenge: str
) -> None:
    halves = new_halves()
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        await client.post(f"{V}/keys/ukey", json=ukey_body(agent, halves))
        await client.post(f"{V}/keys/vkey", json=vkey_body(agent, halves))
        response = await client.get(f"{V}/keys/verify?challenge={challenge}")
    assert response.status_code == 400
