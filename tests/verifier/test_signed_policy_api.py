"""Signed runtime policies over the verifier's REST API (and, on swtpm, in use).

With ``require_allow_list_signatures`` a policy is stored only when its DSSE signature
verifies under ``runtime_policy_key``; refusals carry Keylime's status and text.  A signed
policy is stored as sent and its payload is what the agent is judged by.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography.hazmat.primitives.asymmetric import ec

from tests.cv_ca import TlsFiles
from tests.unit.test_dsse import pem, sign
from tests.verifier.conftest import open_fake_agent
from tests.verifier.support import (
    API,
    RunningVerifier,
    add_body,
    b64,
    runtime_policy_json,
    verifier_config,
)
from tests.verifier.test_ima_swtpm import FILES, policy_for, write_ima_log
from tests.verifier.test_polling_swtpm import wait_status
from tools.swtpm import Swtpm
from verifier_lite.server import serve_verifier
from verifier_lite.signed_policy import BAD_SIGNATURE, NO_KEY
from verifier_lite.states import State

KEY = ec.generate_private_key(ec.SECP256R1())
OTHER = ec.generate_private_key(ec.SECP256R1())


def envelope(policy: str, key: ec.EllipticCurvePrivateKey = KEY) -> str:
    return json.dumps(sign(key, policy.encode()))


async def _verifier(
    nursery: trio.Nursery, tls: TlsFiles, tmp: Path, **over: Any
) -> RunningVerifier:
    config = verifier_config(tmp / "verifier", tls, **over)
    return RunningVerifier(config, await nursery.start(serve_verifier, config), tls)


async def _store(verifier: RunningVerifier, name: str, text: str, key: Any) -> tuple[int, Any]:
    body: dict[str, Any] = {"runtime_policy": b64(text.encode())}
    if key is not None:
        body["runtime_policy_key"] = key
    async with verifier.client() as client:
        response = await client.post(f"/{API}/allowlists/{name}", json=body)
    return response.status_code, response.json()


async def test_required_signatures_over_http(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path
) -> None:
    verifier = await _verifier(nursery, tls_files, tmp_path, require_allow_list_signatures=True)
    policy = runtime_policy_json({"/usr/bin/true": ["a" * 64]})
    key = b64(pem(KEY))
    signed = envelope(policy)
    assert (await _store(verifier, "good", signed, key))[0] == 201
    async with verifier.client() as client:
        shown = (await client.get(f"/{API}/allowlists/good")).json()["results"]
    assert json.loads(shown["runtime_policy"]) == json.loads(signed)  # stored as sent
    tampered = json.loads(signed)
    tampered["payload"] = base64.b64encode(runtime_policy_json().encode()).decode()
    refusals = [
        ("tampered", json.dumps(tampered), key, 401, BAD_SIGNATURE),
        ("wrongkey", signed, b64(pem(OTHER)), 401, BAD_SIGNATURE),
        ("unsigned", policy, key, 401, NO_KEY),
        ("badkey", signed, "%%%", 400, "runtime_policy_key"),
        ("notakey", envelope(policy, OTHER), b64(b"no key here"), 400, "runtime_policy_key"),
    ]
    for name, text, k, status, text_part in refusals:
        code, body = await _store(verifier, name, text, k)
        assert (code, body["code"]) == (status, status), name
        assert text_part in body["status"], name
    async with verifier.client() as client:
        names = (await client.get(f"/{API}/allowlists/")).json()["results"]
    assert names == {"runtimepolicy names": ["good"]}  # nothing refused was stored


async def test_remembered_key_serves_later_requests(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path
) -> None:
    verifier = await _verifier(nursery, tls_files, tmp_path, require_allow_list_signatures=True)
    signed = envelope(runtime_policy_json())
    assert (await _store(verifier, "first", signed, None))[1]["status"] == NO_KEY
    assert (await _store(verifier, "first", signed, b64(pem(KEY))))[0] == 201
    assert (await _store(verifier, "second", signed, None))[0] == 201


async def test_signed_policy_without_requirement_is_stored(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path
) -> None:
    verifier = await _verifier(nursery, tls_files, tmp_path)
    assert (await _store(verifier, "p", envelope(runtime_policy_json(), OTHER), None))[0] == 201
    bad = json.dumps({"payload": "%%", "payloadType": "x", "signatures": [{"sig": "00"}]})
    code, body = await _store(verifier, "q", bad, None)
    assert code == 400 and "runtime_policy" in body["status"]


@pytest.mark.swtpm
async def test_agent_is_judged_by_the_signed_payload(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path
) -> None:
    verifier = await _verifier(nursery, tls_files, tmp_path, require_allow_list_signatures=True)
    log = tmp_path / "ascii_runtime_measurements"
    await trio.to_thread.run_sync(write_ima_log, swtpm.tcti, log)
    async with open_fake_agent(nursery, swtpm, tls_files, tmp_path, ima_log=log) as agent:
        base: dict[str, Any] = {
            "ak_tpm": agent.ak_public,
            "mtls_cert": agent.cert_pem,
            "port": agent.port,
        }
        async with verifier.client() as client:
            unsigned = await client.post(f"/{API}/agents/nopolicy", json=add_body(**base))
            assert (unsigned.status_code, unsigned.json()["status"]) == (401, NO_KEY)
            body = add_body(
                **base,
                runtime_policy=b64(envelope(policy_for(FILES)).encode()),
                runtime_policy_key=b64(pem(KEY)),
            )
            assert (await client.post(f"/{API}/agents/signed1", json=body)).status_code == 200
        status = await wait_status(
            verifier,
            "signed1",
            lambda r: r["attestation_count"] >= 2 or r["operational_state"] == State.INVALID_QUOTE,
        )
    assert status["operational_state"] == State.GET_QUOTE, status["last_event_id"]
    assert status["has_runtime_policy"] == 1
