"""Who may reach what: the plain listener serves agents only; admin needs mTLS from our CA.

CVE-2026-1709: Keylime's registrar let clients without a trusted certificate list and read
registrations.  Each test here fails if an admin route answers without that certificate.
CVE-2023-38200: a TLS client that never finishes its handshake stalled Keylime's registrar.
"""

from __future__ import annotations

import socket

import httpx
import pytest
import trio

from tests.registrar.support import (
    API,
    LOOPBACK,
    TEST_HANDSHAKE_TIMEOUT_SECONDS,
    RunningRegistrar,
    SoftwareIdentity,
)

ADMIN_REQUESTS = [
    ("GET", f"/{API}/agents/"),
    ("GET", f"/{API}/agents/a1"),
    ("DELETE", f"/{API}/agents/a1"),
]
# Long enough for the handshake timeout to fire, short enough to keep the test quick.
STALL_WAIT_SECONDS = TEST_HANDSHAKE_TIMEOUT_SECONDS * 6


async def _activated(registrar: RunningRegistrar, identity: SoftwareIdentity) -> None:
    async with registrar.agent_client() as agent:
        assert (await agent.post(f"/{API}/agents/a1", json=identity.body())).is_success
        tag = registrar.auth_tag("a1")
        assert (await agent.put(f"/{API}/agents/a1", json={"auth_tag": tag})).is_success


@pytest.mark.parametrize(("method", "path"), ADMIN_REQUESTS)
async def test_admin_routes_refused_on_plain_listener(
    registrar: RunningRegistrar, identity: SoftwareIdentity, method: str, path: str
) -> None:
    await _activated(registrar, identity)
    # Headers a proxy might set must not turn a plain request into an authenticated one.
    forged = {"X-Forwarded-Proto": "https", "X-Forwarded-Port": str(registrar.ports.tls_port)}
    async with registrar.agent_client() as plain:
        response = await plain.request(method, path, headers=forged)
    assert response.status_code == 403
    assert "a1" not in response.text
    assert registrar.stored("a1") is not None


@pytest.mark.parametrize("rogue", [False, True], ids=["no-client-cert", "foreign-ca-cert"])
async def test_tls_listener_requires_our_client_cert(
    registrar: RunningRegistrar, identity: SoftwareIdentity, rogue: bool
) -> None:
    await _activated(registrar, identity)
    kwargs = {"rogue": True} if rogue else {"with_cert": False}
    async with registrar.admin_client(**kwargs) as client:
        with pytest.raises(httpx.TransportError):
            await client.get(f"/{API}/agents/")
    async with registrar.admin_client() as client:
        assert (await client.get(f"/{API}/agents/")).json()["results"] == {"uuids": ["a1"]}


async def test_registration_also_accepted_over_mtls(
    registrar: RunningRegistrar, identity: SoftwareIdentity
) -> None:
    async with registrar.admin_client() as client:
        response = await client.post(f"/{API}/agents/via-tls", json=identity.body())
    assert response.status_code == 200


async def test_stalled_handshake_blocks_no_one(registrar: RunningRegistrar) -> None:
    stalled = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    with stalled:
        await stalled.connect((LOOPBACK, registrar.ports.tls_port))
        # Another client is served while the first connection sits there mid-handshake.
        with trio.fail_after(STALL_WAIT_SECONDS):
            async with registrar.admin_client() as client:
                response = await client.get("/version")
        assert response.status_code == 200
        # And the server drops the half-open connection once the handshake timeout passes.
        with trio.fail_after(STALL_WAIT_SECONDS):
            leftover = await stalled.recv(1024)
    assert leftover == b""
