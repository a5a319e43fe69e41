"""Quotes from the server verify with the AK, and PCR 16 binds the NK public key they carry."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest

from attest_protocol.keylime_facts import DATA_PCR
from attest_protocol.quote import KeylimeQuote, verify_quote
from attest_protocol.tpm2.public import parse_tpm2b_public
from edge_agent.config import AgentConfig
from tests.agent_api.support import ClientPki, RunningAgent, running_agent

pytestmark = pytest.mark.swtpm

NONCE = "Xq7rT2mZp9LkV4sB8nWc"


def pcr16_for(pubkey_pem: bytes) -> bytes:
    """extend(0, H(PEM)) in the sha256 bank."""
    return hashlib.sha256(bytes(32) + hashlib.sha256(pubkey_pem).digest()).digest()


def verified_pcrs(agent: RunningAgent, results: dict[str, Any], nonce: str) -> dict[int, bytes]:
    quote = KeylimeQuote.parse(results["quote"])
    verified = verify_quote(quote, parse_tpm2b_public(agent.ak_public), nonce.encode())
    return verified.pcrs


async def test_integrity_quote_verifies_and_binds_the_nk(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        full = await client.get(f"/v2.6/quotes/integrity?nonce={NONCE}&mask=0x400801&partial=0")
        partial = await client.get(f"/v2.1/quotes/integrity?nonce={NONCE}&mask=0x1&partial=1")
    assert full.status_code == 200, full.text
    results = full.json()["results"]
    pem = agent.started.nk_public_pem
    assert results["pubkey"] == pem.decode()
    assert (results["hash_alg"], results["enc_alg"], results["sign_alg"]) == (
        "sha256",
        "rsa2048",
        "rsassa",
    )
    assert isinstance(results["boottime"], int) and results["boottime"] > 0
    pcrs = verified_pcrs(agent, results, NONCE)
    # The mask's PCRs 0, 11 and 22, plus PCR 16 always (rust-keylime build_pcr_list).
    assert sorted(pcrs) == [0, 11, DATA_PCR, 22]
    assert pcrs[DATA_PCR] == pcr16_for(pem)
    assert "ima_measurement_list" not in results  # no IMA log on this machine's config

    assert partial.status_code == 200, partial.text
    partial_results = partial.json()["results"]
    assert "pubkey" not in partial_results
    assert partial_results["enc_alg"] == "rsa"  # the name before API 2.5
    assert sorted(verified_pcrs(agent, partial_results, NONCE)) == [0, DATA_PCR]


async def test_identity_quote_carries_the_pubkey(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        response = await client.get(f"/v2.2/quotes/identity?nonce={NONCE}")
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results["pubkey"] == agent.started.nk_public_pem.decode()
    assert results["enc_alg"] == "rsa"
    pcrs = verified_pcrs(agent, results, NONCE)
    assert pcrs == {DATA_PCR: pcr16_for(agent.started.nk_public_pem)}


async def test_ima_and_boot_logs_follow_the_mask(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    ima_log = tmp_path / "ima.log"
    lines = [f"10 {'ab' * 20} ima-ng sha256:{'cd' * 32} /file{i}\n" for i in range(3)]
    ima_log.write_text("".join(lines))
    boot_log = tmp_path / "boot.bin"
    boot_log.write_bytes(b"\x00\x01boot log bytes")
    config = dataclasses.replace(
        config, ima_ml_path=str(ima_log), measuredboot_ml_path=str(boot_log)
    )
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        base = f"/v2.6/quotes/integrity?nonce={NONCE}&partial=1"
        with_logs = await client.get(f"{base}&mask=0x401&ima_ml_entry=1")
        without = await client.get(f"{base}&mask=0x2")
    results = with_logs.json()["results"]
    assert results["ima_measurement_list"] == "".join(lines[1:])
    assert results["ima_measurement_list_entry"] == 1
    assert results["mb_measurement_list"] == "AAFib290IGxvZyBieXRlcw=="
    assert not {"ima_measurement_list", "mb_measurement_list"} & set(without.json()["results"])
