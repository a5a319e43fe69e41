"""``limelet-tenant`` against limelet's own services: verifier_lite and registrar_lite served
in-process, our agent on a swtpm (the same flow test_add_keylime.py runs against Keylime).

One test CA (Keylime's cv_ca layout) serves everyone: the services' server certificates, the
tenant's and the verifier's client certificates, and the agent's trusted client CA.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from registrar_lite.config import RegistrarConfig
from registrar_lite.server import BoundPorts, serve_registrar
from tenant_lite.errors import EXIT_ATTESTATION_FAILED, EXIT_NOT_FOUND, EXIT_OK
from tests.cv_ca import TlsFiles, make_tls_files
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
from tests.tenant.support import write_config
from tests.tenant.test_keylime_services import POLICY
from tests.verifier.support import verifier_config
from tools.keylime_services import free_port
from tools.swtpm import Swtpm
from verifier_lite.server import BoundPort, serve_verifier

pytestmark = pytest.mark.swtpm


@dataclass(frozen=True)
class LiteServices:
    tls: TlsFiles
    registrar: BoundPorts
    verifier: BoundPort
    tenant_config: Path


@pytest.fixture
async def lite(nursery: trio.Nursery, tmp_path: Path, swtpm: Swtpm) -> LiteServices:
    tls = make_tls_files(tmp_path / "cv_ca")
    registrar_config = RegistrarConfig(
        ip="127.0.0.1",
        port=0,
        tls_port=0,
        data_dir=str(tmp_path / "registrar"),
        tls_dir=str(tls.directory),
        tpm_cert_store=str(ek_ca_dir(swtpm, tmp_path / "registrar-ek-ca")),
    )
    registrar: BoundPorts = await nursery.start(serve_registrar, registrar_config)
    verifier: BoundPort = await nursery.start(
        serve_verifier, verifier_config(tmp_path / "verifier", tls)
    )
    config = write_config(
        tmp_path / "tenant.toml",
        verifier_port=verifier.port,
        registrar_tls_port=registrar.tls_port,
        tls_dir=str(tls.directory),
        request_timeout=10,
        # Explicit key sizes next to Keylime's aliases: verifier_lite does not yet apply
        # Keylime's "rsa" = "rsa2048" normalisation (keylime/common/algorithms.py) and would
        # refuse the agent's "rsa2048" with the default list.
        accept_tpm_encryption_algs="ecc,rsa,ecc256,rsa2048",
    )
    return LiteServices(tls, registrar, verifier, config)


async def test_add_payload_verify_status_delete(
    lite: LiteServices, swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = our_agent_config(
        swtpm,
        tmp_path / "agent",
        registrar_port=lite.registrar.port,
        client_ca=lite.tls.ca_cert,
        port=free_port(),
    )
    payload = tmp_path / "payload.txt"
    payload.write_bytes(PAYLOAD)
    config = lite.tenant_config
    async with serving_agent(agent, monkeypatch) as (started, deliveries):
        agent_id = started.agent_id
        assert (await tenant(config, "reglist")).result["uuids"] == [agent_id]

        wrong = wrong_ek_ca_dir(tmp_path / "wrong-ca")
        refused = await tenant(
            config, "add", agent_id, "-f", str(payload), "--ek-ca-dir", str(wrong)
        )
        assert refused.code == EXIT_ATTESTATION_FAILED, refused
        assert deliveries.plaintexts == []
        assert agent_id not in (await tenant(config, "bulkinfo")).result

        right = ek_ca_dir(swtpm, tmp_path / "ek-ca")
        added = await tenant(
            config, "add", agent_id, "-f", str(payload), "--verify", "--ek-ca-dir", str(right)
        )
        assert added.code == EXIT_OK, added
        assert deliveries.plaintexts == [PAYLOAD]
        record = await wait_attested(config, agent_id)
        assert record["operational_state"] in ATTESTING

        assert (await tenant(config, "delete", agent_id)).code == EXIT_OK
        assert (await tenant(config, "regdelete", agent_id)).code == EXIT_OK
        assert (await tenant(config, "status", agent_id)).code == EXIT_NOT_FOUND


async def test_runtime_policy_commands(lite: LiteServices, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(POLICY), encoding="utf-8")
    config = lite.tenant_config
    added = await tenant(config, "policy", "add", "lite-policy", str(policy_file))
    assert added.code == EXIT_OK, added
    assert "lite-policy" in (await tenant(config, "policy", "list")).result["names"]
    shown = (await tenant(config, "policy", "show", "lite-policy")).result
    assert json.loads(shown["runtime_policy"]) == POLICY
    changed = dict(POLICY, digests={"/usr/bin/new": ["a" * 64]})
    policy_file.write_text(json.dumps(changed), encoding="utf-8")
    updated = await tenant(config, "policy", "update", "lite-policy", str(policy_file))
    assert updated.code == EXIT_OK, updated
    shown = (await tenant(config, "policy", "show", "lite-policy")).result
    assert json.loads(shown["runtime_policy"]) == changed
    missing = await tenant(config, "policy", "update", "no-such", str(policy_file))
    assert missing.code == EXIT_NOT_FOUND
    assert (await tenant(config, "policy", "delete", "lite-policy")).code == EXIT_OK
    assert (await tenant(config, "policy", "show", "lite-policy")).code == EXIT_NOT_FOUND
