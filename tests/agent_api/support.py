"""The agent under test: ``run_agent`` in-process on a swtpm, its API on a free loopback port.

The registrar is tests/agent/support.py's FakeRegistrar, reached through a MemoryListener;
the verifier's side is a test CA (attest_protocol.pki) written where ``trusted_client_ca``
finds it by default (keylime_dir/cv_ca/cacert.crt), and an httpx client with a certificate
from it that trusts the agent's self-signed mTLS certificate.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import secrets
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import httpx
import trio

from attest_protocol.bootstrap_keys import KEY_BYTES, auth_tag, encrypt_to_nk, xor
from attest_protocol.pki import CertificateAuthority, IssuedCert, create_ca, issue_client_cert
from edge_agent.app import AgentStarted, run_agent
from edge_agent.config import AgentConfig
from tests.agent.support import FakeRegistrar, MemoryListener

LOOPBACK = "127.0.0.1"
CLIENT_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class ClientPki:
    ca: CertificateAuthority
    client: IssuedCert
    directory: Path

    @property
    def client_cert(self) -> Path:
        return self.directory / "client-cert.crt"

    @property
    def client_key(self) -> Path:
        return self.directory / "client-key.pem"


def make_pki(directory: Path, name: str = "limelet test verifier CA") -> ClientPki:
    directory.mkdir(parents=True, exist_ok=True)
    ca = create_ca(name)
    client = issue_client_cert(ca, "verifier")
    pki = ClientPki(ca, client, directory)
    pki.client_cert.write_bytes(client.cert_pem)
    pki.client_key.write_bytes(client.key_pem)
    return pki


def agent_config(tmp_path: Path, tcti: str, **options: Any) -> AgentConfig:
    """Defaults, the data dir in tmp_path, port 0 and no IMA or boot log unless given."""
    base = AgentConfig(
        keylime_dir=str(tmp_path / "keylime"),
        port=0,
        tcti=tcti,
        ima_ml_path=str(tmp_path / "no-ima-log"),
        measuredboot_ml_path=str(tmp_path / "no-boot-log"),
        exponential_backoff_initial_delay=100,
        exponential_backoff_max_retries=2,
        exponential_backoff_max_delay=1000,
    )
    return dataclasses.replace(base, **options)


def install_ca(config: AgentConfig, pki: ClientPki) -> None:
    """Put the CA where ``trusted_client_ca = "default"`` looks for it."""
    path = config.trusted_client_ca_paths[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pki.ca.cert_pem)


@dataclass
class RunningAgent:
    started: AgentStarted
    config: AgentConfig
    registrar: FakeRegistrar
    url: str
    tmp_path: Path

    @property
    def ak_public(self) -> bytes:
        return base64.b64decode(self.registrar.agents[self.started.agent_id].body["aik_tpm"])

    def client(
        self,
        pki: Optional[ClientPki],
        *,
        cert: Optional[IssuedCert] = None,
        max_tls: Optional[ssl.TLSVersion] = None,
    ) -> httpx.AsyncClient:
        """A client with ``cert`` (default: the PKI's client cert); no cert if ``pki`` is None."""
        if not self.url.startswith("https"):
            return httpx.AsyncClient(base_url=self.url, timeout=CLIENT_TIMEOUT_SECONDS)
        context = self.ssl_context(pki, cert=cert, max_tls=max_tls)
        return httpx.AsyncClient(base_url=self.url, verify=context, timeout=CLIENT_TIMEOUT_SECONDS)

    def ssl_context(
        self,
        pki: Optional[ClientPki],
        *,
        cert: Optional[IssuedCert] = None,
        max_tls: Optional[ssl.TLSVersion] = None,
    ) -> ssl.SSLContext:
        """Trusts the agent's self-signed certificate (pinned, as Keylime's tenant does)."""
        assert self.started.mtls_cert_pem is not None
        context = ssl.create_default_context(cadata=self.started.mtls_cert_pem)
        if max_tls is not None:
            context.maximum_version = max_tls
        chosen = cert if cert is not None else (None if pki is None else pki.client)
        if chosen is not None:
            cert_file = self.tmp_path / f"client-{secrets.token_hex(4)}.pem"
            cert_file.write_bytes(chosen.cert_pem + chosen.key_pem)
            context.load_cert_chain(str(cert_file))
        return context


@asynccontextmanager
async def running_agent(config: AgentConfig, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    registrar = FakeRegistrar()
    listener = MemoryListener()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(registrar.serve, [listener])
        run = functools.partial(run_agent, config, connect=listener.connect, stop=stop)
        started: AgentStarted = await nursery.start(run)
        yield RunningAgent(started, config, registrar, started.api_urls[0], tmp_path)
        nursery.cancel_scope.cancel()


# -- the tenant's and verifier's side of the key exchange (keylime/crypto.py, tenant.py) -----


def encrypt_half(pubkey_pem: str, half: bytes) -> str:
    return base64.b64encode(encrypt_to_nk(pubkey_pem, half)).decode()


@dataclass(frozen=True)
class KeyHalves:
    u: bytes
    v: bytes

    @property
    def k(self) -> bytes:
        return xor(self.u, self.v)

    def auth_tag(self, agent_id: str) -> str:
        return auth_tag(self.k, agent_id)


def new_halves() -> KeyHalves:
    return KeyHalves(secrets.token_bytes(KEY_BYTES), secrets.token_bytes(KEY_BYTES))
