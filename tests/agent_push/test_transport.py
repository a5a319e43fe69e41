"""HTTPS to the verifier: the server certificate is checked against verifier_tls_ca_cert.

A trio TLS server on loopback plays the verifier; the agent's client must talk to it when its
certificate chains to the configured CA and names the host, and refuse it otherwise (the
bearer token must never reach another server: PROTOCOL.md §10).
"""

from __future__ import annotations

import ssl
from pathlib import Path

import h11
import pytest
import trio

from attest_protocol.pki import create_ca, issue_server_cert
from edge_agent.push.errors import VerifierUnreachable
from edge_agent.push.transport import JSON_API, PushClient, verifier_tls

LOOPBACK = "127.0.0.1"
TOKEN = "session.secret"  # noqa: S105 -- a fake bearer token


def server_context(tmp_path: Path, ca_name: str, ips: list[str]) -> tuple[ssl.SSLContext, Path]:
    ca = create_ca(ca_name)
    cert = issue_server_cert(ca, "verifier", ips=ips)
    (tmp_path / f"{ca_name}.crt").write_bytes(ca.cert_pem)
    (tmp_path / "server.crt").write_bytes(cert.cert_pem)
    (tmp_path / "server.key").write_bytes(cert.key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    return ctx, tmp_path / f"{ca_name}.crt"


class Verifier:
    def __init__(self) -> None:
        self.requests: list[h11.Request] = []
        self.bodies: list[bytes] = []

    async def handle(self, stream: trio.abc.Stream) -> None:
        conn = h11.Connection(h11.SERVER)
        body = b""
        try:
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(65536)))
                elif isinstance(event, h11.Request):
                    self.requests.append(event)
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage):
                    break
            self.bodies.append(body)
            payload = b'{"data": {"type": "session", "id": "s", "attributes": {}}}'
            headers = [("Content-Length", str(len(payload))), ("Retry-After", "3")]
            await stream.send_all(conn.send(h11.Response(status_code=429, headers=headers)) or b"")
            await stream.send_all(conn.send(h11.Data(data=payload)) or b"")
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        except (trio.BrokenResourceError, h11.ProtocolError):
            pass  # a client that refused our certificate hangs up in the handshake


async def serve(nursery: trio.Nursery, ctx: ssl.SSLContext, verifier: Verifier) -> int:
    listeners = await nursery.start(trio.serve_ssl_over_tcp, verifier.handle, 0, ctx)
    port: int = listeners[0].transport_listener.socket.getsockname()[1]
    return port


async def test_a_verifier_with_the_configured_ca_is_reached(tmp_path: Path) -> None:
    server_ctx, ca = server_context(tmp_path, "verifier-ca", [LOOPBACK])
    verifier = Verifier()
    async with trio.open_nursery() as nursery:
        port = await serve(nursery, server_ctx, verifier)
        client = PushClient(f"https://{LOOPBACK}:{port}", verifier_tls(ca))
        answer = await client.request(
            "POST", "/v3.0/agents/a/attestations", {"x": 1}, TOKEN, JSON_API
        )
        nursery.cancel_scope.cancel()
    assert answer.status == 429 and answer.headers["retry-after"] == "3"
    assert answer.json()["data"]["id"] == "s"
    request = verifier.requests[0]
    headers = {k.decode(): v.decode() for k, v in request.headers}
    assert request.method == b"POST" and request.target == b"/v3.0/agents/a/attestations"
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["content-type"] == JSON_API and headers["accept"] == JSON_API
    assert verifier.bodies == [b'{"x": 1}']


@pytest.mark.parametrize("case", ["another CA", "another host name"])
async def test_a_verifier_the_ca_does_not_vouch_for_gets_nothing(tmp_path: Path, case: str) -> None:
    if case == "another CA":
        server_ctx, _ = server_context(tmp_path, "rogue-ca", [LOOPBACK])
        trusted = tmp_path / "trusted.crt"
        trusted.write_bytes(create_ca("the configured CA").cert_pem)
    else:
        server_ctx, trusted = server_context(tmp_path, "verifier-ca", ["10.9.8.7"])
    verifier = Verifier()
    async with trio.open_nursery() as nursery:
        port = await serve(nursery, server_ctx, verifier)
        client = PushClient(f"https://{LOOPBACK}:{port}", verifier_tls(trusted))
        with pytest.raises(VerifierUnreachable, match="certificate"):
            await client.request("POST", "/v3.0/sessions", {}, TOKEN, "*/*")
        nursery.cancel_scope.cancel()
    assert verifier.requests == []  # the token never left the agent


def test_only_https_verifier_urls(tmp_path: Path) -> None:
    _ctx, ca = server_context(tmp_path, "verifier-ca", [LOOPBACK])
    with pytest.raises(VerifierUnreachable, match="https"):
        PushClient("http://127.0.0.1:8881", verifier_tls(ca))
    with pytest.raises(VerifierUnreachable, match="verifier_tls_ca_cert"):
        verifier_tls(tmp_path / "missing.crt")
