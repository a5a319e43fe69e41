"""A small HTTP/1.1 client: h11 (the pure protocol) driven over a trio stream.

The agent talks plain HTTP to the registrar only, one request per connection
(``Connection: close``), so this is all it needs and it keeps httpx out of the agent.
Every wait is bounded (connect, each send and receive) and so is the response body.

::

    HttpError                       base
    ├── HttpConnectError            could not connect (refused, unreachable, name lookup)
    ├── HttpTimeout                 connect, send or receive took longer than allowed
    ├── HttpConnectionLost          the connection broke before the response was complete
    └── HttpProtocolError           the peer's bytes are not HTTP/1.1, or the body is too big

The first three are transient: the registrar may be starting or restarting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Optional

import h11
import trio

__all__ = [
    "Connector",
    "HttpConnectError",
    "HttpConnectionLost",
    "HttpError",
    "HttpProtocolError",
    "HttpResponse",
    "HttpTimeout",
    "Limits",
    "request",
    "tcp_connector",
]

Connector = Callable[[], Awaitable[trio.abc.Stream]]
RECEIVE_CHUNK_BYTES = 16 * 1024
USER_AGENT = "limelet-agent"


class HttpError(Exception):
    """The request did not produce a complete HTTP response."""


class HttpConnectError(HttpError):
    pass


class HttpTimeout(HttpError):
    pass


class HttpConnectionLost(HttpError):
    pass


class HttpProtocolError(HttpError):
    pass


@dataclass(frozen=True)
class Limits:
    """Time and size bounds of one request."""

    connect_timeout_s: float
    io_timeout_s: float
    max_body_bytes: int


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: bytes


def tcp_connector(host: str, port: int) -> Connector:
    """Connect to ``host:port`` over TCP (``host`` an IP address or a DNS name)."""

    async def connect() -> trio.abc.Stream:
        return await trio.open_tcp_stream(host.strip("[]"), port)

    return connect


async def request(
    connect: Connector,
    authority: str,
    method: str,
    target: str,
    body: Optional[bytes],
    limits: Limits,
) -> HttpResponse:
    """Send one request (``body`` as JSON when given) and read the whole response."""
    try:
        with trio.fail_after(limits.connect_timeout_s):
            stream = await connect()
    except trio.TooSlowError:
        raise HttpTimeout(f"connecting to {authority} timed out") from None
    except OSError as exc:
        raise HttpConnectError(f"cannot connect to {authority}: {exc.strerror or exc}") from exc
    async with stream:
        conn = h11.Connection(h11.CLIENT)
        try:
            await _send(stream, conn, authority, method, target, body, limits)
            return await _receive(stream, conn, limits)
        except trio.TooSlowError:
            raise HttpTimeout(f"{method} {target} to {authority} timed out") from None
        except (trio.BrokenResourceError, OSError) as exc:
            raise HttpConnectionLost(f"connection to {authority} broke") from exc
        except h11.ProtocolError as exc:
            raise HttpProtocolError(f"{authority} does not speak HTTP/1.1: {exc}") from exc


async def _send(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    authority: str,
    method: str,
    target: str,
    body: Optional[bytes],
    limits: Limits,
) -> None:
    headers = [
        ("Host", authority),
        ("User-Agent", USER_AGENT),
        ("Accept", "application/json"),
        ("Connection", "close"),
    ]
    if body is not None:
        headers += [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    data = conn.send(h11.Request(method=method, target=target, headers=headers)) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    with trio.fail_after(limits.io_timeout_s):
        await stream.send_all(data)


async def _receive(stream: trio.abc.Stream, conn: h11.Connection, limits: Limits) -> HttpResponse:
    status: Optional[int] = None
    body = bytearray()
    closed = False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if closed:  # h11's way of saying the peer hung up mid-message
                raise HttpConnectionLost("the server closed the connection mid-response") from exc
            raise
        if event is h11.NEED_DATA:
            with trio.fail_after(limits.io_timeout_s):
                chunk = bytes(await stream.receive_some(RECEIVE_CHUNK_BYTES))
            closed = not chunk
            conn.receive_data(chunk)
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limits.max_body_bytes:
                raise HttpProtocolError(f"response body over {limits.max_body_bytes} bytes")
        elif isinstance(event, h11.EndOfMessage) and status is not None:
            return HttpResponse(status, bytes(body))
        elif isinstance(event, h11.ConnectionClosed):
            raise HttpConnectionLost("the server closed the connection mid-response")
