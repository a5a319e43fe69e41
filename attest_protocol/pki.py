"""A small X.509 CA: create one and issue TLS server and client certificates, as PEM bytes.

Used by the registrar and verifier tests, and by ``tls_dir = generate`` (Keylime's verifier
creates its CA, server and client certificates at first start: ``keylime/ca_util.py``,
``keylime/web_util.py`` ``init_tls_dir``).  Pure: no file or socket I/O; the caller writes
the PEM bytes where it wants them.

OpenSSL 3.2+ refuses, in its default strict verification, chains whose CA lacks a Subject Key
Identifier or whose leaves lack the Authority Key Identifier (RFC 5280 §4.2.1.1-2), so every
certificate here carries both, with basicConstraints, keyUsage and extendedKeyUsage marked
the way RFC 5280 §4.2.1.3, §4.2.1.9 and §4.2.1.12 ask, and servers name their IPs and DNS
names in subjectAltName (RFC 6125: the CN is not checked by modern clients).

Keys are ECDSA P-256: generation takes microseconds, every TLS stack Keylime runs on accepts
it, and it is the curve Keylime's own CA code uses for its default ``ecdsa`` key type.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from attest_protocol.errors import AttestProtocolError

__all__ = [
    "CA_LIFETIME_DAYS",
    "CERT_LIFETIME_DAYS",
    "CLOCK_SKEW_SECONDS",
    "CertificateAuthority",
    "IssuedCert",
    "PkiError",
    "create_ca",
    "issue_client_cert",
    "issue_server_cert",
]

# Keylime's ca.conf defaults: cert_ca_lifetime = 3650 days, cert_lifetime = 365 days.
CA_LIFETIME_DAYS = 3650
CERT_LIFETIME_DAYS = 365
# notBefore is set this far in the past so a peer whose clock lags a little still accepts.
CLOCK_SKEW_SECONDS = 300


class PkiError(AttestProtocolError):
    """A certificate request that cannot be honoured (bad SAN value, no names at all)."""


@dataclass(frozen=True)
class IssuedCert:
    """A certificate and its private key (PKCS#8, unencrypted), both PEM."""

    cert_pem: bytes
    key_pem: bytes = b""

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


@dataclass(frozen=True)
class CertificateAuthority:
    """A self-signed CA that can issue certificates; ``key_pem`` must stay private."""

    cert_pem: bytes
    key_pem: bytes

    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    if not common_name:
        raise PkiError("a certificate needs a non-empty common name")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    # A CA signs certificates (and CRLs); a TLS leaf with an EC key signs the handshake.
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(subject: x509.Name, issuer: x509.Name, lifetime_days: int) -> x509.CertificateBuilder:
    if lifetime_days <= 0:
        raise PkiError(f"lifetime must be a positive number of days, not {lifetime_days}")
    start = _now() - datetime.timedelta(seconds=CLOCK_SKEW_SECONDS)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        # RFC 5280 §4.1.2.2: positive, at most 20 octets; this draws 159 random bits.
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=lifetime_days))
    )


def create_ca(common_name: str, *, lifetime_days: int = CA_LIFETIME_DAYS) -> CertificateAuthority:
    """A new self-signed CA (basicConstraints CA:TRUE, pathLen 0: it issues only leaves)."""
    key = _new_key()
    name = _name(common_name)
    public = key.public_key()
    cert = (
        _builder(name, name, lifetime_days)
        .public_key(public)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _san(ips: Iterable[str], dns_names: Iterable[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for ip in ips:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as exc:
            raise PkiError(f"not an IP address for subjectAltName: {ip[:64]!r}") from exc
    for dns in dns_names:
        if not dns or len(dns) > 253 or not dns.isascii():
            raise PkiError(f"not a DNS name for subjectAltName: {dns[:64]!r}")
        names.append(x509.DNSName(dns))
    return names


def _issue(
    ca: CertificateAuthority,
    common_name: str,
    usage: x509.ObjectIdentifier,
    san: list[x509.GeneralName],
    lifetime_days: int,
) -> IssuedCert:
    ca_key = serialization.load_pem_private_key(ca.key_pem, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise PkiError("the CA key is not an EC key made by create_ca")
    ca_cert = ca.certificate()
    key = _new_key()
    public = key.public_key()
    builder = (
        _builder(_name(common_name), ca_cert.subject, lifetime_days)
        .public_key(public)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    return IssuedCert(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue_server_cert(
    ca: CertificateAuthority,
    common_name: str,
    *,
    ips: Iterable[str] = (),
    dns_names: Iterable[str] = (),
    lifetime_days: int = CERT_LIFETIME_DAYS,
) -> IssuedCert:
    """A TLS server certificate (extendedKeyUsage serverAuth) naming ``ips`` and ``dns_names``.

    At least one SAN is required: clients match the host against subjectAltName only.
    """
    san = _san(ips, dns_names)
    if not san:
        raise PkiError("a server certificate needs at least one IP address or DNS name")
    return _issue(ca, common_name, ExtendedKeyUsageOID.SERVER_AUTH, san, lifetime_days)


def issue_client_cert(
    ca: CertificateAuthority,
    common_name: str,
    *,
    lifetime_days: int = CERT_LIFETIME_DAYS,
) -> IssuedCert:
    """A TLS client certificate (extendedKeyUsage clientAuth), e.g. for the tenant."""
    return _issue(ca, common_name, ExtendedKeyUsageOID.CLIENT_AUTH, [], lifetime_days)
