"""Measured boot: the agent's UEFI event log replayed into swtpm's quoted PCRs 0-9."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import pytest
import trio

from attest_protocol.tpm2.constants import TpmAlg
from edge_agent.tpm import esys_ops
from tests.cv_ca import TlsFiles
from tests.unit.test_eventlog import BOOT, build_log
from tests.verifier.conftest import open_fake_agent
from tests.verifier.support import API, RunningVerifier, add_body
from tests.verifier.test_polling_swtpm import wait_status
from tools.swtpm import Swtpm
from verifier_lite.states import State

pytestmark = pytest.mark.swtpm


def measure_boot(tcti: str) -> dict[int, str]:
    """Extend swtpm's SHA-256 bank as the firmware of BOOT would; the expected PCR values."""
    esys, _vendor = esys_ops.open_esapi(tcti)
    pcrs: dict[int, bytes] = {}
    try:
        for pcr, _type, data in BOOT:
            digest = hashlib.sha256(data).digest()
            esys_ops.pcr_extend(esys, pcr, int(TpmAlg.SHA256), digest)
            pcrs[pcr] = hashlib.sha256(pcrs.get(pcr, bytes(32)) + digest).digest()
    finally:
        esys.close()
    return {pcr: value.hex() for pcr, value in pcrs.items()}


async def attest(
    nursery: trio.Nursery, swtpm: Swtpm, tls: TlsFiles, verifier: RunningVerifier, tmp: Path,
    mb_policy: Optional[str], log: bytes,
) -> dict[str, Any]:  # fmt: skip
    async with open_fake_agent(nursery, swtpm, tls, tmp, mb_log=log) as agent:
        body = add_body(
            ak_tpm=agent.ak_public, mtls_cert=agent.cert_pem, port=agent.port, mb_policy=mb_policy
        )
        async with verifier.client() as client:
            assert (await client.post(f"/{API}/agents/mb1", json=body)).status_code == 200
        status = await wait_status(
            verifier,
            "mb1",
            lambda r: r["attestation_count"] >= 2 or r["operational_state"] == State.INVALID_QUOTE,
        )
        status["masks"] = {r["mask"] for r in agent.state.integrity_requests}
        return status


async def test_reference_state_passes_when_the_log_replays_to_the_quote(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, verifier: RunningVerifier,
    tmp_path: Path,
) -> None:  # fmt: skip
    expected = await trio.to_thread.run_sync(measure_boot, swtpm.tcti)
    policy = json.dumps({"pcrs": {"7": [expected[7]], "4": [expected[4]]}})
    status = await attest(
        nursery, swtpm, tls_files, verifier, tmp_path, policy, build_log(locality=False)
    )
    assert status["operational_state"] == State.GET_QUOTE, status["last_event_id"]
    assert status["has_mb_refstate"] == 1
    assert status["masks"] == {hex(0x3FF | (1 << 16))}


@pytest.mark.parametrize(
    ("policy", "event_id"),
    [
        (json.dumps({"pcrs": {"7": ["00" * 32]}}), "measured_boot.policy_pcr_7"),
        (json.dumps({"reject_all": True}), "measured_boot.reject_all"),
    ],
)
async def test_policy_failures(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, verifier: RunningVerifier,
    tmp_path: Path, policy: str, event_id: str,
) -> None:  # fmt: skip
    await trio.to_thread.run_sync(measure_boot, swtpm.tcti)
    status = await attest(
        nursery, swtpm, tls_files, verifier, tmp_path, policy, build_log(locality=False)
    )
    assert status["operational_state"] == State.INVALID_QUOTE
    assert status["last_event_id"] == event_id


async def test_a_log_the_tpm_did_not_measure_is_refused(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, verifier: RunningVerifier,
    tmp_path: Path,
) -> None:  # fmt: skip
    await trio.to_thread.run_sync(measure_boot, swtpm.tcti)
    # The StartupLocality event makes the log claim PCR 0 started at 3: PCR 0 cannot match.
    status = await attest(
        nursery, swtpm, tls_files, verifier, tmp_path, '{"pcrs": {}}', build_log(locality=True)
    )
    assert status["operational_state"] == State.INVALID_QUOTE
    assert status["last_event_id"] == "measured_boot.invalid_pcr_0"
