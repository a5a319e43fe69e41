"""Our agent (on swtpm) registers with the real Keylime 7.14.3 registrar and activates.

The registrar's mTLS API then shows the agent, which it does only once activated
(agents_controller.show answers 404 before), with our EK, AK and mTLS certificate.  A restart
with the same data dir reloads the same AK and registers again without a 403.
"""

from __future__ import annotations

import base64
import dataclasses
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio
from cryptography import x509

from edge_agent.app import AgentStarted, open_pytss_tpm, start_agent
from edge_agent.config import AgentConfig
from tests.fixtures.keylime import KeylimeServices
from tools.keylime_services import get_json
from tools.swtpm import Swtpm

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]


async def register_once(config: AgentConfig) -> tuple[AgentStarted, bytes, bytes, bool]:
    tpm = await open_pytss_tpm(config.tpm_config())
    try:
        started = await start_agent(config, tpm)
        ek, ak = await tpm.ek(), await tpm.ak()
    finally:
        await tpm.aclose()
    return started, ek.public, ak.public, ak.created


async def registrar_record(services: KeylimeServices, started: AgentStarted) -> dict[str, Any]:
    path = f"/v{started.api_version}/agents/{started.agent_id}"
    status, body = await trio.to_thread.run_sync(
        get_json, services.registrar_ip, services.registrar_tls_port, path, services.ssl_context()
    )
    assert status == 200, body
    results: dict[str, Any] = body["results"]
    return results


async def test_registers_and_activates_with_real_keylime(
    swtpm: Swtpm,
    keylime_services: KeylimeServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TCTI", swtpm.tcti)
    config = dataclasses.replace(
        AgentConfig(),
        uuid=str(uuid.uuid4()),
        keylime_dir=str(tmp_path / "keylime"),
        registrar_ip=keylime_services.registrar_ip,
        registrar_port=keylime_services.registrar_port,
        exponential_backoff_initial_delay=200,
        exponential_backoff_max_delay=1000,
    )
    started, ek_public, ak_public, created = await register_once(config)
    assert created
    record = await registrar_record(keylime_services, started)
    assert record["ek_tpm"] == base64.b64encode(ek_public).decode()
    assert record["aik_tpm"] == base64.b64encode(ak_public).decode()
    assert started.mtls_cert_pem is not None
    ours = x509.load_pem_x509_certificate(started.mtls_cert_pem.encode())
    theirs = x509.load_pem_x509_certificate(record["mtls_cert"].encode())
    assert theirs == ours
    assert (record["ip"], record["port"]) == (config.contact_ip, config.contact_port)
    assert record["ekcert"]  # swtpm's EK certificate went along

    again, _, ak_again, created_again = await register_once(config)
    assert not created_again
    assert ak_again == ak_public
    assert again.agent_id == started.agent_id
    assert again.mtls_cert_pem == started.mtls_cert_pem
    record_again = await registrar_record(keylime_services, again)
    assert record_again["aik_tpm"] == record["aik_tpm"]
    assert record_again["regcount"] >= 1
