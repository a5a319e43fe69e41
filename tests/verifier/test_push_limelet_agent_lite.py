"""limelet's push agent and a limelet pull agent under ONE verifier_lite at the same time.

The push agent runs as its own process (``python -m edge_agent.cli``, ``push_model = true``)
on its own swtpm behind tpm2-abrmd (the tamper shares that TPM); the pull agent is
``edge_agent.app.run_agent`` on a second swtpm.  Both register with registrar_lite and are
enrolled by the real Keylime 7.14.3 ``keylime_tenant`` (``add --push-model`` for the push
agent).  verifier_lite runs ``mode = mixed`` with its push listener on.

1. both pass, their attestation counts rising;
2. PCR 23 extended on the push agent's TPM: only it turns FAIL, the pull agent keeps passing;
3. the push agent never has a listening or bound socket.
"""

from __future__ import annotations

import functools
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from edge_agent.app import AgentStarted, run_agent
from tests.agent_api.support import agent_config
from tests.cv_ca import TlsFiles
from tests.fixtures.keylime import KeylimeServices
from tests.interop.test_push_agent_under_keylime import bound_ports
from tests.rust_keylime.test_push_agent_under_lite import at_least, extend_pcr23
from tests.verifier.support import LOOPBACK, RunningVerifier, verifier_config
from tests.verifier.test_e2e_edge_agent import free_port
from tests.verifier.test_keylime_tenant import (
    ZERO_PCR,
    ok,
    start_registrar,
    swtpm_cert_store,
    tenant_config,
    tenant_runner,
)
from tests.verifier.test_polling_swtpm import wait_status
from tools.swtpm import Swtpm, SwtpmState
from tools.tpm_broker import BUS_ENV, TpmBroker
from verifier_lite.server import serve_verifier

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]

PUSH_ID = "limelet-push-under-lite"
PULL_ID = "limelet-pull-beside-push"
QUOTE_INTERVAL_SECONDS = 1.0
POLICY = json.dumps({"23": [ZERO_PCR]})
STOP_TIMEOUT_S = 20.0
LOG_TAIL = 6000


@pytest.fixture
async def mixed_verifier(
    nursery: trio.Nursery, tls_files: TlsFiles, tmp_path: Path
) -> RunningVerifier:
    config = verifier_config(
        tmp_path / "verifier",
        tls_files,
        mode="mixed",
        push_port=0,
        quote_interval=QUOTE_INTERVAL_SECONDS,
    )
    return RunningVerifier(config, await nursery.start(serve_verifier, config), tls_files)


def push_agent_conf(tmp_path: Path, tcti: str, registrar_port: int, verifier: Any) -> Path:
    ima_log = tmp_path / "ima" / "ascii_runtime_measurements"
    ima_log.parent.mkdir(parents=True)
    ima_log.write_bytes(b"")
    conf = tmp_path / "push-agent.conf"
    conf.write_text(
        "[agent]\n"
        f'uuid = "{PUSH_ID}"\n'
        f'keylime_dir = "{tmp_path / "push-agent"}"\n'
        f'registrar_ip = "{LOOPBACK}"\n'
        f"registrar_port = {registrar_port}\n"
        f'tcti = "{tcti}"\n'
        'run_as = ""\n'
        'payload_script = ""\n'
        "push_model = true\n"
        f'verifier_url = "https://{LOOPBACK}:{verifier.bound.push_port}"\n'
        f'verifier_tls_ca_cert = "{verifier.tls.ca_cert}"\n'
        f"attestation_interval_seconds = {int(QUOTE_INTERVAL_SECONDS)}\n"
        f'ima_ml_path = "{ima_log}"\n'
        f'measuredboot_ml_path = "{tmp_path / "no-boot-log"}"\n'
        "exponential_backoff_initial_delay = 200\n"
        "exponential_backoff_max_delay = 2000\n"
    )
    return conf


