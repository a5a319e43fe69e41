"""The swap under real Keylime 7.14.3: its registrar, its verifier, its ``keylime_tenant``.

rust-keylime 0.2.9 registers with Keylime's registrar and the tenant adds it (payload,
``--verify``); it is stopped and limelet-agent takes over with the same uuid, keylime_dir and
agent.conf on the same swtpm; then rust-keylime comes back.  Keylime's registrar accepts each
re-registration (same EK and AK, so no 403 and no ``regdelete``) and its verifier's quotes go
on without a tenant command.  The conf pins ``api_versions`` to rust-keylime's set, as
docs/agent-config.md advises for devices that may go back: Keylime's verifier does not move an
agent to an older API version than it agreed.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from edge_agent.app import run_agent
from edge_agent.config import load_config
from tests.rust_keylime.support import (
    flush_transient,
    require_rust_agent,
    running_rust_agent,
    rust_conf,
)
from tools.keylime_services import KeylimeServices, free_port
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

QUOTES_PER_STAGE = 2
GET_QUOTE = "Get Quote"
# Keylime states (keylime/common/states.py) that need a tenant command to leave.
GIVEN_UP = {"Failed", "Invalid Quote", "Tenant Quote Failed", "Terminated"}
RUST_API_VERSIONS = "2.1, 2.2, 2.3, 2.4, 2.5"
STAGE_DEADLINE_SECONDS = 90.0
STATUS_POLL_SECONDS = 1.0
PAYLOAD = b"payload for whichever agent runs on this device\n"


async def _tenant(keylime: KeylimeServices, *args: str) -> str:
    done = await trio.to_thread.run_sync(lambda: keylime.run_tenant(*args))
    output = done.stdout + done.stderr
    assert done.returncode == 0, output + keylime.verifier_log.read_text()[-4000:]
    return output


async def _cvstatus(keylime: KeylimeServices, agent_id: str) -> dict[str, Any]:
    output = await _tenant(keylime, "-c", "cvstatus", "-u", agent_id)
    line = output[output.index("Agent Info from") :].splitlines()[1]
    record: dict[str, Any] = json.loads(line)[agent_id]
    return record


async def _quotes_go_on(keylime: KeylimeServices, agent_id: str, what: str) -> None:
    start = time.monotonic()
    before = (await _cvstatus(keylime, agent_id))["attestation_count"]
    while True:
        record = await _cvstatus(keylime, agent_id)
        assert record["operational_state"] not in GIVEN_UP, (what, record)
        if record["attestation_count"] >= before + QUOTES_PER_STAGE:
            break
        if time.monotonic() - start > STAGE_DEADLINE_SECONDS:
            pytest.fail(f"{what}: quotes stopped: {record}")
        await trio.sleep(STATUS_POLL_SECONDS)
    assert record["operational_state"] == GET_QUOTE, (what, record)
    print(f"{what}: {QUOTES_PER_STAGE} more quotes in {time.monotonic() - start:.1f} s")


def write_conf(tmp_path: Path, keylime: KeylimeServices, api_versions: str) -> tuple[Path, int]:
    """rust-keylime's shipped conf for this Keylime, with ``api_versions``; and the port."""
    keylime_dir = tmp_path / "agent"
    keylime_dir.mkdir()
    port = free_port()
    agent_id = str(uuid.uuid4())
    text = rust_conf(keylime_dir, uuid=agent_id, port=port, registrar_port=keylime.registrar_port)
    text = text.replace('trusted_client_ca = "default"', f'trusted_client_ca = "{keylime.ca_cert}"')
    text = text.replace('api_versions = "default"', f'api_versions = "{api_versions}"', 1)
    conf = tmp_path / "agent.conf"
    conf.write_text(text)
    return conf, port


def _unmount(path: Path) -> None:
    if os.path.ismount(path):
        subprocess.run(["umount", str(path)], check=True, timeout=30)


async def test_swap_both_ways_under_keylime(
    swtpm: Swtpm, keylime: KeylimeServices, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_rust_agent()
    monkeypatch.setenv("TCTI", swtpm.tcti)
    conf, port = write_conf(tmp_path, keylime, RUST_API_VERSIONS)
    config = load_config(environ={"KEYLIME_AGENT_CONFIG": str(conf)})
    agent_id, keylime_dir = config.uuid, config.data_dir
    payload = tmp_path / "payload.txt"
    payload.write_bytes(PAYLOAD)

    with running_rust_agent(conf, swtpm.tcti, tmp_path / "rust-1") as rust:
        await rust.wait_for_log_async(f"SUCCESS: Agent {agent_id} activated")
        await _tenant(
            keylime,
            *("-c", "add", "-t", "127.0.0.1", "-tp", str(port), "-u", agent_id),
            *("--tpm_policy", json.dumps({"23": ["00" * 32]}), "-f", str(payload), "--verify"),
        )
        await _quotes_go_on(keylime, agent_id, "rust-keylime")
        # Where rust-keylime puts a payload is where limelet puts it (test_payload_layout).
        delivered = keylime_dir / "secure" / "unzipped" / "decrypted_payload"
        assert delivered.read_bytes() == PAYLOAD

    try:
        async with trio.open_nursery() as nursery:
            started = await nursery.start(functools.partial(run_agent, config))
            assert started.agent_id == agent_id  # registered again: no 403
            await _quotes_go_on(keylime, agent_id, "limelet after rust-keylime")
            nursery.cancel_scope.cancel()
    finally:
        _unmount(keylime_dir / "secure")
    flush_transient(swtpm.tcti)

    with running_rust_agent(conf, swtpm.tcti, tmp_path / "rust-2") as rust:
        await rust.wait_for_log_async(f"SUCCESS: Agent {agent_id} activated")
        assert "Loaded old AK key from" in rust.log()
        await _quotes_go_on(keylime, agent_id, "rust-keylime after limelet")
    registrar_log = keylime.registrar_log.read_text()
    assert "forbidden" not in registrar_log.lower(), registrar_log[-4000:]
