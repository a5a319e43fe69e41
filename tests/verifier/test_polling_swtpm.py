"""The polling engine against an honest fake agent on swtpm, over real mTLS on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import trio

from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import API, RunningVerifier, add_body
from verifier_lite.states import State

pytestmark = pytest.mark.swtpm

WAIT_SECONDS = 8
POLL_SECONDS = 0.05


async def wait_status(
    verifier: RunningVerifier, agent_id: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    async with verifier.client() as client:
        with trio.fail_after(WAIT_SECONDS):
            while True:
                response = await client.get(f"/{API}/agents/{agent_id}")
                results: dict[str, Any] = response.json()["results"]
                if response.status_code == 200 and done(results):
                    return results
                await trio.sleep(POLL_SECONDS)


async def add(verifier: RunningVerifier, agent: FakeAgent, agent_id: str, **extra: Any) -> None:
    body = add_body(ak_tpm=agent.ak_public, mtls_cert=agent.cert_pem, port=agent.port, **extra)
    async with verifier.client() as client:
        response = await client.post(f"/{API}/agents/{agent_id}", json=body)
    assert response.status_code == 200, response.text


async def test_full_then_partial_quotes(verifier: RunningVerifier, fake_agent: FakeAgent) -> None:
    await add(verifier, fake_agent, "a1")
    status = await wait_status(verifier, "a1", lambda r: r["attestation_count"] >= 3)
    assert status["operational_state"] == State.GET_QUOTE
    assert status["attestation_status"] == "PASS"
    assert status["hash_alg"] == fake_agent.hash_alg
    first, *later = fake_agent.state.integrity_requests
    assert first["partial"] == "0"
    assert later and all(r["partial"] == "1" for r in later)
    assert all(r["mask"] == "0x10000" for r in fake_agent.state.integrity_requests)
    assert len({r["nonce"] for r in fake_agent.state.integrity_requests}) == len(
        fake_agent.state.integrity_requests
    )


async def test_v_is_delivered_encrypted_for_the_bound_key(
    verifier: RunningVerifier, fake_agent: FakeAgent
) -> None:
    v = bytes(range(32))
    await add(verifier, fake_agent, "a2", v=v)
    await wait_status(verifier, "a2", lambda r: r["attestation_count"] >= 2)
    assert fake_agent.state.v == v


async def test_tpm_policy_mismatch_is_invalid_quote(
    verifier: RunningVerifier, fake_agent: FakeAgent
) -> None:
    policy = json.dumps({"16": ["00" * 32], "mask": "0x10000"})
    await add(verifier, fake_agent, "a3", tpm_policy=policy)
    status = await wait_status(
        verifier, "a3", lambda r: r["operational_state"] == State.INVALID_QUOTE
    )
    assert status["last_event_id"] == "pcr_validation.invalid_pcr_16"
    assert status["severity_level"] == 6
    assert status["attestation_status"] == "FAIL"


async def test_mask_asks_for_every_listed_pcr(
    verifier: RunningVerifier, fake_agent: FakeAgent
) -> None:
    # The tenant's mask names PCR 16 only; the policy also lists PCR 23, so we ask for it too.
    policy = json.dumps({"23": ["00" * 32], "mask": "0x10000"})
    async with verifier.client() as client:
        body = add_body(
            ak_tpm=fake_agent.ak_public, mtls_cert=fake_agent.cert_pem, port=fake_agent.port,
            tpm_policy=policy,
        )  # fmt: skip
        response = await client.post(f"/{API}/agents/a4", json=body)
    assert response.status_code == 200
    status = await wait_status(verifier, "a4", lambda r: r["attestation_count"] >= 1)
    assert status["operational_state"] == State.GET_QUOTE  # PCR 23 is all zeros on swtpm
    assert fake_agent.state.integrity_requests[0]["mask"] == hex((1 << 16) | (1 << 23))


async def test_outage_retries_then_fails_and_reactivate_recovers(
    verifier: RunningVerifier, fake_agent: FakeAgent
) -> None:
    await add(verifier, fake_agent, "a5")
    await wait_status(verifier, "a5", lambda r: r["attestation_count"] >= 1)
    fake_agent.state.outage = True
    status = await wait_status(verifier, "a5", lambda r: r["operational_state"] == State.FAILED)
    assert status["attestation_status"] == "FAIL"
    fake_agent.state.outage = False
    async with verifier.client() as client:
        response = await client.put(f"/{API}/agents/a5/reactivate")
    assert response.status_code == 200
    before = status["attestation_count"]
    await wait_status(
        verifier,
        "a5",
        lambda r: r["operational_state"] == State.GET_QUOTE and r["attestation_count"] > before,
    )


async def test_wrong_ak_is_quote_validation_failure(
    verifier: RunningVerifier, fake_agent: FakeAgent
) -> None:
    from tests.registrar.support import ak_public

    body = add_body(ak_tpm=ak_public(), mtls_cert=fake_agent.cert_pem, port=fake_agent.port)
    async with verifier.client() as client:
        response = await client.post(f"/{API}/agents/a6", json=body)
    assert response.status_code == 200
    status = await wait_status(
        verifier, "a6", lambda r: r["operational_state"] == State.INVALID_QUOTE
    )
    assert status["last_event_id"] == "qoute_validation.quote_validation"


async def test_verify_identity(verifier: RunningVerifier, fake_agent: FakeAgent) -> None:
    await add(verifier, fake_agent, "a7")
    await wait_status(verifier, "a7", lambda r: r["attestation_count"] >= 1)
    nonce = "identity-nonce-0123"
    quote = (await fake_agent.tpm.quote(nonce.encode(), 1 << 16, fake_agent.hash_alg)).encode()
    params = {"agent_uuid": "a7", "quote": quote, "hash_alg": fake_agent.hash_alg}
    async with verifier.client() as client:
        good = await client.get(f"/{API}/verify/identity", params={**params, "nonce": nonce})
        bad = await client.get(f"/{API}/verify/identity", params={**params, "nonce": "other"})
        unknown = await client.get(
            f"/{API}/verify/identity", params={**params, "nonce": nonce, "agent_uuid": "nobody"}
        )
    assert good.json()["results"] == {"valid": 1}
    assert bad.json()["results"]["valid"] == 0
    assert "Quote data validation" in bad.json()["results"]["reason"]
    assert unknown.status_code == 404
