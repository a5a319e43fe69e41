"""The limelet-agent process: exits 0 on SIGTERM/SIGINT, exits 1 with the reason on failure."""

from __future__ import annotations

import os
import pwd
import signal
import sys
from pathlib import Path

import pytest
import trio

from attest_protocol.pki import create_ca
from edge_agent.cli import main
from tests.agent.support import FakeRegistrar
from tests.agent.test_registration_tcp import free_port
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

AGENT_ID = "limelet-signal-test"
STARTUP_TIMEOUT_S = 60
STOP_TIMEOUT_S = 20


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
async def test_agent_process_stops_cleanly_on_signal(
    swtpm: Swtpm, tmp_path: Path, stop_signal: signal.Signals
) -> None:
    port = free_port()
    conf = tmp_path / "agent.conf"
    conf.write_text(
        "[agent]\n"
        f'uuid = "{AGENT_ID}"\n'
        f'keylime_dir = "{tmp_path / "keylime"}"\n'
        f"registrar_port = {port}\n"
        "exponential_backoff_initial_delay = 200\n"
        # No verifier CA in this test: serve plain HTTP on a free port, no payload script.
        f'enable_agent_mtls = false\npayload_script = ""\nport = {free_port()}\nrun_as = ""\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLIME_")}
    env.update(KEYLIME_AGENT_CONFIG=str(conf), TCTI=swtpm.tcti)
    registrar = FakeRegistrar()
    log_path = tmp_path / "agent.log"
    async with trio.open_nursery() as nursery:
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(
            await trio.open_tcp_listeners(port, host="127.0.0.1")
        )
        nursery.start_soon(registrar.serve, listeners)
        with log_path.open("wb") as log:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "edge_agent.cli"], env=env, stdout=log, stderr=log
            )
            try:
                with trio.fail_after(STARTUP_TIMEOUT_S):
                    while not (AGENT_ID in registrar.agents and registrar.agents[AGENT_ID].active):
                        assert process.poll() is None, log_path.read_text()
                        await trio.sleep(0.1)
                process.send_signal(stop_signal)
                with trio.fail_after(STOP_TIMEOUT_S):
                    returncode = await process.wait()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        nursery.cancel_scope.cancel()
    output = log_path.read_text()
    assert returncode == 0, output
    assert f"Received {stop_signal.name}; stopping" in output
    assert "Traceback" not in output


async def test_agent_process_exits_1_with_the_reason_on_403(swtpm: Swtpm, tmp_path: Path) -> None:
    port = free_port()
    conf = tmp_path / "agent.conf"
    conf.write_text(
        f'[agent]\nuuid = "{AGENT_ID}"\nkeylime_dir = "{tmp_path / "k"}"\nregistrar_port = {port}\n'
        f'enable_agent_mtls = false\npayload_script = ""\nport = {free_port()}\nrun_as = ""\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLIME_")}
    env.update(KEYLIME_AGENT_CONFIG=str(conf), TCTI=swtpm.tcti)
    registrar = FakeRegistrar(forbid=True)
    async with trio.open_nursery() as nursery:
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(
            await trio.open_tcp_listeners(port, host="127.0.0.1")
        )
        nursery.start_soon(registrar.serve, listeners)
        with trio.fail_after(STARTUP_TIMEOUT_S):
            result = await trio.run_process(
                [sys.executable, "-m", "edge_agent.cli"], env=env, capture_stderr=True, check=False
            )
        nursery.cancel_scope.cancel()
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "limelet-agent: the registrar refused agent id" in err
    # A fresh keylime_dir: this start made the AK, so the message names the AK as changed.
    assert "the AK changed" in err
    assert "Traceback" not in err
    assert [method for method, _ in registrar.requests] == ["GET", "POST"]


def test_unusable_tpm_exits_1_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = tmp_path / "agent.conf"
    conf.write_text(
        f'[agent]\nkeylime_dir = "{tmp_path / "k"}"\n'
        'enable_agent_mtls = false\npayload_script = ""\nrun_as = ""\n'
    )
    for name in [n for n in os.environ if n.startswith("KEYLIME_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("KEYLIME_AGENT_CONFIG", str(conf))
    # Nothing listens there: the TPM layer's TctiError must end the agent, not a traceback.
    monkeypatch.setenv("TCTI", f"swtpm:host=127.0.0.1,port={free_port()}")
    assert main([]) == 1
    assert "limelet-agent: cannot use TPM through TCTI" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs a process started as root")
async def test_agent_started_as_root_drops_to_run_as_once_serving(
    swtpm: Swtpm, tmp_path: Path
) -> None:
    """rust-keylime's order: TPM and logs open, secure tmpfs mounted and handed over, then drop."""
    port, api_port = free_port(), free_port()
    keylime_dir = tmp_path / "keylime"
    conf = tmp_path / "agent.conf"
    conf.write_text(
        f'[agent]\nuuid = "{AGENT_ID}"\nkeylime_dir = "{keylime_dir}"\nregistrar_port = {port}\n'
        f'payload_script = ""\nport = {api_port}\nrun_as = "nobody:nogroup"\n'
    )
    # mTLS on: the server's key (0600, root's) must be loaded before the drop.
    (keylime_dir / "cv_ca").mkdir(parents=True)
    (keylime_dir / "cv_ca" / "cacert.crt").write_bytes(create_ca("run_as test CA").cert_pem)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLIME_")}
    env.update(KEYLIME_AGENT_CONFIG=str(conf), TCTI=swtpm.tcti)
    registrar = FakeRegistrar()
    log_path = tmp_path / "agent.log"
    secure = keylime_dir / "secure"
    try:
        async with trio.open_nursery() as nursery:
            listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(
                await trio.open_tcp_listeners(port, host="127.0.0.1")
            )
            nursery.start_soon(registrar.serve, listeners)
            with log_path.open("wb") as log:
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "edge_agent.cli"], env=env, stdout=log, stderr=log
                )
                try:
                    with trio.fail_after(STARTUP_TIMEOUT_S):
                        while "is up" not in log_path.read_text():
                            assert process.poll() is None, log_path.read_text()
                            await trio.sleep(0.1)
                    uids = _status_field(process.pid, "Uid")
                    secure_owner = secure.stat().st_uid
                    data_owner = keylime_dir.stat().st_uid
                    key_owner = (keylime_dir / "server-private.pem").stat().st_uid
                    process.send_signal(signal.SIGTERM)
                    with trio.fail_after(STOP_TIMEOUT_S):
                        returncode = await process.wait()
                finally:
                    if process.returncode is None:
                        process.kill()
                        await process.wait()
            nursery.cancel_scope.cancel()
    finally:
        if await trio.Path(secure).is_mount():
            await trio.run_process(["umount", str(secure)])
    nobody = pwd.getpwnam("nobody").pw_uid
    assert "Dropped root privileges: running as nobody:nogroup" in log_path.read_text()
    assert uids == [nobody] * 4, "real, effective, saved and filesystem uid must all be nobody"
    assert secure_owner == data_owner == nobody
    assert key_owner == 0, "only the directories change hands, never the key files"
    assert registrar.agents[AGENT_ID].active
    assert returncode == 0, log_path.read_text()


def _status_field(pid: int, name: str) -> list[int]:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return [int(v) for v in line.split()[1:]]
    raise AssertionError(f"/proc/{pid}/status has no {name} line")
