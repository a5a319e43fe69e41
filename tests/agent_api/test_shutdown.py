"""SIGTERM: the agent process stops serving, drains, closes the TPM and exits 0 within grace."""

from __future__ import annotations

import os
import signal
import ssl
import sys
import time
from pathlib import Path

import httpx
import pytest
import trio

from edge_agent.app import SHUTDOWN_GRACE_SECONDS
from tests.agent.support import FakeRegistrar
from tests.agent.test_registration_tcp import free_port
from tests.agent_api.support import CLIENT_TIMEOUT_SECONDS, ClientPki
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

AGENT_ID = "limelet-shutdown-test"
STARTUP_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 0.1
# Process start-up of the interpreter is not part of the grace period; allow a little more.
EXIT_MARGIN_SECONDS = 5.0


async def wait_until_serving(
    cert: Path, port: int, pki: ClientPki, process: trio.Process, log: Path
) -> httpx.AsyncClient:
    """A keep-alive client once GET /version answers over mTLS."""
    with trio.fail_after(STARTUP_TIMEOUT_SECONDS):
        while True:
            assert process.poll() is None, await trio.Path(log).read_text()
            if await trio.Path(cert).exists():
                context = ssl.create_default_context(cadata=await trio.Path(cert).read_text())
                both = trio.Path(pki.directory / "client.pem")
                await both.write_bytes(pki.client.cert_pem + pki.client.key_pem)
                context.load_cert_chain(str(both))
                client = httpx.AsyncClient(
                    base_url=f"https://127.0.0.1:{port}",
                    verify=context,
                    timeout=CLIENT_TIMEOUT_SECONDS,
                )
                try:
                    if (await client.get("/version")).status_code == 200:
                        return client
                except httpx.TransportError:
                    pass
                await client.aclose()
            await trio.sleep(POLL_SECONDS)


async def test_sigterm_drains_and_exits_cleanly(
    swtpm: Swtpm, tmp_path: Path, pki: ClientPki
) -> None:
    registrar_port, api_port = free_port(), free_port()
    keylime_dir = tmp_path / "keylime"
    conf = tmp_path / "agent.conf"
    conf.write_text(
        "[agent]\n"
        f'uuid = "{AGENT_ID}"\n'
        f'keylime_dir = "{keylime_dir}"\n'
        f"registrar_port = {registrar_port}\n"
        f"port = {api_port}\n"
        f'ima_ml_path = "{tmp_path / "none"}"\n'
        "exponential_backoff_initial_delay = 200\n"
        'run_as = ""\n'
    )
    (keylime_dir / "cv_ca").mkdir(parents=True)
    (keylime_dir / "cv_ca" / "cacert.crt").write_bytes(pki.ca.cert_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLIME_")}
    env.update(KEYLIME_AGENT_CONFIG=str(conf), TCTI=swtpm.tcti)
    log_path = tmp_path / "agent.log"
    async with trio.open_nursery() as nursery:
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(
            await trio.open_tcp_listeners(registrar_port, host="127.0.0.1")
        )
        nursery.start_soon(FakeRegistrar().serve, listeners)
        with log_path.open("wb") as log:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "edge_agent.cli"], env=env, stdout=log, stderr=log
            )
            try:
                cert = keylime_dir / "server-cert.crt"
                client = await wait_until_serving(cert, api_port, pki, process, log_path)
                try:  # the client's idle keep-alive connection stays open over the stop
                    process.send_signal(signal.SIGTERM)
                    sent = time.monotonic()
                    with trio.fail_after(SHUTDOWN_GRACE_SECONDS + EXIT_MARGIN_SECONDS):
                        returncode = await process.wait()
                    took = time.monotonic() - sent
                finally:
                    await client.aclose()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        nursery.cancel_scope.cancel()
    output = log_path.read_text()
    print(f"agent exited with {returncode} {took:.2f} s after SIGTERM")
    assert returncode == 0, output
    assert took < SHUTDOWN_GRACE_SECONDS, output
    assert "Received SIGTERM; stopping" in output
    assert "Agent stopped" in output
    assert "Traceback" not in output
