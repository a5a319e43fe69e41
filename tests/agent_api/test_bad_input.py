"""Bad input is refused with a 4xx envelope and changes nothing: TLS, queries, bodies."""

from __future__ import annotations

import base64
import dataclasses
import json
import ssl
from pathlib import Path
from typing import Any, Optional

import httpx
import pytest
import trio

from attest_protocol.pki import create_ca, issue_client_cert
from edge_agent.config import AgentConfig
from edge_agent.server import MAX_BODY_BYTES
from tests.agent_api.support import (
    CLIENT_TIMEOUT_SECONDS,
    ClientPki,
    RunningAgent,
    encrypt_half,
    new_halves,
    running_agent,
)

pytestmark = pytest.mark.swtpm

V = "/v2.6"
NONCE = "abc123"
POSTS = ("keys/ukey", "keys/vkey", "notifications/revocation")


def tls_reason(exc: BaseException) -> str:
    """The ssl.SSLError under httpx's wrapping (its own message is empty under trio)."""
    seen: Optional[BaseException] = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    return ""


async def test_client_without_certificate_is_refused_in_the_handshake(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    """No HTTP answer at all.  With TLS 1.3 the client learns it only after sending its
    request (the server checks the client certificate after the client's Finished), so
    it sees a closed connection; with TLS 1.2 the handshake itself fails."""
    async with running_agent(config, tmp_path) as agent:
        async with agent.client(None) as client:
            with pytest.raises(httpx.TransportError):
                await client.get("/version")
        async with agent.client(None, max_tls=ssl.TLSVersion.TLSv1_2) as client:
            with pytest.raises(httpx.ConnectError) as refused:
                await client.get("/version")
        assert tls_reason(refused.value)  # the TLS handshake failed: no connection
        async with agent.client(pki) as client:
            assert (await client.get("/version")).status_code == 200  # the server lives on


async def test_certificate_from_another_ca_is_refused(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    rogue = issue_client_cert(create_ca("some other CA"), "verifier")
    async with running_agent(config, tmp_path) as agent:
        async with agent.client(pki, cert=rogue) as client:
            with pytest.raises(httpx.TransportError):
                await client.get("/version")
        tls12 = agent.client(pki, cert=rogue, max_tls=ssl.TLSVersion.TLSv1_2)
        async with tls12 as client:
            with pytest.raises(httpx.ConnectError) as refused:
                await client.get("/version")
    assert tls_reason(refused.value)


async def test_plain_http_when_mtls_is_disabled(
    config: AgentConfig, tmp_path: Path, pki: ClientPki, caplog: pytest.LogCaptureFixture
) -> None:
    config = dataclasses.replace(config, enable_agent_mtls=False, payload_script="")
    async with running_agent(config, tmp_path) as agent, agent.client(None) as client:
        response = await client.get("/version")
    assert agent.url.startswith("http://")
    assert response.status_code == 200
    assert "INSECURE: mTLS is disabled" in caplog.text


@pytest.mark.parametrize(
    "query",
    [
        "nonce=abc-123",  # not alphanumeric
        "nonce=" + "a" * 65,  # over 64 characters
        "nonce=%C3%A9t%C3%A9",  # non-ASCII letters
        "nonce=",  # empty
        "",  # missing
        "nonce=a&nonce=b",  # repeated
    ],
    ids=["dash", "65-chars", "unicode", "empty", "missing", "repeated"],
)
async def test_bad_nonce(config: AgentConfig, tmp_path: Path, pki: ClientPki, query: str) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        identity = await client.get(f"{V}/quotes/identity?{query}")
        integrity = await client.get(f"{V}/quotes/integrity?{query}&mask=0x1&partial=0")
    for response in (identity, integrity):
        assert response.status_code == 400
        assert response.json()["results"] == {}


@pytest.mark.parametrize(
    "mask",
    ["1", "0x", "0xg", "0x1000000", "0x123456789", "0X1", "+0x1", "0x_1", "%200x1", "-0x1"],
)
async def test_mask_garbage(config: AgentConfig, tmp_path: Path, pki: ClientPki, mask: str) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        response = await client.get(f"{V}/quotes/integrity?nonce={NONCE}&mask={mask}&partial=0")
    assert response.status_code == 400, response.text


async def test_partial_and_entry_are_checked(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    base = f"{V}/quotes/integrity?nonce={NONCE}&mask=0x400"
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        answers = [
            await client.get(f"{base}"),
            await client.get(f"{base}&partial=2"),
            await client.get(f"{base}&partial=0&ima_ml_entry=-1"),
            await client.get(f"{base}&partial=0&ima_ml_entry=" + "9" * 21),
        ]
    assert [a.status_code for a in answers] == [400, 400, 400, 400]


def _good_body(path: str, pem: str) -> dict[str, Any]:
    halves = new_halves()
    if path == "keys/ukey":
        return {"encrypted_key": encrypt_half(pem, halves.u), "auth_tag": "ab" * 48}
    if path == "keys/vkey":
        return {"encrypted_key": encrypt_half(pem, halves.v)}
    return {"msg": "{}", "signature": "c2ln"}


async def test_malformed_json_on_every_post(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        for path in POSTS:
            for body in (b"{", b"[]", b'"text"', b"\xff\xfe", b""):
                response = await client.post(f"{V}/{path}", content=body)
                assert response.status_code == 400, (path, body)


async def test_missing_fields_on_every_post(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        pem = agent.started.nk_public_pem.decode()
        for path in POSTS:
            good = _good_body(path, pem)
            for field in good:
                body = {k: v for k, v in good.items() if k != field}
                response = await client.post(f"{V}/{path}", json=body)
                assert response.status_code == 400, (path, field)
                assert field in response.json()["status"]
                wrong_type = {**good, field: 42}
                assert (await client.post(f"{V}/{path}", json=wrong_type)).status_code == 400


async def test_bad_base64_hex_and_keys(config: AgentConfig, tmp_path: Path, pki: ClientPki) -> None:
    async with running_agent(config, tmp_path) as agent, agent.client(pki) as client:
        pem = agent.started.nk_public_pem.decode()
        ukey = _good_body("keys/ukey", pem)
        bad = [
            ("keys/ukey", {**ukey, "encrypted_key": "not base64!"}),
            ("keys/ukey", {**ukey, "payload": "%%%"}),
            ("keys/ukey", {**ukey, "auth_tag": "zz" * 48}),
            ("keys/ukey", {**ukey, "auth_tag": "ab" * 47}),
            ("keys/ukey", {**ukey, "encrypted_key": base64.b64encode(b"x" * 256).decode()}),
            ("keys/vkey", {"encrypted_key": "@@@@"}),
            # A half of the wrong size, properly encrypted to the NK.
            ("keys/vkey", {"encrypted_key": encrypt_half(pem, b"short")}),
        ]
        for path, body in bad:
            response = await client.post(f"{V}/{path}", json=body)
            assert response.status_code == 400, (path, body)
        verify = await client.get(f"{V}/keys/verify?challenge=abc")
    assert verify.status_code == 400  # nothing was derived from any of it


async def test_oversized_bodies_on_every_post(
    config: AgentConfig, tmp_path: Path, pki: ClientPki
) -> None:
    """Declared too large: 413 before any of it is read.  Streamed (chunked) past the limit:
    413 as soon as the limit is crossed.  The connection is closed in both cases."""
    chunk = b"x" * (1024 * 1024)
    chunks = MAX_BODY_BYTES // len(chunk) + 1
    async with running_agent(config, tmp_path) as agent:
        for path in POSTS:
            declared = await raw_post(agent, pki, f"{V}/{path}", MAX_BODY_BYTES + 1, [])
            streamed = await raw_post(agent, pki, f"{V}/{path}", None, [chunk] * chunks)
            for status, body in (declared, streamed):
                assert status == 413, path
                assert json.loads(body)["code"] == 413


async def raw_post(
    agent: RunningAgent, pki: ClientPki, target: str, length: Optional[int], chunks: list[bytes]
) -> tuple[int, bytes]:
    """POST over a bare TLS stream, sending while reading, so an early answer is seen."""
    host, port = agent.url.removeprefix("https://").rsplit(":", 1)
    context = agent.ssl_context(pki)
    stream = await trio.open_ssl_over_tcp_stream(host, int(port), ssl_context=context)
    framing = f"Content-Length: {length}" if length is not None else "Transfer-Encoding: chunked"
    head = f"POST {target} HTTP/1.1\r\nHost: {host}\r\n{framing}\r\n\r\n".encode()

    async def send() -> None:
        try:
            await stream.send_all(head)
            for piece in chunks:
                await stream.send_all(b"%x\r\n%s\r\n" % (len(piece), piece))
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server answered and closed: what we are testing

    received = b""
    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(send)
        with trio.fail_after(CLIENT_TIMEOUT_SECONDS):
            while b"\r\n\r\n" not in received or not _complete(received):
                data = await stream.receive_some()
                if not data:
                    break
                received += data
        nursery.cancel_scope.cancel()
    head_part, _, body = received.partition(b"\r\n\r\n")
    return int(head_part.split(b" ")[1]), body


def _complete(received: bytes) -> bool:
    head, _, body = received.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False
