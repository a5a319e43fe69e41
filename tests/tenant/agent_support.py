"""Our agent (edge_agent.run_agent on a swtpm) as the peer of ``limelet-tenant add``.

``serving_agent`` runs the real agent in this Trio loop with one test hook: the payload
deployer records what the agent decrypts with the K it derived (payload deployment proper is
edge_agent.payload's). The tenant runs in a worker thread meanwhile (``tenant``).
"""

from __future__ import annotations

import dataclasses
import functools
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable

import pytest
import trio

from attest_protocol.pki import create_ca
from edge_agent import pull_mode
from edge_agent.app import AgentStarted, run_agent
from edge_agent.bootstrap_keys import DerivedKey
from edge_agent.config import AgentConfig
from edge_agent.payload.decrypt import decrypt_payload
from tenant_lite.errors import EXIT_OK
from tests.agent_api.support import agent_config
from tests.tenant.support import TenantRun, run_tenant
from tools.swtpm import Swtpm

PAYLOAD = b"limelet tenant payload\n"
# Both verifiers here poll at least once a second; a few polls reach Get Quote.
ATTESTED_WITHIN_SECONDS = 30
ATTESTING = {"Get Quote", "Get Quote (retry)"}


def ek_ca_dir(swtpm: Swtpm, directory: Path) -> Path:
    directory.mkdir()
    shutil.copy(swtpm.state.issuer_cert, directory / "issuer.pem")
    shutil.copy(swtpm.state.root_cert, directory / "root.pem")
    return directory


def wrong_ek_ca_dir(directory: Path) -> Path:
    directory.mkdir()
    (directory / "vendor.pem").write_bytes(create_ca("not the swtpm maker").cert_pem)
    return directory


def our_agent_config(
    swtpm: Swtpm, tmp_path: Path, *, registrar_port: int, client_ca: Path, port: int
) -> AgentConfig:
    """An agent that registers at ``registrar_port`` and trusts ``client_ca`` for clients."""
    config = agent_config(
        tmp_path,
        swtpm.tcti,
        uuid=str(uuid.uuid4()),
        registrar_ip="127.0.0.1",
        registrar_port=registrar_port,
        ip="127.0.0.1",
        port=port,
        contact_ip="127.0.0.1",
        contact_port=port,
    )
    ca = config.trusted_client_ca_paths[0]
    ca.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(client_ca, ca)
    return config


async def tenant(config: Path, *args: str) -> TenantRun:
    return await trio.to_thread.run_sync(lambda: run_tenant(config, *args))


@dataclasses.dataclass
class Deliveries:
    plaintexts: list[bytes] = dataclasses.field(default_factory=list)


@asynccontextmanager
async def serving_agent(
    config: AgentConfig, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[AgentStarted, Deliveries]]:
    """run_agent with a payload hook that records what the agent decrypts with its K."""
    deliveries = Deliveries()

    async def record(derived: DerivedKey) -> None:
        assert derived.payload is not None
        deliveries.plaintexts.append(decrypt_payload(derived.key, derived.payload))

    original = pull_mode.api_context

    def with_recorder(*args: Any) -> Any:
        return dataclasses.replace(original(*args), deploy_payload=record)

    monkeypatch.delenv("TCTI", raising=False)  # the variable would win over config.tcti
    monkeypatch.setattr(pull_mode, "api_context", with_recorder)
    async with trio.open_nursery() as nursery:
        started: AgentStarted = await nursery.start(functools.partial(run_agent, config))
        yield started, deliveries
        nursery.cancel_scope.cancel()


async def wait_attested(config: Path, agent_id: str) -> dict[str, Any]:
    """Poll ``status`` until the verifier is attesting the agent (or fail with its record)."""
    record: dict[str, Any] = {}
    with trio.move_on_after(ATTESTED_WITHIN_SECONDS):
        while True:
            run = await tenant(config, "status", agent_id)
            assert run.code == EXIT_OK, run
            record = run.result[agent_id]
            if record["operational_state"] in ATTESTING:
                return record
            await trio.sleep(1)
    raise AssertionError(f"agent {agent_id} not attested: {record}")


async def wait_status(
    config: Path, agent_id: str, holds: Callable[[dict[str, Any]], bool], what: str
) -> dict[str, Any]:
    """Poll ``status`` until ``holds(record)``; fail naming ``what`` and the last record."""
    record: dict[str, Any] = {}
    with trio.move_on_after(ATTESTED_WITHIN_SECONDS):
        while True:
            run = await tenant(config, "status", agent_id)
            assert run.code == EXIT_OK, run
            record = run.result[agent_id]
            if holds(record):
                return record
            await trio.sleep(1)
    raise AssertionError(f"agent {agent_id}: {what} never happened: {record}")


def listed_uuids(cvlist_result: Any) -> set[str]:
    """``cvlist``'s ids: Keylime nests them per verifier (``[[id, ...]]``), flat lists pass."""
    found: set[str] = set()
    for item in cvlist_result["uuids"]:
        if isinstance(item, list):
            found.update(str(u) for u in item)
        else:
            found.add(str(item))
    return found
