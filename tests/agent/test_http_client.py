"""The agent's HTTP client against misbehaving servers: silence, garbage, huge bodies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Optional

import pytest
import trio

from edge_agent.http_client import (
    HttpConnectionLost,
    HttpError,
    HttpProtocolError,
    HttpResponse,
    HttpTimeout,
    Limits,
    request,
)
from tests.agent.support import MemoryListener

LIMITS = Limits(connect_timeout_s=5.0, io_timeout_s=30.0, max_body_bytes=1024)
Handler = Callable[[trio.abc.Stream], Awaitable[None]]


async def get_with(handler: Handler) -> HttpResponse:
    """GET through ``handler``; the client's error is raised here, outside the nursery."""
    listener = MemoryListener()
    outcome: Optional[HttpResponse] = None
    failure: Optional[HttpError] = None
    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, [listener])
        try:
            outcome = await request(
                listener.connect, "registrar:8890", "GET", "/version", None, LIMITS
            )
        except HttpError as exc:
            failure = exc
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure
    assert outcome is not None
    return outcome


def answering(raw: bytes) -> Handler:
    async def handler(stream: trio.abc.Stream) -> None:
        await stream.receive_some(65536)
        await stream.send_all(raw)
        await stream.aclose()

    return handler


async def test_reads_a_response_without_content_length() -> None:
    response = await get_with(answering(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}"))
    assert (response.status, response.body) == (200, b"{}")


async def test_silent_server_times_out(autojump_clock: trio.abc.Clock) -> None:
    async def silent(stream: trio.abc.Stream) -> None:
        await trio.sleep_forever()

    start = trio.current_time()
    with pytest.raises(HttpTimeout):
        await get_with(silent)
    assert trio.current_time() - start == pytest.approx(LIMITS.io_timeout_s)


async def test_garbage_is_a_protocol_error() -> None:
    with pytest.raises(HttpProtocolError):
        await get_with(answering(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"))


async def test_body_over_the_limit_is_refused() -> None:
    body = b"x" * (LIMITS.max_body_bytes + 1)
    head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    with pytest.raises(HttpProtocolError, match="over 1024 bytes"):
        await get_with(answering(head + body))


async def test_connection_closed_mid_response() -> None:
    with pytest.raises(HttpConnectionLost):
        await get_with(answering(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"))
