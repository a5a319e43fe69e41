"""The real Keylime 7.14.3 tenant lists and reads agents from registrar_lite.

The tenant gets a config of its own whose ``registrar_ip``/``registrar_port`` name our mTLS
listener and whose certificate options name our CA and the client certificate it issued.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import trio

from tests.fixtures.keylime import KeylimeServices
from tests.registrar.support import API, LOOPBACK, RunningRegistrar, SoftwareIdentity
from tools.keylime_config import component_options

pytestmark = pytest.mark.interop


def _tenant_config(services: KeylimeServices, registrar: RunningRegistrar, path: Path) -> Path:
    sections = component_options("tenant", services.layout, services.settings)
    sections["tenant"].update(
        {
            "registrar_ip": LOOPBACK,
            "registrar_port": str(registrar.ports.tls_port),
            "tls_dir": str(registrar.tls.directory),
            # Explicit paths: "default" would mean Keylime's own cv_ca whatever tls_dir says.
            "trusted_server_ca": f"['{registrar.tls.ca_cert}']",
            "client_cert": str(registrar.tls.client_cert),
            "client_key": str(registrar.tls.client_key),
        }
    )
    lines = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in options.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


async def _tenant(
    services: KeylimeServices, config: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {"KEYLIME_TENANT_CONFIG": str(config)}
    return await trio.to_thread.run_sync(lambda: services.run_tenant(*args, env=env))


async def test_reglist_and_regstatus(
    registrar: RunningRegistrar,
    identity: SoftwareIdentity,
    keylime_services: KeylimeServices,
    tmp_path: Path,
) -> None:
    agent_id = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"
    async with registrar.agent_client() as agent:
        assert (await agent.post(f"/{API}/agents/{agent_id}", json=identity.body())).is_success
        tag = registrar.auth_tag(agent_id)
        assert (await agent.put(f"/{API}/agents/{agent_id}", json={"auth_tag": tag})).is_success
    config = _tenant_config(keylime_services, registrar, tmp_path / "tenant.conf")

    listed = await _tenant(keylime_services, config, "-c", "reglist")
    output = listed.stdout + listed.stderr
    assert listed.returncode == 0, output
    assert f'"uuids": ["{agent_id}"]' in output

    status = await _tenant(keylime_services, config, "-c", "regstatus", "-u", agent_id)
    output = status.stdout + status.stderr
    assert status.returncode == 0, output
    assert (
        f"Agent {agent_id} exists on registrar {LOOPBACK} port {registrar.ports.tls_port}" in output
    )


async def test_regstatus_unknown_agent(
    registrar: RunningRegistrar, keylime_services: KeylimeServices, tmp_path: Path
) -> None:
    config = _tenant_config(keylime_services, registrar, tmp_path / "tenant.conf")
    agent_id = "00000000-0000-0000-0000-000000000000"
    status = await _tenant(keylime_services, config, "-c", "regstatus", "-u", agent_id)
    output = status.stdout + status.stderr
    assert status.returncode != 0, output
    assert f"Agent {agent_id} does not exist on registrar" in output
