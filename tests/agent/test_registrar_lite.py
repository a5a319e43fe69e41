"""Our agent on swtpm against limelet's own registrar (registrar_lite), over real TCP.

The registrar trusts swtpm's local CA, so the EK certificate the agent sends is checked too.
After activation the registrar's mTLS API shows our EK, AK and mTLS certificate; a restart
with the same data dir registers again; another TPM under the same id gets a 403, which stops
the agent with the message that says so.
"""

from __future__ import annotations

import base64
import dataclasses
import shutil
from pathlib import Path

import pytest
import trio

from edge_agent.app import AgentStarted, open_pytss_tpm, start_agent
from edge_agent.config import AgentConfig
from edge_agent.registrar_client import RegistrationForbidden
from registrar_lite.server import serve_registrar
from tests.agent.support import SoftTpm
from tests.cv_ca import make_tls_files
from tests.registrar.support import RunningRegistrar, registrar_config
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

AGENT_ID = "limelet-agent-on-swtpm"


async def start_registrar(nursery: trio.Nursery, tmp_path: Path, swtpm: Swtpm) -> RunningRegistrar:
    store = tmp_path / "tpm_cert_store"
    store.mkdir()
    for cert in (swtpm.state.issuer_cert, swtpm.state.root_cert):
        shutil.copy(cert, store / cert.name)
    tls = make_tls_files(tmp_path / "tls")
    config = registrar_config(tmp_path / "registrar", tls, tpm_cert_store=store)
    return RunningRegistrar(config, await nursery.start(serve_registrar, config), tls)


async def register_on_swtpm(config: AgentConfig) -> tuple[AgentStarted, bytes, bytes]:
    tpm = await open_pytss_tpm(config.tpm_config())
    try:
        started = await start_agent(config, tpm)
        return started, (await tpm.ek()).public, (await tpm.ak()).public
    finally:
        await tpm.aclose()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


async def test_agent_registers_with_registrar_lite(
    nursery: trio.Nursery,
    swtpm: Swtpm,
    soft_tpm: SoftTpm,
    agent_config: AgentConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TCTI", swtpm.tcti)
    registrar = await start_registrar(nursery, tmp_path, swtpm)
    config = dataclasses.replace(agent_config, uuid=AGENT_ID, registrar_port=registrar.ports.port)
    started, ek_public, ak_public = await register_on_swtpm(config)
    path = f"/v{started.api_version}/agents/{AGENT_ID}"
    async with registrar.admin_client() as admin:
        shown = (await admin.get(path)).json()["results"]
    assert shown["ek_tpm"] == b64(ek_public)
    assert shown["aik_tpm"] == b64(ak_public)
    assert shown["mtls_cert"] == started.mtls_cert_pem
    assert shown["ekcert"]

    again, _, ak_again = await register_on_swtpm(config)
    assert ak_again == ak_public
    assert again.agent_id == AGENT_ID

    with pytest.raises(RegistrationForbidden, match="another TPM"):
        await start_agent(config, soft_tpm)
