"""rust-keylime 0.2.9's push agent under verifier_lite + registrar_lite, enrolled by the real
``keylime_tenant -c add --push-model`` of Keylime 7.14.3.

The agent (``keylime_push_model_agent``) registers with registrar_lite over plain HTTP (API
2.5), then opens sessions with a TPM proof of possession and pushes quotes and IMA entries to
verifier_lite's push listener (``push_port``; server TLS only, as the agent speaks it).  The
tenant enrols it with a tpm_policy (PCR 23 = zeros) and a runtime policy; verifier_lite runs
``mode = mixed``, which takes the tenant's push enrolment (no V, no agent mTLS certificate).
swtpm serves one connection, so the agent and tools.ima_emulator share it through tpm2-abrmd
(tools/tpm_broker.py), as a kernel's agent and IMA share /dev/tpmrm0.

1. Attestations pass while the emulator appends allowed entries: the verifier asks for the
   IMA log from the stored offset, which grows.
2. PCR 23 is extended behind the agent's back: the next attestation fails (FAIL), found
   within two quote intervals of the tamper (logged, not asserted: tests never time).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from attest_protocol.ima import ImaEntry
from tests.cv_ca import TlsFiles
from tests.fixtures.keylime import KeylimeServices
from tests.fixtures.runtime_policy import allowing
from tests.rust_keylime.support import RUST_AGENT_DIR, RustAgent, require_rust_agent, rust_conf
from tests.verifier.support import RunningVerifier, verifier_config
from tests.verifier.test_keylime_tenant import (
    ok,
    start_registrar,
    swtpm_cert_store,
    tenant_config,
    tenant_runner,
)
from tests.verifier.test_polling_swtpm import wait_status
from tools.ima_emulator import ImaEmulator
from tools.keylime_services import free_port
from tools.swtpm import Swtpm
from tools.tpm_broker import BUS_ENV, TpmBroker
from verifier_lite.server import serve_verifier

pytestmark = [pytest.mark.interop, pytest.mark.swtpm]

log = logging.getLogger(__name__)

QUOTE_INTERVAL_SECONDS = 1.0
TPM_POLICY = {"23": ["00" * 32]}
ALLOWED = {f"/usr/bin/push-allowed-{i}": f"allowed program {i}\n".encode() for i in range(4)}
STOP_DEADLINE_SECONDS = 15.0
CONF_CHANGES = (
    ('verifier_url = "https://localhost:8881"', 'verifier_url = "{url}"'),
    ('verifier_tls_ca_cert = "default"', 'verifier_tls_ca_cert = "{ca}"'),
    ('ima_ml_path = "default"', 'ima_ml_path = "{ima}"'),
    ('measuredboot_ml_path = "default"', 'measuredboot_ml_path = "{mb}"'),
    ("attestation_interval_seconds = 60", "attestation_interval_seconds = 1"),
    ("exponential_backoff_initial_delay = 10000", "exponential_backoff_initial_delay = 1000"),
    ("exponential_backoff_max_retries = 5", "exponential_backoff_max_retries = 3"),
    ("exponential_backoff_max_delay = 300000", "exponential_backoff_max_delay = 10000"),
)


def require_push_agent() -> Path:
    directory = require_rust_agent()
    if not (directory / "keylime_push_model_agent").is_file():
        reason = f"keylime_push_model_agent missing in {directory}: push interop NOT tested"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return directory


def push_conf(base: str, **values: str) -> str:
    text = base
    for old, new in CONF_CHANGES:
        assert old in text, f"shipped conf changed: {old!r} not found"
        text = text.replace(old, new.format(**values))
    return text


@contextmanager
def running_push_agent(conf: Path, broker: TpmBroker, workdir: Path) -> Iterator[RustAgent]:
    env = dict(os.environ, TCTI=broker.tcti, KEYLIME_AGENT_CONFIG=str(conf), RUST_LOG="info")
    env[BUS_ENV] = broker.bus_address
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / "push-agent.log"
    with log_path.open("wb") as out:
        process = subprocess.Popen(
            [str(RUST_AGENT_DIR / "keylime_push_model_agent")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield RustAgent(process, log_path)
    finally:
        process.terminate()
        try:
            process.wait(STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def runtime_policy(boot_aggregate: ImaEntry | None) -> dict[str, Any]:
    """A Keylime runtime policy allowing only ALLOWED files and the boot_aggregate."""
    assert boot_aggregate is not None
    return allowing(ALLOWED, boot_aggregate)


async def latest_ima_offset(verifier: RunningVerifier, agent_id: str) -> int:
    async with verifier.client() as client:
        response = await client.get(f"/v3.0/agents/{agent_id}/attestations/latest")
    assert response.status_code == 200, response.text
    for item in response.json()["data"]["attributes"]["evidence_requested"]:
        if item["evidence_type"] == "ima_log":
            return int(item["chosen_parameters"]["starting_offset"])
    raise AssertionError("no ima_log requested")


@pytest.fixture
async def push_verifier(
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


async def test_rust_push_agent_attested_by_verifier_lite(
    nursery: trio.Nursery,
    push_verifier: RunningVerifier,
    swtpm: Swtpm,
    keylime_services: KeylimeServices,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_push_agent()
    verifier = push_verifier
    cert_store = swtpm_cert_store(swtpm, tmp_path / "tpm_cert_store")
    registrar = await start_registrar(nursery, tmp_path, verifier.tls, cert_store)
    broker = TpmBroker(swtpm.tcti, tmp_path / "broker").start()
    try:
        monkeypatch.setenv(BUS_ENV, broker.bus_address)
        ima_log = tmp_path / "ima" / "ascii_runtime_measurements"
        ima_log.parent.mkdir()
        emulator = ImaEmulator(broker.tcti, ima_log)
        boot_aggregate = emulator.boot_aggregate()
        policy = tmp_path / "runtime_policy.json"
        policy.write_text(json.dumps(runtime_policy(boot_aggregate)))
        await _attest_then_tamper(
            verifier, registrar, broker, emulator, keylime_services, cert_store, tmp_path, policy
        )
        emulator.close()
    finally:
        broker.stop()


async def _attest_then_tamper(
    verifier: RunningVerifier,
    registrar: Any,
    broker: TpmBroker,
    emulator: ImaEmulator,
    keylime_services: KeylimeServices,
    cert_store: Path,
    tmp_path: Path,
    policy: Path,
) -> None:
    keylime_dir = tmp_path / "agent"
    keylime_dir.mkdir()
    agent_id = str(uuid.uuid4())
    base = rust_conf(keylime_dir, uuid=agent_id, port=free_port(), registrar_port=registrar.port)
    conf = tmp_path / "push-agent.conf"
    assert verifier.bound.push_port is not None
    conf.write_text(
        push_conf(
            base,
            url=f"https://127.0.0.1:{verifier.bound.push_port}",
            ca=str(verifier.tls.ca_cert),
            ima=str(emulator_log(emulator)),
            mb=str(tmp_path / "no-uefi-log"),
        )
    )
    tenant_conf = tenant_config(keylime_services, verifier, registrar, cert_store, tmp_path / "t")
    tenant = tenant_runner(keylime_services, tenant_conf)
    files = list(ALLOWED.items())
    emulator.measure(*files[0])
    with running_push_agent(conf, broker, tmp_path / "rust") as agent:
        await agent.wait_for_log_async(f"SUCCESS: Agent {agent_id} activated")
        ok(
            await tenant(
                *("-c", "add", "-u", agent_id, "--push-model"),
                *("--tpm_policy", json.dumps(TPM_POLICY), "--runtime-policy", str(policy)),
            )
        )
        status = await wait_status(verifier, agent_id, lambda r: r["attestation_count"] >= 2)
        assert status["attestation_status"] == "PASS" and status["ip"] is None
        for path, content in files[1:]:
            count = status["attestation_count"]
            await trio.to_thread.run_sync(emulator.measure, path, content)
            status = await wait_status(verifier, agent_id, at_least(count + 2))
            assert status["attestation_status"] == "PASS", status
        assert await latest_ima_offset(verifier, agent_id) >= len(files)  # incremental

        tampered_at = time.monotonic()
        await trio.to_thread.run_sync(extend_pcr23, broker)
        failed = await wait_status(verifier, agent_id, lambda r: r["attestation_status"] == "FAIL")
        seen_after = time.monotonic() - tampered_at
        log.warning("PCR 23 tamper seen as FAIL after %.1f s", seen_after)
        assert failed["last_event_id"] == "pcr_validation.invalid_pcr_23"
        (tmp_path / "tamper-seconds.txt").write_text(f"{seen_after:.2f}\n")


def at_least(count: int) -> Callable[[dict[str, Any]], bool]:
    return lambda results: bool(results["attestation_count"] >= count)


def emulator_log(emulator: ImaEmulator) -> Path:
    return Path(emulator._log.name)  # the emulator writes where it was told


def extend_pcr23(broker: TpmBroker) -> None:
    digest = hashlib.sha256(b"tampered behind the push agent's back").hexdigest()
    subprocess.run(
        ["tpm2_pcrextend", f"23:sha256={digest}"],
        env=dict(os.environ, TPM2TOOLS_TCTI=broker.tcti),
        check=True,
        capture_output=True,
        timeout=30,
    )
