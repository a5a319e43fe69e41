"""limelet-tenant against the real Keylime 7.14.3 verifier and registrar (no agent needed).

Covers the verifier list, runtime policies stored by Keylime's verifier (``/allowlists``),
not-found and unreachable exit codes, and a server certificate that does not verify.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tenant_lite.errors import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SERVICE_ERROR,
    EXIT_UNREACHABLE,
)
from tests.fixtures.keylime import KeylimeServices
from tests.tenant.support import run_tenant, write_config
from tools.keylime_services import free_port

pytestmark = pytest.mark.interop

# Keylime's runtime policy schema (keylime/ima/ima.py RUNTIME_POLICY_SCHEMA) with one digest.
POLICY = {
    "meta": {"version": 1, "generator": 0},
    "release": 0,
    "digests": {"/usr/bin/true": ["a" * 64]},
    "excludes": [],
    "keyrings": {},
    "ima": {"ignored_keyrings": [], "log_hash_alg": "sha1", "dm_policy": None},
    "ima-buf": {},
    "verification-keys": "",
}


def keylime_config(services: KeylimeServices, path: Path, **extra: str | int) -> Path:
    options: dict[str, str | int] = {
        "verifier_ip": services.verifier_ip,
        "verifier_port": services.verifier_port,
        "registrar_ip": services.registrar_ip,
        "registrar_tls_port": services.registrar_tls_port,
        "tls_dir": str(services.ca_cert.parent),
        "request_timeout": 10,
    }
    options.update(extra)
    return write_config(path, **options)


@pytest.fixture
def config(keylime_services: KeylimeServices, tmp_path: Path) -> Path:
    return keylime_config(keylime_services, tmp_path / "tenant.toml")


def test_cvlist_and_bulkinfo_answer(config: Path) -> None:
    listed = run_tenant(config, "cvlist")
    assert listed.code == EXIT_OK, listed
    assert isinstance(listed.result["uuids"], list)
    bulk = run_tenant(config, "bulkinfo")
    assert bulk.code == EXIT_OK, bulk
    assert isinstance(bulk.result, dict)


def test_reglist_answers(config: Path) -> None:
    run = run_tenant(config, "reglist")
    assert run.code == EXIT_OK, run
    assert isinstance(run.result["uuids"], list)


def test_runtime_policy_add_show_list_delete(config: Path, tmp_path: Path) -> None:
    policy_file = tmp_path / "policy.json"
    policy_file.write_text(json.dumps(POLICY), encoding="utf-8")
    name = "tenant-test-policy"

    added = run_tenant(config, "policy", "add", name, str(policy_file))
    assert added.code == EXIT_OK, added
    again = run_tenant(config, "policy", "add", name, str(policy_file))
    assert again.code == EXIT_SERVICE_ERROR  # Keylime: 409, already exists
    assert "409" in again.body["message"]

    assert name in run_tenant(config, "policy", "list").result["names"]
    shown = run_tenant(config, "policy", "show", name).result
    assert json.loads(shown["runtime_policy"]) == POLICY

    deleted = run_tenant(config, "policy", "delete", name)
    assert deleted.code == EXIT_OK, deleted
    assert name not in run_tenant(config, "policy", "list").result["names"]
    gone = run_tenant(config, "policy", "show", name)
    assert gone.code == EXIT_NOT_FOUND
    assert gone.body["error"] == "not-found"


def test_malformed_policy_is_the_verifiers_400(config: Path, tmp_path: Path) -> None:
    broken = dict(POLICY)
    del broken["meta"]
    policy_file = tmp_path / "broken.json"
    policy_file.write_text(json.dumps(broken), encoding="utf-8")
    run = run_tenant(config, "policy", "add", "broken", str(policy_file))
    assert run.code == EXIT_SERVICE_ERROR
    assert "400" in run.body["message"]


@pytest.mark.parametrize("command", ["status", "regstatus"])
def test_unknown_agent_is_not_found(config: Path, command: str) -> None:
    run = run_tenant(config, command, "no-such-agent")
    assert run.code == EXIT_NOT_FOUND, run
    assert "no-such-agent" in run.body["message"]


@pytest.mark.parametrize("command", ["delete", "stop", "reactivate"])
def test_verifier_commands_on_unknown_agent(config: Path, command: str) -> None:
    run = run_tenant(config, command, "no-such-agent")
    assert run.code == EXIT_NOT_FOUND, run


def test_unreachable_verifier_names_the_address(
    keylime_services: KeylimeServices, tmp_path: Path
) -> None:
    port = free_port()  # nothing listens there
    config = keylime_config(keylime_services, tmp_path / "t.toml", verifier_port=port)
    run = run_tenant(config, "cvlist")
    assert run.code == EXIT_UNREACHABLE, run
    assert f"verifier at 127.0.0.1:{port}" in run.body["message"]


def test_unreachable_registrar_names_the_address(
    keylime_services: KeylimeServices, tmp_path: Path
) -> None:
    port = free_port()
    config = keylime_config(keylime_services, tmp_path / "t.toml", registrar_tls_port=port)
    run = run_tenant(config, "reglist")
    assert run.code == EXIT_UNREACHABLE, run
    assert f"registrar at 127.0.0.1:{port}" in run.body["message"]


def test_server_certificate_from_another_ca_names_the_ca(
    keylime_services: KeylimeServices, tmp_path: Path
) -> None:
    from attest_protocol.pki import create_ca

    other = tmp_path / "other-ca.crt"
    other.write_bytes(create_ca("not Keylime's CA").cert_pem)
    config = keylime_config(keylime_services, tmp_path / "t.toml", trusted_server_ca=str(other))
    run = run_tenant(config, "cvlist")
    assert run.code == EXIT_UNREACHABLE, run
    assert "does not verify against" in run.body["message"]
    assert str(other) in run.body["message"]
