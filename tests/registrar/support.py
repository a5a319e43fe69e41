"""Helpers for the registrar tests: TLS material, a running service, software identities.

``software_identity`` builds what a TPM would send (an EK public area from the TCG default
template, a self-issued EK certificate, a restricted-signing AK public area) from software
keys, so field-validation tests need no swtpm; the end-to-end tests use a real swtpm.
"""

from __future__ import annotations

import base64
import datetime
import sqlite3
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import httpx
import psycopg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from psycopg.rows import dict_row

from attest_protocol.tpm2.constants import EccCurve, TpmAlg, TpmaObject
from attest_protocol.tpm2.public import AK_REQUIRED_ATTRIBUTES, SYM_NULL, Scheme, TpmPublic
from registrar_lite.config import RegistrarConfig
from registrar_lite.ek_template import ek_public_from_key
from registrar_lite.server import BoundPorts
from registrar_lite.service import expected_auth_tag
from tests.cv_ca import TlsFiles

LOOPBACK = "127.0.0.1"
API = "v2.1"
# Short limits keep the timeout tests fast; production defaults are in registrar_lite.config.
TEST_HANDSHAKE_TIMEOUT_SECONDS = 0.5
CLIENT_TIMEOUT_SECONDS = 10.0


def registrar_config(
    data_dir: Path, tls: TlsFiles, *, tpm_cert_store: Optional[Path] = None
) -> RegistrarConfig:
    return RegistrarConfig(
        ip=LOOPBACK,
        port=0,
        tls_port=0,
        data_dir=str(data_dir),
        tls_dir=str(tls.directory),
        tpm_cert_store="" if tpm_cert_store is None else str(tpm_cert_store),
        handshake_timeout_seconds=TEST_HANDSHAKE_TIMEOUT_SECONDS,
    )


@dataclass(frozen=True)
class RunningRegistrar:
    config: RegistrarConfig
    ports: BoundPorts
    tls: TlsFiles

    @property
    def http_url(self) -> str:
        return f"http://{LOOPBACK}:{self.ports.port}"

    @property
    def https_url(self) -> str:
        return f"https://{LOOPBACK}:{self.ports.tls_port}"

    def agent_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, timeout=CLIENT_TIMEOUT_SECONDS)

    def admin_client(self, **kwargs: bool) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.https_url,
            verify=self.tls.client_context(**kwargs),
            timeout=CLIENT_TIMEOUT_SECONDS,
        )

    def stored(self, agent_id: str, table: str = "registrar_agents") -> Optional[dict[str, Any]]:
        """The raw database row, read behind the service's back (as an auditor would)."""
        assert table in ("registrar_agents", "registrar_held")
        if self.config.uses_postgres:
            return _stored_postgres(self.config.database_url, table, agent_id)
        conn = sqlite3.connect(str(self.config.sqlite_path()))
        conn.row_factory = sqlite3.Row
        try:
            row = conn.execute(
                f"SELECT * FROM {table} WHERE agent_id = ?",  # noqa: S608 - one of two names
                (agent_id,),
            ).fetchone()
        finally:
            conn.close()
        return None if row is None else dict(row)

    def held(self, agent_id: str) -> Optional[dict[str, Any]]:
        """A re-registration of an active agent, waiting for its activation."""
        return self.stored(agent_id, "registrar_held")

    def auth_tag(self, agent_id: str) -> str:
        """The correct tag, from the stored challenge key (what a TPM-holding agent computes):
        the held re-registration's when there is one."""
        row = self.held(agent_id) or self.stored(agent_id)
        assert row is not None
        return expected_auth_tag(row["challenge_key"], agent_id)


def _stored_postgres(url: str, table: str, agent_id: str) -> Optional[dict[str, Any]]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute(
            f"SELECT * FROM {table} WHERE agent_id = %s",  # noqa: S608 - one of two names
            (agent_id,),
        ).fetchone()
    return None if row is None else dict(row)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class SoftwareIdentity:
    ek_tpm: bytes
    ekcert: bytes  # DER
    aik_tpm: bytes
    ek_key: rsa.RSAPrivateKey

    def body(self, **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "ekcert": b64(self.ekcert),
            "ek_tpm": b64(self.ek_tpm),
            "aik_tpm": b64(self.aik_tpm),
            "mtls_cert": "disabled",
            "ip": LOOPBACK,
            "port": 9002,
        }
        body.update(extra)
        return body


def ak_public(attributes: int = int(AK_REQUIRED_ATTRIBUTES | TpmaObject.USER_WITH_AUTH)) -> bytes:
    """An ECC P-256 ECDSA-SHA256 AK public area, as tpm2_createak makes it."""
    numbers = ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers()
    pub = TpmPublic(
        TpmAlg.ECC,
        TpmAlg.SHA256,
        attributes,
        b"",
        SYM_NULL,
        Scheme(TpmAlg.ECDSA, TpmAlg.SHA256),
        curve_id=EccCurve.NIST_P256,
        kdf=Scheme(TpmAlg.NULL, TpmAlg.NULL),
        unique=(numbers.x.to_bytes(32, "big"), numbers.y.to_bytes(32, "big")),
    )
    return pub.to_tpm2b()


def ek_certificate(key: rsa.RSAPrivateKey) -> bytes:
    """A DER EK certificate for ``key``, self-signed by a throwaway manufacturer CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test TPM manufacturer")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DirectoryName(name)]), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def software_identity() -> SoftwareIdentity:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return SoftwareIdentity(
        ek_tpm=ek_public_from_key(key.public_key()).to_tpm2b(),
        ekcert=ek_certificate(key),
        aik_tpm=ak_public(),
        ek_key=key,
    )


def with_other_ak(identity: SoftwareIdentity) -> SoftwareIdentity:
    return replace(identity, aik_tpm=ak_public())
