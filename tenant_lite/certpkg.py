"""``add --cert DIR``: a certificate package for the agent, as Keylime's tenant builds it.

Keylime (keylime/tenant.py ``init_add``, keylime/ca_util.py ``cmd_certpkg``) zips, without
compression, ``{id}-public.pem``, ``{id}-cert.crt``, ``{id}-private.pem``, ``cacert.crt``,
``cacrl.der``, ``cacrl.pem``, then adds ``RevocationNotifier-cert.crt`` and the top-level
files of ``--include DIR``. The zip becomes the encrypted payload; the RevocationNotifier
private key goes to the verifier as ``revocation_key`` (it signs revocation messages) and
``metadata`` = ``{"cert_serial", "subject"}`` of the agent's certificate.

The CA directory is limelet's own layout, made with attest_protocol.pki on first use:
``cacert.crt`` + ``ca-private.pem`` (EC, unencrypted: protect the directory), and per name
``{name}-cert.crt``, ``{name}-private.pem``, ``{name}-public.pem``. Keylime's password-protected
``private.yml`` store is not read.
"""

from __future__ import annotations

import datetime
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from attest_protocol.pki import CertificateAuthority, create_ca, issue_client_cert
from tenant_lite.errors import UsageError

REVOCATION_NAME = "RevocationNotifier"
CA_CERT = "cacert.crt"
CA_KEY = "ca-private.pem"
CRL_DER = "cacrl.der"
CRL_PEM = "cacrl.pem"
CRL_LIFETIME_DAYS = 365  # an empty CRL, renewed whenever a package is built
MAX_INCLUDE_BYTES = 512 * 1024  # the whole package must fit max_payload_size once encrypted


@dataclass(frozen=True)
class CertPackage:
    zip_bytes: bytes = field(repr=False)
    revocation_key_pem: str = field(repr=False)
    metadata: dict[str, Any]


def _load_or_create_ca(ca_dir: Path) -> CertificateAuthority:
    cert, key = ca_dir / CA_CERT, ca_dir / CA_KEY
    if cert.is_file() and key.is_file():
        return CertificateAuthority(cert.read_bytes(), key.read_bytes())
    if cert.exists() or key.exists():
        raise UsageError(f"--cert {ca_dir}: needs both {CA_CERT} and {CA_KEY}, or neither")
    ca_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    ca = create_ca("limelet tenant CA")
    key.touch(mode=0o600)
    key.write_bytes(ca.key_pem)
    cert.write_bytes(ca.cert_pem)
    return ca


def _load_or_issue(ca_dir: Path, ca: CertificateAuthority, name: str) -> dict[str, bytes]:
    paths = {s: ca_dir / f"{name}-{s}" for s in ("cert.crt", "private.pem", "public.pem")}
    if not paths["cert.crt"].is_file():
        issued = issue_client_cert(ca, name)
        public = (
            issued.certificate()
            .public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        paths["private.pem"].touch(mode=0o600)
        paths["private.pem"].write_bytes(issued.key_pem)
        paths["cert.crt"].write_bytes(issued.cert_pem)
        paths["public.pem"].write_bytes(public)
    return {f"{name}-{s}": p.read_bytes() for s, p in paths.items()}


def _write_crl(ca_dir: Path, ca: CertificateAuthority) -> tuple[bytes, bytes]:
    key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise UsageError(f"--cert {ca_dir}: {CA_KEY} is not a limelet CA key")
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate().subject)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=CRL_LIFETIME_DAYS))
        .sign(key, hashes.SHA256())
    )
    der = crl.public_bytes(serialization.Encoding.DER)
    pem = crl.public_bytes(serialization.Encoding.PEM)
    (ca_dir / CRL_DER).write_bytes(der)
    (ca_dir / CRL_PEM).write_bytes(pem)
    return der, pem


def _include_files(include: Path) -> dict[str, bytes]:
    if not include.is_dir():
        raise UsageError(f"--include {include} is not a directory")
    files = {p.name: p.read_bytes() for p in sorted(include.iterdir()) if p.is_file()}
    if sum(len(b) for b in files.values()) > MAX_INCLUDE_BYTES:
        raise UsageError(f"--include {include}: more than {MAX_INCLUDE_BYTES} bytes of files")
    return files


def build_package(ca_dir: Path, agent_id: str, include: Path | None) -> CertPackage:
    ca = _load_or_create_ca(ca_dir)
    agent = _load_or_issue(ca_dir, ca, agent_id)
    revocation = _load_or_issue(ca_dir, ca, REVOCATION_NAME)
    crl_der, crl_pem = _write_crl(ca_dir, ca)
    members = dict(agent)
    members.update({CA_CERT: ca.cert_pem, CRL_DER: crl_der, CRL_PEM: crl_pem})
    members[f"{REVOCATION_NAME}-cert.crt"] = revocation[f"{REVOCATION_NAME}-cert.crt"]
    if include is not None:
        members.update(_include_files(include))
    buffer = io.BytesIO()
    # Stored, not deflated: Keylime's agents extract into a tmpfs (ca_util.py comment).
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    cert = x509.load_pem_x509_certificate(agent[f"{agent_id}-cert.crt"])
    return CertPackage(
        zip_bytes=buffer.getvalue(),
        revocation_key_pem=revocation[f"{REVOCATION_NAME}-private.pem"].decode("ascii"),
        metadata={"cert_serial": cert.serial_number, "subject": cert.subject.rfc4514_string()},
    )
