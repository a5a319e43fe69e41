"""The services' listener timeouts (service_kit/listen.py, service_kit/web.py) on a real
Hypercorn mTLS listener: a slow answer is still delivered, a stalled client is not kept.

A request that takes longer to serve than ``read_timeout_seconds`` (a bulk status on a busy
verifier) used to be dropped without a response, because Hypercorn's read timeout also runs
while the client waits for its answer.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import httpx
import trio
from quart import Response, request
from quart_trio import QuartTrio

from service_kit.listen import bind, hypercorn_config, serve_app
from service_kit.web import create_service_app, install_error_handlers, ok
from tests.cv_ca import LOOPBACK, TlsFiles, make_tls_files

_LOG = logging.getLogger("limelet.test.timeouts")
TIMEOUT_S = 1.0
SLOW_ANSWER_S = 3 * TIMEOUT_S
# Upper bounds only, so a loaded machine cannot fail them; each stops a hang.
GIVE_UP_S = 30.0


@dataclass(frozen=True)
class _Settings:
    server_cert_path: Path
    server_key_path: Path
    trusted_client_ca_path: Path
    handshake_timeout_seconds: float = TIMEOUT_S
    read_timeout_seconds: float = TIMEOUT_S
    keep_alive_seconds: float = TIMEOUT_S
    shutdown_grace_seconds: float = TIMEOUT_S
    max_body_bytes: int = 1 << 16


def _app() -> QuartTrio:
    app = create_service_app("limelet.test.timeouts", 1 << 16, TIMEOUT_S)
    install_error_handlers(app, _LOG, lambda limit: ValueError(f"over {limit} bytes"))

    @app.route("/slow")
    async def slow() -> Response:
        await trio.sleep(SLOW_ANSWER_S)
        return ok({"slept": SLOW_ANSWER_S})

    @app.route("/echo", methods=["POST"])
    async def echo() -> Response:
        return ok({"length": len(await request.get_data())})

    return app


@asynccontextmanager
async def _serving(tmp_path: Path) -> AsyncIterator[tuple[int, TlsFiles]]:
    tls = make_tls_files(tmp_path / "tls")
    settings = _Settings(
        tls.directory / "server-cert.crt", tls.directory / "server-private.pem", tls.ca_cert
    )
    hc = hypercorn_config(settings, _LOG)
    sock = bind(LOOPBACK, 0)
    port = sock.getsockname()[1]
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve_app, _app(), hc, tls=(sock,)))
        yield port, tls
        nursery.cancel_scope.cancel()


async def _raw(port: int, ctx: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    return await trio.open_ssl_over_tcp_stream(LOOPBACK, port, ssl_context=ctx)


async def _read_until_closed(stream: trio.SSLStream[trio.SocketStream]) -> bytes:
    received = b""
    with trio.fail_after(GIVE_UP_S):
        while True:
            try:
                chunk = await stream.receive_some(4096)
            except trio.BrokenResourceError:
                return received
            if not chunk:
                return received
            received += chunk


async def test_answer_slower_than_read_timeout_is_delivered(tmp_path: Path) -> None:
    async with _serving(tmp_path) as (port, tls):
        async with httpx.AsyncClient(verify=tls.client_context(), timeout=GIVE_UP_S) as client:
            response = await client.get(f"https://{LOOPBACK}:{port}/slow")
            assert response.status_code == 200
            assert response.json()["results"] == {"slept": SLOW_ANSWER_S}
            # The connection is kept alive and serves the next request.
            again = await client.post(f"https://{LOOPBACK}:{port}/echo", content=b"x" * 10)
            assert again.json()["results"] == {"length": 10}


async def test_stalled_body_is_answered_408(tmp_path: Path) -> None:
    async with _serving(tmp_path) as (port, tls):
        async with await _raw(port, tls.client_context()) as stream:
            head = f"POST /echo HTTP/1.1\r\nHost: {LOOPBACK}\r\nContent-Length: 100\r\n\r\n"
            await stream.send_all(head.encode() + b"0123456789")  # 10 of 100 bytes, no more
            answer = await _read_until_closed(stream)
        assert answer.startswith(b"HTTP/1.1 408 "), answer[:80]
        # The service's envelope, as every error is answered (service_kit/web.py).
        assert b'"code": 408' in answer, answer


async def test_stalled_request_head_is_dropped(tmp_path: Path) -> None:
    async with _serving(tmp_path) as (port, tls):
        async with await _raw(port, tls.client_context()) as stream:
            await stream.send_all(f"GET /slow HTTP/1.1\r\nHost: {LOOPBACK}\r\n".encode())
            # No blank line ever comes: the idle timer closes the connection, no answer given.
            assert await _read_until_closed(stream) == b""
