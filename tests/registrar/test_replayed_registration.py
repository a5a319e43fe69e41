"""A replayed registration of an active agent is held; the active record stays until the
held one is activated with the TPM's answer (registrar_lite/store_held.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.registrar.support import API, RunningRegistrar, SoftwareIdentity

AGENT = "active-one"


@pytest.fixture
def registrar(registrar_engines: RunningRegistrar) -> RunningRegistrar:
    """These rules on both engines: SQLite and PostgreSQL (registrar_lite/store_postgres.py)."""
    return registrar_engines


async def _active(registrar: RunningRegistrar, identity: SoftwareIdentity) -> dict[str, Any]:
    async with registrar.agent_client() as agent:
        assert (await agent.post(f"/{API}/agents/{AGENT}", json=identity.body())).is_success
        tag = registrar.auth_tag(AGENT)
        assert (await agent.put(f"/{API}/agents/{AGENT}", json={"auth_tag": tag})).is_success
    row = registrar.stored(AGENT)
    assert row is not None and row["active"] == 1
    return row


async def test_replay_without_the_tpm_changes_nothing(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    before = await _active(registrar, identity)
    replay = identity.body(ip="203.0.113.9", port="9999")
    async with registrar.agent_client() as agent, registrar.admin_client() as admin:
        answered = await agent.post(f"/{API}/agents/{AGENT}", json=replay)
        assert answered.is_success  # the challenge is issued, as for any registration
        assert registrar.stored(AGENT) == before  # address, regcount, active: all as they were
        held = registrar.held(AGENT)
        assert held is not None and held["ip"] == "203.0.113.9" and held["active"] == 0
        shown = await admin.get(f"/{API}/agents/{AGENT}")
        assert shown.status_code == 200
        assert (shown.json()["results"]["port"], shown.json()["results"]["regcount"]) == (
            before["port"],
            before["regcount"],
        )
        # Without the TPM the replayer cannot answer; a wrong tag drops only the held row.
        wrong = await agent.put(f"/{API}/agents/{AGENT}", json={"auth_tag": "00" * 48})
        assert wrong.status_code == 400
        assert (await admin.get(f"/{API}/agents/{AGENT}")).status_code == 200
    assert registrar.stored(AGENT) == before
    assert registrar.held(AGENT) is None


async def test_held_registration_takes_effect_on_activation(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    before = await _active(registrar, identity)
    async with registrar.agent_client() as agent:
        again = identity.body(port="9004")
        assert (await agent.post(f"/{API}/agents/{AGENT}", json=again)).is_success
        tag = registrar.auth_tag(AGENT)  # the held challenge: what the TPM would decrypt
        assert (await agent.put(f"/{API}/agents/{AGENT}", json={"auth_tag": tag})).is_success
    after = registrar.stored(AGENT)
    assert after is not None
    assert (after["port"], after["regcount"], after["active"]) == (9004, before["regcount"] + 1, 1)
    assert registrar.held(AGENT) is None


async def test_delete_removes_the_held_row_too(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    await _active(registrar, identity)
    async with registrar.agent_client() as agent, registrar.admin_client() as admin:
        assert (await agent.post(f"/{API}/agents/{AGENT}", json=identity.body())).is_success
        assert (await admin.delete(f"/{API}/agents/{AGENT}")).status_code == 200
    assert registrar.stored(AGENT) is None and registrar.held(AGENT) is None
