"""Which enrolments are push agents, and that push agents are never polled."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.lowlevel

from tests.unit.test_quote import rsa_key
from tests.verifier.memory_store import MemoryStore
from tests.verifier.push_client import SoftTpm
from tests.verifier.test_push_abuse import AGENT, Harness, status_view
from tests.verifier.test_push_abuse import harness as harness  # the fixture, used by name
from tests.verifier.test_store import record
from verifier_lite.engine import Engine, EngineSettings
from verifier_lite.push import monitor
from verifier_lite.push.enrol import is_push_enrolment
from verifier_lite.states import State

PULL_BODY = {"v": "AAAA", "cloudagent_ip": "127.0.0.1", "cloudagent_port": 9002, "mtls_cert": "x"}
TENANT_PUSH_BODY = {"v": None, "cloudagent_ip": "127.0.0.1", "cloudagent_port": 9002}


@pytest.mark.parametrize(
    ("body", "mode", "push"),
    [
        (PULL_BODY, "pull", False),
        (PULL_BODY, "mixed", False),
        (PULL_BODY, "push", True),
        ({**PULL_BODY, "cloudagent_ip": None, "cloudagent_port": None}, "pull", True),
        ({**PULL_BODY, "push_model": True}, "pull", True),
        ({**PULL_BODY, "v": None}, "mixed", False),  # it has an mTLS certificate
        ({**TENANT_PUSH_BODY, "mtls_cert": None}, "pull", False),
        ({**TENANT_PUSH_BODY, "mtls_cert": None}, "mixed", True),
        ({**TENANT_PUSH_BODY, "mtls_cert": "disabled"}, "mixed", True),
    ],
)
def test_push_enrolment_markers(body: dict[str, Any], mode: str, push: bool) -> None:
    assert is_push_enrolment(body, mode) is push


async def test_push_agents_are_not_resumed_for_polling(nursery: trio.Nursery) -> None:
    store = MemoryStore()
    polled: list[str] = []

    def channels(agent: Any) -> Any:
        polled.append(agent.agent_id)
        raise AssertionError("a push agent was polled")

    await store.add_agent(record(agent_id="push-1", ip="", port=0), None, None)
    engine = Engine(store, EngineSettings(1.0, 1.0, False, 1), channels)
    await nursery.start(engine.serve)
    await trio.lowlevel.checkpoint()  # let any started task run
    assert engine.running() == frozenset() and polled == []
    agent = await store.get_agent("push-1")
    assert agent is not None and agent.state is State(record().operational_state)


async def test_reactivated_push_agent_is_pending_not_timed_out(harness: Harness) -> None:
    tpm = SoftTpm(rsa_key())
    tpm.measure("/usr/bin/one", b"one")
    assert await harness.enrol(AGENT, tpm) == 200
    client = harness.client_for(AGENT, tpm)
    assert await client.authenticate() == 200
    assert (await client.attest())[0] == 202
    tpm.extend(23, b"\x02" * 32)
    harness.later()
    assert (await client.attest())[0] == 202
    assert (await status_view(harness))["attestation_status"] == "FAIL"
    response = await harness.client.put(f"/v2.1/agents/{AGENT}/reactivate")
    assert response.status_code == 200
    harness.clock.now += 60
    assert await monitor.sweep(harness.state.verifier, harness.clock.now) == 0
    view = await status_view(harness)
    assert view["operational_state"] == State.START and view["attestation_status"] == "PENDING"
