"""Every agent-facing tenant command, in the order an operator would run them, on one agent.

The same walk runs on both sides: limelet's registrar_lite + verifier_lite (in-process) and
the REAL Keylime 7.14.3 registrar + verifier; the agent is ours on a swtpm either way. One
enrolment per side keeps the runtime down:

regstatus → add -f --verify → status → cvlist → bulkinfo → (agent restarted: Failed) →
reactivate → stop → reactivate → update -f --verify --tpm-policy → delete → regdelete

Each step's effect is read back through the service, not taken from the command's exit code:
``stop`` leaves the record in Tenant Quote Failed (keylime/common/states.py TENANT_FAILED,
set by the verifier's ``PUT /agents/{id}/stop``) with attestation_count frozen;
``reactivate`` makes attestation_count grow again; ``update`` replaces the record (the new
tpm_policy and its PCR 23 mask bit are visible, and quotes pass under it) and re-delivers a
payload the agent decrypts. Policy storage commands and the wrong-EK-CA refusal are in
test_keylime_services.py, test_add_lite.py and test_add_keylime.py (docs/tenant.md, Tests).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import trio

from edge_agent.config import AgentConfig
from tenant_lite.errors import EXIT_NOT_FOUND, EXIT_OK
from tests.fixtures.keylime import KeylimeServices
from tests.tenant.agent_support import (
    ATTESTED_WITHIN_SECONDS,
    ATTESTING,
    PAYLOAD,
    ek_ca_dir,
    listed_uuids,
    our_agent_config,
    serving_agent,
    tenant,
    wait_status,
)
from tests.tenant.test_add_lite import LiteServices
from tests.tenant.test_add_lite import lite as lite  # the fixture, shared with that module
from tests.tenant.test_keylime_services import keylime_config
from tools.keylime_services import free_port
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

UPDATED_PAYLOAD = b"limelet tenant payload, second delivery\n"
STOPPED = "Tenant Quote Failed"
FAILED = "Failed"
# PCR 23 (application use) is all zeros on a fresh swtpm and nothing here extends it; one
# zero digest per bank length (sha1, sha256, sha384, sha512) whichever bank the quote uses.
UPDATED_TPM_POLICY = {"23": ["0" * 40, "0" * 64, "0" * 96, "0" * 128]}
# Both verifiers here quote every second or faster: after this long a stopped agent would
# have been quoted again had the stop not taken effect.
STOPPED_OBSERVATION_SECONDS = 3


def attested_since(count: int) -> Callable[[dict[str, Any]], bool]:
    """A ``status`` predicate: attesting, with more good quotes than ``count``."""

    def holds(record: dict[str, Any]) -> bool:
        return record["operational_state"] in ATTESTING and record["attestation_count"] > count

    return holds


def tpm_policy_of(record: dict[str, Any]) -> dict[str, Any]:
    """The verifier keeps tpm_policy as the JSON text the tenant sent (Keylime's column)."""
    policy = record["tpm_policy"]
    decoded: dict[str, Any] = json.loads(policy) if isinstance(policy, str) else policy
    return decoded


async def walk_lifecycle(
    config: Path, agent: AgentConfig, swtpm: Swtpm, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, keylime_log: Optional[Path] = None,
) -> None:  # fmt: skip
    """``keylime_log``: the real verifier's log, for the one step where Keylime differs."""
    ek_cas = str(ek_ca_dir(swtpm, tmp_path / "ek-ca"))
    async with serving_agent(agent, monkeypatch) as (started, deliveries):
        agent_id = started.agent_id
        await enrol_and_list(config, agent_id, agent.port, ek_cas, tmp_path)
        assert deliveries.plaintexts == [PAYLOAD]
    # The agent is down: the verifier exhausts its retries and marks the agent Failed,
    # which is what reactivate is for. Our agent derives K once per process
    # (docs/agent-api.md), so the restarted one can also take update's new payload.
    await wait_status(config, agent_id, lambda r: r["operational_state"] == FAILED, "Failed")
    async with serving_agent(agent, monkeypatch) as (started, deliveries):
        assert started.agent_id == agent_id
        await reactivate_stop(config, agent_id, keylime_log)
        await update_delete_regdelete(config, agent_id, ek_cas, tmp_path)
        assert deliveries.plaintexts == [UPDATED_PAYLOAD]


async def enrol_and_list(
    config: Path, agent_id: str, agent_port: int, ek_cas: str, tmp_path: Path
) -> None:
    payload = tmp_path / "payload.txt"
    payload.write_bytes(PAYLOAD)

    registered = await tenant(config, "regstatus", agent_id)
    assert registered.code == EXIT_OK, registered
    reg_record = registered.result[agent_id]
    assert (reg_record["ip"], reg_record["port"]) == ("127.0.0.1", agent_port)
    assert reg_record["aik_tpm"] and reg_record["ekcert"] and reg_record["mtls_cert"]

    added = await tenant(
        config, "add", agent_id, "-f", str(payload), "--verify", "--ek-ca-dir", ek_cas
    )
    assert added.code == EXIT_OK, added
    assert added.result["key_verified"] is True
    await wait_status(config, agent_id, attested_since(0), "first good quote")

    assert agent_id in listed_uuids((await tenant(config, "cvlist")).result)
    bulk = (await tenant(config, "bulkinfo")).result
    assert agent_id in bulk, bulk
    entry = bulk[agent_id]
    assert entry["operational_state"] in ATTESTING
    assert (entry["ip"], entry["port"]) == ("127.0.0.1", agent_port)
    assert entry["attestation_count"] >= 1
    assert "sha256" in entry["accept_tpm_hash_algs"]


async def reactivate_stop(config: Path, agent_id: str, keylime_log: Optional[Path]) -> None:
    failed = (await tenant(config, "status", agent_id)).result[agent_id]
    reactivated = await tenant(config, "reactivate", agent_id)
    assert reactivated.code == EXIT_OK, reactivated
    await wait_status(
        config, agent_id, attested_since(failed["attestation_count"]), "attestation resuming"
    )

    at_stop = await stop_and_check_frozen(config, agent_id)
    again = await tenant(config, "reactivate", agent_id)
    assert again.code == EXIT_OK, again
    if keylime_log is None:
        await wait_status(
            config, agent_id, attested_since(at_stop), "attestation resuming after stop"
        )
    else:
        await keylime_ignores_reactivate_after_stop(config, agent_id, keylime_log)


async def stop_and_check_frozen(config: Path, agent_id: str) -> int:
    """``stop``; the record stays, in Tenant Quote Failed, and is quoted no more."""
    stopped = await tenant(config, "stop", agent_id)
    assert stopped.code == EXIT_OK, stopped
    at_stop = (await tenant(config, "status", agent_id)).result[agent_id]
    assert at_stop["operational_state"] == STOPPED
    await trio.sleep(STOPPED_OBSERVATION_SECONDS)
    later = (await tenant(config, "status", agent_id)).result[agent_id]
    assert later["operational_state"] == STOPPED
    assert later["attestation_count"] == at_stop["attestation_count"]
    count: int = at_stop["attestation_count"]
    return count


async def keylime_ignores_reactivate_after_stop(config: Path, agent_id: str, log: Path) -> None:
    """Keylime 7.14.3 answers 200 to reactivate after stop but never polls again.

    cloud_verifier_tornado.py (PUT .../reactivate) sets START on its in-memory copy only;
    process_agent re-reads the row, still TENANT_FAILED, logs this line and returns. After a
    Failed (above) the same request does resume, so the tenant's request is not at fault.
    """
    line = f"Agent {agent_id} has failed tenant quote. Stopping polling"
    logged = False
    with trio.move_on_after(ATTESTED_WITHIN_SECONDS):
        while True:
            text = await trio.Path(log).read_text(encoding="utf-8", errors="replace")
            logged = line in text
            if logged:
                break
            await trio.sleep(1)
    assert logged, f"{log} never said: {line}"
    record = (await tenant(config, "status", agent_id)).result[agent_id]
    assert record["operational_state"] == STOPPED


async def update_delete_regdelete(config: Path, agent_id: str, ek_cas: str, tmp_path: Path) -> None:
    updated = tmp_path / "payload-2.txt"
    updated.write_bytes(UPDATED_PAYLOAD)
    update = await tenant(
        config, "update", agent_id, "-f", str(updated), "--verify", "--ek-ca-dir", ek_cas,
        "--tpm-policy", json.dumps(UPDATED_TPM_POLICY),
    )  # fmt: skip
    assert update.code == EXIT_OK, update
    assert update.result["key_verified"] is True
    renewed = await wait_status(config, agent_id, attested_since(0), "quote under new policy")
    policy = tpm_policy_of(renewed)
    assert policy["23"] == UPDATED_TPM_POLICY["23"]
    assert int(policy["mask"], 16) & (1 << 23)

    deleted = await tenant(config, "delete", agent_id)
    assert deleted.code == EXIT_OK, deleted
    gone = await tenant(config, "status", agent_id)
    assert gone.result[agent_id] == {"operational_state": "Registered"}
    assert agent_id not in listed_uuids((await tenant(config, "cvlist")).result)
    assert agent_id not in (await tenant(config, "bulkinfo")).result

    assert (await tenant(config, "regstatus", agent_id)).code == EXIT_OK
    unregistered = await tenant(config, "regdelete", agent_id)
    assert unregistered.code == EXIT_OK, unregistered
    assert (await tenant(config, "regstatus", agent_id)).code == EXIT_NOT_FOUND
    assert agent_id not in (await tenant(config, "reglist")).result["uuids"]


async def test_lifecycle_lite(
    lite: LiteServices, swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = our_agent_config(
        swtpm, tmp_path / "agent", registrar_port=lite.registrar.port,
        client_ca=lite.tls.ca_cert, port=free_port(),
    )  # fmt: skip
    await walk_lifecycle(lite.tenant_config, agent, swtpm, tmp_path, monkeypatch)


@pytest.mark.interop
async def test_lifecycle_keylime(
    keylime_services: KeylimeServices,
    swtpm: Swtpm,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    agent = our_agent_config(
        swtpm, tmp_path / "agent", registrar_port=keylime_services.registrar_port,
        client_ca=keylime_services.ca_cert, port=free_port(),
    )  # fmt: skip
    config = keylime_config(keylime_services, tmp_path / "tenant.toml")
    log = keylime_services.verifier_log
    await walk_lifecycle(config, agent, swtpm, tmp_path, monkeypatch, keylime_log=log)
