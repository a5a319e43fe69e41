"""HTTPS to the verifier: one request per connection, h11 over a trio SSLStream.

The verifier's certificate must chain to ``verifier_tls_ca_cert`` and name the host of
``verifier_url`` (the only channel binding of the bearer token: PROTOCOL.md §10).  The agent
presents no client certificate: with one from the verifier's CA it would be an admin whenever
it omitted the token (Keylime keylime/web/base/action_handler.py, identity extraction).
Every wait is bounded, and so is the response body.
"""

from __future__ import annotations

import email.utils
import json
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import h11
import trio

from edge_agent.http_client import USER_AGENT
from edge_agent.push.errors import BadVerifierResponse, VerifierUnreachable

__all__ = ["JSON_API", "PushClient", "PushResponse", "retry_after_seconds", "verifier_tls"]

# Attestation routes require it (Keylime keylime/web/base/controller.py, require_json_api).
JSON_API = "application/vnd.api+json"
CONNECT_TIMEOUT_S = 10.0
IO_TIMEOUT_S = 30.0
# An attestation answer echoes the evidence (IMA entries included); 16 MiB bounds it.
MAX_BODY_BYTES = 16 * 1024 * 1024
RECEIVE_CHUNK_BYTES = 64 * 1024
# A Retry-After further away than this is taken as this: a verifier cannot park the agent.
MAX_RETRY_AFTER_S = 300.0


def verifier_tls(ca_file: Path) -> ssl.SSLContext:
    """A client context trusting only ``ca_file``, host name checked; read now (blocking)."""
    try:
        ctx = ssl.create_default_context(cafile=str(ca_file))
    except (OSError, ssl.SSLError) as exc:
        raise VerifierUnreachable(f"cannot load verifier_tls_ca_cert {ca_file}: {exc}") from exc
    return ctx


@dataclass(frozen=True)
class PushResponse:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise BadVerifierResponse(f"the verifier's {self.status} body is not JSON") from exc


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Retry-After as seconds (RFC 9110 §10.2.3: delay-seconds or an HTTP-date), or None;
    at most MAX_RETRY_AFTER_S."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return min(float(text), MAX_RETRY_AFTER_S)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    delay = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, delay), MAX_RETRY_AFTER_S)


class PushClient:
    """Requests to ``verifier_url``; paths are absolute (``/v3.0/...``)."""

    def __init__(self, verifier_url: str, tls: ssl.SSLContext) -> None:
        url = urllib.parse.urlsplit(verifier_url)
        if url.scheme != "https" or not url.hostname:
            raise VerifierUnreachable(f"verifier_url {verifier_url!r} is not an https:// URL")
        self.host = url.hostname
        self.port = url.port or 443
        self.prefix = url.path.rstrip("/")
        self.authority = url.netloc
        self._tls = tls

    async def request(
        self, method: str, path: str, doc: Optional[Any], token: Optional[str], accept: str
    ) -> PushResponse:
        body = None if doc is None else json.dumps(doc).encode()
        headers = [
            ("Host", self.authority),
            ("User-Agent", USER_AGENT),
            ("Accept", accept),
            ("Connection", "close"),
        ]
        if token is not None:
            headers.append(("Authorization", f"Bearer {token}"))
        if body is not None:
            headers += [("Content-Type", JSON_API), ("Content-Length", str(len(body)))]
        stream = await self._connect()
        async with stream:
            try:
                conn = h11.Connection(h11.CLIENT)
                target = self.prefix + path
                data = conn.send(h11.Request(method=method, target=target, headers=headers))
                if body:
                    data = (data or b"") + (conn.send(h11.Data(data=body)) or b"")
                data = (data or b"") + (conn.send(h11.EndOfMessage()) or b"")
                with trio.fail_after(IO_TIMEOUT_S):
                    await stream.send_all(data)
                return await _receive(stream, conn)
            except trio.TooSlowError:
                raise VerifierUnreachable(f"{method} {path} timed out") from None
            except (trio.BrokenResourceError, OSError, ssl.SSLError) as exc:
                raise VerifierUnreachable(f"{method} {path}: connection broke: {exc}") from exc
            except h11.ProtocolError as exc:
                raise VerifierUnreachable(f"{method} {path}: not HTTP/1.1: {exc}") from exc

    async def _connect(self) -> trio.SSLStream[trio.SocketStream]:
        stream: Optional[trio.SSLStream[trio.SocketStream]] = None
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                tcp = await trio.open_tcp_stream(self.host, self.port)
                stream = trio.SSLStream(tcp, self._tls, server_hostname=self.host)
                await stream.do_handshake()
        except trio.TooSlowError:
            await _discard(stream)
            raise VerifierUnreachable(f"connecting to {self.authority} timed out") from None
        except (OSError, ssl.SSLError, trio.BrokenResourceError) as exc:
            await _discard(stream)
            cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
            raise VerifierUnreachable(f"cannot reach {self.authority}: {cause}") from exc
        return stream


async def _discard(stream: Optional[trio.SSLStream[trio.SocketStream]]) -> None:
    """Close the socket under a failed handshake (its TLS close would fail too)."""
    if stream is not None:
        await trio.aclose_forcefully(stream.transport_stream)


async def _receive(stream: trio.abc.Stream, conn: h11.Connection) -> PushResponse:
    status: Optional[int] = None
    headers: dict[str, str] = {}
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            with trio.fail_after(IO_TIMEOUT_S):
                conn.receive_data(bytes(await stream.receive_some(RECEIVE_CHUNK_BYTES)))
        elif isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > MAX_BODY_BYTES:
                raise VerifierUnreachable(f"response body over {MAX_BODY_BYTES} bytes")
        elif isinstance(event, h11.EndOfMessage) and status is not None:
            return PushResponse(status, headers, bytes(body))
        elif isinstance(event, h11.ConnectionClosed):
            raise VerifierUnreachable("the verifier closed the connection mid-response")
