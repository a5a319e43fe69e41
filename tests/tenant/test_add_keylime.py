"""``limelet-tenant add`` end to end: our agent on a swtpm, the REAL Keylime 7.14.3 registrar
and verifier.

The agent registers with Keylime's registrar and trusts Keylime's CA for client certificates
(the verifier's and the tenant's). The tenant checks the EK certificate against the swtpm
maker's CA, verifies the identity quote, delivers U and the payload, hands V to Keylime's
verifier and confirms the derived key through ``keys/verify``.

The refusal test registers an agent whose contact address is a bare TCP listener that counts
connections, so "nothing reached the agent" is observed, not assumed.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from edge_agent.app import AgentStarted, open_pytss_tpm, start_agent
from edge_agent.config import AgentConfig
from tenant_lite.errors import (
    EXIT_ATTESTATION_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
)
from tests.fixtures.keylime import KeylimeServices
from tests.tenant.agent_support import (
    ATTESTING,
    PAYLOAD,
    ek_ca_dir,
    our_agent_config,
    serving_agent,
    tenant,
    wait_attested,
    wrong_ek_ca_dir,
)
from tests.tenant.test_keylime_services import keylime_config
from tools.keylime_services import free_port
from tools.swtpm import Swtpm

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]


def keylime_agent(
    services: KeylimeServices, swtpm: Swtpm, tmp_path: Path, port: int
) -> AgentConfig:
    return our_agent_config(
        swtpm, tmp_path, registrar_port=services.registrar_port, client_ca=services.ca_cert,
        port=port,
    )  # fmt: skip


async def test_add_payload_verify_then_status_and_delete(
    keylime_services: KeylimeServices,
    swtpm: Swtpm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent_config_ = keylime_agent(keylime_services, swtpm, tmp_path / "agent", free_port())
    payload = tmp_path / "payload.txt"
    payload.write_bytes(PAYLOAD)
    config = keylime_config(keylime_services, tmp_path / "tenant.toml")
    ek_cas = ek_ca_dir(swtpm, tmp_path / "ek-ca")

    async with serving_agent(agent_config_, monkeypatch) as (started, deliveries):
        agent_id = started.agent_id
        assert agent_id in (await tenant(config, "reglist")).result["uuids"]

        added = await tenant(
            config, "add", agent_id, "-f", str(payload), "--verify", "--ek-ca-dir", str(ek_cas)
        )
        assert added.code == EXIT_OK, added
        assert added.result["key_verified"] is True
        assert added.result["warnings"] == []
        assert deliveries.plaintexts == [PAYLOAD]

        record = await wait_attested(config, agent_id)
        assert record["operational_state"] in ATTESTING

        assert agent_id in str((await tenant(config, "cvlist")).result["uuids"])
        deleted = await tenant(config, "delete", agent_id)
        assert deleted.code == EXIT_OK, deleted
        after = await tenant(config, "status", agent_id)
        assert after.result[agent_id]["operational_state"] == "Registered"


async def test_add_cert_package_with_include(
    keylime_services: KeylimeServices,
    swtpm: Swtpm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--cert DIR --include DIR: the agent receives Keylime's certificate package zip."""
    agent_config_ = keylime_agent(keylime_services, swtpm, tmp_path / "agent", free_port())
    config = keylime_config(keylime_services, tmp_path / "tenant.toml")
    include = tmp_path / "include"
    include.mkdir()
    (include / "autorun.sh").write_text("#!/bin/sh\necho hi\n")
    ca_dir = tmp_path / "tenant-ca"
    async with serving_agent(agent_config_, monkeypatch) as (started, deliveries):
        agent_id = started.agent_id
        added = await tenant(
            config, "update", agent_id, "--cert", str(ca_dir), "--include", str(include),
            "--verify", "--ek-ca-dir", str(ek_ca_dir(swtpm, tmp_path / "ek-ca")),
        )  # fmt: skip
        assert added.code == EXIT_OK, added
        (zipped,) = deliveries.plaintexts
        with zipfile.ZipFile(io.BytesIO(zipped)) as zf:
            names = set(zf.namelist())
        assert {f"{agent_id}-cert.crt", "RevocationNotifier-cert.crt", "autorun.sh"} <= names
        assert (ca_dir / f"{agent_id}-cert.crt").is_file()
        assert (await tenant(config, "delete", agent_id)).code == EXIT_OK


@asynccontextmanager
async def counting_listener() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP listener on loopback that records each connection and closes it."""
    accepted: list[int] = []
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")

    async def handle(stream: trio.SocketStream) -> None:
        accepted.append(1)
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, handle, listeners)
        yield listeners[0].socket.getsockname()[1], accepted
        nursery.cancel_scope.cancel()


async def register_only(config: AgentConfig) -> AgentStarted:
    tpm = await open_pytss_tpm(config.tpm_config())
    try:
        return await start_agent(config, tpm)
    finally:
        await tpm.aclose()


async def test_wrong_ek_ca_refuses_before_agent_or_verifier(
    keylime_services: KeylimeServices,
    swtpm: Swtpm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TCTI", raising=False)  # the variable would win over config.tcti
    config = keylime_config(keylime_services, tmp_path / "tenant.toml")
    payload = tmp_path / "payload.txt"
    payload.write_bytes(PAYLOAD)
    async with counting_listener() as (port, accepted):
        agent_config_ = keylime_agent(keylime_services, swtpm, tmp_path / "agent", port)
        agent_id = (await register_only(agent_config_)).agent_id

        wrong = wrong_ek_ca_dir(tmp_path / "wrong-ca")
        run = await tenant(config, "add", agent_id, "-f", str(payload), "--ek-ca-dir", str(wrong))
        assert run.code == EXIT_ATTESTATION_FAILED, run
        assert str(wrong) in run.body["message"]
        assert accepted == []
        assert (await tenant(config, "status", agent_id)).result[agent_id] == {
            "operational_state": "Registered"
        }
        verifier_view = await tenant(config, "bulkinfo")
        assert agent_id not in verifier_view.result

        # Control: with the right CA the tenant gets past the EK check and dials the agent
        # (which here is only a listener that hangs up), so the listener does see tenants.
        right = ek_ca_dir(swtpm, tmp_path / "right-ca")
        run = await tenant(config, "add", agent_id, "-f", str(payload), "--ek-ca-dir", str(right))
        assert run.code == EXIT_UNREACHABLE, run
        assert f"127.0.0.1:{port}" in run.body["message"]
        assert accepted != []
        assert agent_id not in (await tenant(config, "bulkinfo")).result

        deleted = await tenant(config, "regdelete", agent_id)
        assert deleted.code == EXIT_OK, deleted
        assert (await tenant(config, "regstatus", agent_id)).code == EXIT_NOT_FOUND
