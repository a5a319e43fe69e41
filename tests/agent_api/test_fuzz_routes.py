"""Property-based fuzzing of every agent API route over mTLS (tests/http_fuzz.py), on swtpm:
the envelope, 2xx or 4xx, for generated and mutated bodies and query strings; still answering
after every example."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st

from attest_protocol.api_version import SUPPORTED_VERSIONS
from edge_agent.config import AgentConfig
from tests.agent_api.support import CLIENT_TIMEOUT_SECONDS, ClientPki, RunningAgent, running_agent
from tests.http_fuzz import FUZZ_SETTINGS, ServiceThread, assert_envelope, bodies, path_segment

pytestmark = pytest.mark.swtpm

ROUTES = [
    ("GET", "/version"),
    ("GET", "/{v}/keys/pubkey"),
    ("GET", "/{v}/keys/verify"),
    ("POST", "/{v}/keys/ukey"),
    ("POST", "/{v}/keys/vkey"),
    ("GET", "/{v}/quotes/identity"),
    ("GET", "/{v}/quotes/integrity"),
    ("POST", "/{v}/notifications/revocation"),
    ("GET", "/{v}/agent/info"),
    # A known path with the wrong method, and an unknown resource under a served version.
    ("DELETE", "/{v}/keys/{name}"),
    ("GET", "/{v}/{name}/{name}"),
]
REAL = {
    "encrypted_key": "AAAA",
    "auth_tag": "00" * 48,
    "payload": "AAAA",
    "msg": "{}",
    "signature": "AAAA",
}
QUERY_NAMES = ["nonce", "mask", "partial", "ima_ml_entry", "challenge", "x"]
QUERY_VALUES = st.one_of(
    st.text(max_size=24),
    st.from_regex(r"[A-Za-z0-9]{1,64}", fullmatch=True),
    st.sampled_from(["0x400", "0x0", "0xffffffff", "0", "1", "-1", "\u00b2", "9" * 30]),
)
SERVED = [f"v{v}" for v in SUPPORTED_VERSIONS]
# A real quote query with some parameters replaced, so the TPM path is reached often; or
# anything under the parameters' names.
VALID_QUERY = st.fixed_dictionaries(
    {
        "nonce": st.from_regex(r"[A-Za-z0-9]{1,64}", fullmatch=True),
        "mask": st.sampled_from(["0x400", "0x0", "0x1", "0xffffff"]),
        "partial": st.sampled_from(["0", "1"]),
        "challenge": st.from_regex(r"[A-Za-z0-9]{1,32}", fullmatch=True),
    }
)
CHANGES = st.dictionaries(st.sampled_from(QUERY_NAMES), QUERY_VALUES, max_size=2)
QUERIES = st.one_of(
    st.tuples(VALID_QUERY, CHANGES).map(lambda pair: {**pair[0], **pair[1]}),
    VALID_QUERY,
    st.dictionaries(st.sampled_from(QUERY_NAMES), QUERY_VALUES, max_size=4),
)


async def _serve(arg: tuple[AgentConfig, Path], *, task_status: Any) -> None:
    """ServiceThread's serve callable: the agent (and its fake registrar) until cancelled."""
    config, tmp_path = arg
    async with running_agent(config, tmp_path) as agent:
        task_status.started(agent)
        await trio.sleep(math.inf)


@pytest.fixture
def client(config: AgentConfig, tmp_path: Path, pki: ClientPki) -> Iterator[httpx.Client]:
    with ServiceThread(_serve, (config, tmp_path)) as agent:
        assert isinstance(agent, RunningAgent)
        context = agent.ssl_context(pki)
        with httpx.Client(
            base_url=agent.url, verify=context, timeout=CLIENT_TIMEOUT_SECONDS
        ) as http:
            yield http


# The shared 400 examples: quotes on swtpm take milliseconds, so the whole run stays ~10 s.
@FUZZ_SETTINGS
@given(
    route=st.sampled_from(ROUTES),
    version=st.one_of(st.sampled_from(SERVED), st.sampled_from(["v9.9", "v2", "x", "v2.01"])),
    name=path_segment(),
    raw=bodies(list(REAL), REAL),
    params=QUERIES,
)
def test_every_agent_route_answers_the_envelope(
    client: httpx.Client,
    route: tuple[str, str],
    version: str,
    name: str,
    raw: bytes,
    params: dict[str, str],
) -> None:
    method, template = route
    path = template.format(v=version, name=name)
    # A new connection each time: what is checked is the agent, not connection reuse.
    fresh = {"Connection": "close"}
    assert_envelope(client.request(method, path, content=raw, params=params, headers=fresh))
    assert client.get("/version", headers=fresh).status_code == 200
