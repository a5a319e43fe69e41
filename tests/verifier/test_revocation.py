"""Revocation notifications: Keylime's signed message, sent to the other agents."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.cv_ca import TlsFiles
from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import API, RunningVerifier, add_body, verifier_config
from tests.verifier.test_polling_swtpm import wait_status
from tests.verifier.test_store import record
from verifier_lite.failures import Component, event
from verifier_lite.revocation import revocation_message
from verifier_lite.server import serve_verifier
from verifier_lite.states import State

KEY = rsa.generate_private_key(65537, 2048)
KEY_PEM = KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode("ascii")
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.MAX_LENGTH)


def verify(body: dict[str, str]) -> dict[str, object]:
    """Keylime's crypto.rsa_verify, as the agent checks it; raises InvalidSignature."""
    signature = base64.b64decode(body["signature"], validate=True)
    KEY.public_key().verify(signature, body["msg"].encode("utf-8"), PSS, hashes.SHA256())
    content: dict[str, object] = json.loads(body["msg"])
    return content


def test_message_is_keylimes_prepare_error() -> None:
    failure = event(Component.PCR_VALIDATION, "invalid_pcr_16", {"got": "a"}, True)
    body = revocation_message(record(revocation_key=KEY_PEM), "revocation", failure, "now")
    assert set(body) == {"msg", "signature"}
    assert verify(body) == {
        "type": "revocation", "ip": "127.0.0.1", "agent_id": "a1", "port": 9002,
        "tpm_policy": '{"mask": "0x10000"}', "meta_data": "{}", "event_time": "now",
        "event_id": "pcr_validation.invalid_pcr_16", "severity_label": "emergency",
        "context": '{"got": "a"}',
    }  # fmt: skip
    unsigned = revocation_message(record(), "comm_error", None, "now")
    assert unsigned["signature"] == ""


@pytest.mark.swtpm
async def test_invalid_quote_notifies_the_other_agents(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path, fake_agent: FakeAgent
) -> None:
    config = verifier_config(
        tmp_path / "verifier", tls_files, enabled_revocation_notifications="agent"
    )
    verifier = RunningVerifier(config, await nursery.start(serve_verifier, config), tls_files)
    common = {
        "ak_tpm": fake_agent.ak_public,
        "mtls_cert": fake_agent.cert_pem,
        "port": fake_agent.port,
    }
    good = add_body(**common)  # type: ignore[arg-type]
    bad = add_body(
        **common,  # type: ignore[arg-type]
        tpm_policy=json.dumps({"16": ["00" * 32]}),
        revocation_key=KEY_PEM,
    )
    async with verifier.client() as client:
        assert (await client.post(f"/{API}/agents/good", json=good)).status_code == 200
        await wait_status(verifier, "good", lambda r: r["attestation_count"] >= 1)
        assert (await client.post(f"/{API}/agents/bad", json=bad)).status_code == 200
    await wait_status(verifier, "bad", lambda r: r["operational_state"] == State.INVALID_QUOTE)
    with trio.fail_after(10):
        while not fake_agent.state.revocations:  # noqa: ASYNC110 - the fake records, no event
            await trio.sleep(0.05)
    assert len(fake_agent.state.revocations) == 1  # "good" only, not the failed agent itself
    content = verify(fake_agent.state.revocations[0])
    assert content["type"] == "revocation"
    assert content["agent_id"] == "bad"
    assert content["event_id"] == "pcr_validation.invalid_pcr_16"
