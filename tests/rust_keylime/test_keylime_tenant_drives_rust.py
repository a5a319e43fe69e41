"""rust-keylime 0.2.9 under limelet-verifier and limelet-registrar, driven by ``keylime_tenant``.

The real Keylime 7.14.3 tenant adds the real rust agent with a payload and ``--verify``, reads
``cvstatus``, sees a PCR change as Invalid Quote, then deletes the agent from the verifier and
the registrar: the operator's whole cycle with the agent most fleets run.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
import trio

from tests.fixtures.keylime import KeylimeServices
from tests.interop.agent_support import HCRTM_PCR, hcrtm_tamper
from tests.rust_keylime.support import require_rust_agent, running_rust_agent, rust_conf
from tests.verifier.support import API, LOOPBACK, RunningVerifier
from tests.verifier.test_keylime_tenant import (
    in_state,
    ok,
    start_registrar,
    swtpm_cert_store,
    tenant_config,
    tenant_runner,
)
from tests.verifier.test_polling_swtpm import wait_status
from tools.keylime_services import free_port
from tools.swtpm import Swtpm
from verifier_lite.states import State

pytestmark = [
    pytest.mark.interop,
    pytest.mark.swtpm,
    # rust-keylime's mTLS certificate has a non-positive serial (see test_swap_registrar).
    pytest.mark.filterwarnings(
        "ignore:Parsed a serial number which wasn't positive"
        ":cryptography.utils.CryptographyDeprecationWarning"
    ),
]

PAYLOAD = b"delivered by keylime_tenant to rust-keylime through limelet\n"
# PCR 17 reads all ff after a plain swtpm start-up; swtpm_ioctl -h resets and extends it.
TPM_POLICY = {str(HCRTM_PCR): ["ff" * 32]}


async def test_keylime_tenant_cycle_with_rust_keylime(
    nursery: trio.Nursery,
    verifier: RunningVerifier,
    swtpm: Swtpm,
    keylime_services: KeylimeServices,
    tmp_path: Path,
) -> None:
    require_rust_agent()
    cert_store = swtpm_cert_store(swtpm, tmp_path / "tpm_cert_store")
    registrar = await start_registrar(nursery, tmp_path, verifier.tls, cert_store)
    keylime_dir = tmp_path / "agent"
    keylime_dir.mkdir()
    agent_id, port = str(uuid.uuid4()), free_port()
    text = rust_conf(keylime_dir, uuid=agent_id, port=port, registrar_port=registrar.port)
    conf = tmp_path / "agent.conf"
    conf.write_text(
        text.replace(
            'trusted_client_ca = "default"', f'trusted_client_ca = "{verifier.tls.ca_cert}"'
        )
    )
    payload = tmp_path / "payload.txt"
    payload.write_bytes(PAYLOAD)
    tenant_conf = tenant_config(keylime_services, verifier, registrar, cert_store, tmp_path / "t")
    tenant = tenant_runner(keylime_services, tenant_conf)

    with running_rust_agent(conf, swtpm.tcti, tmp_path / "rust") as rust:
        await rust.wait_for_log_async(f"SUCCESS: Agent {agent_id} activated")
        ok(
            await tenant(
                *("-c", "add", "-t", LOOPBACK, "-tp", str(port), "-u", agent_id, "--verify"),
                *("--tpm_policy", json.dumps(TPM_POLICY), "-f", str(payload)),
            )
        )
        assert (keylime_dir / "secure" / "unzipped" / "decrypted_payload").read_bytes() == PAYLOAD
        await wait_status(verifier, agent_id, lambda r: r["attestation_count"] >= 2)
        shown = ok(await tenant("-c", "cvstatus", "-u", agent_id))
        assert '"operational_state": "Get Quote"' in shown

        await hcrtm_tamper(swtpm, b"tampered behind the agent's back")
        failed = await wait_status(verifier, agent_id, in_state(State.INVALID_QUOTE))
        assert failed["attestation_status"] == "FAIL"

    ok(await tenant("-c", "delete", "-u", agent_id))
    async with verifier.client() as client:
        assert (await client.get(f"/{API}/agents/{agent_id}")).status_code == 404
    ok(await tenant("-c", "regdelete", "-u", agent_id))
