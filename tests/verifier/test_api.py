"""The REST API over mTLS: routes, Keylime's response fields, and bad input on every route.

No agent answers here: a channel that waits forever keeps each added agent in START, so the
API is tested on its own; the polling tests use a real (fake) agent on swtpm.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from attest_protocol.api_version import ApiVersion
from tests.cv_ca import TlsFiles
from tests.registrar.support import ak_public
from tests.verifier.support import (
    API,
    RunningVerifier,
    add_body,
    b64,
    runtime_policy_json,
    verifier_config,
)
from verifier_lite.agent_client import AgentChannel, QuoteRequest
from verifier_lite.records import AgentRecord
from verifier_lite.server import serve_verifier
from verifier_lite.states import State

# The keys of Keylime 7.14.3's process_get_status.
STATUS_KEYS = {
    "operational_state", "v", "ip", "port", "tpm_policy", "meta_data", "has_mb_refstate",
    "has_runtime_policy", "accept_tpm_hash_algs", "accept_tpm_encryption_algs",
    "accept_tpm_signing_algs", "hash_alg", "enc_alg", "sign_alg", "verifier_id", "verifier_ip",
    "verifier_port", "severity_level", "last_event_id", "attestation_count",
    "last_received_quote", "last_successful_attestation", "attestation_status",
    "attestation_period", "maximum_attestation_interval",
}  # fmt: skip
AK = ak_public()


class SilentChannel:
    """An agent that never answers (implements ``AgentChannel``)."""

    async def versions(self) -> tuple[ApiVersion, ...]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def integrity_quote(self, version: ApiVersion, request: QuoteRequest) -> Any:
        raise AssertionError("never asked")

    async def provide_v(self, version: ApiVersion, encrypted_v_b64: str) -> None:
        raise AssertionError("never asked")

    async def notify_revocation(self, version: ApiVersion, body: Mapping[str, str]) -> None:
        raise AssertionError("never asked")

    async def aclose(self) -> None:
        return None


def silent(agent: AgentRecord) -> AgentChannel:
    return SilentChannel()


@pytest.fixture
async def api(nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path) -> RunningVerifier:
    config = verifier_config(tmp_path / "verifier", tls_files)
    bound = await nursery.start(
        lambda task_status: serve_verifier(config, channels=silent, task_status=task_status)
    )
    return RunningVerifier(config, bound, tls_files)


def body(**changes: Any) -> dict[str, Any]:
    out = add_body(ak_tpm=AK, mtls_cert="PEM-pinned", port=9002)
    out.update({k: b64(v) if isinstance(v, bytes) else v for k, v in changes.items()})
    return out


async def test_version_and_client_certificate_required(api: RunningVerifier) -> None:
    async with api.client() as client:
        results = (await client.get("/version")).json()["results"]
    assert results["current_version"] == "2.6"
    assert results["supported_versions"] == ["2.1", "2.2", "2.3", "2.4", "2.5", "2.6"]
    async with api.client(with_cert=False) as client:
        # TLS 1.3: the refusal may arrive after the client's handshake is done.
        with pytest.raises(
            (httpx.ConnectError, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)
        ):
            await client.get("/version")


async def test_add_show_list_bulk_stop_reactivate_delete(api: RunningVerifier) -> None:
    async with api.client() as client:
        added = await client.post(f"/{API}/agents/a1", json=body(v=b"V" * 32))
        assert added.json() == {"code": 200, "status": "Success", "results": {}}
        status = (await client.get(f"/{API}/agents/a1")).json()["results"]
        assert set(status) == STATUS_KEYS
        assert status["operational_state"] == State.START
        assert status["attestation_status"] == "PENDING"
        assert status["v"] == b64(b"V" * 32)
        assert (await client.get(f"/{API}/agents/")).json()["results"] == {
            "uuids": [["a1"]],
            "store_healthy": True,
            "last_store_error": None,
        }
        other = await client.get(f"/{API}/agents/", params={"verifier": "elsewhere"})
        assert other.json()["results"]["uuids"] == []
        bulk = (await client.get(f"/{API}/agents/", params={"bulk": "True"})).json()["results"]
        assert set(bulk) == {"a1"} and set(bulk["a1"]) == STATUS_KEYS
        # Bulk reads the policies once for the fleet; it reports them as the single view does.
        for key in ("has_runtime_policy", "has_mb_refstate"):
            assert bulk["a1"][key] == status[key]
        again = await client.post(f"/{API}/agents/a1", json=body())
        assert again.status_code == 409
        assert (await client.put(f"/{API}/agents/a1/stop")).status_code == 200
        stopped = (await client.get(f"/{API}/agents/a1")).json()["results"]
        assert stopped["operational_state"] == State.TENANT_FAILED
        assert (await client.put(f"/{API}/agents/a1/reactivate")).status_code == 200
        started = (await client.get(f"/{API}/agents/a1")).json()["results"]
        assert started["operational_state"] == State.START
        assert (await client.delete(f"/{API}/agents/a1")).status_code == 200
        assert (await client.get(f"/{API}/agents/a1")).status_code == 404
        assert (await client.delete(f"/{API}/agents/a1")).status_code == 404
        assert (await client.put(f"/{API}/agents/a1/stop")).status_code == 404


BAD_ADD_BODIES = [
    ("cloudagent_port", {"cloudagent_port": "x"}),
    ("cloudagent_port", {"cloudagent_port": 70000}),
    ("cloudagent_ip", {"cloudagent_ip": "not an ip!"}),
    ("tpm_policy", {"tpm_policy": "{not json"}),
    ("tpm_policy", {"tpm_policy": '{"99": ["00"]}'}),
    ("tpm_policy", {"tpm_policy": '{"16": [1]}'}),
    ("ak_tpm", {"ak_tpm": "@@@"}),
    ("ak_tpm", {"ak_tpm": b64(b"\x00\x04abcd")}),
    ("ak_tpm", {"ak_tpm": None}),
    ("accept_tpm_hash_algs", {"accept_tpm_hash_algs": "sha256"}),
    ("accept_tpm_signing_algs", {"accept_tpm_signing_algs": []}),
    ("v", {"v": "%%%"}),
    ("runtime_policy", {"runtime_policy": b64(b'{"meta": {}}')}),
    ("runtime_policy", {"runtime_policy": "***"}),
    ("mb_policy", {"mb_policy": "{nope"}),
    ("mb_policy", {"mb_policy": '{"pcrs": {"10": []}}'}),
    ("metadata", {"metadata": "{nope"}),
    ("runtime_policy_name", {"runtime_policy_name": "../etc"}),
    ("mtls_cert", {"mtls_cert": "disabled"}),
    ("mtls_cert", {"mtls_cert": None}),
]


@pytest.mark.parametrize(
    ("field", "change"),
    [pytest.param(f, c, id=f"{f}-{i}") for i, (f, c) in enumerate(BAD_ADD_BODIES)],
)
async def test_bad_add_is_400_naming_the_field_and_stores_nothing(
    api: RunningVerifier, field: str, change: dict[str, Any]
) -> None:
    async with api.client() as client:
        response = await client.post(f"/{API}/agents/a2", json=body(**change))
        assert response.status_code == 400, response.text
        assert f"'{field}'" in response.json()["status"]
        assert (await client.get(f"/{API}/agents/a2")).status_code == 404
        assert (await client.get(f"/{API}/allowlists/")).json()["results"] == {
            "runtimepolicy names": []
        }


@pytest.mark.parametrize(
    ("method", "path", "content"),
    [
        ("POST", f"/{API}/agents/a3", b""),
        ("POST", f"/{API}/agents/a3", b"[1, 2]"),
        ("POST", f"/{API}/agents/a3", b"\xff\xfe"),
        ("POST", f"/{API}/agents/bad id!", b"{}"),
        ("GET", f"/{API}/agents/bad id!", b""),
        ("PUT", f"/{API}/agents/bad id!/stop", b""),
        ("GET", "/v9.9/agents/", b""),
        ("POST", f"/{API}/allowlists/p1", b"{}"),
        ("POST", f"/{API}/allowlists/bad name!", b"{}"),
        ("POST", "/v2.3/mbpolicies/m1", b"{}"),
        ("GET", "/v2.2/mbpolicies/", b""),
        ("GET", f"/{API}/verify/identity", b""),
    ],
)
async def test_bad_requests_are_400(
    api: RunningVerifier, method: str, path: str, content: bytes
) -> None:
    async with api.client() as client:
        response = await client.request(method, path, content=content)
        assert response.status_code == 400, response.text
        assert response.json()["code"] == 400
        assert (await client.get(f"/{API}/agents/")).json()["results"]["uuids"] == []


async def test_runtime_policies(api: RunningVerifier) -> None:
    policy = b64(runtime_policy_json().encode())
    async with api.client() as client:
        created = await client.post(f"/{API}/allowlists/p1", json={"runtime_policy": policy})
        assert created.status_code == 201
        assert (
            await client.post(f"/{API}/allowlists/p1", json={"runtime_policy": policy})
        ).status_code == 409
        shown = (await client.get(f"/{API}/allowlists/p1")).json()["results"]
        assert shown["name"] == "p1" and shown["runtime_policy"] == runtime_policy_json()
        listed = (await client.get(f"/{API}/allowlists/")).json()["results"]
        assert listed == {"runtimepolicy names": ["p1"]}
        assert (
            await client.put(f"/{API}/allowlists/p9", json={"runtime_policy": policy})
        ).status_code == 404
        agent = body(runtime_policy="", runtime_policy_name="p1")
        assert (await client.post(f"/{API}/agents/a4", json=agent)).status_code == 200
        status = (await client.get(f"/{API}/agents/a4")).json()["results"]
        assert status["has_runtime_policy"] == 1
        bare = body(runtime_policy="", runtime_policy_name="")  # Keylime's empty stand-in
        assert (await client.post(f"/{API}/agents/a6", json=bare)).status_code == 200
        bulk = (await client.get(f"/{API}/agents/", params={"bulk": "1"})).json()["results"]
        assert bulk["a4"]["has_runtime_policy"] == 1  # the fleet's policies read in one go
        assert bulk["a6"]["has_runtime_policy"] == 0
        assert (await client.delete(f"/{API}/agents/a6")).status_code == 200
        assert (await client.delete(f"/{API}/allowlists/p1")).status_code == 409
        assert (await client.delete(f"/{API}/agents/a4")).status_code == 200
        assert (await client.delete(f"/{API}/allowlist/p1")).status_code == 204
        assert (await client.get(f"/{API}/allowlists/p1")).status_code == 404
        missing = await client.post(f"/{API}/agents/a5", json=body(runtime_policy_name="p1"))
        assert missing.status_code == 404


async def test_mb_policies(api: RunningVerifier) -> None:
    api_mb = "v2.3"  # measured-boot policy routes exist from API 2.3 on
    async with api.client() as client:
        reference = {"pcrs": {"7": ["ab" * 32]}}
        created = await client.post(f"/{api_mb}/mbpolicies/m1", json={"mb_policy": reference})
        assert created.status_code == 201
        shown = (await client.get(f"/{api_mb}/mbpolicies/m1")).json()["results"]
        assert shown["name"] == "m1" and json.loads(shown["mb_policy"]) == reference
        # A reference state of Keylime's example policy is stored as Keylime stores it.
        keylime_refstate: dict[str, Any] = {"mb_policy": {"scrtm_and_bios": [], "kernels": []}}
        stored = await client.post(f"/{api_mb}/mbpolicies/m2", json=keylime_refstate)
        assert stored.status_code == 201, stored.text
        bad_pcrs = {"mb_policy": {"pcrs": {"10": ["ab" * 32]}}}  # PCR 10 is IMA's
        refused = await client.post(f"/{api_mb}/mbpolicies/m3", json=bad_pcrs)
        assert refused.status_code == 400 and "'mb_policy'" in refused.json()["status"]
        assert (await client.get(f"/{api_mb}/mbpolicies/")).json()["results"] == {
            "mbpolicy names": ["m1", "m2"]
        }
        agent = body(mb_policy_name="m1")
        assert (await client.post(f"/{API}/agents/a6", json=agent)).status_code == 200
        status = (await client.get(f"/{API}/agents/a6")).json()["results"]
        assert status["has_mb_refstate"] == 1
        assert (await client.delete(f"/{api_mb}/mbpolicies/m1")).status_code == 409
        taken = body(mb_policy='{"reject_all": true}', mb_policy_name="m1")
        assert (await client.post(f"/{API}/agents/a7", json=taken)).status_code == 409
        assert (await client.get(f"/{API}/agents/a7")).status_code == 404


STALL_WAIT_SECONDS = 5


async def test_stalled_handshake_blocks_no_one(api: RunningVerifier) -> None:
    """CVE-2023-38200: a half-open TLS connection neither blocks others nor stays forever."""
    stalled = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with stalled:
        await stalled.connect(("127.0.0.1", api.bound.port))
        with trio.fail_after(STALL_WAIT_SECONDS):
            async with api.client() as client:
                response = await client.get("/version")
        assert response.status_code == 200
        with trio.fail_after(STALL_WAIT_SECONDS):
            leftover = await stalled.recv(1024)
    assert leftover == b""
