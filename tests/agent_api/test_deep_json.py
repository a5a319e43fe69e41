"""JSON nested 10,000 deep gets 400 on every JSON route of the agent, never 500.

``json.loads`` raises RecursionError (not ValueError) for such a body; it used to escape the
handlers as an internal error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from tests.agent_api.support import ClientPki, running_agent

pytestmark = pytest.mark.swtpm

DEPTH = 10_000
ROUTES = ("keys/ukey", "keys/vkey", "notifications/revocation")
BODIES = {
    "array": b"[" * DEPTH + b"]" * DEPTH,
    "object": b'{"a":' * DEPTH + b"1" + b"}" * DEPTH,
}


@pytest.mark.parametrize("shape", sorted(BODIES))
async def test_deeply_nested_json_is_a_bad_request(
    config: AgentConfig, tmp_path: Path, pki: ClientPki, shape: str
) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        answers = {r: await client.post(f"/v2.6/{r}", content=BODIES[shape]) for r in ROUTES}
        assert (await client.get("/version")).status_code == 200  # and it keeps answering
    for route, response in answers.items():
        assert response.status_code == 400, (route, response.text)
        assert response.json()["status"] == "Request body is JSON nested too deeply", route
