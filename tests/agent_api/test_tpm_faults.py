"""A TPM that goes away under a running agent, and an agent that died with keys loaded.

* swtpm stopped under a running agent: quotes answer 503 naming the TPM, and once swtpm runs
  again (a power cycle, its transient objects gone) quotes succeed by themselves, signed by
  the same AK.
* an agent killed with SIGKILL leaves its EK and AK loaded in swtpm (3 object slots); the
  next agent flushes them, starts, reloads the same AK and quotes.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import trio

from attest_protocol.keylime_facts import DATA_PCR
from edge_agent.config import AgentConfig
from tests.agent_api.process import AGENT_ID, agent_process
from tests.agent_api.support import ClientPki, running_agent
from tests.agent_api.test_quotes import NONCE, pcr16_for, verified_pcrs
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

RECOVERY_DEADLINE_SECONDS = 60.0
POLL_SECONDS = 0.2


async def test_quotes_recover_after_swtpm_restarts(
    config: AgentConfig, tmp_path: Path, pki: ClientPki, swtpm: Swtpm
) -> None:
    url = f"/v2.2/quotes/identity?nonce={NONCE}"
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        assert (await client.get(url)).status_code == 200
        swtpm.stop()
        down = await client.get(url)
        swtpm.start_again()
        with trio.fail_after(RECOVERY_DEADLINE_SECONDS):
            while (up := await client.get(url)).status_code != 200:
                assert up.status_code == 503, up.text
                await trio.sleep(POLL_SECONDS)
    assert down.status_code == 503, down.text
    assert "TPM unavailable" in down.json()["status"]
    results = up.json()["results"]
    # Verified with the AK the registrar got at start-up: the same AK, reloaded.
    pcrs = verified_pcrs(agent, results, NONCE)
    assert pcrs == {DATA_PCR: pcr16_for(agent.started.nk_public_pem)}


async def test_agent_starts_after_a_predecessor_was_killed(
    swtpm: Swtpm, tmp_path: Path, pki: ClientPki
) -> None:
    async with agent_process(tmp_path, pki, swtpm.tcti, run=1) as first:
        assert (await first.quote()).status_code == 200
        first_ak = first.registrar.agents[AGENT_ID].body["aik_tpm"]
        first.process.send_signal(signal.SIGKILL)
        await first.process.wait()
    async with agent_process(tmp_path, pki, swtpm.tcti, run=2) as second:
        response = await second.quote()
        second_ak = second.registrar.agents[AGENT_ID].body["aik_tpm"]
        output = second.log()
    assert response.status_code == 200, (response.text, output)
    assert second_ak == first_ak, output
    assert "flushed 2 transient objects or sessions left in the TPM" in output
    assert "making a new one" not in output
