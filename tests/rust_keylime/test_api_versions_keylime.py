"""Why docs/agent-config.md pins ``api_versions`` for devices that may go back to rust-keylime.

Added to Keylime 7.14.3's verifier while limelet-agent runs, an agent is attested at the
newest version both serve; with limelet's default that is 2.6, which rust-keylime 0.2.9 does
not serve, and Keylime's verifier fails the agent after a swap back rather than go down to
2.5.  With ``api_versions`` pinned to rust-keylime's set the swap back keeps being attested.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path

import pytest
import trio

from edge_agent.app import run_agent
from edge_agent.config import load_config
from tests.rust_keylime.support import flush_transient, require_rust_agent, running_rust_agent
from tests.rust_keylime.test_swap_keylime import (
    RUST_API_VERSIONS,
    STAGE_DEADLINE_SECONDS,
    STATUS_POLL_SECONDS,
    _cvstatus,
    _quotes_go_on,
    _tenant,
    _unmount,
    write_conf,
)
from tools.keylime_services import KeylimeServices
from tools.swtpm import Swtpm

pytestmark = [
    pytest.mark.interop,
    pytest.mark.swtpm,
    # rust-keylime's mTLS certificate has a non-positive serial (see test_swap_registrar).
    pytest.mark.filterwarnings(
        "ignore:Parsed a serial number which wasn't positive"
        ":cryptography.utils.CryptographyDeprecationWarning"
    ),
]


async def _failed(keylime: KeylimeServices, agent_id: str) -> dict[str, object]:
    end = time.monotonic() + STAGE_DEADLINE_SECONDS
    while True:
        record = await _cvstatus(keylime, agent_id)
        if record["operational_state"] == "Failed":
            return record
        if time.monotonic() > end:
            pytest.fail(f"Keylime's verifier kept attesting the agent: {record}")
        await trio.sleep(STATUS_POLL_SECONDS)


@pytest.mark.parametrize("api_versions", ["default", RUST_API_VERSIONS])
async def test_added_under_limelet_then_back_to_rust_keylime(
    swtpm: Swtpm,
    keylime: KeylimeServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    api_versions: str,
) -> None:
    require_rust_agent()
    monkeypatch.setenv("TCTI", swtpm.tcti)
    conf, port = write_conf(tmp_path, keylime, api_versions)
    config = load_config(environ={"KEYLIME_AGENT_CONFIG": str(conf)})
    agent_id = config.uuid
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(run_agent, config))
            await _tenant(
                keylime,
                *("-c", "add", "-t", "127.0.0.1", "-tp", str(port), "-u", agent_id),
                *("--tpm_policy", json.dumps({"23": ["00" * 32]})),
            )
            await _quotes_go_on(keylime, agent_id, "limelet")
            nursery.cancel_scope.cancel()
    finally:
        _unmount(config.data_dir / "secure")
    flush_transient(swtpm.tcti)

    with running_rust_agent(conf, swtpm.tcti, tmp_path / "rust") as rust:
        await rust.wait_for_log_async(f"SUCCESS: Agent {agent_id} activated")
        if api_versions == RUST_API_VERSIONS:
            await _quotes_go_on(keylime, agent_id, "rust-keylime after limelet")
        else:
            await _failed(keylime, agent_id)  # the limitation the docs describe
