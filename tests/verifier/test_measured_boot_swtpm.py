"""Measured boot on swtpm: the agent's UEFI event log replayed into the quoted PCRs, judged by
the verifier's ``measured_boot_policy_name`` (limelet-pcrs, reject-all, and Keylime's example
with a real firmware log whose digests are extended into swtpm as its firmware would)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

import pytest
import trio

from attest_protocol.eventlog import EventType
from attest_protocol.tpm2.constants import TpmAlg
from edge_agent.tpm import esys_ops
from tests.cv_ca import TlsFiles
from tests.interop import mb_cases
from tests.unit.test_eventlog import BOOT, build_log
from tests.verifier.conftest import open_fake_agent
from tests.verifier.support import API, RunningVerifier, add_body, verifier_config
from tests.verifier.test_polling_swtpm import wait_status
from tools.swtpm import Swtpm
from verifier_lite.server import serve_verifier
from verifier_lite.states import State

pytestmark = pytest.mark.swtpm

# Made from mb_cases.SB_LOG by Keylime 7.14.3's `keylime-policy create measured-boot`
# (tests/fixtures/eventlogs/PROVENANCE).
SB_REFSTATE = mb_cases.FIXTURES / "keylime-secureboot_reference_state.json"


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


# The mask Keylime's tenant asks for with a measured-boot policy: MEASUREDBOOT_PCRS (0-9,
# 11-15) and the data PCR 16.
MB_MASK = hex(0x3FF | (0x1F << 11) | (1 << 16))


async def start_verifier(
    nursery: trio.Nursery, tls: TlsFiles, tmp: Path, policy_name: str
) -> RunningVerifier:
    config = verifier_config(tmp / "verifier", tls, measured_boot_policy_name=policy_name)
    bound = await nursery.start(serve_verifier, config)
    return RunningVerifier(config, bound, tls)


def extend_real_log(tcti: str, log: bytes) -> None:
    """Extend swtpm's SHA-256 bank with every measured digest of a real firmware log."""
    esys, _vendor = esys_ops.open_esapi(tcti)
    try:
        for ev in mb_cases.events_of(log)[1:]:
            if ev.event_type != EventType.EV_NO_ACTION:
                digest = ev.digests[int(TpmAlg.SHA256)]
                esys_ops.pcr_extend(esys, ev.pcr, int(TpmAlg.SHA256), digest)
    finally:
        esys.close()


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
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path
) -> None:
    verifier = await start_verifier(nursery, tls_files, tmp_path, "limelet-pcrs")
    expected = await trio.to_thread.run_sync(measure_boot, swtpm.tcti)
    policy = json.dumps({"pcrs": {"7": [expected[7]], "4": [expected[4]]}})
    status = await attest(
        nursery, swtpm, tls_files, verifier, tmp_path, policy, build_log(locality=False)
    )
    assert status["operational_state"] == State.GET_QUOTE, status["last_event_id"]
    assert status["has_mb_refstate"] == 1
    assert status["masks"] == {MB_MASK}


@pytest.mark.parametrize(
    ("policy_name", "policy", "event_id"),
    [
        ("limelet-pcrs", json.dumps({"pcrs": {"7": ["00" * 32]}}), "policy_limelet-pcrs"),
        ("limelet-pcrs", json.dumps({"reject_all": True}), "policy_limelet-pcrs"),
        ("reject-all", json.dumps({"any": "non-empty state"}), "policy_reject-all"),
    ],
)
async def test_policy_failures(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path,
    policy_name: str, policy: str, event_id: str,
) -> None:  # fmt: skip
    verifier = await start_verifier(nursery, tls_files, tmp_path, policy_name)
    await trio.to_thread.run_sync(measure_boot, swtpm.tcti)
    status = await attest(
        nursery, swtpm, tls_files, verifier, tmp_path, policy, build_log(locality=False)
    )
    assert status["operational_state"] == State.INVALID_QUOTE
    assert status["last_event_id"] == f"measured_boot.{event_id}"


async def test_a_log_the_tpm_did_not_measure_is_refused(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path
) -> None:
    verifier = await start_verifier(nursery, tls_files, tmp_path, "limelet-pcrs")
    await trio.to_thread.run_sync(measure_boot, swtpm.tcti)
    # The StartupLocality event makes the log claim PCR 0 started at 3: PCR 0 cannot match.
    status = await attest(
        nursery, swtpm, tls_files, verifier, tmp_path, '{"pcrs": {}}', build_log(locality=True)
    )
    assert status["operational_state"] == State.INVALID_QUOTE
    assert status["last_event_id"] == "measured_boot.invalid_pcr_0"


@pytest.mark.parametrize(("state_edit", "event_id"), [("none", None), ("dbx", "policy_example")])
async def test_example_policy_with_a_real_log_and_keylimes_reference_state(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path,
    state_edit: str, event_id: Optional[str],
) -> None:  # fmt: skip
    """The Secure Boot VM's log, measured into swtpm; its reference state as Keylime's
    keylime-policy made it (the upstream test's fixture), intact or with a dbx entry added."""
    log = mb_cases.SB_LOG.read_bytes()
    await trio.to_thread.run_sync(extend_real_log, swtpm.tcti, log)
    refstate = json.loads(SB_REFSTATE.read_text())
    if state_edit == "dbx":
        owner = refstate["dbx"][0]["SignatureOwner"]
        refstate["dbx"].append({"SignatureOwner": owner, "SignatureData": "0x" + "cd" * 32})
    verifier = await start_verifier(nursery, tls_files, tmp_path, "example")
    status = await attest(nursery, swtpm, tls_files, verifier, tmp_path, json.dumps(refstate), log)
    if event_id is None:
        assert status["operational_state"] == State.GET_QUOTE, status["last_event_id"]
        assert status["attestation_count"] >= 2
    else:
        assert status["operational_state"] == State.INVALID_QUOTE
        assert status["last_event_id"] == f"measured_boot.{event_id}"
