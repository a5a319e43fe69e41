"""The agent's HTTP/1.1 layer (edge_agent.server.serve.serve_http) on its own, over loopback.

A stand-in Responder replaces the agent API so that each test controls what a request costs
and what it answers; responses are read with h11's client side.  Timeouts are real (small):
trio's autojump clock would fire them while the sockets wait.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import h11
import pytest
import trio

from attest_protocol.pki import create_ca, issue_client_cert, issue_server_cert
from edge_agent.server.handler import Response
from edge_agent.server.serve import (
    MAX_HEAD_BYTES,
    ServerConfig,
    TlsFiles,
    serve_http,
    server_ssl_context,
)

LOOPBACK = "127.0.0.1"
LIMIT = 1024  # max_body_bytes of the server under test
WAIT_S = 10.0  # every wait in a test is bounded by this


@dataclass
class StandIn:
    """Answers 200 with what it got; ``/slow`` first waits on ``release``; ``/boom`` raises."""

    seen: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    release: trio.Event = field(default_factory=trio.Event)
    slow_started: trio.Event = field(default_factory=trio.Event)

    async def respond(self, method: str, target: bytes, body: bytes) -> Response:
        self.seen.append((method, target, body))
        if target == b"/slow":
            self.slow_started.set()
            await self.release.wait()
        if target == b"/boom":
            raise RuntimeError("a handler bug")
        data = json.dumps({"code": 200, "status": "Success", "results": {"n": len(body)}})
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
        return Response(200, headers, data.encode())


@dataclass
class Served:
    port: int
    api: StandIn
    stop: trio.Event
    finished: trio.Event
    streams: list[trio.abc.Stream] = field(default_factory=list)

    async def connect(self, context: Optional[ssl.SSLContext] = None) -> trio.abc.Stream:
        """A client connection, closed when the test's server stops."""
        stream: trio.abc.Stream
        if context is None:
            stream = await trio.open_tcp_stream(LOOPBACK, self.port)
        else:
            stream = await trio.open_ssl_over_tcp_stream(LOOPBACK, self.port, ssl_context=context)
        self.streams.append(stream)
        return stream


@asynccontextmanager
async def serving(
    context: Optional[ssl.SSLContext] = None, **options: Any
) -> AsyncIterator[Served]:
    config = ServerConfig(LOOPBACK, 0, context, max_body_bytes=LIMIT, **options)
    api, stop, finished = StandIn(), trio.Event(), trio.Event()

    async def run(task_status: trio.TaskStatus[list[str]]) -> None:
        try:
            await serve_http(api, config, shutdown=stop.wait, task_status=task_status)
        finally:
            finished.set()

    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(run)
        served = Served(int(urls[0].rsplit(":", 1)[1]), api, stop, finished)
        try:
            yield served
        finally:
            for stream in served.streams:
                with trio.CancelScope(shield=True), contextlib.suppress(trio.BrokenResourceError):
                    await stream.aclose()
            nursery.cancel_scope.cancel()


