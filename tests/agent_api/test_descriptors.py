"""A connect flood at systemd's default descriptor limit must not take the agent's TPM away.

At RLIMIT_NOFILE 1024, 1100 idle TCP connects used to exhaust the agent's descriptors: accept
failed with EMFILE and the TPM connection could not be made again.  With the connection cap
(edge_agent.server.serve.MAX_CONNECTIONS, RESERVED_DESCRIPTORS) the agent never reaches the
limit, and a verifier that connects after the flood gets its quote.
"""

from __future__ import annotations

import resource
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import trio

from tests.agent_api.process import agent_process
from tests.agent_api.support import ClientPki
from tools.swtpm import Swtpm

pytestmark = pytest.mark.swtpm

AGENT_NOFILE = 1024  # systemd's default soft limit for a service
IDLE_CONNECTS = 1100
QUOTE_DEADLINE_SECONDS = 120.0


@contextmanager
def idle_connections(port: int, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connected sockets that never send a byte, closed at the end."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < count + 256:
        pytest.fail(f"this test needs RLIMIT_NOFILE >= {count + 256}; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 256)), hard))
    with ExitStack() as stack:
        sockets = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.connect(("127.0.0.1", port))  # completes in the kernel's accept backlog
            sockets.append(sock)
        try:
            yield sockets
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_quote_after_a_connect_flood_at_nofile_1024(
    swtpm: Swtpm, tmp_path: Path, pki: ClientPki
) -> None:
    async with agent_process(tmp_path, pki, swtpm.tcti, nofile=AGENT_NOFILE) as agent:
        with idle_connections(agent.port, IDLE_CONNECTS):
            await agent.reconnect()  # a fresh connection, queued behind the flood
            started = trio.current_time()
            with trio.fail_after(QUOTE_DEADLINE_SECONDS):
                response = await agent.quote()
            print(f"quote answered {trio.current_time() - started:.2f} s after the flood")
        output = agent.log()
    assert response.status_code == 200, (response.text, output[-3000:])
    assert response.json()["results"]["quote"].startswith("r")
    # The cap kept the agent below its limit: accept() never failed for want of descriptors.
    assert "Cannot accept a connection" not in output
    assert "dropping the oldest one in its handshake" in output
