"""K unlocks the tenant's payload into the secure dir; revocations are verified, then acted on."""

from __future__ import annotations

import io
import json
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import rsa

from attest_protocol.bootstrap_keys import encrypt_payload
from edge_agent.config import AgentConfig
from tests.agent_api.support import ClientPki, KeyHalves, encrypt_half, new_halves, running_agent
from tests.agent_payload.keys import keylime_sign, make_cert

pytestmark = pytest.mark.swtpm

V = "/v2.6"
# Polling for the background payload task and the revocation action.
WAIT_SECONDS = 30.0
POLL_SECONDS = 0.1


@pytest.fixture
def secure_dir(config: AgentConfig) -> Iterator[Path]:
    """keylime_dir/secure; as root the agent mounts a tmpfs there, unmounted afterwards."""
    path = config.data_dir / "secure"
    yield path
    if os.path.ismount(path):
        subprocess.run(["umount", str(path)], check=True, timeout=30)


def notifier_key_and_cert() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(65537, 2048)
    return key, make_cert(key)


def sign(key: rsa.RSAPrivateKey, msg: str) -> str:
    return keylime_sign(key, msg.encode())


def payload_zip(marker: Path, revoked: Path, cert_pem: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("autorun.sh", f"#!/bin/sh\necho ran > {marker}\n")
        archive.writestr("RevocationNotifier-cert.crt", cert_pem)
        archive.writestr("action_list", "local_action_mark\n")
        archive.writestr("local_action_mark", f'#!/bin/sh\ncp "$1" {revoked}\n')
    return buffer.getvalue()


async def wait_for(path: Path) -> None:
    with trio.fail_after(WAIT_SECONDS):
        while True:
            if await trio.Path(path).exists():
                return
            await trio.sleep(POLL_SECONDS)


def bodies(
    pem: str, agent_id: str, halves: KeyHalves, payload: str
) -> tuple[dict[str, str], dict[str, str]]:
    ukey = {
        "encrypted_key": encrypt_half(pem, halves.u),
        "auth_tag": halves.auth_tag(agent_id),
        "payload": payload,
    }
    return ukey, {"encrypted_key": encrypt_half(pem, halves.v)}


async def test_payload_runs_and_revocation_actions_follow(
    config: AgentConfig, tmp_path: Path, pki: ClientPki, secure_dir: Path
) -> None:
    halves = new_halves()
    key, cert_pem = notifier_key_and_cert()
    marker, revoked = tmp_path / "autorun-ran", tmp_path / "revoked.json"
    plain = payload_zip(marker, revoked, cert_pem)
    msg = json.dumps({"type": "revocation", "agent_id": "other-agent", "event_time": "now"})
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        pem, agent_id = agent.started.nk_public_pem.decode(), agent.started.agent_id
        ukey, vkey = bodies(pem, agent_id, halves, encrypt_payload(halves.k, plain).decode())
        assert (await client.post(f"{V}/keys/ukey", json=ukey)).status_code == 200
        assert (await client.post(f"{V}/keys/vkey", json=vkey)).status_code == 200
        await wait_for(marker)
        forged = await client.post(
            f"{V}/notifications/revocation", json={"msg": msg, "signature": sign(key, msg + " ")}
        )
        signed = await client.post(
            f"{V}/notifications/revocation", json={"msg": msg, "signature": sign(key, msg)}
        )
        await wait_for(revoked)
    assert marker.read_text() == "ran\n"
    assert (secure_dir / "unzipped" / "decrypted_payload").read_bytes() == plain
    assert (secure_dir / "unzipped" / "derived_tci_key").read_bytes() == halves.k
    assert forged.status_code == 400
    assert signed.status_code == 200
    assert revoked.read_text() == msg


async def test_revocation_before_any_payload_is_ignored(
    config: AgentConfig, tmp_path: Path, pki: ClientPki, caplog: pytest.LogCaptureFixture
) -> None:
    key, _ = notifier_key_and_cert()
    msg = json.dumps({"type": "revocation", "agent_id": "x"})
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        response = await client.post(
            f"{V}/notifications/revocation", json={"msg": msg, "signature": sign(key, msg)}
        )
    assert response.status_code == 200
    assert "no revocation certificate yet" in caplog.text
