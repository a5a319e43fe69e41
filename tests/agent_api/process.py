"""The agent as its own process (``python -m edge_agent.cli``) on a swtpm, for fault tests.

``agent_process`` writes an agent.conf with mTLS on a free port, installs the test CA, starts
a FakeRegistrar on loopback and the agent with an optional RLIMIT_NOFILE, and yields once
``GET /version`` answers over mTLS.  The process is killed at the end whatever happened.
"""

from __future__ import annotations

import os
import resource
import ssl
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import httpx
import trio

from tests.agent.support import FakeRegistrar
from tests.agent.test_registration_tcp import free_port
from tests.agent_api.support import CLIENT_TIMEOUT_SECONDS, ClientPki
from tests.agent_api.test_shutdown import wait_until_serving

AGENT_ID = "limelet-fault-test"


@dataclass
class AgentProcess:
    process: trio.Process
    client: httpx.AsyncClient
    port: int
    log_path: Path
    registrar: FakeRegistrar
    pki: ClientPki
    cert: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def reconnect(self) -> None:
        """Replace the client by one that opens a new connection (no keep-alive reuse)."""
        await self.client.aclose()
        context = ssl.create_default_context(cadata=self.cert.read_text())
        context.load_cert_chain(str(self.pki.directory / "client.pem"))
        self.client = httpx.AsyncClient(
            base_url=f"https://127.0.0.1:{self.port}", verify=context,
            timeout=CLIENT_TIMEOUT_SECONDS,
        )  # fmt: skip

    async def quote(self, nonce: str = "fault1234") -> httpx.Response:
        version = (await self.client.get("/version")).json()["results"]["supported_version"]
        return await self.client.get(f"/v{version}/quotes/identity", params={"nonce": nonce})


def _nofile(limit: int) -> Callable[[], None]:
    def apply() -> None:  # runs in the child between fork and exec
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    return apply


def write_config(tmp_path: Path, pki: ClientPki, registrar_port: int, api_port: int) -> Path:
    keylime_dir = tmp_path / "keylime"
    conf = tmp_path / "agent.conf"
    conf.write_text(
        f'[agent]\nuuid = "{AGENT_ID}"\nkeylime_dir = "{keylime_dir}"\n'
        f"registrar_port = {registrar_port}\nport = {api_port}\n"
        f'ima_ml_path = "{tmp_path / "none"}"\nexponential_backoff_initial_delay = 200\n'
        'run_as = ""\npayload_script = ""\n'
    )
    (keylime_dir / "cv_ca").mkdir(parents=True, exist_ok=True)
    (keylime_dir / "cv_ca" / "cacert.crt").write_bytes(pki.ca.cert_pem)
    return conf


@asynccontextmanager
async def agent_process(
    tmp_path: Path, pki: ClientPki, tcti: str, *, nofile: Optional[int] = None, run: int = 0
) -> AsyncIterator[AgentProcess]:
    """One agent process; ``run`` numbers its log file when a test starts several."""
    registrar_port, api_port = free_port(), free_port()
    conf = write_config(tmp_path, pki, registrar_port, api_port)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYLIME_")}
    env.update(KEYLIME_AGENT_CONFIG=str(conf), TCTI=tcti)
    log_path = tmp_path / f"agent-{run}.log"
    registrar = FakeRegistrar()
    preexec = None if nofile is None else _nofile(nofile)
    async with trio.open_nursery() as nursery:
        listeners: list[trio.abc.Listener[trio.abc.Stream]] = list(
            await trio.open_tcp_listeners(registrar_port, host="127.0.0.1")
        )
        nursery.start_soon(registrar.serve, listeners)
        with log_path.open("wb") as log:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "edge_agent.cli"], env=env, stdout=log, stderr=log,
                preexec_fn=preexec,
            )  # fmt: skip
            try:
                cert = tmp_path / "keylime" / "server-cert.crt"
                client = await wait_until_serving(cert, api_port, pki, process, log_path)
                agent = AgentProcess(process, client, api_port, log_path, registrar, pki, cert)
                try:
                    yield agent
                finally:
                    await agent.client.aclose()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
        nursery.cancel_scope.cancel()
