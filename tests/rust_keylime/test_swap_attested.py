"""Swap agents on a device that limelet-verifier is attesting, and back, with no tenant action.

rust-keylime 0.2.9 registers with limelet-registrar and is added to limelet-verifier; it is
stopped and limelet-agent starts with the same uuid, keylime_dir and agent.conf on the same
swtpm.  It reuses rust-keylime's AK (agent_data.json), mTLS key and certificate, so the
verifier's next quotes verify against the AK it was given and attestation goes on; then the
same from limelet back to rust-keylime.  The verifier retries an unreachable agent as
Keylime's does (retry_interval, max_retries), which covers the seconds of the swap.
"""

from __future__ import annotations

import functools
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from edge_agent.app import run_agent
from edge_agent.config import AgentConfig, load_config
from tests.agent.test_registrar_lite import start_registrar
from tests.registrar.support import RunningRegistrar
from tests.rust_keylime.support import (
    flush_transient,
    require_rust_agent,
    running_rust_agent,
    rust_conf,
)
from tests.verifier.support import API, RunningVerifier, add_body
from tests.verifier.test_polling_swtpm import wait_status
from tools.keylime_services import free_port
from tools.swtpm import Swtpm
from verifier_lite.states import State

pytestmark = [
    pytest.mark.swtpm,
    # rust-keylime's mTLS certificate has a non-positive serial (see test_swap_registrar).
    pytest.mark.filterwarnings(
        "ignore:Parsed a serial number which wasn't positive"
        ":cryptography.utils.CryptographyDeprecationWarning"
    ),
]

ZERO_PCR = "00" * 32
# PCR 23 is all zeros on a fresh swtpm and nothing extends it here.
TPM_POLICY = '{"23": ["' + ZERO_PCR + '"]}'
QUOTES_PER_STAGE = 3
# States the verifier leaves only on a tenant's command: reaching one means the swap failed.
GIVEN_UP = {State.FAILED, State.INVALID_QUOTE, State.TENANT_FAILED, State.TERMINATED}


def _conf(tmp_path: Path, registrar: RunningRegistrar, verifier: RunningVerifier) -> Path:
    keylime_dir = tmp_path / "keylime"
    keylime_dir.mkdir()
    port = free_port()
    text = rust_conf(
        keylime_dir, uuid=str(uuid.uuid4()), port=port, registrar_port=registrar.ports.port
    )
    text = text.replace(
        'trusted_client_ca = "default"', f'trusted_client_ca = "{verifier.tls.ca_cert}"'
    )
    conf = tmp_path / "agent.conf"
    conf.write_text(text)
    return conf


@contextmanager
def unmounted_secure(config: AgentConfig) -> Iterator[None]:
    # As root, limelet-agent mounts a tmpfs secure dir too; it stays after an in-process run.
    try:
        yield
    finally:
        secure = config.data_dir / "secure"
        if os.path.ismount(secure):
            subprocess.run(["umount", str(secure)], check=True, timeout=30)


def _identity(registrar: RunningRegistrar, agent_id: str) -> dict[str, Any]:
    row = registrar.stored(agent_id)
    assert row is not None
    return {k: row[k] for k in ("ek_tpm", "ekcert", "aik_tpm", "mtls_cert")}


async def _add(verifier: RunningVerifier, registrar: RunningRegistrar, agent_id: str) -> int:
    row = registrar.stored(agent_id)
    assert row is not None and row["active"]
    port = int(row["port"])
    ak = row["aik_tpm"]
    body = add_body(
        ak_tpm=ak if isinstance(ak, bytes) else bytes(ak), mtls_cert=row["mtls_cert"],
        port=port, tpm_policy=TPM_POLICY,
    )  # fmt: skip
    async with verifier.client() as client:
        response = await client.post(f"/{API}/agents/{agent_id}", json=body)
    assert response.status_code == 200, response.text
    return port


async def _quotes_go_on(verifier: RunningVerifier, agent_id: str, what: str) -> dict[str, Any]:
    """Wait for QUOTES_PER_STAGE more successful quotes; fail if the verifier gave up."""
    start = time.monotonic()
    before = (await wait_status(verifier, agent_id, lambda r: True))["attestation_count"]

    def more(record: dict[str, Any]) -> bool:
        assert record["operational_state"] not in GIVEN_UP, (what, record)
        return bool(record["attestation_count"] >= before + QUOTES_PER_STAGE)

    record = await wait_status(verifier, agent_id, more)
    print(f"{what}: {QUOTES_PER_STAGE} quotes in {time.monotonic() - start:.1f} s")
    assert record["attestation_status"] == "PASS", record
    return record


async def test_swap_rust_keylime_to_limelet_and_back_while_attested(
    nursery: trio.Nursery,
    verifier: RunningVerifier,
    swtpm: Swtpm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_rust_agent()
    monkeypatch.setenv("TCTI", swtpm.tcti)
    registrar = await start_registrar(nursery, tmp_path, swtpm)
    conf = _conf(tmp_path, registrar, verifier)
    config = load_config(environ={"KEYLIME_AGENT_CONFIG": str(conf)})
    agent_id = config.uuid

    with running_rust_agent(conf, swtpm.tcti, tmp_path / "rust-1") as rust:
        await rust.wait_for_log_async(f"SUCCESS: Agent {agent_id} activated")
        await _add(verifier, registrar, agent_id)
        await _quotes_go_on(verifier, agent_id, "rust-keylime")
    registered = _identity(registrar, agent_id)

    with unmounted_secure(config):
        async with trio.open_nursery() as agent_nursery:
            started = await agent_nursery.start(functools.partial(run_agent, config))
            assert started.agent_id == agent_id
            await _quotes_go_on(verifier, agent_id, "limelet after rust-keylime")
            agent_nursery.cancel_scope.cancel()
    flush_transient(swtpm.tcti)
    # Re-registered with the same EK, AK and mTLS certificate: nothing to enrol again.
    assert _identity(registrar, agent_id) == registered

    with running_rust_agent(conf, swtpm.tcti, tmp_path / "rust-2") as rust:
        await rust.wait_for_log_async(f"SUCCESS: Agent {agent_id} activated")
        assert "Loaded old AK key from" in rust.log()
        await _quotes_go_on(verifier, agent_id, "rust-keylime after limelet")
    assert _identity(registrar, agent_id) == registered
