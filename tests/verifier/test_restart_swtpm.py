"""Restart: 20 agents attesting, the verifier stops and starts on the same database, and
every agent is polled again from a full quote - nothing lost, no tenant action needed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.cv_ca import TlsFiles
from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import API, RunningVerifier, add_body, verifier_config
from tests.verifier.test_polling_swtpm import wait_status
from verifier_lite.server import serve_verifier
from verifier_lite.states import State

pytestmark = pytest.mark.swtpm

AGENT_COUNT = 20
# Twenty agents share one swtpm here; a slower period keeps its queue short on 2 cores.
QUOTE_INTERVAL_SECONDS = 1.0


def attested(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda r: bool(
        r["operational_state"] == State.GET_QUOTE and r["attestation_count"] >= count
    )


async def start(
    nursery: trio.Nursery, tls: TlsFiles, data_dir: Path
) -> tuple[RunningVerifier, trio.CancelScope]:
    config = verifier_config(data_dir, tls, quote_interval=QUOTE_INTERVAL_SECONDS)
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[Any]) -> None:
        with scope:
            await serve_verifier(config, task_status=task_status)

    bound = await nursery.start(run)
    return RunningVerifier(config, bound, tls), scope


async def test_twenty_agents_survive_a_restart(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path, fake_agent: FakeAgent
) -> None:
    ids = [f"agent-{n:02d}" for n in range(AGENT_COUNT)]
    verifier, scope = await start(nursery, tls_files, tmp_path / "verifier")
    body = add_body(
        ak_tpm=fake_agent.ak_public, mtls_cert=fake_agent.cert_pem, port=fake_agent.port
    )
    async with verifier.client() as client:
        for agent_id in ids:
            assert (await client.post(f"/{API}/agents/{agent_id}", json=body)).status_code == 200
    before = {a: (await wait_status(verifier, a, attested(2)))["attestation_count"] for a in ids}
    scope.cancel()
    await trio.sleep(0.2)
    full_before = sum(r["partial"] == "0" for r in fake_agent.state.integrity_requests)
    assert full_before == AGENT_COUNT

    again, _ = await start(nursery, tls_files, tmp_path / "verifier")
    for agent_id in ids:
        await wait_status(again, agent_id, attested(before[agent_id] + 1))
    full_after = sum(r["partial"] == "0" for r in fake_agent.state.integrity_requests)
    assert full_after == 2 * AGENT_COUNT  # each task rebuilt its memory from a full quote
