"""One verifier_lite attests a pull agent (swtpm, polled) and a push agent at the same time.

Keylime's ``mode`` is global, so it needs two verifiers for this.  The pull agent is the
verifier tests' swtpm agent; the push agent is tests/verifier/push_client.py over HTTPS to
the real listener.  A push agent's failure sends the same revocation notification a pull
agent's does (Keylime sends none in push mode), and one that stops pushing turns FAIL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.cv_ca import TlsFiles
from tests.unit.test_quote import rsa_key
from tests.verifier.fake_agent import FakeAgent
from tests.verifier.push_client import PushClient, SoftTpm
from tests.verifier.support import API, RunningVerifier, add_body, verifier_config
from tests.verifier.test_polling_swtpm import add, wait_status
from verifier_lite.server import serve_verifier
from verifier_lite.states import State

pytestmark = pytest.mark.swtpm

PUSH = "9a1f7c2e-0000-4000-8000-00000000push"
PCR23_POLICY = json.dumps({"23": ["0" * 64], "mask": "0x800000"})
ROUNDS_DEADLINE_SECONDS = 60


def sender(client: httpx.AsyncClient) -> Any:
    async def send(
        method: str, path: str, body: Any, headers: Mapping[str, str]
    ) -> tuple[int, Any, Any]:
        response = await client.request(method, path, content=json.dumps(body), headers=headers)
        parsed = response.json() if response.content else None
        return response.status_code, parsed, response.headers.get("Location")

    return send


async def enrol_push(verifier: RunningVerifier, tpm: SoftTpm) -> None:
    body = add_body(ak_tpm=base64.b64decode(tpm.ak_b64), mtls_cert=None, port=9002)
    body.update(cloudagent_ip=None, cloudagent_port=None, tpm_policy=PCR23_POLICY)
    body["accept_tpm_signing_algs"] = ["rsassa"]
    async with verifier.client() as client:
        response = await client.post(f"/{API}/agents/{PUSH}", json=body)
    assert response.status_code == 200, response.text


async def push_until(push: PushClient, done: Any) -> dict[str, Any]:
    """Attest as the rust agent does (obeying Retry-After and seconds_to_next_attestation)
    until ``done(body)`` holds for a 202 answer."""
    with trio.fail_after(ROUNDS_DEADLINE_SECONDS):
        while True:
            if not push.token:
                assert await push.authenticate() == 200
            status, body = await push.attest()
            if status == 202 and done(body):
                return dict(body)
            if status in (401, 403):
                push.token = ""
            await trio.sleep(0.3 if status != 202 else body["meta"]["seconds_to_next_attestation"])


@pytest.fixture
async def shared(nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path) -> RunningVerifier:
    config = verifier_config(
        tmp_path / "verifier", tls_files, enabled_revocation_notifications="agent"
    )
    return RunningVerifier(config, await nursery.start(serve_verifier, config), tls_files)


def evaluation(body: Mapping[str, Any]) -> str:
    return str(body["data"]["attributes"]["evaluation"])


async def test_push_and_pull_agents_on_one_verifier(
    shared: RunningVerifier, fake_agent: FakeAgent
) -> None:
    await add(shared, fake_agent, "pull-1")
    tpm = SoftTpm(rsa_key())
    await enrol_push(shared, tpm)
    async with shared.client() as http:
        push = PushClient(sender(http), PUSH, tpm)
        passes = 0

        def third_pass(body: Mapping[str, Any]) -> bool:
            nonlocal passes
            passes += evaluation(body) == "pass"
            return passes >= 3

        await push_until(push, third_pass)
        pull = await wait_status(shared, "pull-1", lambda r: r["attestation_count"] >= 3)
        pushed = await wait_status(shared, PUSH, lambda r: r["attestation_count"] >= 3)
        assert pull["attestation_status"] == "PASS" and pushed["attestation_status"] == "PASS"
        assert pushed["ip"] is None and pushed["operational_state"] == State.GET_QUOTE
        assert not fake_agent.state.revocations

        tpm.extend(23, b"\x17" * 32)  # the push agent's PCR 23 changes
        await push_until(push, lambda body: evaluation(body) == "fail")
    failed = await wait_status(shared, PUSH, lambda r: r["attestation_status"] == "FAIL")
    assert failed["operational_state"] == State.INVALID_QUOTE
    assert failed["last_event_id"] == "pcr_validation.invalid_pcr_23"
    with trio.fail_after(10):
        while not fake_agent.state.revocations:  # noqa: ASYNC110 - the fake records, no event
            await trio.sleep(0.05)
    message = json.loads(fake_agent.state.revocations[0]["msg"])
    assert message["agent_id"] == PUSH and message["type"] == "revocation"
    pull = await wait_status(shared, "pull-1", lambda r: r["attestation_count"] >= 5)
    assert pull["attestation_status"] == "PASS"  # the pull agent is untouched


async def test_push_agent_that_stops_pushing_fails(
    shared: RunningVerifier, fake_agent: FakeAgent
) -> None:
    await add(shared, fake_agent, "pull-1")
    tpm = SoftTpm(rsa_key())
    await enrol_push(shared, tpm)
    async with shared.client() as http:
        push = PushClient(sender(http), PUSH, tpm)
        await push_until(push, lambda body: evaluation(body) == "pass")
    # Nothing more is pushed: 5 x quote_interval later the monitor fails the agent.
    gone = await wait_status(shared, PUSH, lambda r: r["operational_state"] == State.FAILED)
    assert gone["attestation_status"] == "FAIL"
    pull = await wait_status(shared, "pull-1", lambda r: r["attestation_count"] >= 3)
    assert pull["attestation_status"] == "PASS"
