"""``/metrics`` against swtpm agents: the counters agree with the verifier's own counts."""

from __future__ import annotations

import json

import httpx
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.verifier.fake_agent import FakeAgent
from tests.verifier.support import API, RunningVerifier
from tests.verifier.test_polling_swtpm import add, wait_status
from verifier_lite.states import State

pytestmark = pytest.mark.swtpm

GOOD_QUOTES = 3
STEADY_ATTEMPTS = 20


async def scrape(verifier: RunningVerifier, *, with_cert: bool = True) -> dict[str, Metric]:
    async with verifier.client(with_cert=with_cert) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def value(families: dict[str, Metric], sample_name: str, **labels: str) -> float:
    family = families[sample_name.removesuffix("_total").removesuffix("_count")]
    found = [s.value for s in family.samples if s.name == sample_name and dict(s.labels) == labels]
    assert len(found) == 1, (sample_name, labels, family.samples)
    return found[0]


async def counts(verifier: RunningVerifier, agent_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Each agent's (attestation_count, operational_state) as GET /agents/{id} says."""
    out = {}
    async with verifier.client() as client:
        for agent_id in agent_ids:
            results = (await client.get(f"/{API}/agents/{agent_id}")).json()["results"]
            out[agent_id] = (results["attestation_count"], results["operational_state"])
    return out


async def steady_scrape(
    verifier: RunningVerifier, agent_ids: list[str]
) -> tuple[dict[str, Metric], dict[str, tuple[int, int]]]:
    """A scrape with the agents' counts read before and after it the same: a quote that was
    in flight when polling stopped may still land, so read again until none did."""
    for _ in range(STEADY_ATTEMPTS):
        before = await counts(verifier, agent_ids)
        families = await scrape(verifier)
        after = await counts(verifier, agent_ids)
        if before == after:
            return families, after
    raise AssertionError(f"counts still moving after the stop: {before} then {after}")


async def test_attestations_match_the_verifiers_counts(
    verifier: RunningVerifier, fake_agent: FakeAgent
) -> None:
    await add(verifier, fake_agent, "good")
    bad_policy = json.dumps({"16": ["00" * 32], "mask": "0x10000"})
    await add(verifier, fake_agent, "bad", tpm_policy=bad_policy)
    await wait_status(verifier, "good", lambda r: r["attestation_count"] >= GOOD_QUOTES)
    await wait_status(verifier, "bad", lambda r: r["operational_state"] == State.INVALID_QUOTE)
    # Stop polling so the counts hold still between reading them and scraping.
    async with verifier.client() as client:
        assert (await client.put(f"/{API}/agents/good/stop")).status_code == 200
    families, after = await steady_scrape(verifier, ["good", "bad"])

    passed = value(families, "limelet_verifier_attestations_total", result="pass")
    assert passed == sum(count for count, _ in after.values()) >= GOOD_QUOTES
    assert value(families, "limelet_verifier_attestations_total", result="fail") == 1
    checked = value(families, "limelet_verifier_quote_check_seconds_count")
    # A quote checked while the stop cancelled its task is timed but never recorded.
    assert checked >= passed + 1
    assert value(families, "limelet_verifier_quote_round_trip_seconds_count") >= checked
    for state in State:
        expected = sum(1 for _, s in after.values() if s == state)
        assert value(families, "limelet_verifier_agents", state=state.name) == expected
    assert value(families, "limelet_verifier_polling_errors_total", kind="contact_failed") == 0
    assert value(families, "limelet_verifier_store_errors_total") == 0
    assert value(families, "limelet_verifier_store_seconds_count") > 0


async def test_metrics_need_the_client_certificate(verifier: RunningVerifier) -> None:
    """Served on the mTLS listener only: a client without a certificate gets no handshake."""
    with pytest.raises(httpx.HTTPError):
        await scrape(verifier, with_cert=False)
