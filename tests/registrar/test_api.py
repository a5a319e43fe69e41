"""Routes, versions, the envelope, and the happy path with a software identity.

Activation here takes the correct tag from the stored challenge key (what only the TPM could
compute); test_swtpm_flow.py does the same with a real TPM's ActivateCredential.
"""

from __future__ import annotations

import pytest

from attest_protocol.api_version import SUPPORTED_VERSIONS
from tests.registrar.support import API, RunningRegistrar, SoftwareIdentity


async def _register(registrar: RunningRegistrar, agent_id: str, body: dict[str, object]) -> str:
    async with registrar.agent_client() as client:
        response = await client.post(f"/{API}/agents/{agent_id}", json=body)
    assert response.status_code == 200, response.text
    blob = response.json()["results"]["blob"]
    assert isinstance(blob, str)
    return blob


async def test_version_on_both_listeners(registrar: RunningRegistrar) -> None:
    expected = {
        "current_version": str(SUPPORTED_VERSIONS[-1]),
        # API 3.0 is listed after the 2.x (routes_v3.py); current stays the newest 2.x.
        "supported_versions": [*(str(v) for v in SUPPORTED_VERSIONS), "3.0"],
    }
    async with registrar.agent_client() as plain, registrar.admin_client() as tls:
        for client in (plain, tls):
            response = await client.get("/version")
            assert response.json() == {"code": 200, "status": "Success", "results": expected}


@pytest.mark.parametrize("version", ["v1.0", "v2.0", "v2.7", "v3.1", "vX", "2.1"])
async def test_unknown_version_is_400(registrar: RunningRegistrar, version: str) -> None:
    async with registrar.admin_client() as client:
        response = await client.get(f"/{version}/agents/")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == 400
    if version.startswith("v") and version != "vX":
        assert body["status"] == f"API version not supported: {version}"


@pytest.mark.parametrize("version", [str(v) for v in SUPPORTED_VERSIONS])
async def test_register_activate_show_every_version(
    registrar: RunningRegistrar, identity: SoftwareIdentity, version: str
) -> None:
    agent_id = f"agent-{version}"
    async with registrar.agent_client() as agent, registrar.admin_client() as admin:
        response = await agent.post(f"/v{version}/agents/{agent_id}", json=identity.body())
        assert response.status_code == 200
        assert set(response.json()["results"]) == {"blob"}
        pending = await admin.get(f"/v{version}/agents/{agent_id}")
        assert pending.status_code == 404
        assert pending.json()["status"] == f"Agent with ID '{agent_id}' has not been activated"
        tag = registrar.auth_tag(agent_id)
        activated = await agent.put(f"/v{version}/agents/{agent_id}", json={"auth_tag": tag})
        assert activated.json() == {"code": 200, "status": "Success", "results": {}}
        shown = (await admin.get(f"/v{version}/agents/{agent_id}")).json()
        listed = (await admin.get(f"/v{version}/agents/")).json()
    assert shown["results"]["aik_tpm"] == identity.body()["aik_tpm"]
    assert shown["results"]["ek_tpm"] == identity.body()["ek_tpm"]
    assert shown["results"]["ekcert"] == identity.body()["ekcert"]
    assert shown["results"]["regcount"] == 1
    assert (shown["results"]["ip"], shown["results"]["port"]) == ("127.0.0.1", 9002)
    assert shown["results"]["mtls_cert"] == "disabled"
    assert listed["results"] == {"uuids": [agent_id]}


async def test_activate_route_spellings(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    async with registrar.agent_client() as agent:
        for method in ("PUT", "POST"):
            agent_id = f"spelling-{method.lower()}"
            await _register(registrar, agent_id, identity.body())
            response = await agent.request(
                method,
                f"/{API}/agents/{agent_id}/activate",
                json={"auth_tag": registrar.auth_tag(agent_id)},
            )
            assert response.status_code == 200, response.text
            row = registrar.stored(agent_id)
            assert row is not None
            assert row["active"] == 1


async def test_reregistration_counts_and_needs_activation(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    """Same identity again -> a new challenge; regcount + 1 and the new address once activated.

    Unlike Keylime 7.14.3, the active record stays shown (port, regcount) until then
    (registrar_lite/store_held.py; tests/registrar/test_replayed_registration.py).
    """
    agent_id = "again"
    await _register(registrar, agent_id, identity.body())
    first = registrar.auth_tag(agent_id)
    async with registrar.agent_client() as agent, registrar.admin_client() as admin:
        assert (await agent.put(f"/{API}/agents/{agent_id}", json={"auth_tag": first})).is_success
        await _register(registrar, agent_id, identity.body(port="9003"))
        meanwhile = (await admin.get(f"/{API}/agents/{agent_id}")).json()["results"]
        assert (meanwhile["regcount"], meanwhile["port"]) != (2, 9003)
        assert meanwhile["regcount"] == 1
        second = registrar.auth_tag(agent_id)
        assert second != first
        assert (await agent.put(f"/{API}/agents/{agent_id}", json={"auth_tag": second})).is_success
        shown = (await admin.get(f"/{API}/agents/{agent_id}")).json()["results"]
    assert (shown["regcount"], shown["port"]) == (2, 9003)


async def test_delete(registrar: RunningRegistrar, identity: SoftwareIdentity) -> None:
    await _register(registrar, "gone", identity.body())
    async with registrar.admin_client() as admin:
        assert (await admin.delete(f"/{API}/agents/gone")).json()["code"] == 200
        again = await admin.delete(f"/{API}/agents/gone")
    assert again.status_code == 404
    assert again.json()["status"] == "Agent with ID 'gone' not found"
    assert registrar.stored("gone") is None


async def test_unknown_route_and_method_get_envelopes(registrar: RunningRegistrar) -> None:
    async with registrar.admin_client() as admin:
        missing = await admin.get("/nowhere")
        wrong = await admin.patch(f"/{API}/agents/x")
    assert missing.json() == {"code": 404, "status": "Not Found", "results": {}}
    assert wrong.json() == {"code": 405, "status": "Method Not Allowed", "results": {}}
