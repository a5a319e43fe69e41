"""``add --push-model`` and push ``status`` against REAL Keylime 7.14.3 in push mode.

The verifier runs with ``mode = push`` (PROTOCOL.md section 2): it answers ``GET /version``
with 410, so the tenant falls back to its own current version, and it stores a push agent
with a null address.  The agent is a software identity registered at Keylime's registrar the
way rust-keylime's push agent registers (API 2.5); nothing listens at its address.  The same
enrolment by Keylime's own tenant gives the differential: both verifier records must agree.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tenant_lite.errors import EXIT_NOT_FOUND, EXIT_OK
from tests.fixtures.keylime import KeylimeServices
from tests.registrar.support import software_identity
from tests.tenant.push_support import register_software_agent
from tests.tenant.support import run_tenant
from tests.tenant.test_keylime_services import keylime_config
from tools.keylime_services import get_json, start_keylime

pytestmark = pytest.mark.interop

TPM_POLICY = json.dumps({"23": ["00" * 32]})
GONE = 410


@pytest.fixture(scope="module")
def push_keylime(
    keylime_venv: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KeylimeServices]:
    root = tmp_path_factory.mktemp("keylime-push")
    with start_keylime(root, overrides={"verifier": {"mode": "push"}}) as services:
        yield services


def _verifier_record(services: KeylimeServices, agent_id: str) -> dict[str, Any]:
    status, body = get_json(
        services.verifier_ip,
        services.verifier_port,
        f"/v2.6/agents/{agent_id}",
        services.ssl_context(),
    )
    assert status == 200, body
    results: dict[str, Any] = body["results"]
    return results


def test_push_verifier_has_no_version(push_keylime: KeylimeServices) -> None:
    status, _ = get_json(
        push_keylime.verifier_ip, push_keylime.verifier_port, "/version", push_keylime.ssl_context()
    )
    assert status == GONE


def test_add_status_delete_like_keylime_tenant(
    push_keylime: KeylimeServices, tmp_path: Path
) -> None:
    ours, theirs = "push-ours-1", "push-keylime-1"
    for agent_id in (ours, theirs):
        register_software_agent(push_keylime.registrar_url, agent_id, software_identity())
    config = keylime_config(push_keylime, tmp_path / "tenant.toml", require_ek_cert=False)

    added = run_tenant(config, "add", ours, "--push-model", "--tpm-policy", TPM_POLICY)
    assert added.code == EXIT_OK, added
    keylime_added = push_keylime.run_tenant(
        "-c",
        "add",
        "-u",
        theirs,
        "--push-model",
        "--tpm_policy",
        TPM_POLICY,
        env={"KEYLIME_TENANT_REQUIRE_EK_CERT": "False"},
    )
    assert keylime_added.returncode == 0, keylime_added.stderr[-2000:]

    mine, reference = _verifier_record(push_keylime, ours), _verifier_record(push_keylime, theirs)
    assert set(mine) == set(reference)
    for field in ("ip", "port", "v", "tpm_policy", "attestation_status", "attestation_count"):
        assert mine[field] == reference[field], field
    assert (mine["ip"], mine["port"], mine["v"]) == (None, None, None)

    shown = run_tenant(config, "status", ours)
    assert shown.code == EXIT_OK, shown
    record = shown.result[ours]
    assert record["push_model"] is True
    assert "operational_state" not in record
    assert record["attestation_status"] == "PENDING"
    assert record["attestation_count"] == 0

    assert run_tenant(config, "delete", ours).code == EXIT_OK
    assert run_tenant(config, "status", ours).result[ours].get("push_model") is None
    assert run_tenant(config, "regdelete", ours).code == EXIT_OK
    assert run_tenant(config, "status", ours).code == EXIT_NOT_FOUND
