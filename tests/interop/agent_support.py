"""Helpers for the tests that run our agent on swtpm under a private real Keylime 7.14.3.

The same set-up as tests/interop/test_keylime_verifier_attests_agent.py (an agent that
registers with the private registrar and trusts its verifier's CA for mTLS), with the agent id
and the payload/revocation options chosen per test, plus the few I/O steps those tests share:
running ``keylime_tenant``, waiting for a file, talking to the agent over mTLS as Keylime's
admin client, and changing PCR 17 through swtpm's control channel.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import ssl
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import trio

from edge_agent.config import AgentConfig
from tools.keylime_services import KeylimeServices, free_port
from tools.swtpm import Swtpm

__all__ = [
    "LOOPBACK",
    "HCRTM_PCR",
    "agent_config",
    "agent_tls_context",
    "hcrtm_tamper",
    "request_json",
    "tenant",
    "unmounted_at_exit",
    "verifier_log",
    "wait_for_file",
]

LOOPBACK = "127.0.0.1"
# swtpm_ioctl -h runs a locality-4 hash sequence (TPM_HashStart/Data/End, TPM PC Client
# spec's H-CRTM): PCR 17, all ff after a plain start-up, is reset and extended.  It goes
# through the control channel, so it works while the agent holds the only data connection.
HCRTM_PCR = 17
SWTPM_IOCTL_TIMEOUT_SECONDS = 10.0
HTTP_TIMEOUT_SECONDS = 10.0
FILE_POLL_SECONDS = 0.1
VERIFIER_LOG_TAIL_CHARS = 6000


def agent_config(
    tmp_path: Path, tcti: str, keylime: KeylimeServices, agent_id: str, **changes: Any
) -> AgentConfig:
    """An agent under ``tmp_path/agent`` for this Keylime; ``changes`` replace options.

    The one builder of the interop tests' agent configuration."""
    port = free_port()
    base = AgentConfig(
        uuid=agent_id,
        keylime_dir=str(tmp_path / "agent"),
        ip=LOOPBACK,
        port=port,
        contact_ip=LOOPBACK,
        contact_port=port,
        registrar_ip=keylime.registrar_ip,
        registrar_port=keylime.registrar_port,
        trusted_client_ca=str(keylime.ca_cert),
        tcti=tcti,
        ima_ml_path=str(tmp_path / "no-ima"),
        measuredboot_ml_path=str(tmp_path / "no-boot-log"),
        exponential_backoff_initial_delay=200,
        exponential_backoff_max_delay=2000,
    )
    return dataclasses.replace(base, **changes)


def unmounted_at_exit(path: Path) -> Iterator[Path]:
    """Yield ``path``; afterwards unmount it if the agent mounted a tmpfs there (as root)."""
    try:
        yield path
    finally:
        if os.path.ismount(path):
            subprocess.run(["umount", str(path)], check=True, timeout=30)


async def tenant(keylime: KeylimeServices, *args: str) -> subprocess.CompletedProcess[str]:
    """The real ``keylime_tenant`` (run_tenant's own timeout applies)."""
    return await trio.to_thread.run_sync(lambda: keylime.run_tenant(*args))


def verifier_log(keylime: KeylimeServices) -> str:
    try:
        text = keylime.verifier_log.read_text()
    except OSError:
        return ""
    return "\n--- verifier log ---\n" + text[-VERIFIER_LOG_TAIL_CHARS:]


def _has_content(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


async def wait_for_file(path: Path, timeout_s: float) -> bool:
    """True once ``path`` exists and is not empty; False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await trio.to_thread.run_sync(_has_content, path):
            return True
        await trio.sleep(FILE_POLL_SECONDS)
    return await trio.to_thread.run_sync(_has_content, path)


async def hcrtm_tamper(swtpm: Swtpm, data: bytes) -> None:
    """Change PCR 17 from outside the agent: ``swtpm_ioctl -h`` on the control port."""
    done = await trio.run_process(
        ["swtpm_ioctl", "--tcp", f"{LOOPBACK}:{swtpm.ctrl_port}", "-h", data.decode()],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def agent_tls_context(keylime: KeylimeServices, agent_cert: Path) -> ssl.SSLContext:
    """Keylime's admin client certificate, trusting exactly the agent's self-signed one.

    The agent's certificate names its contact address, not a host name the client asks for,
    so the check is the pinned certificate (as Keylime pins the registered mtls_cert).
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cafile=str(agent_cert))
    ctx.load_cert_chain(str(keylime.client_cert), str(keylime.client_key))
    return ctx


def _request(
    port: int, ctx: ssl.SSLContext, method: str, path: str, body: Any
) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPSConnection(LOOPBACK, port, timeout=HTTP_TIMEOUT_SECONDS, context=ctx)
    try:
        payload = None if body is None else json.dumps(body)
        headers = {} if body is None else {"Content-Type": "application/json"}
        conn.request(method, path, body=payload, headers=headers)
        response = conn.getresponse()
        answer: dict[str, Any] = json.loads(response.read())
        return response.status, answer
    finally:
        conn.close()


async def request_json(
    port: int, ctx: ssl.SSLContext, path: str, body: Any = None, method: str = "POST"
) -> tuple[int, dict[str, Any]]:
    """One request to the agent on loopback; the status and the decoded JSON envelope."""
    return await trio.to_thread.run_sync(_request, port, ctx, method, path, body)


# Keylime's verifier passes through "Provide V" once, after the first good quote of a new
# agent (keylime/cloud_verifier_tornado.py: the V share goes out, then it returns to
# "Get Quote"), so a status read right after enrolment may see it.  Each wait here is a
# condition with a generous deadline, so a busy machine only makes it slower.
ENROLLED_DEADLINE_SECONDS = 60.0
TRANSIENT_AFTER_ADD = "Provide V"
GET_QUOTE_STATE = "Get Quote"
STATUS_RETRY_SECONDS = 1.25


async def first_get_quote(read_status: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """The first status in "Get Quote" after enrolment; "Provide V" may come before it."""
    deadline = time.monotonic() + ENROLLED_DEADLINE_SECONDS
    record = await read_status()
    while record["operational_state"] == TRANSIENT_AFTER_ADD and time.monotonic() < deadline:
        await trio.sleep(STATUS_RETRY_SECONDS)
        record = await read_status()
    assert record["operational_state"] == GET_QUOTE_STATE, record
    return record
