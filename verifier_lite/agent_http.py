"""A lean HTTP/1.1 client for the verifier's agent connections: one kept-alive TLS stream.

httpx spent about 40 % of the verifier's CPU per quote (URL parsing, its transport and
connection-pool layers) for what is here one request on one long-lived connection per agent.
This client sends a request and reads one answer (Content-Length, chunked, or until close);
the connection is kept unless the agent says ``Connection: close``.  A request that fails on a
*reused* connection before any answer byte (the agent closed it while idle) is sent once more
on a new one, as browsers and httpx do; everything else is an :class:`AgentContactError`.

Keylime's verifier opens a new connection with a full mTLS handshake for every quote
(keylime/tornado_requests.py, one ``AsyncHTTPClient`` fetch per request).
"""

from __future__ import annotations

import json
import ssl
from typing import Optional
from urllib.parse import urlencode

import trio

from verifier_lite.errors import AgentContactError, AgentProtocolError

MAX_HEAD_BYTES = 64 * 1024
READ_CHUNK = 64 * 1024


class _Reused(Exception):
    """The kept connection was found closed before the agent sent anything."""


class KeepAliveConnection:
    def __init__(
        self,
        agent_id: str,
        host: str,
        port: int,
        *,
        ssl_context: Optional[ssl.SSLContext],
        timeout_seconds: float,
        max_body_bytes: int,
    ) -> None:
        self._agent_id = agent_id
        self._host, self._port = host, port
        self._ssl = ssl_context
        self._timeout = timeout_seconds
        self._max_body = max_body_bytes
        self._stream: Optional[trio.abc.Stream] = None
        self._buffer = bytearray()
        self._lock = trio.Lock()  # one request at a time on the one connection

    async def request(
        self, method: str, path: str, query: Optional[dict[str, str]] = None,
        body: Optional[dict[str, str]] = None,
    ) -> tuple[int, bytes]:  # fmt: skip
        target = path + ("?" + urlencode(query) if query else "")
        payload = b"" if body is None else json.dumps(body).encode()
        async with self._lock:
            try:
                with trio.fail_after(self._timeout):
                    return await self._exchange(method, target, payload)
            except trio.TooSlowError:
                await self.aclose()
                raise AgentContactError(
                    self._agent_id, "ReadTimeout: agent did not answer"
                ) from None

    async def _exchange(self, method: str, target: str, payload: bytes) -> tuple[int, bytes]:
        reused = self._stream is not None
        try:
            return await self._once(method, target, payload, reused=reused)
        except _Reused:
            await self.aclose()
        except (OSError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError) as exc:
            await self.aclose()
            raise AgentContactError(
                self._agent_id, f"{type(exc).__name__}: {str(exc)[:160]}"
            ) from exc
        try:
            return await self._once(method, target, payload, reused=False)
        except (
            _Reused,
            OSError,
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            ssl.SSLError,
        ) as exc:
            await self.aclose()
            raise AgentContactError(
                self._agent_id, f"{type(exc).__name__}: {str(exc)[:160]}"
            ) from exc

    async def _connect(self) -> trio.abc.Stream:
        stream: trio.abc.Stream = await trio.open_tcp_stream(self._host, self._port)
        if self._ssl is not None:
            tls = trio.SSLStream(stream, self._ssl, server_hostname=None, https_compatible=True)
            await tls.do_handshake()
            stream = tls
        self._buffer.clear()
        return stream

    async def _once(
        self, method: str, target: str, payload: bytes, *, reused: bool
    ) -> tuple[int, bytes]:
        if self._stream is None:
            self._stream = await self._connect()
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            f"Accept: application/json\r\nContent-Length: {len(payload)}\r\n"
            + ("Content-Type: application/json\r\n" if payload else "")
            + "\r\n"
        )
        try:
            await self._stream.send_all(head.encode("latin-1") + payload)
            first = await self._fill(1)
        except (trio.BrokenResourceError, OSError):
            if reused:
                raise _Reused() from None
            raise
        if not first:
            if reused:
                raise _Reused()
            raise trio.BrokenResourceError("agent closed the connection without answering")
        return await self._response()

    async def _fill(self, size: int) -> bool:
        """Read until the buffer holds ``size`` bytes; False at end of stream first."""
        assert self._stream is not None  # noqa: S101 - set by _once
        while len(self._buffer) < size:
            chunk = await self._stream.receive_some(READ_CHUNK)
            if not chunk:
                return False
            self._buffer += chunk
        return True

    async def _line_end(self, marker: bytes, limit: int) -> int:
        while (at := self._buffer.find(marker)) < 0:
            if len(self._buffer) > limit or not await self._fill(len(self._buffer) + 1):
                raise AgentProtocolError(self._agent_id, "malformed HTTP answer")
        return at

    async def _response(self) -> tuple[int, bytes]:
        end = await self._line_end(b"\r\n\r\n", MAX_HEAD_BYTES)
        lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
        del self._buffer[: end + 4]
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise AgentProtocolError(self._agent_id, "malformed HTTP status line") from None
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await self._body(headers)
        if headers.get("connection", "").lower() == "close":
            await self.aclose()
        return status, body

    async def _body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return await self._chunked()
        if "content-length" in headers:
            try:
                length = int(headers["content-length"])
            except ValueError:
                raise AgentProtocolError(self._agent_id, "bad Content-Length") from None
            if not 0 <= length <= self._max_body:
                raise AgentProtocolError(self._agent_id, "response too large")
            if not await self._fill(length):
                raise trio.BrokenResourceError("agent closed the connection mid-answer")
        else:  # no length: the body runs until the agent closes
            while await self._fill(len(self._buffer) + 1):
                if len(self._buffer) > self._max_body:
                    raise AgentProtocolError(self._agent_id, "response too large")
            length = len(self._buffer)
            headers["connection"] = "close"
        body = bytes(self._buffer[:length])
        del self._buffer[:length]
        return body

    async def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            end = await self._line_end(b"\r\n", 1024)
            try:
                size = int(bytes(self._buffer[:end]).split(b";")[0], 16)
            except ValueError:
                raise AgentProtocolError(self._agent_id, "bad chunk size") from None
            del self._buffer[: end + 2]
            if len(body) + size > self._max_body:
                raise AgentProtocolError(self._agent_id, "response too large")
            if not await self._fill(size + 2):
                raise trio.BrokenResourceError("agent closed the connection mid-chunk")
            body += self._buffer[:size]
            del self._buffer[: size + 2]
            if size == 0:  # agents send no trailers: the last chunk ends the body
                return bytes(body)

    async def aclose(self) -> None:
        stream, self._stream = self._stream, None
        self._buffer.clear()
        if stream is not None:
            await trio.aclose_forcefully(stream)
