"""The real Keylime 7.14.3 tenant enrols a swtpm agent with a measured-boot policy.

swtpm has no firmware, so the test plays one: every digest of a real Secure Boot VM's boot
log (tests/fixtures/eventlogs) is extended into swtpm's SHA-256 bank, and the fake agent
serves that log as its ``binary_bios_measurements``.  verifier_lite runs Keylime's
``example`` policy; the reference state is the one Keylime's ``keylime-policy`` made from the
log.  The tenant stores it (``-c addmbpolicy``) and enrols with ``--mb-policy-name``, or sends
it with ``-c add --mb_refstate``; a reference state the boot does not meet fails the agent.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio

from tests.cv_ca import TlsFiles
from tests.fixtures.keylime import KeylimeServices
from tests.interop import mb_cases
from tests.verifier.conftest import open_fake_agent
from tests.verifier.support import API, RunningVerifier
from tests.verifier.test_keylime_tenant import (
    AGENT_ID,
    ok,
    register,
    start_registrar,
    swtpm_cert_store,
    tenant_config,
    tenant_runner,
)
from tests.verifier.test_measured_boot_swtpm import SB_REFSTATE, extend_real_log, start_verifier
from tests.verifier.test_polling_swtpm import wait_status
from tools.swtpm import Swtpm
from verifier_lite.states import State

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]


def done(results: dict[str, object]) -> bool:
    count = results["attestation_count"]
    return results["operational_state"] == State.INVALID_QUOTE or (
        isinstance(count, int) and count >= 2
    )


async def enrol(
    nursery: trio.Nursery, swtpm: Swtpm, tls: TlsFiles, keylime: KeylimeServices, tmp: Path,
    refstate: dict[str, object], *, stored: bool,
) -> tuple[RunningVerifier, dict[str, object]]:  # fmt: skip
    """Measure the log into swtpm, start our services, enrol with the tenant; final status."""
    log = mb_cases.SB_LOG.read_bytes()
    await trio.to_thread.run_sync(extend_real_log, swtpm.tcti, log)
    verifier = await start_verifier(nursery, tls, tmp, "example")
    cert_store = swtpm_cert_store(swtpm, tmp / "tpm_cert_store")
    registrar = await start_registrar(nursery, tmp, verifier.tls, cert_store)
    state_file = tmp / "refstate.json"
    state_file.write_text(json.dumps(refstate))
    async with open_fake_agent(nursery, swtpm, verifier.tls, tmp, mb_log=log) as agent:
        await register(agent, registrar)
        conf = tenant_config(keylime, verifier, registrar, cert_store, tmp / "t.conf")
        tenant = tenant_runner(keylime, conf)
        if stored:
            ok(await tenant("-c", "addmbpolicy", "--mb-policy-name", "vm1",
                            "--mb-policy", str(state_file)))  # fmt: skip
            ok(await tenant("-c", "add", "-u", AGENT_ID, "--mb-policy-name", "vm1"))
        else:
            ok(await tenant("-c", "add", "-u", AGENT_ID, "--mb_refstate", str(state_file)))
        status = await wait_status(verifier, AGENT_ID, done)
    return verifier, status


@pytest.mark.parametrize("stored", [True, False], ids=["addmbpolicy", "mb_refstate"])
async def test_keylime_tenant_enrols_with_keylimes_reference_state(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, keylime_services: KeylimeServices,
    tmp_path: Path, stored: bool,
) -> None:  # fmt: skip
    refstate = json.loads(SB_REFSTATE.read_text())
    verifier, status = await enrol(
        nursery, swtpm, tls_files, keylime_services, tmp_path, refstate, stored=stored
    )
    assert status["operational_state"] == State.GET_QUOTE, status["last_event_id"]
    assert status["has_mb_refstate"] == 1
    mask = int(json.loads(str(status["tpm_policy"]))["mask"], 16)
    assert mask & 0xFBFF == 0xFBFF  # the tenant asked for MEASUREDBOOT_PCRS 0-9, 11-15
    if stored:
        async with verifier.client() as client:
            shown = (await client.get("/v2.3/mbpolicies/vm1")).json()["results"]
        assert shown["name"] == "vm1" and json.loads(shown["mb_policy"]) == refstate


async def test_a_reference_state_the_boot_does_not_meet_fails_the_agent(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, keylime_services: KeylimeServices,
    tmp_path: Path,
) -> None:  # fmt: skip
    refstate = json.loads(SB_REFSTATE.read_text())
    refstate["kernels"][0]["kernel_authcode_sha256"] = "0x" + "ab" * 32
    verifier, status = await enrol(
        nursery, swtpm, tls_files, keylime_services, tmp_path, refstate, stored=False
    )
    assert status["operational_state"] == State.INVALID_QUOTE
    assert status["last_event_id"] == "measured_boot.policy_example"
    async with verifier.client() as client:
        assert (await client.get(f"/{API}/agents/{AGENT_ID}")).status_code == 200