async def read_response(stream: trio.abc.Stream, method: bytes = b"GET") -> list[Any]:
    """The events of one response (interim 100s included), or [] if the server closed first."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[("host", "x")]))
    client.send(h11.EndOfMessage())
    events: list[Any] = []
    with trio.fail_after(WAIT_S):
        while True:
            event = client.next_event()
            if event is h11.NEED_DATA:
                client.receive_data(bytes(await stream.receive_some(65536)))
                continue
            if isinstance(event, h11.ConnectionClosed):
                return events
            events.append(event)
            if isinstance(event, h11.EndOfMessage):
                return events


async def rest_until_closed(stream: trio.abc.Stream) -> bytes:
    """What the server still sends before it closes the connection (TooSlowError if it
    keeps it open)."""
    rest = b""
    with trio.fail_after(WAIT_S):
        try:
            while data := await stream.receive_some(65536):
                rest += data
        except trio.BrokenResourceError:
            pass
    return rest


def status(events: list[Any]) -> list[int]:
    return [
        e.status_code for e in events if isinstance(e, (h11.Response, h11.InformationalResponse))
    ]


def body_of(events: list[Any]) -> dict[str, Any]:
    return dict(json.loads(b"".join(bytes(e.data) for e in events if isinstance(e, h11.Data))))


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async with serving() as served:
        stream = await served.connect()
        answers = []
        for n in range(3):
            body = b"x" * n
            await stream.send_all(
                b"POST /r%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (n, n, body)
            )
            answers.append(await read_response(stream))
    assert [status(a) for a in answers] == [[200], [200], [200]]
    assert [body_of(a)["results"]["n"] for a in answers] == [0, 1, 2]
    assert [(m, t) for m, t, _ in served.api.seen] == [("POST", b"/r0"), ("POST", b"/r1"),
                                                       ("POST", b"/r2")]  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"NOT HTTP AT ALL\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: nine\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n", 431),
    ],
    ids=["garbage", "bad content-length", "head too large"],
)
async def test_unparseable_requests_get_an_error_and_the_connection_closes(
    raw: bytes, expected: int
) -> None:
    async with serving() as served:
        stream = await served.connect()
        await stream.send_all(raw)
        events = await read_response(stream)
        assert await rest_until_closed(stream) == b""
        assert served.api.seen == []  # never reached the API
        # ... and the server still serves the next client.
        again = await served.connect()
        await again.send_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status(await read_response(again)) == [200]
    assert status(events) == [expected]
    assert body_of(events)["code"] == expected


async def test_bodies_over_the_limit_get_413_declared_or_streamed() -> None:
    async with serving() as served:
        declared = await served.connect()
        await declared.send_all(
            b"POST /d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (LIMIT + 1)
        )
        declared_events = await read_response(declared)  # answered without sending the body
        streamed = await served.connect()
        chunk = b"y" * (LIMIT // 2 + 1)
        await streamed.send_all(
            b"POST /s HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + (b"%x\r\n%s\r\n" % (len(chunk), chunk)) * 2
        )
        streamed_events = await read_response(streamed)
        assert await rest_until_closed(declared) == b""
        assert await rest_until_closed(streamed) == b""
    assert status(declared_events) == status(streamed_events) == [413]
    assert str(LIMIT) in body_of(declared_events)["status"]
    assert served.api.seen == []


async def test_expect_100_continue_gets_an_interim_answer() -> None:
    async with serving() as served:
        stream = await served.connect()
        await stream.send_all(
            b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n"
        )
        with trio.fail_after(WAIT_S):
            interim = await stream.receive_some(65536)
        await stream.send_all(b"abc")
        final = await read_response(stream)
    assert interim.startswith(b"HTTP/1.1 100 ")
    assert status(final) == [200]
    assert served.api.seen == [("POST", b"/e", b"abc")]


async def test_head_answers_have_no_body() -> None:
    async with serving() as served:
        stream = await served.connect()
        await stream.send_all(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
        events = await read_response(stream, method=b"HEAD")
    assert status(events) == [200]
    assert not [e for e in events if isinstance(e, h11.Data) and e.data]


async def test_idle_and_stalled_connections_are_closed() -> None:
    async with serving(keep_alive_timeout=0.2, read_timeout=0.2) as served:
        idle = await served.connect()
        stalled = await served.connect()
        await stalled.send_all(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        start = trio.current_time()
        assert await rest_until_closed(idle) == b""
        assert await rest_until_closed(stalled) == b""
        took = trio.current_time() - start
    assert took < WAIT_S / 2
    assert served.api.seen == []  # the stalled request was never answered


async def test_a_failing_handler_ends_only_its_connection() -> None:
    async with serving() as served:
        stream = await served.connect()
        await stream.send_all(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
        assert await rest_until_closed(stream) == b""
        again = await served.connect()
        await again.send_all(b"GET /ok HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status(await read_response(again)) == [200]


async def test_shutdown_drains_requests_in_flight_and_closes_idle_connections() -> None:
    async with serving() as served:
        idle = await served.connect()
        busy = await served.connect()
        await busy.send_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        with trio.fail_after(WAIT_S):
            await served.api.slow_started.wait()
        served.stop.set()
        assert await rest_until_closed(idle) == b""
        with pytest.raises(OSError):  # the listener is closed
            with trio.fail_after(WAIT_S):
                await served.connect()
        served.api.release.set()
        events = await read_response(busy)
        with trio.fail_after(WAIT_S):
            await served.finished.wait()
    assert status(events) == [200]
    response = next(e for e in events if isinstance(e, h11.Response))
    assert (b"connection", b"close") in list(response.headers)


def _tls_contexts(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    ca = create_ca("http server test CA")
    server = issue_server_cert(ca, "agent", ips=[LOOPBACK])
    client = issue_client_cert(ca, "verifier")
    files = {
        "ca.crt": ca.cert_pem,
        "server.crt": server.cert_pem,
        "server.key": server.key_pem,
        "client.pem": client.cert_pem + client.key_pem,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    server_context = server_ssl_context(
        TlsFiles(tmp_path / "server.crt", tmp_path / "server.key", (tmp_path / "ca.crt",))
    )
    client_context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client_context.load_cert_chain(str(tmp_path / "client.pem"))
    return server_context, client_context


async def test_mutual_tls_and_a_stalled_handshake(tmp_path: Path) -> None:
    server_context, client_context = _tls_contexts(tmp_path)
    async with serving(server_context, handshake_timeout=0.2) as served:
        stalled = await served.connect()  # never says hello
        assert await rest_until_closed(stalled) == b""
        client_context.set_alpn_protocols(["h2", "http/1.1"])
        stream = await served.connect(client_context)
        await stream.send_all(b"GET /tls HTTP/1.1\r\nHost: x\r\n\r\n")
        events = await read_response(stream)
        assert isinstance(stream, trio.SSLStream)
        assert stream.selected_alpn_protocol() == "http/1.1"
    assert status(events) == [200]
    assert served.api.seen == [("GET", b"/tls", b"")]


async def test_only_the_configured_ca_is_trusted_for_clients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CA in OpenSSL's default trust store (SSL_CERT_FILE, SSL_CERT_DIR) is not trusted for
    client certificates: only ``trusted_client_ca`` is."""
    system = create_ca("a CA the system trusts")
    (tmp_path / "system-bundle.pem").write_bytes(system.cert_pem)
    (tmp_path / "system-dir").mkdir()
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system-bundle.pem"))
    monkeypatch.setenv("SSL_CERT_DIR", str(tmp_path / "system-dir"))
    server_context, _ = _tls_contexts(tmp_path)
    assert server_context.cert_store_stats()["x509_ca"] == 1  # the configured CA alone
    outsider = issue_client_cert(system, "someone with a system-trusted certificate")
    (tmp_path / "outsider.pem").write_bytes(outsider.cert_pem + outsider.key_pem)
    client_context = ssl.create_default_context(cafile=str(tmp_path / "ca.crt"))
    client_context.load_cert_chain(str(tmp_path / "outsider.pem"))
    async with serving(server_context) as served:
        # A TLS alert, or the connection closed without an answer.
        with pytest.raises((trio.BrokenResourceError, h11.RemoteProtocolError)):
            stream = await served.connect(client_context)
            # TLS 1.3: the client finishes its side first; the refusal arrives on first use.
            await stream.send_all(b"GET /outsider HTTP/1.1\r\nHost: x\r\n\r\n")
            await read_response(stream)
    assert served.api.seen == []
