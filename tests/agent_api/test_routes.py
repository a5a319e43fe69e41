"""Every route of the agent API, in every version, over mTLS, from an agent on swtpm."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from attest_protocol.api_version import SUPPORTED_VERSIONS
from edge_agent.config import AgentConfig
from tests.agent_api.support import ClientPki, running_agent

pytestmark = pytest.mark.swtpm

ALL = [str(v) for v in SUPPORTED_VERSIONS]


async def test_version_lists_every_enabled_version(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        response = await client.get("/version")
    assert response.status_code == 200
    assert response.json() == {
        "code": 200,
        "status": "Success",
        "results": {"supported_version": "2.6", "supported_versions": ALL},
    }


async def test_pubkey_and_info_in_every_version(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        seen = []
        for version in ALL:
            pubkey = (await client.get(f"/v{version}/keys/pubkey")).json()
            assert pubkey["results"] == {"pubkey": agent.started.nk_public_pem.decode()}
            info = await client.get(f"/v{version}/agent/info")
            if version == "2.1":
                assert info.status_code == 400  # /agent arrived in 2.2 (api.rs)
                continue
            assert info.status_code == 200, info.text
            seen.append((version, info.json()["results"]["tpm_enc_alg"]))
            assert info.json()["results"]["agent_uuid"] == agent.started.agent_id
            assert info.json()["results"]["tpm_hash_alg"] == "sha256"
            assert info.json()["results"]["tpm_sign_alg"] == "rsassa"
    assert seen == [
        ("2.2", "rsa"),
        ("2.3", "rsa"),
        ("2.4", "rsa"),
        ("2.5", "rsa2048"),
        ("2.6", "rsa2048"),
    ]


async def test_unknown_version_is_400_with_keylimes_text(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    config = dataclasses.replace(config, api_versions="2.1, 2.2")
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        version = (await client.get("/version")).json()["results"]
        disabled = await client.get("/v2.6/keys/pubkey")
        unknown = await client.get("/v9.9/quotes/identity?nonce=abc")
        enabled = await client.get("/v2.2/keys/pubkey")
    assert version == {"supported_version": "2.2", "supported_versions": ["2.1", "2.2"]}
    assert (disabled.status_code, disabled.json()["status"]) == (
        400,
        "API version not supported: v2.6",
    )
    assert (unknown.status_code, unknown.json()["status"]) == (
        400,
        "API version not supported: v9.9",
    )
    assert enabled.status_code == 200


async def test_unknown_paths_and_methods(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        root = await client.get("/")
        unknown = await client.get("/v2.6/keys/nothing")
        wrong_method = await client.get("/v2.6/keys/ukey")
        delete = await client.delete("/v2.6/keys/pubkey")
    assert root.status_code == 400
    assert root.json()["status"].startswith("Not Implemented: Use /v2.1, ")
    assert unknown.status_code == 400
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert delete.status_code == 405
    for response in (root, unknown, wrong_method, delete):
        assert response.json()["results"] == {}
        assert response.json()["code"] == response.status_code


async def test_api_versions_latest_serves_only_the_newest(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    config = dataclasses.replace(config, api_versions="latest")
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        version = (await client.get("/version")).json()["results"]
        old = await client.get("/v2.5/keys/pubkey")
        new = await client.get("/v2.6/keys/pubkey")
    assert version == {"supported_version": "2.6", "supported_versions": ["2.6"]}
    assert (old.status_code, new.status_code) == (400, 200)
