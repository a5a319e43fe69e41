"""The agent's mTLS server key and self-signed certificate, created once and kept.

As rust-keylime does (keylime-agent/src/main.rs; keylime/src/crypto/x509.rs): an ECC P-256
key (an existing RSA or EC key is kept, for agents that started with older defaults); the
certificate is self-signed with subject and issuer CN = the agent id, and a
subjectAltName with the loopback names and addresses plus the contact address (an IP
address or a DNS name).  The registrar hands this certificate to the verifier and tenant,
which pin it for the agent's mTLS.

rust-keylime reuses a certificate file as it finds it.  limelet also reuses it, but makes a new
one when the id or the contact address changed, it is not for this key, or it expires within
``CERT_RENEW_BEFORE_DAYS``, because a stale certificate would only fail later at the verifier.
"""

from __future__ import annotations

import datetime
import ipaddress
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from attest_protocol.certificates import load_pem_certificate
from edge_agent.keys.errors import KeyMaterialError
from edge_agent.keys.files import read_private_file, write_private_file
from edge_agent.keys.pem import load_private_key, store_private_key

__all__ = ["CERT_VALIDITY_DAYS", "ServerIdentity", "load_or_create_server_identity"]

log = logging.getLogger(__name__)

ServerKey = Union[ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey]
# rust-keylime's CertificateBuilder default validity (not_after = 365 days from now).
CERT_VALIDITY_DAYS = 365
# Renew a kept certificate when fewer days than this remain.
CERT_RENEW_BEFORE_DAYS = 30
_LOCAL_DNS_NAMES = ("localhost", "localhost.domain")
_LOCAL_IPS = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))


@dataclass(frozen=True)
class ServerIdentity:
    """The mTLS key and certificate the agent's REST server presents."""

    key: ServerKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_or_create_server_identity(
    key_path: Path,
    cert_path: Path,
    *,
    agent_id: str,
    contact_address: str,
    password: str = "",
    now: Optional[datetime.datetime] = None,
) -> ServerIdentity:
    """Load or create the key, then reuse the certificate if it still fits, else remake it."""
    moment = now or datetime.datetime.now(datetime.timezone.utc)
    key = _load_or_create_key(key_path, password)
    cert = _load_cert(cert_path)
    if cert is not None and _fits(cert, key, agent_id, contact_address, moment):
        log.info("Loaded the mTLS certificate from %s", cert_path)
        return ServerIdentity(key, cert)
    log.info(
        "Creating the mTLS certificate for %s at %s in %s", agent_id, contact_address, cert_path
    )
    cert = build_certificate(key, agent_id, contact_address, moment)
    write_private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    return ServerIdentity(key, cert)


def _load_or_create_key(path: Path, password: str) -> ServerKey:
    key = load_private_key(path, password)
    if key is None:
        log.info("Creating the mTLS server key (ECC P-256) in %s", path)
        created = ec.generate_private_key(ec.SECP256R1())
        store_private_key(path, created, password)
        return created
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise KeyMaterialError(path, "the mTLS server key must be an ECC or RSA key")
    return key


def _load_cert(path: Path) -> Optional[x509.Certificate]:
    data = read_private_file(path)
    if data is None:
        return None
    try:
        # A certificate rust-keylime left behind is kept (its serial is below 1).
        return load_pem_certificate(data)
    except ValueError:
        log.warning("%s is not a PEM certificate; making a new one", path)
        return None


def _san_entries(contact_address: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in _LOCAL_DNS_NAMES]
    names += [x509.IPAddress(ip) for ip in _LOCAL_IPS]
    try:
        contact = ipaddress.ip_address(contact_address.strip("[]"))
    except ValueError:
        if contact_address not in _LOCAL_DNS_NAMES:
            names.append(x509.DNSName(contact_address))
    else:
        if contact not in _LOCAL_IPS:
            names.append(x509.IPAddress(contact))
    return names


def _fits(
    cert: x509.Certificate,
    key: ServerKey,
    agent_id: str,
    contact_address: str,
    now: datetime.datetime,
) -> bool:
    cn = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    same_key = cert.public_key().public_bytes(serialization.Encoding.DER, spki) == (
        key.public_key().public_bytes(serialization.Encoding.DER, spki)
    )
    renew_at = cert.not_valid_after_utc - datetime.timedelta(days=CERT_RENEW_BEFORE_DAYS)
    wanted = set(_san_entries(contact_address))
    return cn == [agent_id] and wanted <= set(san) and same_key and now < renew_at


def build_certificate(
    key: ServerKey, agent_id: str, contact_address: str, now: datetime.datetime
) -> x509.Certificate:
    """A self-signed certificate: CN = ``agent_id``, SAN = loopback plus ``contact_address``."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, agent_id)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_VALIDITY_DAYS))
        .add_extension(x509.SubjectAlternativeName(_san_entries(contact_address)), critical=False)
        .sign(key, hashes.SHA256())
    )
