"""A minimal HTTP/1.1 server over TLS for the simulated agents, with keep-alive.

Quart and Hypercorn cost several ms of CPU per request and tens of KiB per app; thousands of
agents in one process need far less.  This reads one request at a time per connection
(request line, headers, a Content-Length body), hands it to a handler and writes one JSON
answer; ``Connection: close`` from the client (Keylime's tornado client) is honoured.
Anything malformed closes the connection: the simulator only serves verifiers under test.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import trio

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 1024 * 1024
READ_CHUNK = 16 * 1024
# A verifier that opens a connection and sends nothing is dropped after this.
IDLE_TIMEOUT_SECONDS = 120.0
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: bytes


Handler = Callable[[Request], Awaitable[tuple[int, dict[str, Any]]]]


class _Closed(Exception):
    pass


def server_context(cert: str, key: str, client_cas: list[str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    for ca in client_cas:
        ctx.load_verify_locations(ca)
    ctx.verify_mode = ssl.CERT_REQUIRED  # an agent with enable_agent_mtls
    return ctx


def envelope(code: int, results: dict[str, Any]) -> bytes:
    status = "Success" if code == 200 else _REASONS.get(code, "Error")
    return json.dumps({"code": code, "status": status, "results": results}).encode()


async def _read_head(stream: trio.abc.Stream, buffer: bytearray) -> bytes:
    while b"\r\n\r\n" not in buffer:
        if len(buffer) > MAX_HEAD_BYTES:
            raise _Closed()
        chunk = await stream.receive_some(READ_CHUNK)
        if not chunk:
            raise _Closed()
        buffer += chunk
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


async def _read_request(stream: trio.abc.Stream, buffer: bytearray) -> tuple[Request, bool]:
    """The next request on ``stream`` and whether the client wants the connection kept."""
    head = (await _read_head(stream, buffer)).decode("latin-1").split("\r\n")
    try:
        method, target, version = head[0].split(" ")
    except ValueError:
        raise _Closed() from None
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or "0")
    if not 0 <= length <= MAX_BODY_BYTES:
        raise _Closed()
    while len(buffer) < length:
        chunk = await stream.receive_some(READ_CHUNK)
        if not chunk:
            raise _Closed()
        buffer += chunk
    body = bytes(buffer[:length])
    del buffer[:length]
    url = urlsplit(target)
    keep = headers.get("connection", "").lower() != "close" and version == "HTTP/1.1"
    return Request(method, url.path, dict(parse_qsl(url.query)), body), keep


async def serve_connection(stream: trio.abc.Stream, handler: Handler) -> None:
    buffer = bytearray()
    try:
        while True:
            with trio.move_on_after(IDLE_TIMEOUT_SECONDS) as idle:
                request, keep = await _read_request(stream, buffer)
            if idle.cancelled_caught:
                return
            code, results = await handler(request)
            body = envelope(code, results)
            head = (
                f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                f"Connection: {'keep-alive' if keep else 'close'}\r\n\r\n"
            )
            await stream.send_all(head.encode("latin-1") + body)
            if not keep:
                return
    except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError, ValueError):
        return
    finally:
        with trio.CancelScope(shield=True):
            await trio.aclose_forcefully(stream)
