"""THE acceptance: the real Keylime 7.14.3 tenant drives verifier_lite and registrar_lite.

The agent is the honest fake on swtpm (tests/verifier/fake_agent.py), registered and
activated with registrar_lite exactly as an agent does it (edge_agent.registrar_client).  The
tenant gets a config of its own naming our verifier, our registrar and one CA for all mTLS.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from attest_protocol.api_version import SUPPORTED_VERSIONS, negotiate
from edge_agent.registrar_client import RegistrarClient, Registration, auth_tag
from registrar_lite.config import RegistrarConfig
from registrar_lite.server import BoundPorts, serve_registrar
from tests.cv_ca import TlsFiles
from tests.fixtures.keylime import KeylimeServices
from tests.verifier.conftest import open_fake_agent
from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import API, LOOPBACK, RunningVerifier, runtime_policy_json
from tests.verifier.test_ima_swtpm import FILES, policy_for, write_ima_log
from tests.verifier.test_polling_swtpm import wait_status
from tools.keylime_config import component_options
from tools.swtpm import Swtpm
from verifier_lite.states import State

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]

AGENT_ID = "d432fbb3-d2f1-4a97-9ef7-75bd81c0aa01"
REGISTRAR_RETRY_SECONDS = (0.1, 0.2, 0.4)
ZERO_PCR = "00" * 32


async def start_registrar(
    nursery: trio.Nursery, tmp_path: Path, tls: TlsFiles, cert_store: Path
) -> BoundPorts:
    config = RegistrarConfig(
        ip=LOOPBACK,
        port=0,
        tls_port=0,
        data_dir=str(tmp_path / "registrar"),
        tls_dir=str(tls.directory),
        tpm_cert_store=str(cert_store),
    )
    ports: BoundPorts = await nursery.start(serve_registrar, config)
    return ports


def swtpm_cert_store(swtpm: Swtpm, directory: Path) -> Path:
    directory.mkdir()
    for cert in (swtpm.state.issuer_cert, swtpm.state.root_cert):
        shutil.copy(cert, directory / cert.name)
    return directory


async def register(agent: FakeAgent, ports: BoundPorts) -> None:
    """What an agent does at start: register EK, EK cert, AK, mTLS cert; then activate."""
    client = RegistrarClient(LOOPBACK, ports.port, REGISTRAR_RETRY_SECONDS)
    theirs = await client.versions()
    assert theirs is not None
    version = negotiate(SUPPORTED_VERSIONS, theirs)
    registration = Registration(
        agent_id=AGENT_ID,
        ek_tpm=(await agent.tpm.ek()).public,
        ek_cert_der=await agent.tpm.ek_certificate(),
        aik_tpm=agent.ak_public,
        mtls_cert_pem=agent.cert_pem,
        contact_ip=LOOPBACK,
        contact_port=agent.port,
    )
    blob = await client.register(version, registration)
    secret = await agent.tpm.activate_credential(blob)
    await client.activate(version, AGENT_ID, auth_tag(secret, AGENT_ID))


def tenant_config(
    services: KeylimeServices,
    verifier: RunningVerifier,
    registrar: BoundPorts,
    cert_store: Path,
    path: Path,
) -> Path:
    tls = verifier.tls
    sections = component_options("tenant", services.layout, services.settings)
    sections["tenant"].update(
        {
            "verifier_ip": LOOPBACK,
            "verifier_port": str(verifier.bound.port),
            "registrar_ip": LOOPBACK,
            "registrar_port": str(registrar.tls_port),
            "tls_dir": str(tls.directory),
            # Explicit paths: "default" would mean Keylime's own cv_ca whatever tls_dir says.
            "trusted_server_ca": f"['{tls.ca_cert}']",
            "client_cert": str(tls.client_cert),
            "client_key": str(tls.client_key),
            "tpm_cert_store": str(cert_store),
            "enable_agent_mtls": "True",
            "retry_interval": "0.5",
            "exponential_backoff": "False",
        }
    )
    lines = []
    for section, options in sections.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {value}" for key, value in options.items())
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


Tenant = Callable[..., Any]


def tenant_runner(services: KeylimeServices, config: Path) -> Tenant:
    async def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"KEYLIME_TENANT_CONFIG": str(config)}
        return await trio.to_thread.run_sync(lambda: services.run_tenant(*args, env=env))

    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def in_state(state: State) -> Callable[[dict[str, Any]], bool]:
    return lambda results: bool(results["operational_state"] == state)


async def test_keylime_tenant_drives_verifier_lite(
    nursery: trio.Nursery,
    verifier: RunningVerifier,
    fake_agent: FakeAgent,
    swtpm: Swtpm,
    keylime_services: KeylimeServices,
    tmp_path: Path,
) -> None:
    cert_store = swtpm_cert_store(swtpm, tmp_path / "tpm_cert_store")
    registrar = await start_registrar(nursery, tmp_path, verifier.tls, cert_store)
    await register(fake_agent, registrar)
    config = tenant_config(keylime_services, verifier, registrar, cert_store, tmp_path / "t.conf")
    tenant = tenant_runner(keylime_services, config)
    policy = json.dumps({"23": [ZERO_PCR]})

    ok(await tenant("-c", "add", "-u", AGENT_ID, "--tpm_policy", policy))
    assert fake_agent.state.identity_requests == 1  # the tenant checked the agent itself
    status = await wait_status(verifier, AGENT_ID, lambda r: r["attestation_count"] >= 2)
    assert status["operational_state"] == State.GET_QUOTE
    assert json.loads(status["tpm_policy"])["23"] == [ZERO_PCR]

    shown = ok(await tenant("-c", "cvstatus", "-u", AGENT_ID))
    assert '"operational_state": "Get Quote"' in shown  # the tenant names our state number
    assert '"attestation_status": "PASS"' in shown
    ok(await tenant("-c", "status", "-u", AGENT_ID))
    listed = ok(await tenant("-c", "cvlist"))
    assert f'"uuids": [["{AGENT_ID}"]]' in listed

    ok(await tenant("-c", "update", "-u", AGENT_ID, "--tpm_policy", policy))
    await wait_status(verifier, AGENT_ID, lambda r: r["attestation_count"] >= 1)

    async with verifier.client() as client:
        assert (await client.put(f"/{API}/agents/{AGENT_ID}/stop")).status_code == 200
    await wait_status(verifier, AGENT_ID, in_state(State.TENANT_FAILED))
    ok(await tenant("-c", "reactivate", "-u", AGENT_ID))
    await wait_status(verifier, AGENT_ID, in_state(State.GET_QUOTE))

    ok(await tenant("-c", "delete", "-u", AGENT_ID))
    async with verifier.client() as client:
        assert (await client.get(f"/{API}/agents/{AGENT_ID}")).status_code == 404


async def test_keylime_tenant_manages_policies(
    verifier: RunningVerifier, keylime_services: KeylimeServices, tmp_path: Path
) -> None:
    """addruntimepolicy / show / list / delete and the mb policy commands, no agent needed."""
    conf = tenant_config(
        keylime_services, verifier, BoundPorts(LOOPBACK, 1, 1), tmp_path, tmp_path / "t.conf"
    )
    tenant = tenant_runner(keylime_services, conf)
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(runtime_policy_json({"/usr/bin/true": ["ab" * 32]}))
    mb_file = tmp_path / "mb.json"
    mb_file.write_text(json.dumps({"pcrs": {"7": ["cd" * 32]}}))

    ok(await tenant("-c", "addruntimepolicy", "--runtime-policy-name", "rp1",
                    "--runtime-policy", str(policy_file)))  # fmt: skip
    shown = ok(await tenant("-c", "showruntimepolicy", "--runtime-policy-name", "rp1"))
    assert "/usr/bin/true" in shown
    listed = ok(await tenant("-c", "listruntimepolicy"))
    assert "'results': {'runtimepolicy names': ['rp1']}" in listed
    ok(await tenant("-c", "deleteruntimepolicy", "--runtime-policy-name", "rp1"))
    async with verifier.client() as client:
        assert (await client.get(f"/{API}/allowlists/rp1")).status_code == 404

    ok(await tenant("-c", "addmbpolicy", "--mb-policy-name", "mb1", "--mb-policy", str(mb_file)))
    assert "cd" * 32 in ok(await tenant("-c", "showmbpolicy", "--mb-policy-name", "mb1"))
    listed_mb = ok(await tenant("-c", "listmbpolicy"))
    assert "'results': {'mbpolicy names': ['mb1']}" in listed_mb
    ok(await tenant("-c", "deletembpolicy", "--mb-policy-name", "mb1"))
    async with verifier.client() as client:
        assert (await client.get("/v2.6/mbpolicies/mb1")).status_code == 404


async def test_keylime_tenant_adds_with_a_runtime_policy(
    nursery: trio.Nursery,
    verifier: RunningVerifier,
    swtpm: Swtpm,
    keylime_services: KeylimeServices,
    tmp_path: Path,
) -> None:
    """The tenant's ``--runtime-policy`` reaches the IMA checks: a log from the emulator."""
    log = tmp_path / "ascii_runtime_measurements"
    await trio.to_thread.run_sync(write_ima_log, swtpm.tcti, log)
    cert_store = swtpm_cert_store(swtpm, tmp_path / "tpm_cert_store")
    registrar = await start_registrar(nursery, tmp_path, verifier.tls, cert_store)
    async with open_fake_agent(nursery, swtpm, verifier.tls, tmp_path, ima_log=log) as agent:
        await register(agent, registrar)
        conf = tenant_config(keylime_services, verifier, registrar, cert_store, tmp_path / "t.conf")
        tenant = tenant_runner(keylime_services, conf)
        policy_file = tmp_path / "policy.json"
        policy_file.write_text(policy_for(FILES))
        ok(await tenant("-c", "add", "-u", AGENT_ID, "--runtime-policy", str(policy_file)))
        status = await wait_status(verifier, AGENT_ID, lambda r: r["attestation_count"] >= 2)
    assert status["operational_state"] == State.GET_QUOTE, status["last_event_id"]
    assert status["has_runtime_policy"] == 1
    assert agent.state.integrity_requests[1]["ima_ml_entry"] == str(len(FILES))
