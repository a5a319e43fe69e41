"""IMA through the runtime-policy engine: a log from tools.ima_emulator, PCR 10 on swtpm."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.cv_ca import TlsFiles
from tests.verifier.conftest import open_fake_agent
from tests.verifier.support import API, RunningVerifier, add_body, b64, runtime_policy_json
from tests.verifier.test_polling_swtpm import wait_status
from tools.ima_emulator import ImaEmulator
from tools.swtpm import Swtpm
from verifier_lite.states import State

pytestmark = pytest.mark.swtpm

FILES = {"/usr/bin/true": b"true", "/usr/bin/false": b"false", "/etc/hostname": b"edge-1\n"}


def write_ima_log(tcti: str, log: Path) -> None:
    emulator = ImaEmulator(tcti, log)
    try:
        for path, content in FILES.items():
            emulator.measure(path, content)
    finally:
        emulator.close()


def policy_for(files: dict[str, bytes]) -> str:
    digests = {path: [hashlib.sha256(content).hexdigest()] for path, content in files.items()}
    return runtime_policy_json(digests)


async def run(
    nursery: trio.Nursery, swtpm: Swtpm, tls: TlsFiles, verifier: RunningVerifier, tmp: Path,
    policy: str,
) -> dict[str, Any]:  # fmt: skip
    log = tmp / "ascii_runtime_measurements"
    # Before the agent connects: swtpm serves one client at a time.
    await trio.to_thread.run_sync(write_ima_log, swtpm.tcti, log)
    async with open_fake_agent(nursery, swtpm, tls, tmp, ima_log=log) as agent:
        body = add_body(
            ak_tpm=agent.ak_public, mtls_cert=agent.cert_pem, port=agent.port,
            runtime_policy=b64(policy.encode()),
        )  # fmt: skip
        async with verifier.client() as client:
            assert (await client.post(f"/{API}/agents/ima1", json=body)).status_code == 200
        done = await wait_status(
            verifier,
            "ima1",
            lambda r: r["attestation_count"] >= 3 or r["operational_state"] == State.INVALID_QUOTE,
        )
        done["requests"] = agent.state.integrity_requests
        return done


async def test_matching_policy_attests_incrementally(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, verifier: RunningVerifier,
    tmp_path: Path,
) -> None:  # fmt: skip
    status = await run(nursery, swtpm, tls_files, verifier, tmp_path, policy_for(FILES))
    assert status["operational_state"] == State.GET_QUOTE, status["last_event_id"]
    assert status["has_runtime_policy"] == 1
    requests = status["requests"]
    assert requests[0]["mask"] == hex((1 << 10) | (1 << 16))
    assert requests[0]["ima_ml_entry"] == "0"
    # After the whole log verified, the next quote asks only for what comes after it.
    assert requests[1]["ima_ml_entry"] == str(len(FILES))


async def test_file_outside_the_policy_is_invalid(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, verifier: RunningVerifier,
    tmp_path: Path,
) -> None:  # fmt: skip
    allowed = {k: v for k, v in FILES.items() if k != "/etc/hostname"}
    status = await run(nursery, swtpm, tls_files, verifier, tmp_path, policy_for(allowed))
    assert status["operational_state"] == State.INVALID_QUOTE
    # Keylime's full id (keylime/ima/ima.py _validate_ima_ng, sub-components validation.ima-ng).
    assert status["last_event_id"] == "ima.validation.ima-ng.not_in_allowlist"
