"""End to end with every limelet part real: the Keylime 7.14.3 tenant drives verifier_lite,
which attests edge_agent (run_agent: registration with registrar_lite, its mTLS agent API,
quotes from swtpm)."""

from __future__ import annotations

import functools
import json
import socket
from pathlib import Path

import pytest
import trio

from edge_agent.app import AgentStarted, run_agent
from tests.agent_api.support import agent_config
from tests.fixtures.keylime import KeylimeServices
from tests.verifier.support import API, LOOPBACK, RunningVerifier
from tests.verifier.test_keylime_tenant import (
    ZERO_PCR,
    in_state,
    ok,
    start_registrar,
    swtpm_cert_store,
    tenant_config,
    tenant_runner,
)
from tests.verifier.test_polling_swtpm import wait_status
from tools.swtpm import Swtpm
from verifier_lite.states import State

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]

AGENT_ID = "d432fbb3-d2f1-4a97-9ef7-75bd81c0e2e0"


def free_port() -> int:
    # The agent registers its contact port, so it must know it before binding (port 0 would
    # register the default 9002).  A just-released port is reused at once on loopback.
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


async def test_keylime_tenant_with_verifier_lite_and_edge_agent(
    nursery: trio.Nursery,
    verifier: RunningVerifier,
    swtpm: Swtpm,
    keylime_services: KeylimeServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TCTI", raising=False)  # the option must win for this agent
    cert_store = swtpm_cert_store(swtpm, tmp_path / "tpm_cert_store")
    registrar = await start_registrar(nursery, tmp_path, verifier.tls, cert_store)
    port = free_port()
    config = agent_config(
        tmp_path / "agent", swtpm.tcti, uuid=AGENT_ID, ip=LOOPBACK, port=port,
        contact_ip=LOOPBACK, contact_port=port, registrar_ip=LOOPBACK,
        registrar_port=registrar.port, trusted_client_ca=str(verifier.tls.ca_cert),
    )  # fmt: skip
    started: AgentStarted = await nursery.start(functools.partial(run_agent, config))
    assert started.agent_id == AGENT_ID and started.mtls_cert_pem is not None

    conf = tenant_config(keylime_services, verifier, registrar, cert_store, tmp_path / "t.conf")
    tenant = tenant_runner(keylime_services, conf)
    policy = json.dumps({"23": [ZERO_PCR]})
    ok(await tenant("-c", "add", "-u", AGENT_ID, "--tpm_policy", policy))
    status = await wait_status(verifier, AGENT_ID, lambda r: r["attestation_count"] >= 3)
    assert status["operational_state"] == State.GET_QUOTE, status["last_event_id"]
    assert status["attestation_status"] == "PASS"
    shown = ok(await tenant("-c", "cvstatus", "-u", AGENT_ID))
    assert '"operational_state": "Get Quote"' in shown

    async with verifier.client() as client:
        assert (await client.put(f"/{API}/agents/{AGENT_ID}/stop")).status_code == 200
    await wait_status(verifier, AGENT_ID, in_state(State.TENANT_FAILED))
    ok(await tenant("-c", "reactivate", "-u", AGENT_ID))
    await wait_status(verifier, AGENT_ID, in_state(State.GET_QUOTE))
    ok(await tenant("-c", "delete", "-u", AGENT_ID))
    async with verifier.client() as client:
        assert (await client.get(f"/{API}/agents/{AGENT_ID}")).status_code == 404
