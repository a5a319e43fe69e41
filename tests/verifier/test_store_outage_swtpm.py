"""The store cannot be written for a while under three attested agents, then recovers.

The fault is injected below MonitoredStore as SQLite raises it for an unwritable file
(``sqlite3.OperationalError: disk I/O error``); reads keep working, as they do then.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import trio

from attest_protocol.tpm2.constants import TpmAlg
from edge_agent.tpm import esys_ops
from edge_agent.tpm.pytss_backend import PytssTpm
from edge_agent.tpm.pytss_sync import EsysTpm
from tests.cv_ca import TlsFiles
from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import (
    API,
    RunningVerifier,
    add_body,
    b64,
    runtime_policy_json,
    verifier_config,
)
from tests.verifier.test_isolation_swtpm import at_least
from tests.verifier.test_polling_swtpm import wait_status
from verifier_lite import server
from verifier_lite.server import serve_verifier
from verifier_lite.states import State
from verifier_lite.store import SqliteVerifierStore, VerifierStore

pytestmark = pytest.mark.swtpm

HONEST = ("s0", "s1")
WATCHED = "s2"  # its policy pins PCR 23, which the test extends during the outage
PCR = 23
WAIT_SECONDS = 30


class FailingWrites:
    """A VerifierStore whose writes raise while ``failing`` (reads pass through)."""

    def __init__(self, inner: VerifierStore) -> None:
        self.inner = inner
        self.failing = False
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if not name.startswith(("add_", "update_", "delete_")):
            return attr

        async def write(*args: Any, **kwargs: Any) -> Any:
            if self.failing:
                self.refused += 1
                raise sqlite3.OperationalError("disk I/O error")
            return await attr(*args, **kwargs)

        return write


async def extend_pcr(agent: FakeAgent) -> None:
    """Through the agent's own TPM connection: swtpm serves one client at a time."""
    tpm = agent.tpm
    assert isinstance(tpm, PytssTpm)
    digest = hashlib.sha256(b"tampered").digest()

    def work(sync: EsysTpm) -> None:
        esys_ops.pcr_extend(sync._esys, PCR, int(TpmAlg.SHA256), digest)

    await tpm._run(work)


async def wait_list(verifier: RunningVerifier, healthy: bool) -> dict[str, Any]:
    async with verifier.client() as client:
        with trio.fail_after(WAIT_SECONDS):
            while True:
                response = await client.get(f"/{API}/agents/")
                results: dict[str, Any] = response.json()["results"]
                if response.status_code == 200 and results["store_healthy"] is healthy:
                    return results
                await trio.sleep(0.05)


async def test_polling_survives_a_store_outage_and_reports_tampering_after_it(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path, fake_agent: FakeAgent,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    assert fake_agent.hash_alg == "sha256"
    config = verifier_config(tmp_path / "verifier", tls_files)
    holder: list[FailingWrites] = []

    class FaultySqlite:
        @staticmethod
        async def open(path: Path) -> FailingWrites:
            holder.append(FailingWrites(await SqliteVerifierStore.open(path)))
            return holder[0]

    monkeypatch.setattr(server, "SqliteVerifierStore", FaultySqlite)
    bound = await nursery.start(serve_verifier, config)
    verifier = RunningVerifier(config, bound, tls_files)
    pinned = json.dumps({str(PCR): ["00" * 32], "mask": hex(1 << 16)})
    async with verifier.client() as client:
        for agent_id in (*HONEST, WATCHED):
            body = add_body(
                ak_tpm=fake_agent.ak_public, mtls_cert=fake_agent.cert_pem, port=fake_agent.port,
                tpm_policy=pinned if agent_id == WATCHED else '{"mask": "0x10000"}',
            )  # fmt: skip
            assert (await client.post(f"/{API}/agents/{agent_id}", json=body)).status_code == 200
    before = {}
    for agent_id in (*HONEST, WATCHED):
        status = await wait_status(verifier, agent_id, lambda r: r["attestation_count"] >= 2)
        before[agent_id] = status["attestation_count"]

    holder[0].failing = True
    await extend_pcr(fake_agent)
    unhealthy = await wait_list(verifier, healthy=False)
    assert "disk I/O error" in unhealthy["last_store_error"]
    for agent_id in (*HONEST, WATCHED):  # stale: never PASS while nothing is recorded
        await wait_status(verifier, agent_id, lambda r: r["attestation_status"] == "PENDING")
    policy = b64(runtime_policy_json().encode())
    async with verifier.client() as client:
        assert (await client.get("/version")).status_code == 200
        refused = await client.post(f"/{API}/allowlists/p1", json={"runtime_policy": policy})
        assert refused.status_code == 503, refused.text
        assert refused.json()["status"] == "verifier database unavailable; try again"
    assert holder[0].refused > 0

    holder[0].failing = False
    await wait_list(verifier, healthy=True)
    for agent_id in HONEST:
        status = await wait_status(verifier, agent_id, at_least(before[agent_id] + 2))
        assert status["operational_state"] == State.GET_QUOTE
        assert status["attestation_status"] == "PASS"
    tampered = await wait_status(
        verifier, WATCHED, lambda r: r["operational_state"] == State.INVALID_QUOTE
    )
    assert tampered["last_event_id"] == f"pcr_validation.invalid_pcr_{PCR}"
    assert tampered["attestation_status"] == "FAIL"
