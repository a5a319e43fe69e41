"""``add --push-model`` and push ``status`` against limelet's verifier_lite and registrar_lite.

The agent is a software identity registered over API 3.0 (``POST /v3.0/agents``), as a push
agent behind NAT would; nothing listens at the address it registered.  The tenant must never
try to reach it: ``tenant_lite.agent.agent_client`` (its only way to an agent) is replaced by
one that fails the test.  The body the verifier receives is recorded on its way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from registrar_lite.server import BoundPorts, serve_registrar
from tenant_lite import agent, services
from tenant_lite.errors import EXIT_OK, EXIT_SERVICE_ERROR, EXIT_USAGE
from tenant_lite.push import NO_POLICY_WARNING
from tests.cv_ca import TlsFiles, make_tls_files
from tests.registrar.support import RunningRegistrar, registrar_config, software_identity
from tests.tenant.support import TenantRun, run_tenant, write_config
from tests.verifier.support import verifier_config
from verifier_lite.server import BoundPort, serve_verifier

AGENT_ID = "push-agent-1"
TPM_POLICY = json.dumps({"23": ["00" * 32]})


@dataclass(frozen=True)
class PushLite:
    registrar: RunningRegistrar
    verifier: BoundPort
    config: Path


async def _serve(nursery: trio.Nursery, tmp_path: Path, *, agent_mtls: bool) -> PushLite:
    tls: TlsFiles = make_tls_files(tmp_path / "cv_ca")
    reg_config = registrar_config(tmp_path / "registrar", tls)
    ports: BoundPorts = await nursery.start(serve_registrar, reg_config)
    verifier: BoundPort = await nursery.start(
        serve_verifier,
        verifier_config(tmp_path / "verifier", tls, enable_agent_mtls=agent_mtls),
    )
    config = write_config(
        tmp_path / "tenant.toml",
        verifier_port=verifier.port,
        registrar_tls_port=ports.tls_port,
        tls_dir=str(tls.directory),
        request_timeout=10,
        accept_tpm_encryption_algs="ecc,rsa,ecc256,rsa2048",
        # The software EK certificate comes from a throwaway CA; EK checks are tested with a
        # swtpm in test_add_lite.py, and push.py runs the same ek_checks.
        require_ek_cert=False,
    )
    return PushLite(RunningRegistrar(reg_config, ports, tls), verifier, config)


@pytest.fixture
async def lite(nursery: trio.Nursery, tmp_path: Path) -> PushLite:
    """A push agent registers mtls_cert "disabled"; today's verifier_lite (pull only) takes it
    with enable_agent_mtls off, as a Keylime verifier in push mode does."""
    return await _serve(nursery, tmp_path, agent_mtls=False)


@pytest.fixture
async def lite_mtls(nursery: trio.Nursery, tmp_path: Path) -> PushLite:
    """Keylime's default, enable_agent_mtls = True."""
    return await _serve(nursery, tmp_path, agent_mtls=True)


async def _register_v3(registrar: RunningRegistrar) -> dict[str, Any]:
    body = {"agent_id": AGENT_ID, **software_identity().body()}
    async with registrar.agent_client() as client:
        assert (await client.post("/v3.0/agents", json=body)).status_code == 200
        tag = registrar.auth_tag(AGENT_ID)
        activated = await client.post(f"/v3.0/agents/{AGENT_ID}/activate", json={"auth_tag": tag})
        assert activated.status_code == 200, activated.text
    return body


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Bodies the tenant POSTs to the verifier; any attempt to reach the agent fails."""
    bodies: list[dict[str, Any]] = []
    real_add = services.verifier_add

    def record(ver: Any, agent_id: str, body: Any) -> None:
        bodies.append(dict(body))
        real_add(ver, agent_id, body)

    def no_agent(*args: Any, **kwargs: Any) -> Any:
        pytest.fail("the tenant tried to contact a push agent")

    monkeypatch.setattr(services, "verifier_add", record)
    monkeypatch.setattr(agent, "agent_client", no_agent)
    return bodies


async def tenant(config: Path, *args: str) -> TenantRun:
    return await trio.to_thread.run_sync(lambda: run_tenant(config, *args))


async def test_add_push_model_sends_keylime_body_and_never_contacts_agent(
    lite: PushLite, sent: list[dict[str, Any]]
) -> None:
    registered = await _register_v3(lite.registrar)
    added = await tenant(lite.config, "add", AGENT_ID, "--push-model", "--tpm-policy", TPM_POLICY)
    assert added.code == EXIT_OK, added
    assert added.result["push_model"] is True
    assert added.result["payload_delivered"] is False
    assert NO_POLICY_WARNING not in added.result["warnings"]
    [body] = sent
    # keylime/tenant.py do_cvadd in push mode: no V, the registrar's AK, the registered address.
    assert body["v"] is None
    assert body["ak_tpm"] == registered["aik_tpm"]
    assert (body["cloudagent_ip"], body["cloudagent_port"]) == ("127.0.0.1", 9002)
    assert json.loads(body["tpm_policy"])["23"] == ["00" * 32]
    assert body["supported_version"] == "2.6"

    shown = await tenant(lite.config, "status", AGENT_ID, "--push-model")
    assert shown.code == EXIT_OK, shown
    record = shown.result[AGENT_ID]
    assert record["push_model"] is True
    assert "operational_state" not in record
    # Nothing has attested: never a PASS.
    assert record["attestation_status"] in ("PENDING", "FAIL")
    assert record["attestation_count"] == 0
    assert record["last_successful_attestation"] in (0, None)


@pytest.mark.parametrize(
    "extra",
    [["-f", "payload.txt"], ["--cert", "ca"], ["--verify"]],
    ids=["file", "cert", "verify"],
)
async def test_agent_contact_options_are_refused(
    lite: PushLite, sent: list[dict[str, Any]], extra: list[str]
) -> None:
    await _register_v3(lite.registrar)
    run = await tenant(
        lite.config, "add", AGENT_ID, "--push-model", "--tpm-policy", TPM_POLICY, *extra
    )
    assert run.code == EXIT_USAGE, run
    assert "--push-model" in run.body["message"]
    assert sent == []
    assert (await tenant(lite.config, "cvlist")).result["uuids"] in ([], [[]])


async def test_no_policy_is_a_warning(lite: PushLite, sent: list[dict[str, Any]]) -> None:
    await _register_v3(lite.registrar)
    added = await tenant(lite.config, "add", AGENT_ID, "--push-model")
    assert added.code == EXIT_OK, added
    assert NO_POLICY_WARNING in added.result["warnings"]


async def test_unregistered_agent_is_not_found(lite: PushLite, sent: list[dict[str, Any]]) -> None:
    run = await tenant(lite.config, "add", "nobody", "--push-model", "--tpm-policy", TPM_POLICY)
    assert run.code != EXIT_OK
    assert run.body["ok"] is False
    assert sent == []


async def test_mtls_verifier_refusal_is_reported(
    lite_mtls: PushLite, sent: list[dict[str, Any]]
) -> None:
    lite = lite_mtls
    """A verifier demanding agent mTLS answers 400 naming mtls_cert; the tenant says so."""
    await _register_v3(lite.registrar)
    run = await tenant(lite.config, "add", AGENT_ID, "--push-model", "--tpm-policy", TPM_POLICY)
    assert run.code == EXIT_SERVICE_ERROR, run
    assert "400" in run.body["message"]
    assert "mtls_cert" in run.body["message"]
    assert (await tenant(lite.config, "cvlist")).result["uuids"] in ([], [[]])
