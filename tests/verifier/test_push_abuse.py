"""Push mode (API 3.0) under hostile agents: every bad request refused, nothing stored changes.

The app is verifier_lite's own (``create_app``) on an in-memory store, driven through Quart's
test client by tests/verifier/push_client.py, whose software AK and PCRs make the structures
a TPM would.  The verifier's clock is a test clock, so lifetimes and the 5 x quote_interval
timeout are crossed by moving it, never by sleeping.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from quart import typing as quart_typing

from tests.unit.test_quote import ec_key, rsa_key
from tests.verifier.memory_store import MemoryStore
from tests.verifier.push_client import (
    JSON_API,
    PushClient,
    SoftTpm,
    b64,
    capabilities,
    evidence,
    proof_request,
    session_request,
)
from tests.verifier.support import add_body, runtime_policy_json
from verifier_lite.app import create_app
from verifier_lite.config import VerifierConfig
from verifier_lite.engine import Engine, EngineSettings
from verifier_lite.push import monitor
from verifier_lite.push.routes import EXTENSION, PushState
from verifier_lite.service import Verifier
from verifier_lite.states import State

AGENT = "d432fbb3-d2f1-4a97-9ef7-75bd81c00000"
QUOTE_INTERVAL = 2.0
PCR23_POLICY = json.dumps({"23": ["0" * 64], "mask": "0x800000"})


class Clock:
    def __init__(self) -> None:
        self.now = 1_900_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    client: quart_typing.TestClientProtocol
    store: MemoryStore
    state: PushState
    clock: Clock

    async def send(
        self, method: str, path: str, body: Any, headers: Mapping[str, str]
    ) -> tuple[int, Any, Any]:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        client: Any = self.client  # quart.typing wants every keyword; its default is private
        response = await client.open(path, method=method, data=data, headers=dict(headers))
        text = await response.get_data(as_text=True)
        parsed = json.loads(text) if text else None
        return response.status_code, parsed, response.headers.get("Location")

    async def enrol(self, agent_id: str, tpm: SoftTpm, **extra: Any) -> int:
        body = add_body(ak_tpm=base64.b64decode(tpm.ak_b64), mtls_cert=None, port=9002)
        body.update(cloudagent_ip=None, cloudagent_port=None, tpm_policy=PCR23_POLICY)
        body.update(runtime_policy=b64(runtime_policy_json(IMA_DIGESTS).encode()))
        body["accept_tpm_signing_algs"] = ["rsassa", "ecdsa"]
        body.update(extra)
        response = await self.client.post(f"/v2.1/agents/{agent_id}", json=body)
        return response.status_code

    def client_for(self, agent_id: str, tpm: SoftTpm) -> PushClient:
        return PushClient(self.send, agent_id, tpm)

    def snapshot(self) -> Any:
        histories = {
            k: [(a.index, a.stage, a.evaluation, a.evidence_received_at) for a in h.attestations]
            for k, h in self.state.flow.histories.items()
        }
        return copy.deepcopy((self.store.agents, histories, self.store.push_documents))

    def later(self) -> None:
        self.clock.now += QUOTE_INTERVAL + 0.5


IMA_FILES = {"/usr/bin/one": b"one", "/usr/bin/two": b"two", "/usr/bin/three": b"three"}
IMA_DIGESTS = {path: [hashlib.sha256(data).hexdigest()] for path, data in IMA_FILES.items()}


async def status_view(h: Harness) -> dict[str, Any]:
    response = await h.client.get(f"/v2.1/agents/{AGENT}")
    assert response.status_code == 200
    body: dict[str, Any] = (await response.get_json())["results"]
    return body


@pytest.fixture
async def harness() -> Harness:
    store = MemoryStore()
    config = VerifierConfig(quote_interval=QUOTE_INTERVAL, exponential_backoff=False)
    settings = EngineSettings(QUOTE_INTERVAL, 1.0, False, 3)
    engine = Engine(store, settings, lambda agent: pytest.fail("push agent polled"))
    app = create_app(Verifier(store, engine, config), max_body_bytes=1 << 20)
    state: PushState = app.extensions[EXTENSION]
    clock = Clock()
    state.clock = state.sessions.clock = state.flow.clock = clock
    return Harness(app.test_client(), store, state, clock)


def soft(key: Any = None) -> SoftTpm:
    tpm = SoftTpm(key if key is not None else rsa_key())
    tpm.measure("/usr/bin/one", IMA_FILES["/usr/bin/one"])
    return tpm


async def ready(h: Harness, agent_id: str = AGENT, key: Any = None) -> PushClient:
    tpm = soft(key)
    assert await h.enrol(agent_id, tpm) == 200
    client = h.client_for(agent_id, tpm)
    assert await client.authenticate() == 200 and client.token
    return client


# --- the good path, which every refusal below departs from ---------------------------


async def test_push_agent_attests_incrementally_and_shows_in_v2_status(h: Harness) -> None:
    client = await ready(h)
    status, body = await client.attest()
    assert status == 202, body
    assert body["data"]["attributes"]["evaluation"] == "pass"
    assert body["meta"]["seconds_to_next_attestation"] == 2
    client.tpm.measure("/usr/bin/two", IMA_FILES["/usr/bin/two"])
    h.later()
    status, first, location = await client.negotiate()
    assert status == 201 and location == f"/v3.0/agents/{AGENT}/attestations/1"
    ima = first["data"]["attributes"]["evidence_requested"][1]["chosen_parameters"]
    assert ima["starting_offset"] == 1  # IMA replay continues from the stored offset
    requested = first["data"]["attributes"]["evidence_requested"]
    status, body, _ = await h.send(
        "PATCH", location, evidence(client.tpm, requested), client.headers()
    )
    assert status == 202 and body["data"]["attributes"]["evaluation"] == "pass"
    view = await status_view(h)
    assert view["attestation_count"] == 2 and view["attestation_status"] == "PASS"
    assert view["ip"] is None and view["port"] is None
    # Keylime 7.14.3 answers 500 to both of these.
    assert (await h.client.get(f"/v3.0/agents/{AGENT}")).status_code == 200
    listing = await h.client.get(f"/v3.0/agents/{AGENT}/attestations")
    assert listing.status_code == 200


@pytest.fixture
def h(harness: Harness) -> Harness:
    return harness


async def test_ecdsa_ak_proves_possession_and_attests(h: Harness) -> None:
    client = await ready(h, key=ec_key())
    status, body = await client.attest()
    assert status == 202 and body["data"]["attributes"]["evaluation"] == "pass"


async def test_pcr_tamper_fails_the_agent(h: Harness) -> None:
    client = await ready(h)
    assert (await client.attest())[0] == 202
    client.tpm.extend(23, b"\x01" * 32)
    h.later()
    status, body = await client.attest()
    assert status == 202
    assert body["data"]["attributes"]["evaluation"] == "fail"
    assert body["data"]["attributes"]["failure_reason"] == "pcr_validation.invalid_pcr_23"
    assert h.store.agents[AGENT].state is State.INVALID_QUOTE
    view = await status_view(h)
    assert view["attestation_status"] == "FAIL"


async def test_agent_that_stops_pushing_times_out_to_fail(h: Harness) -> None:
    client = await ready(h)
    assert (await client.attest())[0] == 202
    h.clock.now += QUOTE_INTERVAL * 5 + 2
    assert await monitor.sweep(h.state.verifier, h.clock.now) == 1
    assert h.store.agents[AGENT].state is State.FAILED


async def test_push_enrolment_without_policy_is_refused(h: Harness) -> None:
    tpm = soft()
    status = await h.enrol(AGENT, tpm, tpm_policy=json.dumps({"mask": "0x0"}), runtime_policy="")
    assert status == 400
    assert AGENT not in h.store.agents


async def test_tokens_are_stored_only_as_hashes(h: Harness) -> None:
    client = await ready(h)
    kept = h.state.sessions.stored_secrets()
    assert kept and all(client.token.encode() not in secret for secret in kept)
    assert client.token not in repr(h.state.sessions.__dict__)
    assert client.token not in repr(h.store.push_documents)  # the store has the hash too


# --- refusals: each with its status, and the stored state unchanged -----------------


async def test_replayed_evidence_is_refused(h: Harness) -> None:
    client = await ready(h)
    status, first, location = await client.negotiate()
    requested = first["data"]["attributes"]["evidence_requested"]
    payload = evidence(client.tpm, requested)
    assert (await h.send("PATCH", location, payload, client.headers()))[0] == 202
    before = h.snapshot()
    status, body, _ = await h.send("PATCH", location, payload, client.headers())
    assert status == 403 and body["errors"][0]["code"] == "evidence_immutable"
    assert h.snapshot() == before


async def test_evidence_for_another_challenge_is_refused(h: Harness) -> None:
    client = await ready(h)
    _, first, location = await client.negotiate()
    old = evidence(client.tpm, first["data"]["attributes"]["evidence_requested"])
    assert (await h.send("PATCH", location, old, client.headers()))[0] == 202
    h.later()
    _, _, location2 = await client.negotiate()
    before = h.snapshot()
    status, body, _ = await h.send("PATCH", location2, old, client.headers())
    assert status == 400 and body["errors"][0]["code"] == "challenge_mismatch"
    # ... and evidence for an attestation that is no longer the latest.
    status, body, _ = await h.send("PATCH", location, old, client.headers())
    assert status == 403 and body["errors"][0]["code"] == "old_attestation"
    assert h.snapshot() == before


async def test_expired_attestation_challenge_is_refused(h: Harness) -> None:
    client = await ready(h)
    _, first, location = await client.negotiate()
    h.clock.now += h.state.flow.challenge_lifetime + 1
    client.token = ""
    assert await client.authenticate() == 200  # the old token has expired too
    before = h.snapshot()
    payload = evidence(client.tpm, first["data"]["attributes"]["evidence_requested"])
    status, body, _ = await h.send("PATCH", location, payload, client.headers())
    assert status == 403 and body["errors"][0]["code"] == "challenges_expired"
    assert h.snapshot() == before


async def _session(h: Harness, agent_id: str) -> tuple[str, bytes]:
    status, body, _ = await h.send("POST", "/v3.0/sessions", session_request(agent_id), JSON_API)
    assert status == 200
    chosen = body["data"]["attributes"]["authentication_requested"][0]["chosen_parameters"]
    return body["data"]["id"], base64.b64decode(chosen["challenge"])


async def test_expired_and_reused_pop_nonces_are_refused(h: Harness) -> None:
    tpm = soft()
    assert await h.enrol(AGENT, tpm) == 200
    session_id, challenge = await _session(h, AGENT)
    h.clock.now += h.state.sessions.settings.nonce_lifetime + 1
    proof = proof_request(AGENT, session_id, *tpm.certify(challenge))
    status, body, _ = await h.send("PATCH", f"/v3.0/sessions/{session_id}", proof, JSON_API)
    assert status == 200 and body["data"]["attributes"]["evaluation"] == "fail"
    assert "token" not in body["data"]["attributes"]
    session_id, challenge = await _session(h, AGENT)
    proof = proof_request(AGENT, session_id, *tpm.certify(challenge))
    assert (await h.send("PATCH", f"/v3.0/sessions/{session_id}", proof, JSON_API))[0] == 200
    status, _, _ = await h.send("PATCH", f"/v3.0/sessions/{session_id}", proof, JSON_API)
    assert status == 404  # the challenge was used once


async def test_proof_by_another_ak_is_refused(h: Harness) -> None:
    tpm = soft()
    assert await h.enrol(AGENT, tpm) == 200
    intruder = SoftTpm(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    session_id, challenge = await _session(h, AGENT)
    proof = proof_request(AGENT, session_id, *intruder.certify(challenge))
    before = h.snapshot()
    status, body, _ = await h.send("PATCH", f"/v3.0/sessions/{session_id}", proof, JSON_API)
    assert status == 401 and body["data"]["attributes"]["evaluation"] == "fail"
    assert h.state.sessions.stored_secrets() == []
    assert h.snapshot() == before


async def test_forged_and_foreign_tokens_are_refused(h: Harness) -> None:
    client = await ready(h)
    other = await ready(h, agent_id="d432fbb3-d2f1-4a97-9ef7-75bd81c00001")
    before = h.snapshot()
    session_id = client.token.partition(".")[0]
    for token, expected in (
        (f"{session_id}.{'A' * 43}", 401),
        ("not-a-token", 401),
        ("", 401),
        (other.token, 403),
    ):
        client.token = token
        status, _, _ = await client.negotiate()
        assert status == expected, token
    headers = {**JSON_API, "Authorization": "Basic abc"}
    path = f"/v3.0/agents/{AGENT}/attestations"
    assert (await h.send("POST", path, capabilities(client.tpm), headers))[0] == 401
    assert (await h.send("POST", path, capabilities(client.tpm), JSON_API))[0] == 401
    assert h.snapshot() == before


async def test_too_many_sessions_from_one_address_are_limited(h: Harness) -> None:
    settings = h.state.sessions.settings
    for n in range(settings.per_address):
        await _session(h, f"agent-{n}")
    status, _, _ = await h.send("POST", "/v3.0/sessions", session_request("x"), JSON_API)
    assert status == 429
    response = await h.client.post(
        "/v3.0/sessions", data=json.dumps(session_request("y")), headers=JSON_API
    )
    assert response.status_code == 429 and int(response.headers["Retry-After"]) >= 1


async def test_too_many_sessions_for_one_agent_are_limited(h: Harness) -> None:
    for _ in range(h.state.sessions.settings.per_agent):
        await _session(h, AGENT)
    status, _, _ = await h.send("POST", "/v3.0/sessions", session_request(AGENT), JSON_API)
    assert status == 429


async def test_premature_attestation_is_told_to_wait(h: Harness) -> None:
    client = await ready(h)
    assert (await client.attest())[0] == 202
    before = h.snapshot()
    response = await h.client.post(
        f"/v3.0/agents/{AGENT}/attestations",
        data=json.dumps(capabilities(client.tpm)),
        headers=client.headers(),
    )
    assert response.status_code == 429 and response.headers["Retry-After"] == "2"
    assert h.snapshot() == before


def _breakages(good: dict[str, Any]) -> list[Any]:
    attrs = good["data"]["attributes"]
    items = attrs["evidence_collected"]
    quote = items[0]["data"]
    out: list[Any] = [
        b"{not json",
        b"[]",
        {"data": []},
        {"data": {"type": "session", "attributes": attrs}},
        {"data": {"type": "attestation", "attributes": {"evidence_collected": items[:1]}}},
        {"data": {"type": "attestation", "attributes": {"evidence_collected": items[::-1]}}},
        {"data": {"type": "error", "attributes": {"evidence_collected": []}}},
    ]
    for key, value in (("message", "%%%"), ("signature", None), ("subject_data", 7)):
        bad = copy.deepcopy(good)
        bad["data"]["attributes"]["evidence_collected"][0]["data"] = {**quote, key: value}
        out.append(bad)
    bad = copy.deepcopy(good)
    bad["data"]["attributes"]["evidence_collected"][0]["data"]["message"] = b64(b"\xff\x54garbage")
    out.append(bad)
    bad = copy.deepcopy(good)
    bad["data"]["attributes"]["evidence_collected"][1]["data"]["entry_count"] = 99
    out.append(bad)
    return out


async def test_malformed_evidence_is_refused(h: Harness) -> None:
    client = await ready(h)
    _, first, location = await client.negotiate()
    good = evidence(client.tpm, first["data"]["attributes"]["evidence_requested"])
    before = h.snapshot()
    for bad in _breakages(good):
        status, _, _ = await h.send("PATCH", location, bad, client.headers())
        assert status == 400, bad
    assert h.snapshot() == before
    assert (await h.send("PATCH", location, good, client.headers()))[0] == 202


async def test_malformed_sessions_and_capabilities_are_refused(h: Harness) -> None:
    client = await ready(h)
    before = h.snapshot()
    bodies: list[Any] = [b"", b"{}", {"data": {"type": "session", "attributes": {}}}]
    for body in bodies:
        assert (await h.send("POST", "/v3.0/sessions", body, JSON_API))[0] == 400
    path = f"/v3.0/agents/{AGENT}/attestations"
    caps = capabilities(client.tpm)
    no_key = copy.deepcopy(caps)
    no_key["data"]["attributes"]["evidence_supported"][0]["capabilities"]["certification_keys"] = []
    no_boot = copy.deepcopy(caps)
    del no_boot["data"]["attributes"]["system_info"]
    for body, expected in ((no_key, 422), (no_boot, 400), ({"data": {}}, 400)):
        assert (await h.send("POST", path, body, client.headers()))[0] == expected
    assert (await h.send("POST", "/v3.0/agents/unknown/attestations", caps, client.headers()))[
        0
    ] == 403
    assert h.snapshot() == before


async def test_agent_reads_of_attestations_are_refused(h: Harness) -> None:
    client = await ready(h)
    assert (await client.attest())[0] == 202
    status, _, _ = await h.send("GET", f"/v3.0/agents/{AGENT}/attestations", b"", client.headers())
    assert status == 403
