"""Severity policy on a real quote (swtpm): a recoverable failure below the highest label is
recorded with its label's level and polling goes on, as Keylime's verifier does; the same
failure under the default policy ("emergency" for all) stops polling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio

from tests.cv_ca import TlsFiles
from tests.verifier.conftest import open_fake_agent
from tests.verifier.support import API, RunningVerifier, add_body, b64, verifier_config
from tests.verifier.test_ima_swtpm import FILES, policy_for, write_ima_log
from tests.verifier.test_polling_swtpm import wait_status
from tools.swtpm import Swtpm
from verifier_lite.server import serve_verifier
from verifier_lite.states import State

pytestmark = pytest.mark.swtpm

WARN_IMA = '[{"event_id": "ima\\\\..*", "severity_label": "warning"}, {"event_id": ".*", "severity_label": "emergency"}]'  # noqa: E501
WARNING_LEVEL = 2
WAIT_SECONDS = 120.0
POLL_SECONDS = 0.05


async def _run(
    nursery: trio.Nursery,
    swtpm: Swtpm,
    tls: TlsFiles,
    tmp: Path,
    *,
    expect_more: bool,
    **config: Any,
) -> tuple[dict[str, Any], int]:
    """Add an agent whose log holds a file outside its policy; its status once the
    failure is on record, and how many quotes it was asked for after that."""
    verifier_conf = verifier_config(tmp / "verifier", tls, **config)
    verifier = RunningVerifier(
        verifier_conf, await nursery.start(serve_verifier, verifier_conf), tls
    )
    log = tmp / "ascii_runtime_measurements"
    await trio.to_thread.run_sync(write_ima_log, swtpm.tcti, log)
    allowed = {k: v for k, v in FILES.items() if k != "/etc/hostname"}
    async with open_fake_agent(nursery, swtpm, tls, tmp, ima_log=log) as agent:
        body = add_body(
            ak_tpm=agent.ak_public, mtls_cert=agent.cert_pem, port=agent.port,
            runtime_policy=b64(policy_for(allowed).encode()),
        )  # fmt: skip
        async with verifier.client() as client:
            assert (await client.post(f"/{API}/agents/sev1", json=body)).status_code == 200
        status = await wait_status(
            verifier, "sev1", lambda r: r["operational_state"] == State.INVALID_QUOTE
        )
        seen = len(agent.state.integrity_requests)
        # Either more quotes come (polling goes on: waited for, generously) or, after many
        # quote intervals, none did (it stopped); the caller says which it expects.
        quiet = 20 * verifier_conf.quote_interval + 2
        for _ in range(int((WAIT_SECONDS if expect_more else quiet) / POLL_SECONDS)):
            if len(agent.state.integrity_requests) >= seen + 3:
                break
            await trio.sleep(POLL_SECONDS)
        return status, len(agent.state.integrity_requests) - seen


async def test_a_warning_keeps_polling(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path
) -> None:
    status, more = await _run(
        nursery, swtpm, tls_files, tmp_path, expect_more=True, severity_policy=WARN_IMA
    )
    assert status["last_event_id"] == "ima.validation.ima-ng.not_in_allowlist"
    assert status["severity_level"] == WARNING_LEVEL
    assert status["attestation_status"] == "FAIL"
    assert more >= 3


async def test_emergency_stops_polling(
    nursery: trio.Nursery, swtpm: Swtpm, tls_files: TlsFiles, tmp_path: Path
) -> None:
    status, more = await _run(nursery, swtpm, tls_files, tmp_path, expect_more=False)
    assert status["last_event_id"] == "ima.validation.ima-ng.not_in_allowlist"
    assert status["severity_level"] == 6
    assert more == 0
