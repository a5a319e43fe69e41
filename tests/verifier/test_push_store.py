"""Push mode's documents in the store (SQLite and PostgreSQL), and a restart that keeps them.

An agent's attestation history (with the IMA offset and TPM clock the next attestation builds
on) and its active session (the token's salted hash) survive a verifier restart: after it the
push agent's token still works and its IMA log is asked for from where it stopped.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import trio

from tests.cv_ca import TlsFiles
from tests.unit.test_quote import rsa_key
from tests.verifier.push_client import PushClient, SoftTpm
from tests.verifier.support import (
    API,
    RunningVerifier,
    add_body,
    runtime_policy_json,
    verifier_config,
)
from tests.verifier.test_push_and_pull_swtpm import PCR23_POLICY, PUSH, sender
from tests.verifier.test_store_postgres import Opener
from tests.verifier.test_store_postgres import open_store_again as open_store_again
from verifier_lite.push.persist import HISTORY, SESSION
from verifier_lite.server import serve_verifier

FILES = {"/usr/bin/one": b"one", "/usr/bin/two": b"two"}


async def test_push_documents_survive_a_reopen(open_store_again: Opener) -> None:
    store = await open_store_again()
    try:
        await store.put_push_document(HISTORY, "a1", "a1", '{"v": 1}')
        await store.put_push_document(HISTORY, "a1", "a1", '{"v": 2}')  # replaced
        await store.put_push_document(SESSION, "s1", "a1", '{"s": 1}')
    finally:
        await store.aclose()
    store = await open_store_again()
    try:
        assert await store.get_push_document(HISTORY, "a1") == '{"v": 2}'
        assert await store.get_push_document(SESSION, "s1") == '{"s": 1}'
        assert await store.get_push_document(SESSION, "a1") is None  # kinds do not mix
        await store.delete_push_documents(SESSION, "s1")
        assert await store.get_push_document(SESSION, "s1") is None
    finally:
        await store.aclose()


async def _enrol(verifier: RunningVerifier, tpm: SoftTpm) -> None:
    digests = {p: [hashlib.sha256(c).hexdigest()] for p, c in FILES.items()}
    body = add_body(ak_tpm=base64.b64decode(tpm.ak_b64), mtls_cert=None, port=9002)
    body.update(cloudagent_ip=None, cloudagent_port=None, tpm_policy=PCR23_POLICY)
    body["runtime_policy"] = base64.b64encode(runtime_policy_json(digests).encode()).decode()
    async with verifier.client() as client:
        response = await client.post(f"/{API}/agents/{PUSH}", json=body)
    assert response.status_code == 200, response.text


async def _unconnected(*args: Any) -> tuple[int, Any, Any]:
    raise AssertionError("the client is connected per verifier run")


async def _attest(verifier: RunningVerifier, push: PushClient) -> dict[str, Any]:
    async with verifier.client() as http:
        push.send = sender(http)
        with trio.fail_after(30):
            while True:
                status, body = await push.attest()
                if status == 202:
                    return dict(body)
                assert status == 429, (status, body)  # premature: wait as told
                await trio.sleep(0.3)


async def test_restart_keeps_token_and_ima_offset(tls_files: TlsFiles, tmp_path: Path) -> None:
    config = verifier_config(tmp_path / "verifier", tls_files)
    tpm = SoftTpm(rsa_key())
    tpm.measure("/usr/bin/one", FILES["/usr/bin/one"])
    push = PushClient(_unconnected, PUSH, tpm)
    async with trio.open_nursery() as nursery:
        verifier = RunningVerifier(config, await nursery.start(serve_verifier, config), tls_files)
        await _enrol(verifier, tpm)
        async with verifier.client() as http:
            push.send = sender(http)
            assert await push.authenticate() == 200
        first = await _attest(verifier, push)
        assert first["data"]["attributes"]["evaluation"] == "pass"
        nursery.cancel_scope.cancel()
    tpm.measure("/usr/bin/two", FILES["/usr/bin/two"])
    async with trio.open_nursery() as nursery:
        verifier = RunningVerifier(config, await nursery.start(serve_verifier, config), tls_files)
        body = await _attest(verifier, push)  # the same token: no new session needed
        attrs = body["data"]["attributes"]
        assert attrs["evaluation"] == "pass", attrs
        assert attrs["evidence_requested"][1]["chosen_parameters"]["starting_offset"] == 1
        async with verifier.client() as client:
            listing = await client.get(f"/v3.0/agents/{PUSH}/attestations")
        assert [a["id"] for a in listing.json()["data"]] == ["0", "1"]
        nursery.cancel_scope.cancel()
