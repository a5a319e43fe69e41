"""limelet-tenant's registrar commands against registrar_lite, served in-process over mTLS.

The agent is a software identity (tests/registrar/support.py), registered and activated on
the plain port as an agent would; the tenant then lists, shows and deletes it over mTLS.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import pytest
import trio

from attest_protocol.pki import create_ca, issue_server_cert
from registrar_lite.server import serve_registrar
from tenant_lite.errors import EXIT_CONFIG, EXIT_NOT_FOUND, EXIT_OK, EXIT_UNREACHABLE
from tests.cv_ca import make_tls_files
from tests.registrar.support import API, RunningRegistrar, registrar_config, software_identity
from tests.tenant.support import TenantRun, run_tenant, write_config

AGENT_ID = "tenant-test-agent"
HANDSHAKE_SETTLE_SECONDS = 5


@pytest.fixture
async def registrar(nursery: trio.Nursery, tmp_path: Path) -> RunningRegistrar:
    tls = make_tls_files(tmp_path / "tls")
    config = registrar_config(tmp_path / "registrar", tls)
    ports = await nursery.start(serve_registrar, config)
    return RunningRegistrar(config, ports, tls)


async def register_and_activate(
    registrar: RunningRegistrar, agent_id: str, **fields: object
) -> dict[str, object]:
    body = software_identity().body(**fields)
    async with registrar.agent_client() as client:
        registered = await client.post(f"/{API}/agents/{agent_id}", json=body)
        assert registered.status_code == 200, registered.text
        tag = registrar.auth_tag(agent_id)
        activated = await client.put(f"/{API}/agents/{agent_id}/activate", json={"auth_tag": tag})
        assert activated.status_code == 200, activated.text
    return body


def tenant_config(registrar: RunningRegistrar, path: Path, **extra: str | int | bool) -> Path:
    options: dict[str, str | int | bool] = {
        "registrar_ip": "127.0.0.1",
        "registrar_tls_port": registrar.ports.tls_port,
        "registrar_port": registrar.ports.port,
        "tls_dir": str(registrar.tls.directory),
        "request_timeout": 10,
    }
    options.update(extra)
    return write_config(path, **options)


async def tenant(config: Path, *args: str) -> TenantRun:
    # The CLI is synchronous; the registrar is served by this very Trio loop.
    return await trio.to_thread.run_sync(lambda: run_tenant(config, *args))


async def test_reglist_regstatus_regdelete(registrar: RunningRegistrar, tmp_path: Path) -> None:
    body = await register_and_activate(registrar, AGENT_ID)
    config = tenant_config(registrar, tmp_path / "tenant.toml")

    listed = await tenant(config, "reglist")
    assert listed.code == EXIT_OK, listed
    assert listed.result["uuids"] == [AGENT_ID]

    shown = await tenant(config, "regstatus", AGENT_ID)
    assert shown.code == EXIT_OK, shown
    record = shown.result[AGENT_ID]
    assert record["aik_tpm"] == body["aik_tpm"]
    assert base64.b64decode(record["ekcert"]) == base64.b64decode(str(body["ekcert"]))
    assert record["operational_state"] == "Registered"

    deleted = await tenant(config, "regdelete", AGENT_ID)
    assert deleted.code == EXIT_OK, deleted
    assert (await tenant(config, "regstatus", AGENT_ID)).code == EXIT_NOT_FOUND
    assert (await tenant(config, "regdelete", AGENT_ID)).code == EXIT_NOT_FOUND
    assert (await tenant(config, "reglist")).result["uuids"] == []


async def test_client_cert_from_another_ca_is_refused(
    registrar: RunningRegistrar, tmp_path: Path
) -> None:
    tls = registrar.tls
    config = tenant_config(
        registrar,
        tmp_path / "tenant.toml",
        client_cert=str(tls.rogue_cert),
        client_key=str(tls.rogue_key),
    )
    run = await tenant(config, "reglist")
    assert run.code == EXIT_UNREACHABLE, run
    assert "client certificate" in run.body["message"]


async def test_missing_client_key_is_a_config_error(
    registrar: RunningRegistrar, tmp_path: Path
) -> None:
    config = tenant_config(registrar, tmp_path / "t.toml", client_key="absent.pem")
    run = await tenant(config, "reglist")
    assert run.code == EXIT_CONFIG, run
    assert "absent.pem" in run.body["message"]


async def test_agent_with_another_certificate_than_registered_is_refused(
    registrar: RunningRegistrar, tmp_path: Path, nursery: trio.Nursery
) -> None:
    """The agent's registered mtls_cert is the only server certificate the tenant accepts."""
    ca = create_ca("agent certificates")
    registered = issue_server_cert(ca, "agent", ips=["127.0.0.1"])
    impostor = issue_server_cert(ca, "agent", ips=["127.0.0.1"])  # same CA, other key
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert_file = tmp_path / "impostor.pem"
    cert_file.write_bytes(impostor.cert_pem + impostor.key_pem)
    server_ctx.load_cert_chain(str(cert_file))
    handshakes: list[str] = []
    handled = trio.Event()

    async def handle(stream: trio.SocketStream) -> None:
        tls = trio.SSLStream(stream, server_ctx, server_side=True)
        try:
            await tls.do_handshake()
            handshakes.append("completed")
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            handshakes.append("refused")
        finally:
            await stream.aclose()
            handled.set()

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(trio.serve_listeners, handle, listeners)
    await register_and_activate(
        registrar, AGENT_ID, mtls_cert=registered.cert_pem.decode(), port=port
    )
    config = tenant_config(registrar, tmp_path / "t.toml", require_ek_cert=False)
    run = await tenant(config, "add", AGENT_ID)
    assert run.code == EXIT_UNREACHABLE, run
    assert f"agent {AGENT_ID} at 127.0.0.1:{port}" in run.body["message"]
    assert f"the mTLS certificate agent {AGENT_ID} registered" in run.body["message"]
    # The server side may still be unwinding its half of the handshake when the tenant exits.
    with trio.fail_after(HANDSHAKE_SETTLE_SECONDS):
        await handled.wait()
    assert handshakes == ["refused"]