@asynccontextmanager
async def push_process(conf: Path, broker: TpmBroker, log: Path) -> AsyncIterator[trio.Process]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLIME_") and k != "TCTI"}
    env.update(broker.env, KEYLIME_AGENT_CONFIG=str(conf))
    with log.open("wb") as out:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "edge_agent.cli"], env=env, stdout=out, stderr=out
        )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.terminate()
            with trio.move_on_after(STOP_TIMEOUT_S):
                await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_push_and_pull_limelet_agents_under_one_verifier(
    nursery: trio.Nursery,
    mixed_verifier: RunningVerifier,
    swtpm: Swtpm,
    swtpm_template: SwtpmState,
    keylime_services: KeylimeServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("TCTI", raising=False)  # each agent's option must win
    verifier = mixed_verifier
    cert_store = swtpm_cert_store(swtpm, tmp_path / "tpm_cert_store")
    registrar = await start_registrar(nursery, tmp_path, verifier.tls, cert_store)
    tenant = tenant_runner(
        keylime_services,
        tenant_config(keylime_services, verifier, registrar, cert_store, tmp_path / "t.conf"),
    )
    # The pull agent: in process, on the fixture's swtpm.
    port = free_port()
    pull_conf = agent_config(
        tmp_path / "pull-agent", swtpm.tcti, uuid=PULL_ID, ip=LOOPBACK, port=port,
        contact_ip=LOOPBACK, contact_port=port, registrar_ip=LOOPBACK,
        registrar_port=registrar.port, trusted_client_ca=str(verifier.tls.ca_cert),
    )  # fmt: skip
    started: AgentStarted = await nursery.start(functools.partial(run_agent, pull_conf))
    assert started.agent_id == PULL_ID
    ok(await tenant("-c", "add", "-u", PULL_ID, "--tpm_policy", POLICY))
    # The push agent: its own process on a second swtpm (a copy of the same maker's TPM).
    with Swtpm(swtpm_template, tmp_path / "swtpm-push") as push_tpm:
        with TpmBroker(push_tpm.tcti, tmp_path / "broker") as broker:
            monkeypatch.setenv(BUS_ENV, broker.bus_address)  # for the tamper's tpm2-tools
            conf = push_agent_conf(tmp_path, broker.tcti, registrar.port, verifier)
            log = tmp_path / "push-agent.log"
            async with push_process(conf, broker, log) as process:
                await _both_then_tamper(verifier, tenant, broker, process, log)
            assert process.returncode == 0, log.read_text(errors="replace")[-LOG_TAIL:]
            assert "Traceback" not in log.read_text(errors="replace")


async def _both_then_tamper(
    verifier: RunningVerifier, tenant: Any, broker: TpmBroker, process: Any, log: Path
) -> None:
    def text() -> str:
        return log.read_text(errors="replace")

    deadline = time.monotonic() + 90.0
    while "push mode" not in text():
        assert process.returncode is None and time.monotonic() < deadline, text()[-LOG_TAIL:]
        await trio.sleep(0.5)
    added = await tenant("-c", "add", "-u", PUSH_ID, "--push-model", "--tpm_policy", POLICY)
    assert added.returncode == 0, added.stdout + added.stderr + text()[-LOG_TAIL:]

    # 1. Both pass at the same time, counts rising.
    push = await wait_status(verifier, PUSH_ID, at_least(2))
    pull = await wait_status(verifier, PULL_ID, at_least(2))
    assert push["attestation_status"] == "PASS", (push, text()[-LOG_TAIL:])
    assert pull["attestation_status"] == "PASS", pull
    push = await wait_status(verifier, PUSH_ID, at_least(push["attestation_count"] + 2))
    assert push["attestation_status"] == "PASS", push
    assert bound_ports(process.pid) == [], text()[-LOG_TAIL:]

    # 2. Tamper the push agent's TPM: only it fails.
    await trio.to_thread.run_sync(extend_pcr23, broker)
    failed = await wait_status(verifier, PUSH_ID, lambda r: r["attestation_status"] == "FAIL")
    assert failed["last_event_id"] == "pcr_validation.invalid_pcr_23", failed
    pull_count = (await wait_status(verifier, PULL_ID, at_least(0)))["attestation_count"]
    pull = await wait_status(verifier, PULL_ID, at_least(pull_count + 2))
    assert pull["attestation_status"] == "PASS", pull

    # 3. Never a port of its own.
    assert process.returncode is None, text()[-LOG_TAIL:]
    assert bound_ports(process.pid) == [], text()[-LOG_TAIL:]
